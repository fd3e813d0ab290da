"""The contract every personalization method shares: the inputs (:class:`Case`), the result
(:class:`Personalization`, with the one writer of its files), settings dataclasses (:class:`MethodSettings`) and
progress with cancellation (:class:`Progress`). The methods themselves are registered in
:mod:`TumorPersonalizationLib.methods`.

``settings`` imports nothing heavy (the registry lists methods without numpy); the rest is imported on first use.
"""
from .settings import MethodSettings, setting

INPUTS = ("t1", "t1gd", "flair", "pet", "wm", "gm", "csf", "recurrence")
"""The inputs a Case can hold, by name (the CLI's flags without ``--``)."""

__all__ = ["Case", "INPUTS", "MethodSettings", "OUTPUT_NAMES", "Personalization", "Progress", "setting"]

_LAZY = {"Case": ".case", "Personalization": ".result", "OUTPUT_NAMES": ".result", "Progress": ".progress"}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
