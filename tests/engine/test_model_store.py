"""Tests for hogwild_agents.models.store: packaged-model lookup, verification and the conversion cache."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections import namedtuple
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from hogwild_agents.models import store as ms
from hogwild_agents.models.store import (
    InsufficientDiskSpaceError,
    ModelNotAvailableError,
    ModelPart,
    PackagedModel,
)

_PAYLOADS = [b"alpha-" * 100, b"bravo-" * 50, b"charlie"]


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def fake_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[dict[str, PackagedModel], Path]:
    """A registry with one 3-part model whose parts live in throwaway importable packages."""
    site = tmp_path / "site"
    tag = tmp_path.name.replace("-", "_")  # unique module names per test, so import caches can't mix them up
    parts = []
    for i, data in enumerate(_PAYLOADS, start=1):
        pkg = site / f"fake_{tag}_part{i}"
        (pkg / "data").mkdir(parents=True)
        (pkg / "__init__.py").write_text("")
        (pkg / "data" / f"part{i:02d}.bin").write_bytes(data)
        parts.append(ModelPart(f"fake-part{i}", pkg.name, f"data/part{i:02d}.bin", "1.0", _sha(data)))
    monkeypatch.syspath_prepend(str(site))
    joined = b"".join(_PAYLOADS)
    spec = PackagedModel("fake", tuple(parts), _sha(joined), len(joined), converted_size=1000)
    monkeypatch.setenv("HOGWILD_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("HOGWILD_MODEL", raising=False)
    return {"fake": spec}, site


@pytest.fixture
def converter_calls(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """Replace the transformers conversion with one that records the GGUF bytes it was given."""
    calls: list[bytes] = []

    def fake_convert(gguf: Path, out: Path) -> dict[str, str]:
        calls.append(gguf.read_bytes())
        out.mkdir()
        (out / "config.json").write_text("{}")
        return {"dtype": "bfloat16"}

    monkeypatch.setattr(ms, "_convert_gguf", fake_convert)
    return calls


def test_converts_once_then_uses_marker(fake_model, converter_calls):
    registry, _ = fake_model
    path = ms.resolve_model_path("fake", registry=registry)
    assert converter_calls == [b"".join(_PAYLOADS)]
    target = Path(path)
    assert (target / "config.json").is_file()
    marker = json.loads((target / ms.MARKER_FILE).read_text())
    assert marker["source_sha256"] == registry["fake"].sha256
    assert not list(target.rglob("*.gguf")), "the assembled GGUF must be deleted"
    assert [p.name for p in target.parent.iterdir() if p.name.startswith(".fake.tmp")] == []

    assert ms.resolve_model_path("fake", registry=registry) == path
    assert len(converter_calls) == 1, "a valid marker must skip reconversion"


def test_concurrent_callers_convert_once(fake_model, converter_calls, monkeypatch):
    # flock locks belong to open file descriptions, so two threads contend like two processes would.
    registry, _ = fake_model
    slow = ms._convert_gguf

    def slow_convert(gguf: Path, out: Path) -> dict[str, str]:
        time.sleep(0.2)
        return slow(gguf, out)

    monkeypatch.setattr(ms, "_convert_gguf", slow_convert)
    with ThreadPoolExecutor(2) as pool:
        paths = list(pool.map(lambda _: ms.ensure_converted("fake", registry=registry), range(2)))
    assert paths[0] == paths[1]
    assert len(converter_calls) == 1


def test_cached_marker_skips_converter(fake_model, monkeypatch):
    registry, site = fake_model
    target = ms.cache_root() / "models" / "fake"
    target.mkdir(parents=True)
    (target / ms.MARKER_FILE).write_text(json.dumps({"source_sha256": registry["fake"].sha256}))
    shutil.rmtree(site)  # not even the packages are needed once cached

    def boom(*args: object) -> None:
        raise AssertionError("converter must not run")

    monkeypatch.setattr(ms, "_convert_gguf", boom)
    assert ms.ensure_converted("fake", registry=registry) == target


def test_corrupted_part_is_named(fake_model, converter_calls):
    registry, site = fake_model
    part2 = registry["fake"].parts[1]
    (site / part2.module / "data" / "part02.bin").write_bytes(b"bit rot")
    with pytest.raises(ModelNotAvailableError) as err:
        ms.ensure_converted("fake", registry=registry)
    msg = str(err.value)
    assert f"part 2 (fake-part2) has sha256 {_sha(b'bit rot')}, expected {part2.sha256}" in msg
    assert "pip install --force-reinstall --no-cache-dir fake-part2==1.0" in msg
    assert converter_calls == []
    assert not (ms.cache_root() / "models" / "fake").exists()


def test_whole_file_hash_checked_when_part_hashes_unknown(fake_model, converter_calls):
    registry, site = fake_model
    spec = registry["fake"]
    unhashed = PackagedModel(
        "fake", tuple(ModelPart(p.package, p.module, p.resource, p.version) for p in spec.parts),
        spec.sha256, spec.size, spec.converted_size,
    )  # fmt: skip
    (site / spec.parts[0].module / "data" / "part01.bin").write_bytes(b"x")
    with pytest.raises(ModelNotAvailableError, match="joined GGUF of 'fake' has sha256 .*fake-part1==1.0"):
        ms.ensure_converted("fake", registry={"fake": unhashed})
    assert converter_calls == []


def test_missing_packages_listed_with_pip_command(fake_model, converter_calls):
    registry, site = fake_model
    for i in (1, 3):
        shutil.rmtree(site / registry["fake"].parts[i - 1].module)
    with pytest.raises(ModelNotAvailableError) as err:
        ms.ensure_converted("fake", registry=registry)
    msg = str(err.value)
    assert "2 package(s) that are not installed: fake-part1, fake-part3." in msg
    assert "pip install 'fake-part1==1.0' 'fake-part3==1.0'" in msg
    assert "fake-part2" not in msg


def test_default_model_missing_suggests_extra(monkeypatch):
    monkeypatch.setattr(ms.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ModelNotAvailableError, match=r"pip install 'hogwild-agents\[model\]'"):
        ms._locate_parts(ms.REGISTRY[ms.DEFAULT_MODEL])


def test_not_enough_disk_space(fake_model, converter_calls, monkeypatch):
    registry, _ = fake_model
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(ms.shutil, "disk_usage", lambda path: usage(10**9, 10**9 - 100, 100))
    with pytest.raises(InsufficientDiskSpaceError) as err:
        ms.ensure_converted("fake", registry=registry)
    msg = str(err.value)
    assert str(ms.cache_root() / "models") in msg
    assert "HOGWILD_CACHE_DIR" in msg
    assert isinstance(err.value, OSError) and isinstance(err.value, ModelNotAvailableError)
    assert converter_calls == []


@pytest.mark.parametrize("name", ["Qwen/Qwen2.5-0.5B-Instruct", "/some/local/dir", "./relative"])
def test_non_registry_string_passes_through(name, fake_model, converter_calls):
    registry, _ = fake_model
    assert ms.resolve_model_path(name, registry=registry) == name
    assert converter_calls == []


def test_env_model_respected(fake_model, converter_calls, monkeypatch):
    registry, _ = fake_model
    monkeypatch.setenv("HOGWILD_MODEL", "some-org/some-model")
    assert ms.resolve_model_path(registry=registry) == "some-org/some-model"
    monkeypatch.setenv("HOGWILD_MODEL", "fake")
    assert ms.resolve_model_path(registry=registry) == str(ms.cache_root() / "models" / "fake")
    assert len(converter_calls) == 1


def test_unknown_registry_name_in_ensure_converted(fake_model):
    registry, _ = fake_model
    with pytest.raises(ValueError, match=r"unknown packaged model 'nope'; known: \['fake'\]"):
        ms.ensure_converted("nope", registry=registry)


def test_registry_is_consistent():
    for name, spec in ms.REGISTRY.items():
        assert spec.name == name
        assert len({p.module for p in spec.parts}) == len(spec.parts)
    assert ms.DEFAULT_MODEL in ms.REGISTRY
    assert all(p.sha256 for p in ms.REGISTRY[ms.DEFAULT_MODEL].parts)


@pytest.mark.real_model
def test_real_default_model_resolves(monkeypatch):
    monkeypatch.delenv("HOGWILD_MODEL", raising=False)
    spec = ms.REGISTRY[ms.DEFAULT_MODEL]
    if not ms._marker_ok(ms.cache_root() / "models" / spec.name, spec):
        try:
            ms._locate_parts(spec)
        except ModelNotAvailableError as e:
            pytest.skip(f"real model not cached and its packages are not installed: {e}")
    transformers = pytest.importorskip("transformers")
    path = ms.resolve_model_path()
    assert os.path.isfile(os.path.join(path, ms.MARKER_FILE))
    config = transformers.AutoConfig.from_pretrained(path)
    assert config.model_type == "qwen2"
    assert config.num_hidden_layers == 24
    assert (config.num_attention_heads, config.num_key_value_heads) == (14, 2)
