"""Converted model files are verified: hashes recorded at conversion, checked at load and by `info --verify`.

Every test builds its own converted cache (a tiny random Qwen2 saved with the real tokenizer, marked by the
same `store.write_marker` the conversion uses) under a temporary ``HOGWILD_CACHE_DIR``: the real cache in
``~/.cache/hogwild-agents`` is never touched.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from transformers import Qwen2Config, Qwen2ForCausalLM

from hogwild_agents.models import store
from hogwild_agents.models.store import DEFAULT_MODEL, MARKER_FILE, REGISTRY, ModelNotAvailableError
from hogwild_agents.models.testing import TINY_SHAPE
from hogwild_agents.ui.cli import main


@pytest.fixture
def cache(tmp_path, monkeypatch, qwen_tokenizer) -> Path:
    """A converted cache of the default model's name holding a tiny random model; returns its folder."""
    monkeypatch.setenv("HOGWILD_CACHE_DIR", str(tmp_path))
    folder = tmp_path / "models" / DEFAULT_MODEL
    torch.manual_seed(0)
    Qwen2ForCausalLM(Qwen2Config(vocab_size=len(qwen_tokenizer), **TINY_SHAPE)).save_pretrained(folder)
    qwen_tokenizer.save_pretrained(folder)
    store.write_marker(folder, REGISTRY[DEFAULT_MODEL], {"dtype": "float32"})
    return folder


def _flip_byte(path: Path, offset: int, keep_time: bool = False) -> None:
    stat = path.stat()
    with open(path, "r+b") as fh:
        fh.seek(offset)
        byte = fh.read(1)
        fh.seek(offset)
        fh.write(bytes([byte[0] ^ 0x01]))
    if keep_time:  # what the fast path cannot see: only the full hash (info --verify) does
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))


def test_the_marker_records_every_files_sha256(cache: Path) -> None:
    marker = json.loads((cache / MARKER_FILE).read_text())
    files = marker["files"]
    assert "model.safetensors" in files and "tokenizer.json" in files and "config.json" in files
    assert all(len(r["sha256"]) == 64 and r["size"] > 0 for r in files.values())
    assert store.resolve_model_path() == str(cache)  # intact: the fast path accepts it
    assert set(store.verify_converted(cache).values()) == {"ok"}
    assert set(store.verify_converted(cache, full=True).values()) == {"hashed"}


def test_a_truncated_weights_file_is_refused_with_what_to_do(cache: Path) -> None:
    weights = cache / "model.safetensors"
    with open(weights, "r+b") as fh:
        fh.truncate(weights.stat().st_size // 2)
    with pytest.raises(ModelNotAvailableError, match=r"truncated.*rm -rf"):
        store.resolve_model_path()
    from hogwild_agents import HogwildEngine

    with pytest.raises(ModelNotAvailableError, match="truncated"):
        HogwildEngine.from_pretrained(device="cpu")


def test_flipped_bytes_are_found_by_the_hash_when_the_time_changed(cache: Path) -> None:
    weights = cache / "model.safetensors"
    _flip_byte(weights, weights.stat().st_size - 100)
    with pytest.raises(ModelNotAvailableError, match=r"corrupted \(sha256"):
        store.resolve_model_path()


def test_a_touched_but_intact_file_is_hashed_once_then_fast_again(cache: Path) -> None:
    weights = cache / "model.safetensors"
    os.utime(weights, ns=(weights.stat().st_atime_ns, weights.stat().st_mtime_ns + 10**9))
    assert store.verify_converted(cache)["model.safetensors"] == "hashed"
    assert store.verify_converted(cache)["model.safetensors"] == "ok"


def test_missing_files_and_edited_tokenizer_files_are_refused(cache: Path) -> None:
    (cache / "tokenizer_config.json").write_text((cache / "tokenizer_config.json").read_text() + " ")
    with pytest.raises(ModelNotAvailableError, match="tokenizer_config.json"):
        store.resolve_model_path()
    (cache / "tokenizer_config.json").unlink()
    with pytest.raises(ModelNotAvailableError, match="missing"):
        store.resolve_model_path()


def test_info_verify_hashes_everything_and_fails_in_one_line(cache: Path, capsys) -> None:
    assert main(["info", "--json", "--verify"]) == 0
    facts = json.loads(capsys.readouterr().out)
    assert "match their recorded sha256" in facts["verified"]
    weights = cache / "model.safetensors"
    _flip_byte(weights, weights.stat().st_size - 100, keep_time=True)
    assert store.resolve_model_path() == str(cache)  # the fast path cannot see a change that kept the time
    assert main(["info", "--verify"]) == 2
    err = capsys.readouterr().err
    assert "corrupted" in err and "rm -rf" in err and "Traceback" not in err
    assert err.count("error:") == 1


def test_a_cache_without_hashes_gets_them_recorded_by_verify(cache: Path, capsys) -> None:
    marker = json.loads((cache / MARKER_FILE).read_text())
    del marker["files"]
    (cache / MARKER_FILE).write_text(json.dumps(marker))
    assert store.verify_converted(cache) == {}  # converted by an older version: loads, with a warning
    assert main(["info", "--json", "--verify"]) == 0
    assert "recorded now" in json.loads(capsys.readouterr().out)["verified"]
    assert set(store.verify_converted(cache).values()) == {"ok"}


def test_a_corrupted_local_folder_is_model_not_available(cache: Path, tmp_path: Path) -> None:
    from hogwild_agents import HogwildEngine

    weights = cache / "model.safetensors"
    weights.write_bytes(b"\x00" * 64)
    with pytest.raises(ModelNotAvailableError, match="cannot be read"):
        HogwildEngine.from_pretrained(str(cache), device="cpu")
