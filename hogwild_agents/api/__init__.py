"""The engine's vocabulary: configuration, messages, events, results and errors.

Every other layer imports it; it imports none of them.
"""
