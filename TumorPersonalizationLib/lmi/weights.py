"""Read a weights file written by one of the LMI training scripts, refusing anything else with a clear error."""
from __future__ import annotations

import pickle
import zipfile
from pathlib import Path

import torch

from ..errors import InputError


def read_weights_file(path, required_keys: set[str], what: str, device: str = "cpu",
                      hint: str = "") -> dict:
    """``torch.load(weights_only=True)`` of ``path``; InputError naming ``what`` if it cannot be read or lacks
    one of ``required_keys`` (``hint`` is appended to that message)."""
    path = Path(path)
    try:
        saved = torch.load(path, map_location=device, weights_only=True)
    except (OSError, RuntimeError, EOFError, ValueError, pickle.UnpicklingError, zipfile.BadZipFile) as error:
        raise InputError(f"{what} {path}: cannot read them ({error})") from error
    if not isinstance(saved, dict) or not required_keys <= set(saved):
        raise InputError(f"{what} {path}: not a weights file{hint}")
    return saved


def load_state(model: torch.nn.Module, saved: dict, path, what: str) -> None:
    """Load ``saved["state_dict"]`` into ``model`` and switch it to eval mode; InputError if it does not fit."""
    try:
        model.load_state_dict(saved["state_dict"])
    except RuntimeError as error:
        raise InputError(f"{what} {path}: they do not fit the network their config describes") from error
    model.eval()
