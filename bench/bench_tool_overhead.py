"""Per-token CPU overhead of the tool machinery: grammar masks (xgrammar) and the call detector.

Run: python bench/bench_tool_overhead.py   (needs the cached Qwen2.5-Coder-0.5B tokenizer)
"""

from __future__ import annotations

import statistics
import time

import torch
from transformers import AutoTokenizer

from hogwild_agents.models.store import DEFAULT_MODEL, cache_root
from hogwild_agents.tools import GrammarFactory, Tool, ToolCallDetector, ToolFormat, apply_constraints

V = 151936


def get_weather(city: str, unit: str = "celsius", days: int = 1) -> str:
    """Weather."""
    return ""


def _time(fn, n=200):
    for _ in range(10):
        fn()
    samples = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t) * 1e6)
    q = statistics.quantiles(samples, n=10)
    return q[1], statistics.median(samples), q[7]


def main() -> None:
    tok = AutoTokenizer.from_pretrained(cache_root() / "models" / DEFAULT_MODEL)
    fmt = ToolFormat.from_tokenizer(tok)
    tools = [Tool.from_function(get_weather)]
    factory = GrammarFactory(tok, V)
    t = time.perf_counter()
    auto = factory.tool_calls(tools, "auto", fmt)
    required = factory.tool_calls(tools, "required", fmt)
    compile_ms = (time.perf_counter() - t) * 1e3
    logits = torch.randn(V)
    rows = []
    free = factory.constraint(auto)
    for tid in tok.encode("Let me think about this.", add_special_tokens=False):
        free.accept(tid)
    rows.append(
        ("apply, auto grammar, free text (fill + mask [V])", _time(lambda: free.apply(logits.clone())))
    )
    inside = factory.constraint(required)
    for tid in tok.encode(
        '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Par', add_special_tokens=False
    ):
        inside.accept(tid)
    rows.append(("apply, inside a call (fill + mask [V])", _time(lambda: inside.apply(logits.clone()))))
    rows.append(("clone of a [V] row (baseline, included above)", _time(lambda: logits.clone())))
    one = tok.encode("is", add_special_tokens=False)[0]

    def accept_rollback():
        inside.accept(one)
        inside.matcher.rollback(1)

    rows.append(("accept + rollback of one token inside a call", _time(accept_rollback)))
    batch = torch.randn(4, V)
    cons = [factory.constraint(required) for _ in range(4)]
    rows.append(
        ("apply_constraints, B=4, all constrained", _time(lambda: apply_constraints(batch.clone(), cons)))
    )
    text = (
        "Some prose, then a fenced call.\n```json\n"
        + '{"name": "get_weather", "arguments": {"city": "Paris"}}'
    )
    pieces = [tok.decode([i]) for i in tok.encode(text * 20, add_special_tokens=False)]
    det = ToolCallDetector(fmt, tools)

    def feed_all():
        det.reset()
        for p in pieces:
            det.feed(p)

    lo, med, hi = _time(feed_all, n=50)
    rows.append(
        (
            "detector.feed per token (mixed prose/JSON)",
            (lo / len(pieces), med / len(pieces), hi / len(pieces)),
        )
    )
    print(
        f"CPU: {torch.get_num_threads()} threads, torch {torch.__version__}; "
        f"grammar compile {compile_ms:.0f} ms\n"
    )
    print("| operation | p10 µs | median µs | p80 µs |\n|---|---|---|---|")
    for name, (lo, med, hi) in rows:
        print(f"| {name} | {lo:.1f} | {med:.1f} | {hi:.1f} |")


if __name__ == "__main__":
    main()
