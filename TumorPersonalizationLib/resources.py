"""Where the project's shipped files live (atlas, LMI weights); importing this needs no imaging library."""
from __future__ import annotations

import os
from pathlib import Path


def resources_dir() -> Path:
    """The project's ``Resources`` folder (override with the environment variable TUMORPERSONALIZATION_RESOURCES)."""
    override = os.environ.get("TUMORPERSONALIZATION_RESOURCES")
    return Path(override) if override else Path(__file__).resolve().parents[1] / "Resources"
