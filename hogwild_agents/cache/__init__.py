"""The shared paged KV store as plain-Python bookkeeping.

Pages, blocks, layouts (each worker's view) and the per-forward plans.
"""
