"""Version of the langchain-hogwild distribution."""

__version__ = "0.1.0"
