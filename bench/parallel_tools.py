"""Latency of k independent slow lookups: Hogwild workers with one lookup each vs a LangChain agent.

The task needs the populations of k made-up cities (k in {2, 4}) from ``lookup_population``, a tool that
sleeps 2 s, and their sum (the numbers are invented, so the model cannot know them). Variants, one engine
(the packaged Qwen2.5-Coder-0.5B, float32, greedy) and the same tools for all:

- ``hogwild``: W=k workers; each worker's :class:`~hogwild_agents.WorkerRole` assigns it one city and forces
  its first step to be a ``lookup_population`` call (the model picks the argument); the calls run at once
  (``max_parallel_tools`` >= k) inside the shared cache, and the finisher writes the answer.
- ``agent-seq``: LangChain's ``create_agent`` over ``ChatHogwild`` with one worker and a one-forward
  budget, so each model turn is in effect the plain model answering (the finisher's turn). A middleware
  forces a ``lookup_population`` call on each turn until k lookups have answered (the 0.5B does not call
  tools by itself, see tests/integrations/langchain), then forbids tools for the answer turn
  (``tool_choice="none"``): one call per turn, the lookups run one after the other.
- ``agent-par``: the same agent, told to call the tool for every city in one message, with
  ``tool_choice="auto"`` until the k lookups are in (a forced choice allows exactly one call): if the model
  writes several calls in one message, LangGraph's ToolNode runs them in parallel. What the model really
  does is recorded (calls per turn).

Why not ``collaboration=False`` (the literal plain model): in return mode the engine applies a forced
``tool_choice`` to the finisher only, and plain generation has no finisher, so the force would be ignored.

Recorded per variant: wall time, forward passes (summed over the agent's model calls), tool calls made, and
whether the answer holds the right sum. The CPU may be shared: times are noisy.

Usage: python bench/parallel_tools.py [--ks 2,4] [--variants hogwild,agent-seq,agent-par] [--md FILE]
"""

from __future__ import annotations

import argparse
import datetime
import platform
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
import transformers

from hogwild_agents import HogwildEngine, Tool, WorkerRole

POPULATIONS = {"Arlen": 41230, "Brista": 27815, "Corvo": 63402, "Dunmore": 18967}
"""Invented populations: the model cannot answer from memory."""
LOOKUP_S = 2.0
NAMES = ["Alice", "Bob", "Carol", "Dave"]

CALLS: list[tuple[str, float, float]] = []
"""(city, start, end) of every lookup, in perf_counter seconds (reset per run)."""
_LOCK = threading.Lock()


def lookup_population(city: Literal["Arlen", "Brista", "Corvo", "Dunmore"]) -> str:
    """Look up the population of a city (a slow service: takes 2 seconds).

    Args:
        city: the city to look up.
    """
    start = time.perf_counter()
    time.sleep(LOOKUP_S)
    with _LOCK:
        CALLS.append((city, start, time.perf_counter()))
    return f"The population of {city} is {POPULATIONS[city]}."


def question(cities: list[str]) -> str:
    listed = ", ".join(cities[:-1]) + f" and {cities[-1]}"
    return (
        f"What is the total population of {listed}? Look up each city with lookup_population, "
        "then add the populations and give the total."
    )


def is_correct(answer: str, cities: list[str]) -> bool:
    """The answer holds the sum (digits with or without thousands separators)."""
    total = str(sum(POPULATIONS[c] for c in cities))
    return total in re.sub(r"(?<=\d)[,_ ](?=\d{3})", "", answer)


@dataclass
class Row:
    variant: str
    k: int
    wall_s: float
    forwards: int
    tool_calls: int
    correct: bool
    answer: str
    lookups_overlap_s: float = 0.0
    notes: list[str] = field(default_factory=list)


def _overlap(calls: list[tuple[str, float, float]]) -> float:
    """Seconds during which at least two lookups ran at the same time."""
    events = sorted([(s, 1) for _, s, _ in calls] + [(e, -1) for _, _, e in calls])
    depth, since, total = 0, 0.0, 0.0
    for t, d in events:
        if depth >= 2:
            total += t - since
        depth += d
        since = t
    return total


def run_hogwild(engine: HogwildEngine, cities: list[str], budget: int, answer_tokens: int) -> Row:
    tools = [Tool.from_function(lookup_population)]
    roles = [
        WorkerRole(
            name=name,
            instructions=f"Look up the population of {city} with lookup_population.",
            tools=["lookup_population"],
            tool_choice="lookup_population",
        )
        for name, city in zip(NAMES, cities, strict=False)
    ]
    CALLS.clear()
    start = time.perf_counter()
    result = engine.run(
        question(cities),
        tools=tools,
        roles=roles,
        tool_mode="execute",
        max_forwards=budget,
        max_answer_tokens=answer_tokens,
    )
    wall = time.perf_counter() - start
    row = Row(
        "hogwild",
        len(cities),
        wall,
        result.usage.forwards,
        len(result.tool_events),
        is_correct(result.answer, cities),
        result.answer,
        _overlap(CALLS),
    )
    looked = sorted(e.arguments.get("city", "?") for e in result.tool_events if e.name == "lookup_population")
    row.notes.append(f"looked up {looked}; stop {result.stop_reason}")
    return row


