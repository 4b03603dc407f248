"""LlamaIndex integration of hogwild-agents: ``from llama_index.llms.hogwild import Hogwild``."""

from llama_index.llms.hogwild.base import Hogwild

__version__ = "0.1.0"

__all__ = ["Hogwild", "__version__"]
