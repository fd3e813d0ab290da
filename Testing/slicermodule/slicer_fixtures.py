"""Slicer tier fixtures: the module's Logic and Test class on slicer-core, Testing/slicer_standin for the application.

Imported by each test file (``from slicer_fixtures import module, scene``), not named conftest.py: Testing/lib's
tests import helpers with ``from conftest import ...``, and a second conftest module would shadow theirs.
Tests that need slicer-core are skipped (reason shown by ``-ra``) when it is not installed; ``python3 dev.py test``
installs it.
"""
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MODULE_DIR = ROOT / "TumorPersonalization"
for folder in (ROOT / "Testing", MODULE_DIR):  # Slicer puts the module's folder on sys.path; so do we
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))


@pytest.fixture
def scene():
    """A fresh scene with the stand-in application installed; the module imported against it."""
    pytest.importorskip("slicer_core", reason="slicer-core (trame-slicer[standalone]) is not installed")
    import slicer_standin

    return slicer_standin.install()


@pytest.fixture
def module(scene):
    """The module file, imported as Slicer imports it (its folder on sys.path)."""
    import TumorPersonalization

    return TumorPersonalization
