"""``hogwild serve``: an OpenAI-compatible chat-completions server over one shared engine, and a web view.

Install with ``pip install 'hogwild-agents[server]'``; see docs/SERVER.md for the protocol.
"""

from .app import create_app
from .serve import load_engine, serve

__all__ = ["create_app", "load_engine", "serve"]
