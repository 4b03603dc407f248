"""The loop guard: a worker whose new step repeats earlier work is nudged, then stopped.

Small models burn their budget writing the same sentence step after step. At every commit the new step
(without its header, self-check question or nudge) is compared with every earlier step of the run, any
worker's, by difflib's ratio; at ``loop_similarity`` or above it is a repeat. ``loop_guard="nudge"``
opens the worker's next step with ``loop_nudge`` and stops it (reason ``"loop"``) if it repeats again;
``"stop"`` stops it at once. The check runs once per step, on text the step rule already joined.
"""

from __future__ import annotations

import difflib
import re

from .state import RunState, WorkerState

__all__ = ["is_repeat", "normalize_step"]

# A step's text begins with the token that ended the previous step (often ".\n\n"), then its header.
_HEADER = re.compile(r"\*\*[^*\n]{1,64} \[\d+\]:\*\*")
_MIN_CHARS = 12  # "Done." twice is not a loop worth stopping for
_COMPARED = 64  # the most recent steps a new one is compared with


def normalize_step(run: RunState, text: str) -> str:
    """A step's own words: header, self-check question and nudge removed, whitespace collapsed."""
    text = _HEADER.sub("", text)
    for engine_text in (run.cfg.self_check_text, run.cfg.loop_nudge):
        text = text.replace(engine_text.strip(), "")
    return " ".join(text.split()).lower().lstrip(".?!;:, ")


def is_repeat(run: RunState, worker: WorkerState, text: str) -> bool:
    """Whether ``text`` (a step ``worker`` just committed) repeats an earlier step; remembers it."""
    step = normalize_step(run, text)
    earlier = run.step_texts[-_COMPARED:]
    run.step_texts.append(step)
    if run.cfg.loop_guard == "off" or len(step) < _MIN_CHARS:
        return False
    threshold = run.cfg.loop_similarity
    for other in earlier:
        matcher = difflib.SequenceMatcher(None, step, other, autojunk=False)
        if matcher.real_quick_ratio() >= threshold and matcher.quick_ratio() >= threshold:
            if matcher.ratio() >= threshold:
                return True
    return False
