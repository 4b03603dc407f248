"""Collaboration prompts, block texts and the finisher, rendered through the model's chat template."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..api.config import WorkerRole
from ..api.errors import InvalidRequestError

__all__ = ["PromptTexts", "collaboration_rules", "render_prompt", "step_header"]

_SENTINEL = "\x00HOGWILD_SENTINEL\x00"

_RULES = """# Collaborative reasoning

You are one of {count} assistants ({names}) working on the same task at the same time, in one shared \
workspace. Every assistant sees everything the others write, the moment they write it.

- Split the work so nobody does the same thing twice: take different sub-problems, check each other's \
results, or try different approaches.
- Finished steps appear under "### Past steps" as "**Name [k]:** ...". After "### Work in progress (others)" \
come the other assistants' unfinished steps (each ends with "<...>" and keeps growing). Your own \
current step \
follows "### Work in progress (own)".
- Read what the others are doing. If you notice you are repeating someone else's work, say so and switch to \
something useful immediately.
- Keep each step to one short paragraph.
- When the team has the final answer, write it once as \\boxed{{answer}}; after that it cannot change."""


def collaboration_rules(
    names: list[str], template: str | None = None, roles: Sequence[WorkerRole] | None = None
) -> str:
    """The collaboration rules for ``names`` (any number of workers); ``template`` may replace ours.

    With ``roles`` the rules end with who does what (each worker's instructions and tools), which every
    worker reads.
    """
    listed = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
    rules = (template or _RULES).format(count=len(names), names=listed)
    if roles:
        lines = []
        for role in roles:
            tools = "" if role.tools is None else f" (tools: {', '.join(role.tools) or 'none'})"
            lines.append(f"- {role.name}{tools}: {role.instructions or 'helps where needed.'}")
        rules += "\n\n## Roles\n\n" + "\n".join(lines)
    return rules


def step_header(name: str, step: int) -> str:
    """The header opening a worker's step (steps count from 1)."""
    return f"**{name} [{step}]:** "


@dataclass(frozen=True, slots=True)
class PromptTexts:
    """The texts of the shared blocks of a run."""

    prompt: str
    others_header: str = "\n\n### Work in progress (others)\n\n"
    separator: str = " <...>\n\n"
    own_header: str = "### Work in progress (own)\n\n"
    finisher: str = ""
    probe: str = ""
    opens_think: bool = False


FINISHER_REQUEST = (
    "Stop here. Considering all the work above, write the final answer to my request now, complete and "
    "self-contained. If the work above does not answer it, answer it yourself from my request."
)
PROBE_REQUEST = "Is the final answer to my request already clear from the work above? Reply yes or no."
"""The early-exit probe's question (see ``engine.probe``): its answer is one token, yes or no."""


def _template(tokenizer: Any, messages: list[dict[str, Any]], **kwargs: Any) -> str:
    try:
        return tokenizer.apply_chat_template(messages, tokenize=False, **kwargs)
    except Exception as e:  # jinja raises TemplateError for roles/orders the template rejects
        raise InvalidRequestError(
            f"the model's chat template rejected the messages ({type(e).__name__}: {e}); check the roles "
            "(system/user/assistant/tool) and their order"
        ) from e


def _with_rules(messages: list[dict[str, Any]], rules: str) -> list[dict[str, Any]]:
    """Put the rules in the system message (merged with the caller's, if any)."""
    if messages and messages[0].get("role") == "system":
        head = {**messages[0], "content": f"{rules}\n\n{messages[0].get('content') or ''}".rstrip()}
        return [head, *messages[1:]]
    return [{"role": "system", "content": rules}, *messages]


def render_prompt(
    tokenizer: Any,
    messages: list[dict[str, Any]],
    *,
    names: list[str],
    collaboration: bool,
    tools: list[dict[str, Any]] | None = None,
    rules_template: str | None = None,
    finisher_may_call: bool = False,
    roles: Sequence[WorkerRole] | None = None,
) -> PromptTexts:
    """Render the shared prompt and the finisher turn for a run.

    With collaboration the rules join the system message and the prompt ends with the history header;
    for templates whose generation prompt opens a ``<think>`` block the workers write inside it and the
    finisher closes it. Without collaboration the prompt is the plain chat-template rendering.
    ``finisher_may_call`` (tools returned to the caller) lets the finisher's request say that a tool call
    is a valid reply: without it small models answer from memory instead of calling a tool.
    """
    tool_kwargs = {"tools": tools} if tools else {}
    if not collaboration:
        prompt = _template(tokenizer, messages, add_generation_prompt=True, **tool_kwargs)
        finisher = _finisher_turn(tokenizer, messages, tool_kwargs, finisher_may_call)
        return PromptTexts(prompt=prompt, finisher=finisher)
    full = _with_rules(messages, collaboration_rules(names, rules_template, roles))
    prompt = _template(tokenizer, full, add_generation_prompt=True, **tool_kwargs)
    opens_think = prompt.rstrip().endswith("<think>")
    finisher = (
        "\n</think>\n\n" if opens_think else _finisher_turn(tokenizer, full, tool_kwargs, finisher_may_call)
    )
    probe = "" if opens_think else _finisher_turn(tokenizer, full, tool_kwargs, request=PROBE_REQUEST)
    return PromptTexts(
        prompt=prompt + "### Past steps\n\n", finisher=finisher, probe=probe, opens_think=opens_think
    )


def _finisher_turn(
    tokenizer: Any,
    messages: list[dict[str, Any]],
    tool_kwargs: dict[str, Any],
    may_call: bool = False,
    request: str = FINISHER_REQUEST,
) -> str:
    """Text that closes the workers' shared turn and asks ``request``, derived from the template.

    Rendered with a sentinel as the assistant's content so the turn markers come from the template itself.
    """
    if may_call:
        request += " If answering needs a tool's result that is not above yet, reply with just that call."
    convo = [*messages, {"role": "assistant", "content": _SENTINEL}, {"role": "user", "content": request}]
    try:
        text = _template(tokenizer, convo, add_generation_prompt=True, **tool_kwargs)
    except InvalidRequestError:
        return "\n\nFinal answer: "
    return text.split(_SENTINEL, 1)[1] if _SENTINEL in text else "\n\nFinal answer: "
