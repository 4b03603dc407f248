"""Tool machinery for the engine: definitions, call/result formats, parsing, constrained decoding, running.

Per sampled token of a worker the engine does::

    constraint.apply(logits_row)          # only when the worker decodes under a grammar
    token = sample(logits_row)
    constraint.accept(token)
    for call in detector.feed(token_text):
        future = executor.submit(call, tools_by_name.get(call.name), timeout_s=..., max_result_tokens=...)

and, when the future resolves, writes ``fmt.inline_result_text(outcome)`` (inside a step) or
``fmt.render_result_block(outcome)`` (when the call ended the assistant turn) into the shared cache.
"""

from .executor import ToolExecutor, count_characters, tokenizer_counters, truncate_characters
from .formats import GENERIC_FORMAT, ChatTemplateError, ToolFormat, render_prompt_with_tools
from .grammar import GrammarFactory, GrammarRejectedTokenError, TokenConstraint, apply_constraints
from .parsing import ToolCallDetector, ToolCallParseError, parse_tool_calls
from .tool import Tool, ToolArgumentsError, ToolCall, ToolOutcome

__all__ = [
    "GENERIC_FORMAT",
    "ChatTemplateError",
    "GrammarFactory",
    "GrammarRejectedTokenError",
    "TokenConstraint",
    "Tool",
    "ToolArgumentsError",
    "ToolCall",
    "ToolCallDetector",
    "ToolCallParseError",
    "ToolExecutor",
    "ToolFormat",
    "ToolOutcome",
    "apply_constraints",
    "count_characters",
    "parse_tool_calls",
    "render_prompt_with_tools",
    "tokenizer_counters",
    "truncate_characters",
]
