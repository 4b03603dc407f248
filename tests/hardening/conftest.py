"""Hardening tests share the engine tests' tiny model builders (tests/engine/tiny_models.py)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent.parent / "engine"))
sys.path.insert(0, str(Path(__file__).parent))
