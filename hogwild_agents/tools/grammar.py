"""Constrained decoding with xgrammar: tool-call and JSON-schema grammars, and per-worker token masks.

One :class:`GrammarFactory` per (tokenizer, logits width) compiles grammars; one :class:`TokenConstraint`
per worker tracks that worker's position in its grammar. Per sampled token the engine calls::

    constraint.apply(logits_row)      # disallowed tokens -> -inf, in place
    token = sample(logits_row)
    constraint.accept(token)

or, for all workers at once, :func:`apply_constraints` on the ``[B, V]`` logits.

The ``"auto"`` tool grammar leaves text free until a trigger is written: the template's call tag (e.g.
``<tool_call>``), a ```` ```json ```` fence, or a bare ``{"name": "``. From there the output is forced
to be a schema-valid call of one of the tools, closed by the matching delimiter; then text is free again.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Sequence
from typing import Any

import torch
import xgrammar as xgr

from .formats import GENERIC_FORMAT, ToolFormat
from .tool import Tool

_BARE_TRIGGER = '{"name": "'
_FENCE_OPEN, _FENCE_CLOSE = "```json\n", "\n```"
_REQUIRED = ("required", "any")


class GrammarRejectedTokenError(RuntimeError):
    """A sampled token is not allowed by the worker's grammar (the mask was not applied, or bypassed)."""


class GrammarFactory:
    """Compiles grammars for one tokenizer; xgrammar's tokenizer info and compiler are built once.

    Args:
        tokenizer: Hugging Face tokenizer of the model.
        vocab_size: Width of the model's logits (may exceed ``len(tokenizer)``: padded ids are never allowed).
        max_whitespace: Longest run of whitespace allowed between JSON tokens (None: unlimited). A bound
            keeps a weak model from looping on spaces inside a constrained call.

    """

    _cache: dict[tuple[int, int], tuple[Any, xgr.TokenizerInfo, xgr.GrammarCompiler]] = {}

    def __init__(self, tokenizer: Any, vocab_size: int, *, max_whitespace: int | None = 24) -> None:
        key = (id(tokenizer), vocab_size)
        cached = self._cache.get(key)
        if cached is None or cached[0] is not tokenizer:
            info = xgr.TokenizerInfo.from_huggingface(tokenizer, vocab_size=vocab_size)
            cached = (tokenizer, info, xgr.GrammarCompiler(info))
            self._cache[key] = cached
        _, self.tokenizer_info, self.compiler = cached
        self.vocab_size = vocab_size
        self.max_whitespace = max_whitespace

    def tool_calls(
        self, tools: Sequence[Tool], choice: str = "auto", fmt: ToolFormat | None = None
    ) -> xgr.CompiledGrammar | None:
        """Compile the grammar for a ``tool_choice``.

        Args:
            tools: The tools the model may call.
            choice: ``"auto"`` (free text; a call, once started, must be valid), ``"none"`` (no grammar),
                ``"required"``/``"any"`` (exactly one call of any tool, in the template's wrapper), or a
                tool name (exactly one call of that tool).
            fmt: The model's tool format (None: the generic tags).

        Returns:
            The compiled grammar, or None for ``"none"`` (or no tools with ``"auto"``).

        Raises:
            ValueError: ``choice`` is not one of the above, or names no tool; no tools for a forced call.

        """
        fmt = fmt or GENERIC_FORMAT
        by_name = {t.name: t for t in tools}
        if choice == "none" or (choice == "auto" and not tools):
            return None
        if choice == "auto":
            return self.compiler.compile_structural_tag(self._auto_tag(tools, fmt))
        if choice in _REQUIRED:
            chosen = list(tools)
        elif choice in by_name:
            chosen = [by_name[choice]]
        else:
            raise ValueError(
                f"tool_choice {choice!r} is not 'auto', 'none', 'required', 'any' or a tool name "
                f"({', '.join(by_name) or 'no tools given'})"
            )
        if not chosen:
            raise ValueError(f"tool_choice {choice!r} needs at least one tool")
        tag = {"type": "tag", "begin": fmt.call_prefix, "content": self._json(_union_schema(chosen))}
        tag["end"] = fmt.call_suffix
        return self.compiler.compile_structural_tag({"type": "structural_tag", "format": tag})

    def json_schema(self, schema: dict[str, Any] | str) -> xgr.CompiledGrammar:
        """Compile a grammar whose output is one JSON value matching ``schema``."""
        text = schema if isinstance(schema, str) else json.dumps(schema)
        return self.compiler.compile_json_schema(
            text, any_whitespace=True, max_whitespace_cnt=self.max_whitespace
        )

    def constraint(self, grammar: xgr.CompiledGrammar) -> TokenConstraint:
        """Return a fresh per-worker constraint for ``grammar``."""
        return TokenConstraint(grammar, self.vocab_size)

    def _json(self, schema: dict[str, Any]) -> dict[str, Any]:
        fmt: dict[str, Any] = {"type": "json_schema", "json_schema": schema}
        if self.max_whitespace is not None:
            fmt["max_whitespace_cnt"] = self.max_whitespace
        return fmt

    def _auto_tag(self, tools: Sequence[Tool], fmt: ToolFormat) -> dict[str, Any]:
        union = self._json(_union_schema(tools))
        triggers, tags = [_FENCE_OPEN.rstrip("\n"), _BARE_TRIGGER], []
        tags.append({"type": "tag", "begin": _FENCE_OPEN, "content": union, "end": _FENCE_CLOSE})
        for tool in tools:
            begin = f'{_BARE_TRIGGER}{tool.name}", "arguments": '
            tags.append({"type": "tag", "begin": begin, "content": self._json(_standalone(tool)), "end": "}"})
        opener = fmt.call_prefix.strip()
        if opener and fmt.call_prefix.startswith(opener):
            triggers.append(opener)
            tags.append({"type": "tag", "begin": fmt.call_prefix, "content": union, "end": fmt.call_suffix})
        triggered = {"type": "triggered_tags", "triggers": triggers, "tags": tags}
        return {"type": "structural_tag", "format": triggered}


