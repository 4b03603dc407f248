"""Concurrent runs share forwards: same results as alone; cancellation, failures and tool waits isolated."""

from __future__ import annotations

import threading
import time

import pytest
from tiny_models import tiny_model

from hogwild_agents import HogwildEngine, RunResult, TokenEvent, Tool, ToolCallStartedEvent

VOCAB, EOS = 151936, 151645
TASKS = ["Add 2 and 3.", "Name a colour.", "Count to five.", "What is 7 times 6?"]


def engine_for(tokenizer, **cfg) -> HogwildEngine:
    model = tiny_model("qwen2", vocab_size=VOCAB, eos_token_id=EOS)
    return HogwildEngine(
        model,
        tokenizer,
        **{
            "page_size": 8,
            "max_cache_tokens": 8192,
            "max_answer_tokens": 6,
            "workers": 2,
            "max_forwards": 24,
            **cfg,
        },
    )


def run_together(engine: HogwildEngine, calls: list[tuple[str, dict]]) -> list[RunResult | BaseException]:
    """Start every call on its own thread at once (a barrier lines them up) and collect the outcomes."""
    out: list[RunResult | BaseException | None] = [None] * len(calls)
    barrier = threading.Barrier(len(calls))

    def one(i: int) -> None:
        barrier.wait()
        try:
            out[i] = engine.run(calls[i][0], **calls[i][1])
        except BaseException as e:  # noqa: BLE001 - handed to the test
            out[i] = e

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(calls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=600)
    return out  # type: ignore[return-value]


def tokens_of(result: RunResult) -> list[tuple[str, int | None]]:
    return [(g.writer, g.sampled) for f in result.trace.forwards for g in f.groups]


def test_concurrent_runs_batch_and_match_one_at_a_time(qwen_tokenizer) -> None:
    engine = engine_for(qwen_tokenizer)
    alone = [engine.run(task) for task in TASKS]
    assert engine.scheduler.batched_forwards == 0
    together = run_together(engine, [(task, {}) for task in TASKS])
    assert engine.scheduler.batched_forwards > 0  # their tokens really went through shared forwards
    for a, b in zip(alone, together, strict=True):
        assert isinstance(b, RunResult)
        assert tokens_of(a) == tokens_of(b)
        assert a.answer == b.answer and a.usage.forwards == b.usage.forwards
    assert engine.runner.store.free_pages == engine.runner.store.num_pages


def test_cancelling_one_run_leaves_the_others_and_frees_its_pages(qwen_tokenizer) -> None:
    engine = engine_for(qwen_tokenizer, max_forwards=40)
    expected = engine.run(TASKS[0])
    results: list[RunResult] = []
    other = threading.Thread(target=lambda: results.append(engine.run(TASKS[0])))
    stream = engine.stream(TASKS[1])
    for event in stream:
        if isinstance(event, TokenEvent) and event.generated:
            other.start()
            break
    stream.close()
    other.join(timeout=600)
    assert tokens_of(results[0]) == tokens_of(expected)
    assert engine.runner.store.free_pages == engine.runner.store.num_pages


def test_a_failing_run_does_not_take_the_others_down(qwen_tokenizer, monkeypatch) -> None:
    from hogwild_agents.engine import generate

    original = generate.take_token

    def exploding(run, worker, token):
        if worker.name == "Xena" and worker.generated >= 3:
            raise RuntimeError("boom in Xena's run")
        return original(run, worker, token)

    monkeypatch.setattr(generate, "take_token", exploding)
    engine = engine_for(qwen_tokenizer)
    expected = engine.run(TASKS[0])
    outcomes = run_together(engine, [(TASKS[0], {}), (TASKS[1], {"worker_names": ["Xena", "Yuri"]})])
    assert isinstance(outcomes[1], RuntimeError) and "boom" in str(outcomes[1])
    assert isinstance(outcomes[0], RunResult) and tokens_of(outcomes[0]) == tokens_of(expected)
    assert engine.runner.store.free_pages == engine.runner.store.num_pages
    monkeypatch.undo()
    assert engine.run(TASKS[2], max_forwards=3).stop_reason == "max_forwards"


