"""The ``hogwild`` command: run a task with several workers and watch them write, or describe the setup.

Usage::

    hogwild run "What is 17 * 23 + 5?" --workers 2 --tool calculator
    hogwild run "Who built the lighthouse?" --tool search --corpus notes/ --json
    hogwild info

``run`` shows one pane per worker as they write, the commits and tool calls as they happen, the progress
(forward passes, tokens, tokens/s) and the final answer. ``--json`` prints one JSON object (valid against
``cli_result.schema.json``) and nothing else on stdout. Ctrl-C cancels the run cleanly (exit code 130).
Problems the user can fix (a missing model package, a corrupt part, a full disk, a bad option) are one
message on stderr and exit code 2.

Test hook: ``--model hogwild-test:tiny-random-qwen2`` uses a tiny random model with the real tokenizer
(see :mod:`hogwild_agents.models.testing`), so the command can be tested end to end in seconds.
"""

from __future__ import annotations

import argparse
import io
import json
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any, get_args

from rich.console import Console
from rich.live import Live
from rich.panel import Panel

from ..api.config import HogwildConfig, Layout
from ..api.events import FinishedEvent, RunStartedEvent
from ..tools.builtins import BUILTIN_TOOL_NAMES
from .info import info_command, quiet_transformers
from .live import format_log_line, render_live
from .progress import RunProgress

__all__ = ["build_parser", "cli_result_schema", "main"]

EXIT_OK = 0
EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130
_REFRESH_S = 0.1


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser of the ``hogwild`` command (``run``, ``info`` and ``eval``)."""
    parser = argparse.ArgumentParser(
        prog="hogwild",
        description="Several workers of one language model writing in parallel over one shared KV cache.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run a task and watch the workers write")
    run.add_argument("task", help="the request, as one user message")
    run.add_argument("--workers", type=int, default=2, help="number of workers (default 2)")
    run.add_argument(
        "--tool", action="append", default=[], choices=BUILTIN_TOOL_NAMES, help="a built-in tool (repeatable)"
    )
    run.add_argument("--corpus", type=Path, help="folder of .txt/.md files for --tool search")
    run.add_argument(
        "--model", help="packaged model name, Hugging Face id or local path (default: packaged Qwen 0.5B)"
    )
    run.add_argument(
        "--layout", choices=get_args(Layout), help="how each worker's view of the cache is ordered"
    )
    run.add_argument("--max-forwards", type=int, help="budget of sequential forward passes for the workers")
    run.add_argument("--max-answer-tokens", type=int, help="tokens the finisher may write")
    run.add_argument("--temperature", type=float, help="sampling temperature (0 is greedy)")
    run.add_argument("--seed", type=int, help="seed of the samplers")
    run.add_argument(
        "--tool-choice",
        choices=["auto", "required", "none"],
        help="auto: workers call tools when they decide to; required: the first worker's first step is a "
        "tool call (constrained decoding), which small models need to use tools reliably",
    )
    run.add_argument(
        "--roles",
        help="per-worker roles as JSON (or a .json file): a list of {name, instructions, tools, tool_choice};"
        " sets the workers",
    )
    run.add_argument(
        "--early-exit",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="ask every --probe-every worker forwards whether the work already answers the task (default on)",
    )
    run.add_argument("--probe-every", type=int, help="worker forwards between early-exit probes (default 8)")
    run.add_argument(
        "--tool-landing",
        choices=["when_ready", "next_forward"],
        help="when_ready (default): a result is written once the tool returns, while the others write on; "
        "next_forward: the run waits for its calls, so the same request gives the same run every time",
    )
    run.add_argument(
        "--interactive",
        action="store_true",
        help="read lines from stdin while the run goes: each joins the shared workspace for all workers",
    )
    run.add_argument(
        "--json", action="store_true", help="print one JSON result object and nothing else on stdout"
    )
    run.add_argument("--no-live", action="store_true", help="plain log lines instead of the live panes")
    info = sub.add_parser("info", help="show the device, attention path, versions and model")
    info.add_argument("--model", help="model to describe (default: packaged Qwen 0.5B)")
    info.add_argument("--json", action="store_true", help="print the information as JSON")
    info.add_argument(
        "--verify", action="store_true", help="hash every converted model file against its recorded sha256"
    )
    _add_eval_parser(sub)
    _add_serve_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``hogwild`` console script.

    Args:
        argv: Arguments without the program name; defaults to ``sys.argv[1:]``.

    Returns:
        The exit code: 0 on success, 2 for an error the user can fix, 130 when interrupted.

    """
    args = build_parser().parse_args(argv)
    out = Console(highlight=False)
    err = Console(stderr=True, highlight=False)
    from ..api.errors import HogwildError
    from ..models.store import ModelNotAvailableError

    try:
        if args.command == "info":
            return info_command(args.model, verify=args.verify, as_json=args.json, out=out)
        if args.command == "eval":
            return _cmd_eval(args, argv, out)
        if args.command == "serve":
            return _cmd_serve(args)
        return _cmd_run(args, out, err)
    except KeyboardInterrupt:
        err.print("[yellow]Interrupted.[/]")
        return EXIT_INTERRUPTED
    except (ModelNotAvailableError, HogwildError, FileNotFoundError, ValueError) as e:
        # ValueError covers pydantic's ValidationError (a bad option) and the calculator/corpus setup.
        err.print(f"[bold red]error:[/] {e}", markup=True, soft_wrap=True)
        return EXIT_USER_ERROR
    except OSError as e:  # transformers: unknown model id, unreadable model folder
        err.print(f"[bold red]error:[/] could not load the model: {e}", soft_wrap=True)
        return EXIT_USER_ERROR


