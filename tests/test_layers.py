"""The package's layer contracts (pyproject ``[tool.importlinter]``) hold: run import-linter as CI does."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_import_contracts_are_kept():
    exe = shutil.which("lint-imports") or str(Path(sys.executable).with_name("lint-imports"))
    done = subprocess.run([exe], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "0 broken" in done.stdout


def _lint_copy(tmp_path: Path, module: str, line: str) -> str:
    """lint-imports over a copy of the packages with ``line`` appended to ``module``; its report."""
    import os

    shutil.copytree(ROOT / "hogwild_agents", tmp_path / "hogwild_agents")
    shutil.copytree(ROOT / "kernels" / "hogwild_kernels", tmp_path / "hogwild_kernels")
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    path = tmp_path / Path(*module.split(".")).with_suffix(".py")
    path.write_text(path.read_text() + f"\n{line}  # probe\n")
    exe = shutil.which("lint-imports") or str(Path(sys.executable).with_name("lint-imports"))
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    done = subprocess.run(
        [exe, "--no-cache"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode != 0, done.stdout[-2000:]
    return done.stdout


NO_FRAMEWORKS = "never imports LangChain"


@pytest.mark.parametrize(
    ("module", "line", "contract"),
    [
        ("hogwild_agents.server.convert", "import langchain_core.messages", NO_FRAMEWORKS),
        ("hogwild_agents.server.convert", "from langchain_hogwild import ChatHogwild", NO_FRAMEWORKS),
        ("hogwild_agents.engine.stream", "import llama_index.core", NO_FRAMEWORKS),
        ("hogwild_agents.api.events", "from hogwild_agents.engine import engine", "Layers of hogwild_agents"),
        ("hogwild_agents.engine.stream", "from hogwild_agents.engine import engine", "No import cycles"),
        ("hogwild_kernels.launch", "import transformers", "hogwild_kernels imports nothing"),
    ],
)
def test_each_contract_catches_what_it_forbids(tmp_path, module, line, contract):
    """The contracts are not vacuous: a forbidden import planted in a copy of the packages breaks them."""
    report = _lint_copy(tmp_path, module, line)
    assert any(contract in row and "BROKEN" in row for row in report.splitlines()), report[-2000:]
