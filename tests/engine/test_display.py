"""Notebook HTML of a run, the live-view state folded from events, and the terminal rendering."""

from rich.console import Console

from hogwild_agents.api.events import (
    AnswerEvent,
    FinishedEvent,
    StepCommittedEvent,
    TokenEvent,
    ToolCallFinishedEvent,
    ToolCallStartedEvent,
    WorkerStoppedEvent,
)
from hogwild_agents.api.results import RunResult, Usage, WorkerResult
from hogwild_agents.ui.display import render_progress_html, render_run_html, watch
from hogwild_agents.ui.live import render_live
from hogwild_agents.ui.progress import WORKER_COLORS, RunProgress

EVIL = "<script>alert('x')</script>"


def _result() -> RunResult:
    return RunResult(
        answer=f"The total is 651 & {EVIL}",
        workers=[
            WorkerResult(
                name="Alice",
                text="**Alice [1]:** I search.\n\n**Alice [2]:** Found 217 <b>steps</b>. still writing",
                steps=["**Alice [1]:** I search.", "\n\n**Alice [2]:** Found 217 <b>steps</b>."],
                generated_tokens=12,
                stop_reason="run_ended",
            ),
            WorkerResult(name="B<o>b", text=f"**B<o>b [1]:** {EVIL}", steps=[], generated_tokens=5),
            WorkerResult(name="Carol", text="**Carol [1]:** ", steps=[], generated_tokens=0),
        ],
        stop_reason="max_forwards",
        usage=Usage(forwards=30, generated_tokens=17, prompt_tokens=200, wall_time_s=1.5),
        tool_events=[
            {
                "worker": "Alice",
                "id": "call_1",
                "name": "search",
                "arguments": {"query": "<steps>"},
                "content": "[a.md] 217 steps & more",
                "is_error": False,
            },
        ],  # fmt: skip
    )


def test_html_escapes_all_text_and_shows_every_worker():
    page = render_run_html(_result())
    assert "<script>" not in page and "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in page
    assert "<b>steps</b>" not in page and "&lt;b&gt;steps&lt;/b&gt;" in page
    assert "B&lt;o&gt;b" in page and "B<o>b" not in page
    for name, color in (
        ("Alice", WORKER_COLORS[0]),
        ("B&lt;o&gt;b", WORKER_COLORS[1]),
        ("Carol", WORKER_COLORS[2]),
    ):
        assert f'<span style="color:{color};font-weight:bold">{name}</span>' in page
    assert page.count("&#10003; step") == 2  # Alice's two steps are marked
    assert "step 1 committed" in page and "step 2 committed" in page
    assert "still writing" in page and "not committed" in page
    assert "search" in page and "{&quot;query&quot;: &quot;&lt;steps&gt;&quot;}" in page
    assert "217 steps &amp; more" in page
    assert page.rindex("Answer") > page.rindex("hw-worker")  # the answer comes last
    assert "651 &amp;" in page


def test_run_result_repr_html_uses_the_renderer():
    result = _result()
    assert result._repr_html_() == render_run_html(result)


def _events():
    yield TokenEvent("Alice", "**Alice [1]:** ", (1, 2), 0, generated=False)
    yield TokenEvent("Bob", "**Bob [1]:** ", (1, 2), 0, generated=False)
    yield TokenEvent("Alice", "Hello.", (5,), 1)
    yield TokenEvent("Bob", "<i>Hi</i>", (6,), 1)
    yield StepCommittedEvent("Alice", 1, "**Alice [1]:** Hello.", 2)
    yield ToolCallStartedEvent("Bob", "call_1", "calculator", {"expression": "2+3"}, 3)
    yield ToolCallFinishedEvent("Bob", "call_1", "calculator", "5", False, 0.01, 4)
    yield WorkerStoppedEvent("Alice", "run_ended", 5)
    yield AnswerEvent("Five", 6)


def test_progress_folds_events():
    progress = RunProgress.for_workers(["Alice", "Bob"], max_forwards=10)
    for event in _events():
        progress.update(event)
    assert progress.workers["Alice"].text == "**Alice [1]:** Hello."
    assert progress.workers["Alice"].steps == 1 and progress.workers["Alice"].stopped == "run_ended"
    assert progress.generated_tokens == 2 and progress.forwards == 7
    assert [line.kind for line in progress.log] == ["commit", "tool_call", "tool_result", "stop"]
    assert progress.log[1].text == 'calls calculator({"expression": "2+3"})'
    assert progress.answer == "Five"
    assert "running" in progress.status_line() and "worker budget 10" in progress.status_line()
    html = render_progress_html(progress)
    assert "&lt;i&gt;Hi&lt;/i&gt;" in html and "<i>" not in html and "Five" in html
    progress.update(FinishedEvent(_result()))
    assert "done: max_forwards" in progress.status_line()
    assert render_progress_html(progress) == render_run_html(_result())


def test_terminal_view_draws_a_pane_per_worker():
    progress = RunProgress.for_workers(["Alice", "Bob", "Carol"])
    for event in _events():
        progress.update(event)
    progress.update(TokenEvent("Carol", "line\n" * 50 + "LAST LINE", (1,), 6))
    console = Console(record=True, width=120, height=30, color_system=None)
    console.print(render_live(progress, console))
    screen = console.export_text()
    assert all(name in screen for name in ("Alice", "Bob", "Carol"))
    assert "LAST LINE" in screen  # the tail of a long text stays visible
    assert "calls calculator" in screen and "committed step 1" in screen
    assert "tok/s" in screen and "Five" in screen
    assert len(screen.splitlines()) <= 30


class _FakeEngine:
    def __init__(self):
        from hogwild_agents.api.config import HogwildConfig

        self.config = HogwildConfig(workers=2)
        self.closed = False

    def stream(self, messages, tools=None, **overrides):
        try:
            yield from _events()
            yield FinishedEvent(_result())
        finally:
            self.closed = True


def test_watch_outside_ipython_returns_the_result_silently(capsys):
    engine = _FakeEngine()
    result = watch(engine, "hi")
    assert result.answer.startswith("The total is 651") and engine.closed
    assert capsys.readouterr().out == ""


def test_watch_updates_one_display_handle(monkeypatch):
    import hogwild_agents.ui.display as display

    shown = []

    class Handle:
        def update(self, obj):
            shown.append(obj.data)

    def fake_display(obj, display_id=False):
        shown.append(obj.data)
        return Handle()

    monkeypatch.setattr(display, "_ipython_display", lambda: fake_display)
    result = watch(_FakeEngine(), "hi", refresh_s=0.0)
    assert len(shown) >= 3  # the empty panes, updates as events arrive, the final result
    assert "Alice" in shown[0] and shown[-1] == render_run_html(result)