# ---------------------------------------------------------------------------------------------- run
def _load_engine(model: str | None, workers: int) -> Any:
    from ..engine.engine import HogwildEngine

    quiet_transformers()
    from ..models.testing import TINY_TEST_MODEL, tiny_random_qwen2

    if model == TINY_TEST_MODEL:
        tiny, tokenizer = tiny_random_qwen2()
        return HogwildEngine(tiny, tokenizer, HogwildConfig(workers=workers))
    return HogwildEngine.from_pretrained(model, workers=workers)


def _build_tools(args: argparse.Namespace) -> list[Any]:
    from ..tools.builtins import calculator_tool, search_tool

    tools = []
    for name in dict.fromkeys(args.tool):  # keep order, drop repeats
        if name == "calculator":
            tools.append(calculator_tool())
        elif name == "search":
            if args.corpus is None:
                raise ValueError("--tool search needs --corpus DIR (a folder of .txt/.md files to search)")
            tools.append(search_tool(args.corpus))
    return tools


CLI_DEFAULTS: dict[str, Any] = HogwildConfig.CHAT_DEFAULTS
"""What ``hogwild run`` asks for unless told otherwise (the engine's own defaults are for the library)."""


def _roles(text: str | None) -> list[Any] | None:
    if text is None:
        return None
    from pydantic import TypeAdapter

    from ..api.config import WorkerRole

    source = Path(text)
    raw = source.read_text() if text.endswith(".json") and source.is_file() else text
    try:
        return TypeAdapter(list[WorkerRole]).validate_json(raw)
    except ValueError as e:
        raise ValueError(f"--roles is not a valid list of roles ({e})") from e


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    names = (
        "layout",
        "max_forwards",
        "max_answer_tokens",
        "temperature",
        "seed",
        "tool_choice",
        "probe_every",
        "tool_landing",
    )
    given = {name: getattr(args, name) for name in names if getattr(args, name) is not None}
    roles = _roles(args.roles)
    if roles is not None:
        given["roles"] = roles
    return {**CLI_DEFAULTS, "early_exit": args.early_exit, **given}


def _cmd_run(args: argparse.Namespace, out: Console, err: Console) -> int:
    if args.corpus is not None and "search" not in args.tool:
        raise ValueError("--corpus is only used by --tool search; add --tool search")
    tools = _build_tools(args)
    live = not args.json and not args.no_live and out.is_terminal
    if live:
        with err.status(f"Loading {args.model or 'the default model'} …"):
            engine = _load_engine(args.model, args.workers)
    else:
        engine = _load_engine(args.model, args.workers)
    if not engine.parallel.is_leader:  # under torchrun rank 0 shows the run; the other ranks follow silently
        out = err = Console(file=io.StringIO())
        live = False
    overrides = _overrides(args)
    events = engine.stream(args.task, tools=tools or None, **overrides)
    # The first event says who works on the run (the engine decides collaboration="auto").
    started = next(events)
    assert isinstance(started, RunStartedEvent), "a run's stream opens with RunStartedEvent"
    max_forwards = engine.config.with_overrides(**overrides).max_forwards
    progress = RunProgress.for_workers(list(started.workers), max_forwards)
    if args.interactive:
        _read_messages(events, err)
    try:
        if live:
            _drive_live(events, progress, out)
        else:
            _drive_plain(events, progress, out, quiet=args.json)
    except KeyboardInterrupt:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not interrupt the cleanup
        events.close()  # the engine cancels the run and frees its pages
        err.print(
            f"[yellow]Interrupted:[/] run cancelled after {progress.forwards} forward passes "
            f"and {progress.generated_tokens} tokens."
        )
        return EXIT_INTERRUPTED
    finally:
        events.close()
    result = progress.result
    assert result is not None, "the event stream always ends with FinishedEvent"
    if args.json and engine.parallel.is_leader:
        sys.stdout.write(json.dumps(result.to_json_dict(), ensure_ascii=False) + "\n")
        sys.stdout.flush()
    elif not live:
        out.print(Panel(result.answer or "(empty)", title="answer", border_style="green"))
        out.print(progress.status_line())
    return EXIT_OK


