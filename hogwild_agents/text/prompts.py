"""Collaboration prompts, block texts and the finisher, rendered through the model's chat template."""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..api.config import WorkerRole
from ..api.errors import InvalidRequestError
from .untrusted import special_tokens, structural_specials

__all__ = [
    "PromptTexts",
    "check_fields",
    "collaboration_rules",
    "render_marked",
    "render_prompt",
    "step_header",
]


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
    prompt_spans: tuple[tuple[int, int], ...] = ()
    """The untrusted character spans of ``prompt`` (message contents): encoded as plain text."""
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


def _with_rules(tokenizer: Any, messages: list[dict[str, Any]], rules: str) -> list[dict[str, Any]]:
    """Put the rules in the system message (merged with the caller's, if any).

    A template without a system role gets them (and the caller's system text) at the head of the first
    user turn instead.
    """
    if not supports_system_role(tokenizer):
        return _fold_system(messages, rules)
    if messages and messages[0].get("role") == "system":
        head = {**messages[0], "content": f"{rules}\n\n{messages[0].get('content') or ''}".rstrip()}
        return [head, *messages[1:]]
    return [{"role": "system", "content": rules}, *messages]


def _fold_system(messages: list[dict[str, Any]], rules: str = "") -> list[dict[str, Any]]:
    """The conversation without a system message: ``rules`` and its text open the first user turn."""
    rest = list(messages)
    head = [rules] if rules else []
    if rest and rest[0].get("role") == "system":
        head.append(rest.pop(0).get("content") or "")
    head = [h for h in head if h]
    if not head:
        return rest
    first = next((i for i, m in enumerate(rest) if m.get("role") == "user"), None)
    if first is None:
        return [{"role": "user", "content": "\n\n".join(head)}, *rest]
    user = rest[first]
    rest[first] = {**user, "content": "\n\n".join([*head, user.get("content") or ""]).rstrip()}
    return rest


_SYSTEM_ROLE: dict[int, tuple[Any, bool]] = {}


