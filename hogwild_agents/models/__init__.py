"""Where models come from.

The packaged model store (registry parts, sha256, conversion cache) and the tiny random models of
the tests.
"""