def run_agent(engine: HogwildEngine, cities: list[str], parallel: bool, answer_tokens: int) -> Row:
    from langchain.agents import create_agent
    from langchain.agents.middleware import wrap_model_call
    from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
    from langchain_core.tools import StructuredTool
    from langchain_hogwild import ChatHogwild
    from langgraph.errors import GraphRecursionError

    lookup = StructuredTool.from_function(lookup_population)
    k = len(cities)

    @wrap_model_call
    def lookups_then_answer(request: Any, handler: Any) -> Any:
        answered = sum(isinstance(m, ToolMessage) for m in request.messages)
        if answered >= k:
            request = request.override(tool_choice="none")  # every city is in: the answer turn
        elif not parallel:
            request = request.override(tool_choice="lookup_population")  # one forced call per turn
        return handler(request)

    # One worker with a single forward, then the finisher: in effect the plain model answering each turn.
    # (collaboration=False would be the literal plain model, but plain generation does not apply a forced
    # tool_choice in return mode: the engine forces only the finisher there, and plain runs have none.)
    llm = ChatHogwild(
        engine=engine,
        workers=1,
        collaboration=True,
        early_exit=False,
        max_forwards=1,
        max_answer_tokens=answer_tokens,
    )
    system = "Use lookup_population for populations, then state the total."
    if parallel:
        system += " Call lookup_population for every city at once, all calls in one message."
    agent = create_agent(llm, tools=[lookup], system_prompt=system, middleware=[lookups_then_answer])
    CALLS.clear()
    start = time.perf_counter()
    messages: list[Any] = []
    limit = 2 * k + 4  # k lookup turns and the answer, with room to spare
    stopped = ""
    try:
        for state in agent.stream(
            {"messages": [HumanMessage(question(cities))]}, {"recursion_limit": limit}, stream_mode="values"
        ):
            messages = state["messages"]
    except GraphRecursionError:
        stopped = f"hit the recursion limit ({limit})"
    wall = time.perf_counter() - start
    ais = [m for m in messages if isinstance(m, AIMessage)]
    forwards = sum(m.response_metadata.get("usage", {}).get("forwards", 0) for m in ais)
    calls_per_turn = [len(m.tool_calls) for m in ais]
    final = messages[-1].content if messages and isinstance(messages[-1], AIMessage) else ""
    row = Row(
        "agent-par" if parallel else "agent-seq",
        k,
        wall,
        forwards,
        sum(calls_per_turn),
        is_correct(str(final), cities),
        str(final),
        _overlap(CALLS),
    )
    called = [f"{c['name']}({','.join(map(str, c['args'].values()))})" for m in ais for c in m.tool_calls]
    row.notes.append(f"calls per model turn {calls_per_turn}: {', '.join(called)}")
    if stopped:
        row.notes.append(stopped)
    return row


def table(rows: list[Row]) -> str:
    seq = {r.k: r.wall_s for r in rows if r.variant == "agent-seq"}
    lines = [
        "| k | variant | wall s | vs agent-seq | forwards | tool calls | lookups overlapped s | correct "
        "| notes |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        ratio = f"{r.wall_s / seq[r.k]:.2f}×" if r.k in seq else "–"
        lines.append(
            f"| {r.k} | {r.variant} | {r.wall_s:.1f} | {ratio} | {r.forwards} | {r.tool_calls} | "
            f"{r.lookups_overlap_s:.1f} | {'yes' if r.correct else 'no'} | {'; '.join(r.notes)} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ks", default="2,4")
    parser.add_argument("--variants", default="hogwild,agent-seq,agent-par")
    parser.add_argument("--budget", type=int, default=30, help="worker forwards of a Hogwild run")
    parser.add_argument("--answer-tokens", type=int, default=80, help="tokens of an answer (a model turn)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--md", help="append the results to this markdown file")
    args = parser.parse_args()
    engine = HogwildEngine.from_pretrained(None, dtype="float32", device=args.device, max_parallel_tools=4)
    # Warm-up (grammar compilation, first forwards) outside the timings.
    engine.run("Hi", tools=[Tool.from_function(lookup_population)], tool_choice="required", max_forwards=2)
    rows: list[Row] = []
    for k in [int(x) for x in args.ks.split(",")]:
        cities = list(POPULATIONS)[:k]
        for variant in args.variants.split(","):
            if variant == "hogwild":
                row = run_hogwild(engine, cities, args.budget, args.answer_tokens)
            else:
                row = run_agent(engine, cities, variant == "agent-par", args.answer_tokens)
            rows.append(row)
            print(f"{row}", flush=True)
    md = table(rows)
    print(md)
    if args.md:
        import langchain
        import langchain_core

        header = (
            f"\n## Parallel tools (real 0.5B, CPU) — {datetime.date.today().isoformat()}\n\n"
            f"Machine: {platform.machine()}, {torch.get_num_threads()} torch threads on 2 cores shared with "
            f"two other jobs (times are noisy). torch {torch.__version__}, transformers "
            f"{transformers.__version__}, langchain {langchain.__version__}, langchain-core "
            f"{langchain_core.__version__}. Command: `python bench/parallel_tools.py --ks {args.ks} "
            f"--budget {args.budget} --answer-tokens {args.answer_tokens}`. Tool: `lookup_population` "
            f"sleeps {LOOKUP_S:.0f} s.\n\n"
        )
        with open(args.md, "a") as f:
            f.write(header + md + "\n")


if __name__ == "__main__":
    main()