def test_a_run_waiting_for_a_tool_does_not_hold_up_another(qwen_tokenizer) -> None:
    from scripted import ScriptedWriters

    release = threading.Event()

    def slow(x: int) -> int:
        """Returns only when the test lets it.

        Args:
            x: echoed back.
        """
        release.wait(timeout=120)
        return x

    patch = pytest.MonkeyPatch()
    call = '<tool_call>\n{"name": "slow", "arguments": {"x": 7}}\n</tool_call>'
    ScriptedWriters(qwen_tokenizer, {"Tess": call, "Ugo": call}, EOS).install(patch)
    try:
        engine = engine_for(qwen_tokenizer, constrain_tool_calls=False, max_forwards=60)
        started = threading.Event()
        waiting: list[RunResult] = []

        def tool_run() -> None:
            for event in engine.stream(
                TASKS[0], tools=[Tool.from_function(slow)], worker_names=["Tess", "Ugo"]
            ):
                if isinstance(event, ToolCallStartedEvent):
                    started.set()
                if hasattr(event, "result"):
                    waiting.append(event.result)

        t = threading.Thread(target=tool_run)
        t.start()
        assert started.wait(timeout=300)
        begin = time.perf_counter()
        other = engine.run(TASKS[1])  # both of the first run's workers are parked on the tool meanwhile
        assert other.stop_reason in ("max_forwards", "all_stopped") and time.perf_counter() - begin < 300
        assert not waiting  # the tool run is still waiting
        release.set()
        t.join(timeout=300)
        assert waiting and any(e.content == "7" for e in waiting[0].tool_events)
    finally:
        release.set()
        patch.undo()


def test_an_idle_engine_leaves_no_thread_behind(qwen_tokenizer) -> None:
    import gc
    import weakref

    engine = engine_for(qwen_tokenizer)
    engine.run(TASKS[0], max_forwards=2)
    thread = engine.scheduler._thread
    assert thread is not None
    thread.join(timeout=30)  # it ends by itself once no run is left
    assert not thread.is_alive()
    assert engine.run(TASKS[0], max_forwards=2).stop_reason == "max_forwards"  # a new one starts on demand
    engine.scheduler._thread.join(timeout=30)
    ref = weakref.ref(engine)
    del engine
    gc.collect()
    assert ref() is None  # nothing keeps the engine (and its model and KV store) alive


@pytest.mark.filterwarnings("error::pytest.PytestUnhandledThreadExceptionWarning")
def test_astream_whose_event_loop_closes_cancels_its_run(qwen_tokenizer) -> None:
    import asyncio

    engine = engine_for(qwen_tokenizer, max_forwards=400)
    loop = asyncio.new_event_loop()
    stream = engine.astream(TASKS[0])
    loop.run_until_complete(stream.__anext__())  # the run has started; then its consumer goes away
    loop.close()
    producer = next(t for t in threading.enumerate() if t.name == "hogwild-run")
    producer.join(timeout=300)
    assert not producer.is_alive()
    assert engine.runner.store.free_pages == engine.runner.store.num_pages  # cancelled, pages back
    assert engine.run(TASKS[1], max_forwards=3).stop_reason == "max_forwards"


def test_a_scheduler_failure_reaches_the_callers_instead_of_hanging_them(qwen_tokenizer, monkeypatch) -> None:
    from hogwild_agents.engine.scheduler import Scheduler

    engine = engine_for(qwen_tokenizer)

    def broken(self, batch):
        raise RuntimeError("scheduler bug")

    monkeypatch.setattr(Scheduler, "forward", broken)
    with pytest.raises(RuntimeError, match="scheduler bug"):
        engine.run(TASKS[0])
    monkeypatch.undo()
    assert engine.runner.store.free_pages == engine.runner.store.num_pages
    assert engine.run(TASKS[0], max_forwards=3).stop_reason == "max_forwards"