def supports_system_role(tokenizer: Any) -> bool:
    """Whether the chat template renders a system message (some refuse it, some drop it silently)."""
    cached = _SYSTEM_ROLE.get(id(tokenizer))
    if cached is not None and cached[0] is tokenizer:
        return cached[1]
    mark = _mark()
    probe = [{"role": "system", "content": mark}, {"role": "user", "content": "hi"}]
    try:
        ok = mark in tokenizer.apply_chat_template(probe, tokenize=False, add_generation_prompt=True)
    except Exception:  # noqa: BLE001 - jinja's raise_exception("System role not supported") and the like
        ok = False
    _SYSTEM_ROLE[id(tokenizer)] = (tokenizer, ok)
    return ok


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
    check_fields(tokenizer, messages, tools)
    if messages and messages[0].get("role") == "system" and not supports_system_role(tokenizer):
        messages = _fold_system(messages)  # the caller's system text opens the first user turn
    if not collaboration:
        prompt, spans = render_marked(tokenizer, messages, add_generation_prompt=True, **tool_kwargs)
        finisher = _finisher_turn(tokenizer, messages, tool_kwargs, finisher_may_call)
        return PromptTexts(prompt=prompt, prompt_spans=spans, finisher=finisher)
    full = _with_rules(tokenizer, messages, collaboration_rules(names, rules_template, roles))
    prompt, spans = render_marked(tokenizer, full, add_generation_prompt=True, **tool_kwargs)
    opens_think = prompt.rstrip().endswith("<think>")
    finisher = (
        "\n</think>\n\n" if opens_think else _finisher_turn(tokenizer, full, tool_kwargs, finisher_may_call)
    )
    probe = "" if opens_think else _finisher_turn(tokenizer, full, tool_kwargs, request=PROBE_REQUEST)
    return PromptTexts(
        prompt=prompt + "### Past steps\n\n",
        prompt_spans=spans,
        finisher=finisher,
        probe=probe,
        opens_think=opens_think,
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
    The sentinel is fresh and random for every rendering, so no message can hold it: the text after it
    is the template's and ours only (everything before it, the caller's messages, is discarded).
    """
    if may_call:
        request += " If answering needs a tool's result that is not above yet, reply with just that call."
    sentinel = _mark()
    convo = [*messages, {"role": "assistant", "content": sentinel}, {"role": "user", "content": request}]
    try:
        text = _template(tokenizer, convo, add_generation_prompt=True, **tool_kwargs)
    except InvalidRequestError:
        return "\n\nFinal answer: "
    return text.rsplit(sentinel, 1)[1] if sentinel in text else "\n\nFinal answer: "


def _mark(index: int | None = None, nonce: str | None = None) -> str:
    """A placeholder no caller can write: random letters and digits (they survive ``trim`` and ``tojson``)."""
    nonce = nonce or secrets.token_hex(8)
    return f"HWMARK{nonce}N{'' if index is None else index}Q"


def _variants(content: str) -> list[str]:
    """What a template may have made of ``content`` (trimmed, a reasoning part dropped): tried in order."""
    after_think = content.split("</think>")[-1]
    out = [content, content.strip(), content.lstrip(), content.rstrip(), content.strip("\n")]
    out += [after_think.lstrip("\n"), after_think.strip()]
    return list(dict.fromkeys(out))


def render_marked(
    tokenizer: Any, messages: list[dict[str, Any]], **kwargs: Any
) -> tuple[str, tuple[tuple[int, int], ...]]:
    """Render ``messages`` with the template; return the text and the spans holding message contents.

    The template is rendered twice: as is (the text used) and with every non-empty content replaced by a
    random placeholder, which shows where the template puts each content and what structure it writes
    around it. The real text is then read against that structure, allowing for the usual content
    transformations (trimming, dropping a reasoning part). A template that transforms contents in other
    ways gets the placeholder rendering with the raw contents put in: the structure is still the
    template's, and every content stays a plain-text span.
    """
    text = _template(tokenizer, messages, **kwargs)
    nonce = secrets.token_hex(8)
    contents: dict[str, str] = {}
    masked = []
    for i, message in enumerate(messages):
        content = message.get("content")
        if isinstance(content, str) and content:
            mark = _mark(i, nonce)
            contents[mark] = content
            masked.append({**message, "content": mark})
        else:
            masked.append(message)
    if not contents:
        return text, ()
    skeleton = _template(tokenizer, masked, **kwargs)
    pattern = re.compile(f"HWMARK{nonce}N[0-9]+Q")
    parts = pattern.split(skeleton)
    marks = pattern.findall(skeleton)
    spans = _align(text, parts, [contents[m] for m in marks])
    if spans is None:  # contents transformed beyond recognition: the skeleton with the raw contents
        pieces, spans, pos = [], [], 0
        for part, content in zip(parts, [*(contents[m] for m in marks), ""], strict=True):
            pieces += [part, content]
            pos += len(part)
            if content:
                spans.append((pos, pos + len(content)))
            pos += len(content)
        text = "".join(pieces)
    _check_structure(tokenizer, text, spans, skeleton)
    return text, tuple(spans)


def _align(text: str, parts: list[str], contents: list[str]) -> list[tuple[int, int]] | None:
    """The content spans of ``text`` = ``parts[0] c0 parts[1] c1 ...``, or ``None`` if it does not read so."""
    spans = []
    pos = 0
    for k, content in enumerate(contents):
        if not text.startswith(parts[k], pos):
            return None
        pos += len(parts[k])
        nxt = parts[k + 1]
        last = k + 1 == len(contents)
        for variant in _variants(content):
            end = pos + len(variant)
            if text.startswith(variant, pos) and (text[end:] == nxt if last else text.startswith(nxt, end)):
                break
        else:
            return None
        if variant:
            spans.append((pos, end))
        pos = end
    return spans if text[pos:] == parts[-1] else None


def _check_structure(tokenizer: Any, text: str, spans: Sequence[tuple[int, int]], skeleton: str) -> None:
    """Every control token outside the contents must be the template's own (those of the skeleton)."""
    structure = [token_id for _, _, token_id in structural_specials(tokenizer, text, spans)]
    expected = [token_id for _, _, token_id in structural_specials(tokenizer, skeleton, ())]
    if structure != expected:  # a content misread as structure, or a field check_fields missed
        raise InvalidRequestError(
            "the request holds the model's control tokens outside message contents; send them as text "
            "inside a message's content"
        )


def check_fields(tokenizer: Any, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None) -> None:
    """Refuse special-token strings anywhere but message contents (names, ids, call arguments, tools).

    Message contents are encoded as plain text; the other fields are written by the template as they
    are (inside JSON, after a name tag), where a forged control token cannot be told from the
    template's own.
    """
    _, pattern = special_tokens(tokenizer)
    if pattern is None:
        return
    for i, message in enumerate(messages):
        for key, value in message.items():
            if key == "content":
                continue
            found = pattern.search(json.dumps(value, ensure_ascii=False, default=str))
            if found:
                raise InvalidRequestError(
                    f"message {i} ({message.get('role')}) field {key!r} holds the model's control token "
                    f"{found.group()!r}; only message contents may hold such text (as plain text)"
                )
    for j, tool in enumerate(tools or []):
        found = pattern.search(json.dumps(tool, ensure_ascii=False, default=str))
        if found:
            raise InvalidRequestError(
                f"tool {j} holds the model's control token {found.group()!r} in its definition; remove it "
                "from the name, description and schema"
            )
