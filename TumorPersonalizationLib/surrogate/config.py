"""The surrogate's configuration (``Resources/Surrogate/config.json``): crop, parameters, network, data, training.

The same file drives data generation (``Scripts/surrogate_make_dataset.py``), training (``Scripts/surrogate_train.py``)
and run time: the trained weights carry a copy of the config they were trained with, and run time reads the crop,
the parameter ranges and the normalisation from that copy.

Parameters enter the network as ``(log x - log low) / (log high - log low)`` per parameter, each in [0, 1] over the
trained range (the thesis min-max normalises; in logarithms here because the ranges span two orders of magnitude,
and on a linear scale the slow half of Dw, 0.02-0.1 mm^2/day, would be squeezed into 5 % of the input).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..resources import resources_dir

WEIGHTS_NAME = "surrogate.pt"
"""The trained network's file (``Resources/Surrogate/surrogate.pt``, written by ``Scripts/surrogate_train.py``)."""
PARAMETER_NAMES = ("dw_mm2_per_day", "rho_per_day", "days")
"""The network's parameters, in input order."""
PARAMETER_LABELS = {"dw_mm2_per_day": ("Dw", "mm^2/day"), "rho_per_day": ("rho", "1/day"), "days": ("T", "days")}
RANGE_TOLERANCE = 1e-9
"""Relative slack at the range's ends, so a value printed and read back at a bound is not refused."""


def surrogate_dir() -> Path:
    """``Resources/Surrogate``: configs, trained weights, training log."""
    return resources_dir() / "Surrogate"


def load_config(path=None) -> dict:
    """Read a surrogate config (default: the shipped CPU config) and check its parameter section."""
    path = Path(path) if path is not None else surrogate_dir() / "config.json"
    try:
        config = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise InputError(f"surrogate config {path}: cannot read it ({error})") from error
    check_parameter_section(config, str(path))
    return config


def check_parameter_section(config: dict, where: str = "surrogate config") -> None:
    """InputError unless ``config["parameters"]`` gives ``[low, high]``, 0 < low < high, for each parameter."""
    ranges = config.get("parameters", {})
    if list(ranges) != list(PARAMETER_NAMES):
        raise InputError(f"{where}: parameters must be {list(PARAMETER_NAMES)} in this order, got {list(ranges)}")
    for name, bounds in ranges.items():
        if len(bounds) != 2 or not 0 < float(bounds[0]) < float(bounds[1]):
            raise InputError(f"{where}: parameters.{name} must be [low, high] with 0 < low < high, got {bounds}")


def parameter_ranges(config: dict) -> np.ndarray:
    """(3, 2) float64: [low, high] of Dw (mm^2/day), rho (1/day), T (days)."""
    return np.array([config["parameters"][name] for name in PARAMETER_NAMES], dtype=np.float64)


def check_parameters(config: dict, parameters) -> np.ndarray:
    """(N, 3) Dw, rho, T as float64, or InputError naming the first value outside the trained range.

    The message says which parameter, its value, the trained range with units, and what to do instead.
    """
    values = np.atleast_2d(np.asarray(parameters, dtype=np.float64))
    if values.ndim != 2 or values.shape[1] != len(PARAMETER_NAMES):
        raise InputError(f"surrogate parameters: expected (N, 3) Dw, rho, T, got shape {values.shape}")
    ranges = parameter_ranges(config)
    for column, name in enumerate(PARAMETER_NAMES):
        label, unit = PARAMETER_LABELS[name]
        low, high = ranges[column]
        column_values = values[:, column]
        bad = ~np.isfinite(column_values) | (column_values < low * (1 - RANGE_TOLERANCE)) | (
            column_values > high * (1 + RANGE_TOLERANCE))
        if np.any(bad):
            value = column_values[np.argmax(bad)]
            raise InputError(f"{label} = {value:g} {unit} lies outside the surrogate's trained range "
                             f"[{low:g}, {high:g}] {unit}; use the numerical solver for it")
    return values


def normalise_parameters(config: dict, parameters) -> np.ndarray:
    """(N, 3) Dw, rho, T within the trained range -> (N, 3) float32 network input in [0, 1] (module docstring)."""
    values = check_parameters(config, parameters)
    ranges = np.log(parameter_ranges(config))
    scaled = (np.log(values) - ranges[:, 0]) / (ranges[:, 1] - ranges[:, 0])
    return np.clip(scaled, 0.0, 1.0).astype(np.float32)


def crop_size(config: dict) -> int:
    return int(config["crop"]["size"])


def crop_spacing_mm(config: dict) -> float:
    return float(config["crop"]["spacing_mm"])
