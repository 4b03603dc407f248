"""Where models come from.

The packaged model store (``store``: registry parts, sha256, conversion cache), the converted files'
integrity (``integrity``: marker, hashes, locks), the errors that say what to do (``errors``) and the tiny
random models of the tests (``testing``).
"""
