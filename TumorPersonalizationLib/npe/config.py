"""The NPE config (``Resources/NPE/config.json``): observation crop, embedding, MDN, training, amortised data set.

One file drives the data generation of the amortised round (``Scripts/npe_make_dataset.py``), its training
(``Scripts/npe_train.py``) and run time: trained weights carry a copy of the config they were trained with, and the
sequential rounds then use that copy's observation and network sections (the crop must match the network).
``config_full_gpu.json`` is the same structure at the size meant for a GPU.
"""
from __future__ import annotations

import json
from pathlib import Path

from ..errors import InputError
from ..resources import resources_dir

WEIGHTS_NAME = "npe.pt"
"""The amortised network's file (``Resources/NPE/npe.pt``, written by ``Scripts/npe_train.py``)."""

SECTIONS = {
    "observation": ("crop_size", "crop_spacing_mm"),
    "embedding": ("channels", "features"),
    "mdn": ("components", "hidden_features"),
    "training": ("batch_size", "learning_rate", "validation_fraction", "stop_after_epochs", "max_epochs", "seed"),
}
"""Sections and keys every config must have (the dataset section is checked by the training code)."""


def npe_dir() -> Path:
    """``Resources/NPE``: configs, amortised weights, training log."""
    return resources_dir() / "NPE"


def default_weights() -> Path:
    return npe_dir() / WEIGHTS_NAME


def load_config(path=None) -> dict:
    """Read an NPE config (default: the shipped CPU config) and check it (:func:`check_config`)."""
    path = Path(path) if path is not None else npe_dir() / "config.json"
    try:
        config = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise InputError(f"NPE config {path}: cannot read it ({error})") from None
    check_config(config, f"NPE config {path}")
    return config


def check_config(config: dict, where: str = "NPE config") -> None:
    """InputError unless every section of :data:`SECTIONS` is there with sensible values."""
    if not isinstance(config, dict):
        raise InputError(f"{where}: expected a JSON object")
    for section, keys in SECTIONS.items():
        missing = [k for k in keys if k not in config.get(section, {})]
        if missing:
            raise InputError(f"{where}: {section} lacks {', '.join(missing)}")
    size = config["observation"]["crop_size"]
    levels = len(config["embedding"]["channels"])
    # Each embedding level halves the crop; the last one must still be at least 2 voxels wide.
    if not isinstance(size, int) or size < 8 or size % (2 ** levels) or size // (2 ** levels) < 2:
        raise InputError(f"{where}: observation.crop_size must be a whole number >= 8 divisible by "
                         f"2^{levels} (one halving per embedding level) leaving >= 2 voxels, got {size}")
    if not config["observation"]["crop_spacing_mm"] > 0:
        raise InputError(f"{where}: observation.crop_spacing_mm must be positive")
    if not 0 < config["training"]["validation_fraction"] < 1:
        raise InputError(f"{where}: training.validation_fraction must lie in (0, 1)")
