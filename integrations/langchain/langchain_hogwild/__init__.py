"""LangChain integration of hogwild-agents: :class:`ChatHogwild`.

Several workers of one local model over one shared KV cache, as a chat model with tools, structured output
and streaming.
"""

from ._version import __version__
from .chat_models import ChatHogwild

__all__ = ["ChatHogwild", "__version__"]
