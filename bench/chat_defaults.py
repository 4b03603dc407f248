"""What a chat request costs through ``ChatHogwild`` with its defaults, beside plain generation.

For each prompt (short conversational ones and multi-part tasks), on the packaged Qwen2.5-Coder-0.5B:
- ``plain``: the engine with one worker, collaboration off (what any local chat model does);
- ``defaults``: ``ChatHogwild(engine=...)`` as a user gets it (``HogwildConfig.CHAT_DEFAULTS``:
  collaboration "auto", early exit, 256 forwards / 256 answer tokens);
- ``old``: the previous defaults (the team always, no early exit, 256 forwards / 256 answer tokens),
  on the first ``--old`` prompts of each kind only (each costs the whole budget).
One engine serves all of them (same weights, same process), so the times compare directly.

Usage: python bench/chat_defaults.py [--device cpu] [--old 2] [--md FILE]
"""

from __future__ import annotations

import argparse
import datetime
import platform
import time
from typing import Any

import torch
import transformers

from hogwild_agents import HogwildEngine

SHORT = [
    "Hello",
    "Hi, how are you?",
    "Thanks!",
    "What is your name?",
    "Say hello in French.",
]
# (prompt, the number a right answer states)
MULTI = [
    ("Tom has 15 apples and buys 27 more. Then he gives away 12. How many apples does he have?", "30"),
    (
        "A shop sells pens at 3 dollars and notebooks at 5 dollars. How much do 4 pens and 2 notebooks cost?",
        "22",
    ),
    ("What is 17 * 23? Then subtract 91 from the result.", "300"),
    ("A train travels 120 km in 2 hours, then 90 km in 1.5 hours. What is its average speed overall?", "60"),
    (
        "Write a Python function that returns the sum of the squares of a list; "
        "what does it give for [1, 2, 3]?",
        "14",
    ),
]


def measure(call: Any) -> dict[str, Any]:
    start = time.perf_counter()
    out = call()
    wall = time.perf_counter() - start
    return {"wall_s": wall, **out}


def run_plain(engine: HogwildEngine, prompt: str) -> dict[str, Any]:
    r = engine.run(prompt, workers=1, collaboration=False, max_answer_tokens=256, max_forwards=256)
    return {
        "forwards": r.usage.forwards,
        "tokens": r.usage.output_tokens,
        "workers": 1,
        "stop": r.stop_reason,
        "answer": r.answer,
    }


def run_chat(engine: HogwildEngine, prompt: str, **fields: Any) -> dict[str, Any]:
    from langchain_hogwild import ChatHogwild

    message = ChatHogwild(engine=engine, **fields).invoke(prompt)
    meta = message.response_metadata
    return {
        "forwards": meta["usage"]["forwards"],
        "tokens": message.usage_metadata["output_tokens"],
        "workers": len(meta["workers"]),
        "stop": meta["stop_reason"],
        "answer": str(message.content),
    }


def _states(answer: str, number: str) -> bool:
    """Whether ``answer`` states ``number`` (as a whole number, not inside a longer one)."""
    import re

    return re.search(rf"(?<![\d.]){re.escape(number)}(?![\d])", answer.replace(",", "")) is not None


def cell(text: str, width: int = 60) -> str:
    flat = " ".join(text.split()).replace("|", "\\|")
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument(
        "--old", type=int, default=2, help="prompts of each kind also run with the old defaults"
    )
    parser.add_argument("--md", help="append the markdown table to this file")
    parser.add_argument("--kinds", default="short,multi-part", help="which prompt sets to run")
    args = parser.parse_args()
    engine = HogwildEngine.from_pretrained(None, device=args.device, dtype=args.dtype)
    old = {"collaboration": True, "early_exit": False, "max_forwards": 256, "max_tokens": 256}
    rows = []
    sets = {"short": [(p, None) for p in SHORT], "multi-part": MULTI}
    for kind in args.kinds.split(","):
        for i, (prompt, expected) in enumerate(sets[kind]):
            variants = [("plain", lambda p=prompt: run_plain(engine, p))]
            variants.append(("defaults", lambda p=prompt: run_chat(engine, p)))
            if i < args.old:
                variants.append(("old defaults", lambda p=prompt: run_chat(engine, p, **old)))
            for name, call in variants:
                row = {"kind": kind, "prompt": prompt, "variant": name, **measure(call)}
                row["right"] = (
                    "" if expected is None else ("yes" if _states(row["answer"], expected) else "no")
                )
                rows.append(row)
                head = (
                    f"{kind:10} {name:12} {row['wall_s']:6.1f}s fw={row['forwards']:3} tok={row['tokens']:3}"
                )
                tail = f"W={row['workers']} stop={row['stop']:17} right={row['right'] or '-'}"
                print(head, tail, cell(prompt, 30), "->", cell(row["answer"], 50), flush=True)
    lines = [
        f"\n### Chat defaults on the real 0.5B ({datetime.date.today()}, {platform.processor() or 'CPU'}, "
        f"{torch.get_num_threads()} threads, torch {torch.__version__}, "
        f"transformers {transformers.__version__})",
        "",
        f"Command: `python bench/chat_defaults.py --device {args.device} --old {args.old} "
        f"--kinds {args.kinds}`",
        "",
        "| kind | prompt | variant | wall s | ×plain | forwards | out tokens | workers | stop | right "
        "| answer |",
        "|---|---|---|---:|---:|---:|---:|---:|---|---|---|",
    ]
    plain = {(r["prompt"]): r["wall_s"] for r in rows if r["variant"] == "plain"}
    for r in rows:
        ratio = r["wall_s"] / plain[r["prompt"]]
        lines.append(
            f"| {r['kind']} | {cell(r['prompt'], 40)} | {r['variant']} | {r['wall_s']:.1f} | {ratio:.2f} | "
            f"{r['forwards']} | {r['tokens']} | {r['workers']} | {r['stop']} | {r['right']} | "
            f"{cell(r['answer'], 70)} |"
        )
    text = "\n".join(lines) + "\n"
    print(text)
    if args.md:
        with open(args.md, "a") as f:
            f.write(text)


if __name__ == "__main__":
    main()