class TokenConstraint:
    """One worker's grammar state: masks its logits and advances with its sampled tokens.

    Args:
        grammar: A compiled grammar from :class:`GrammarFactory`.
        vocab_size: Width of the logits rows.

    """

    def __init__(self, grammar: xgr.CompiledGrammar, vocab_size: int) -> None:
        self.matcher = xgr.GrammarMatcher(grammar)
        self.vocab_size = vocab_size
        self._bitmask = xgr.allocate_token_bitmask(1, vocab_size)  # [1, ceil(V/32)] int32, CPU
        self._device_bitmask: dict[torch.device, torch.Tensor] = {}

    @property
    def is_terminated(self) -> bool:
        """Whether the grammar has accepted its stop token (no further token is allowed)."""
        return self.matcher.is_terminated()

    @property
    def is_completed(self) -> bool:
        """Whether the text so far is a complete sentence of the grammar (a stop token would be accepted)."""
        return self.matcher.is_completed()

    def fill(self, bitmask: torch.Tensor, index: int) -> bool:
        """Write the allowed-token mask into row ``index`` of a CPU bitmask; True if it masks anything."""
        if self.matcher.is_terminated():
            raise GrammarRejectedTokenError("the grammar has terminated; no further token is allowed")
        return self.matcher.fill_next_token_bitmask(bitmask, index)

    def apply(self, logits_row: torch.Tensor) -> None:
        """Set disallowed tokens of one logits row (``[V]`` or ``[1, V]``, any device) to -inf in place."""
        if not self.fill(self._bitmask, 0):
            return
        logits = logits_row.view(1, -1)
        bitmask = self._bitmask
        if logits.device.type != "cpu":
            dev = self._device_bitmask.get(logits.device)
            if dev is None:
                dev = self._device_bitmask[logits.device] = torch.empty_like(bitmask, device=logits.device)
            dev.copy_(bitmask, non_blocking=True)
            bitmask = dev
        xgr.apply_token_bitmask_inplace(logits, bitmask, vocab_size=self.vocab_size)

    def accept(self, token_id: int) -> None:
        """Advance the grammar by one sampled token.

        Raises:
            GrammarRejectedTokenError: The token is not allowed here.

        """
        if not self.matcher.accept_token(int(token_id)):
            raise GrammarRejectedTokenError(
                f"token {int(token_id)} is not allowed by the grammar here (were logits masked by apply()?)"
            )

    def reset(self) -> None:
        """Go back to the start of the grammar."""
        self.matcher.reset()


def apply_constraints(logits: torch.Tensor, constraints: Sequence[TokenConstraint | None]) -> None:
    """Mask a batch of logits rows in place; rows whose constraint is None are left as they are.

    One bitmask is allocated for the constrained rows and applied with a single xgrammar call.

    Args:
        logits: ``[B, V]`` logits (CPU or CUDA), modified in place.
        constraints: One entry per row.

    """
    if logits.dim() != 2 or logits.shape[0] != len(constraints):
        raise ValueError(
            f"logits must be [B, V] with B = {len(constraints)} constraints, got {tuple(logits.shape)}"
        )
    rows = [i for i, c in enumerate(constraints) if c is not None]
    if not rows:
        return
    bitmask = xgr.allocate_token_bitmask(logits.shape[0], logits.shape[1])  # [B, ceil(V/32)], CPU
    masked = [i for i in rows if constraints[i].fill(bitmask, i)]  # type: ignore[union-attr]
    if masked:
        xgr.apply_token_bitmask_inplace(logits, bitmask.to(logits.device, non_blocking=True), indices=masked)


def _standalone(tool: Tool) -> dict[str, Any]:
    """Return the tool's parameters schema (already self-contained: its ``$defs`` sit at its root)."""
    return tool.parameters


def _union_schema(tools: Sequence[Tool]) -> dict[str, Any]:
    """Build the schema of one call of any tool: ``{"name": const, "arguments": params}``, defs hoisted."""
    defs: dict[str, Any] = {}
    options = []
    for tool in tools:
        params = _rename_refs(copy.deepcopy(tool.parameters), tool.name)
        for key in ("$defs", "definitions"):
            for name, sub in params.pop(key, {}).items():
                defs[f"{tool.name}__{name}"] = sub
        options.append(
            {
                "type": "object",
                "properties": {"name": {"const": tool.name}, "arguments": params},
                "required": ["name", "arguments"],
                "additionalProperties": False,
            }
        )
    schema: dict[str, Any] = options[0] if len(options) == 1 else {"anyOf": options}
    if defs:
        schema = {**schema, "$defs": defs}
    return schema


def _rename_refs(node: Any, prefix: str) -> Any:
    """Point local ``#/$defs/X`` refs at the hoisted ``#/$defs/<prefix>__X`` (in place)."""
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str):
            for key in ("#/$defs/", "#/definitions/"):
                if ref.startswith(key):
                    node["$ref"] = f"#/$defs/{prefix}__{ref[len(key) :]}"
        for value in node.values():
            _rename_refs(value, prefix)
    elif isinstance(node, list):
        for value in node:
            _rename_refs(value, prefix)
    return node