def _read_messages(events: Any, err: Console) -> None:
    """Hand every line typed on stdin to the run as an injected message (a daemon thread)."""

    def read() -> None:
        for line in sys.stdin:
            if line.strip():
                try:
                    events.inject(line.strip())
                except Exception as e:  # noqa: BLE001 - a bad line must not end the run
                    err.print(f"[yellow]not sent:[/] {e}")

    threading.Thread(target=read, name="hogwild-stdin", daemon=True).start()
    err.print("[dim]Type a line and press Enter to add it to the workspace.[/]")


def _drive_live(events: Any, progress: RunProgress, console: Console) -> None:
    with Live(
        get_renderable=lambda: render_live(progress, console),
        console=console,
        auto_refresh=False,
        redirect_stdout=False,
        redirect_stderr=False,
    ) as view:
        last = 0.0
        for event in events:
            progress.update(event)
            now = time.perf_counter()
            if now - last >= _REFRESH_S or isinstance(event, FinishedEvent):
                view.refresh()
                last = now


def _drive_plain(events: Any, progress: RunProgress, console: Console, quiet: bool) -> None:
    colors: dict[str, str] = {}
    for event in events:
        line = progress.update(event)
        if line is not None and not quiet:
            colors.setdefault(line.worker, progress.worker(line.worker).color)
            console.print(format_log_line(line, colors[line.worker]))


def cli_result_schema() -> dict[str, Any]:
    """Return the JSON Schema of ``hogwild run --json`` output: :class:`RunResult` without its trace.

    ``hogwild_agents/ui/cli_result.schema.json`` is this schema, written to a file; a test keeps them equal.
    """
    from ..api.results import RunResult

    schema = RunResult.model_json_schema(mode="serialization")
    schema["properties"].pop("trace", None)
    schema.setdefault("$defs", {})
    used = json.dumps(schema["properties"])
    schema["$defs"] = {k: v for k, v in schema["$defs"].items() if f"#/$defs/{k}" in used or k == "Usage"}
    # to_json_dict() writes every field, so every field is required in the output.
    schema["required"] = sorted(schema["properties"])
    schema["additionalProperties"] = False
    for definition in schema["$defs"].values():
        if "properties" in definition:
            definition["required"] = sorted(definition["properties"])
            definition["additionalProperties"] = False
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "hogwild run --json"
    return schema


# ---------------------------------------------------------------------------------------------- eval
def _add_eval_parser(sub: Any) -> None:
    """Register ``hogwild eval`` (options in :mod:`hogwild_agents.evaluation.command`)."""
    from ..evaluation.command import add_eval_arguments

    parser = sub.add_parser("eval", help="accuracy vs forward budget on seeded task sets (W=1 vs Hogwild)")
    add_eval_arguments(parser)


def _cmd_eval(args: argparse.Namespace, argv: list[str] | None, out: Console) -> int:
    from ..evaluation.command import run_eval_command

    quiet_transformers()
    files = run_eval_command(args, argv)
    out.print((args.out / "results.md").read_text(), soft_wrap=True, markup=False)
    for kind, path in files.items():
        out.print(f"[dim]{kind}:[/] {path}")
    return EXIT_OK


# --------------------------------------------------------------------------------------------- serve
def _add_serve_parser(sub: Any) -> None:
    """Register ``hogwild serve`` (the OpenAI-compatible server of :mod:`hogwild_agents.server`)."""
    serve = sub.add_parser(
        "serve", help="serve the model over an OpenAI-compatible HTTP API, with a web view"
    )
    serve.add_argument(
        "--model", help="packaged model name, Hugging Face id or local path (default: packaged Qwen 0.5B)"
    )
    serve.add_argument("--workers", type=int, default=2, help="default number of workers per request")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8000, help="port to listen on (default 8000)")
    serve.add_argument("--max-cache-tokens", type=int, help="capacity of the shared KV store, in tokens")
    serve.add_argument(
        "--dtype", help="weights dtype (default bfloat16; float32 may be faster on CPUs without bf16 units)"
    )
    serve.add_argument("--device", help="cuda or cpu (default: CUDA when available)")
    serve.add_argument("--ray", action="store_true", help="serve through Ray Serve (the serve-ray extra)")
    serve.add_argument("--replicas", type=int, default=1, help="with --ray: engine replicas (default 1)")
    serve.add_argument("--log-level", default="info", help="uvicorn log level (default info)")


def _cmd_serve(args: argparse.Namespace) -> int:
    given = {"max_cache_tokens": args.max_cache_tokens, "dtype": args.dtype, "device": args.device}
    config = {k: v for k, v in given.items() if v is not None}
    try:
        if args.ray:
            from ..server.ray_app import serve_ray

            serve_ray(
                args.model,
                replicas=args.replicas,
                workers=args.workers,
                host=args.host,
                port=args.port,
                **config,
            )
            return EXIT_OK
        from ..server import serve
    except ImportError as e:
        raise ValueError(
            f"hogwild serve needs the server extra ({e.name} is missing): "
            "pip install 'hogwild-agents[server]'" + (" 'hogwild-agents[serve-ray]'" if args.ray else "")
        ) from e
    serve(
        args.model, workers=args.workers, host=args.host, port=args.port, log_level=args.log_level, **config
    )
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
