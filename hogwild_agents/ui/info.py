"""``hogwild info``: what this machine and the chosen model are, without loading the model's weights."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.panel import Panel
from rich.table import Table

from ..api.config import HogwildConfig

__all__ = ["environment_facts", "info_command", "model_facts", "quiet_transformers"]


def quiet_transformers() -> None:
    """Silence weight-loading progress bars and advisory warnings: the CLI owns the terminal."""
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


def model_facts(model: str | None, verify: bool = False) -> dict[str, Any]:
    """Describe ``model``'s path and architecture without loading (or converting) its weights.

    With ``verify`` every converted file is hashed and compared with the marker's record (a mismatch
    raises :class:`ModelNotAvailableError`: one line, exit 2).
    """
    import os

    from ..models.integrity import MARKER_FILE, record_hashes, verify_converted
    from ..models.store import DEFAULT_MODEL, REGISTRY, cache_root
    from ..models.testing import TINY_TEST_MODEL

    name = model or os.environ.get("HOGWILD_MODEL") or DEFAULT_MODEL
    facts: dict[str, Any] = {"model": name}
    if name == TINY_TEST_MODEL:
        from ..models.testing import tiny_random_qwen2

        quiet_transformers()
        config = tiny_random_qwen2()[0].config
        facts["path"] = "(built in memory: test hook)"
    else:
        path = cache_root() / "models" / name if name in REGISTRY else Path(name)
        facts["path"] = str(path)
        if name in REGISTRY and not (path / MARKER_FILE).is_file():
            facts["status"] = "not converted yet (the first run converts it: about 100 s)"
            return facts
        if verify and (path / MARKER_FILE).is_file():
            states = verify_converted(path, full=True)
            if states:
                facts["verified"] = f"{len(states)} files match their recorded sha256"
            else:
                facts["verified"] = f"{len(record_hashes(path))} files hashed and recorded now (none were)"
        elif verify:
            facts["verified"] = "no hashes recorded for this folder (not converted by hogwild)"
        from transformers import AutoConfig

        try:
            config = AutoConfig.from_pretrained(str(path))
        except (OSError, ValueError) as e:
            facts["status"] = f"config unavailable: {e}"
            return facts
    heads = config.num_attention_heads
    facts.update(
        family=config.model_type,
        layers=config.num_hidden_layers,
        heads=heads,
        kv_heads=getattr(config, "num_key_value_heads", None) or heads,
        head_dim=getattr(config, "head_dim", None) or config.hidden_size // heads,
        context_window=getattr(config, "max_position_embeddings", None),
        vocab_size=config.vocab_size,
    )
    return facts


def environment_facts() -> dict[str, Any]:
    """Describe the device, the attention backend ``"auto"`` resolves to, and the versions that matter."""
    import importlib.metadata

    import torch
    from hogwild_kernels.dispatch import resolve_backend

    from .. import __version__

    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    backend = HogwildConfig().attention_backend
    try:
        triton = importlib.metadata.version("triton")
    except importlib.metadata.PackageNotFoundError:
        triton = "not installed"
    return {
        "device": torch.cuda.get_device_name(0) if cuda else f"CPU ({torch.get_num_threads()} threads)",
        "attention": f"{resolve_backend(backend, device)} (attention_backend={backend!r})",
        "hogwild_agents": __version__,
        "torch": torch.__version__,
        "transformers": importlib.metadata.version("transformers"),
        "triton": triton,
    }


def info_command(model: str | None, *, verify: bool, as_json: bool, out: Console) -> int:
    """``hogwild info``: the environment, the model (without loading its weights) and the default config.

    With ``as_json`` one JSON object goes to stdout and nothing else. Returns the exit code (0).
    """
    facts = {**environment_facts(), **model_facts(model, verify=verify)}
    defaults = HogwildConfig().model_dump(mode="json")
    if as_json:
        sys.stdout.write(json.dumps({**facts, "default_config": defaults}) + "\n")
        return 0
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold cyan")
    table.add_column()
    for key, value in facts.items():
        table.add_row(key, str(value))
    out.print(Panel(table, title="hogwild info", border_style="cyan"))
    config = Table("option", "default", box=None, pad_edge=False, header_style="bold")
    for key, value in defaults.items():
        config.add_row(key, json.dumps(value) if not isinstance(value, str) else value)
    out.print(Panel(config, title="default HogwildConfig", border_style="dim"))
    return 0
