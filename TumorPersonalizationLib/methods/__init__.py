"""The registry of personalization methods: one module per method, all with the same shape.

A method module defines

- ``NAME``, ``LABEL``, ``SUMMARY``: its registered name, a short label and one line on what it does;
- ``REQUIRED_INPUTS``, ``OPTIONAL_INPUTS``: which of a :class:`~..personalization.Case`'s inputs it reads;
- ``VARIANTS``: presets offered by the Slicer panel, ``(key, label, {setting: value})``;
- ``SAMPLES_POSTERIOR``: whether its results carry posterior samples and a probabilistic CTV;
- ``Settings``: a :class:`~..personalization.MethodSettings` dataclass, every default and check in one place;
- ``personalize(case, settings, progress=None, cancel=None) -> Personalization``.

Method modules import their heavy dependencies (torch, the sampler) inside ``personalize``, so listing the
methods (``python -m TumorPersonalizationLib methods --json``) stays fast.
"""
from __future__ import annotations

import importlib
from types import ModuleType

from ..errors import InputError

_MODULES = {"lmi": "lmi", "tmcmc": "tmcmc", "npe": "npe"}
"""Registered names -> module names in this package, in the order they are offered."""


def names() -> tuple:
    """The registered methods' names."""
    return tuple(_MODULES)


def get(name: str) -> ModuleType:
    """The module of method ``name``; InputError for an unknown name."""
    if name not in _MODULES:
        raise InputError(f"unknown method {name!r}; choose one of {', '.join(_MODULES)}")
    return importlib.import_module(f".{_MODULES[name]}", __name__)


def describe(name: str) -> dict:
    """Method ``name`` as JSON: label, summary, inputs, Slicer presets and settings (defaults, units, help)."""
    module = get(name)
    return {"name": module.NAME, "label": module.LABEL, "summary": module.SUMMARY,
            "inputs": {"required": list(module.REQUIRED_INPUTS), "optional": list(module.OPTIONAL_INPUTS)},
            "samples_posterior": module.SAMPLES_POSTERIOR,
            "variants": [{"key": key, "label": label, "settings": values} for key, label, values in module.VARIANTS],
            "settings": module.Settings.describe()}


def available() -> list[dict]:
    """Every registered method as :func:`describe` gives it."""
    return [describe(name) for name in _MODULES]


def make_settings(name: str, settings=None, **values):
    """Method ``name``'s Settings: ``settings`` (an instance, or a mapping of field names) with ``values`` on top.

    Every check of the Settings dataclass runs; unknown names are refused (InputError).
    """
    cls = get(name).Settings
    if settings is None:
        base = {}
    elif isinstance(settings, cls):
        base = {k: getattr(settings, k) for k in settings.__dataclass_fields__}
    elif isinstance(settings, dict):
        base = dict(settings)
    else:
        raise InputError(f"settings for {name} must be a {name} Settings object or a dict, got {type(settings)}")
    return cls.from_mapping({**base, **values}, source=f"{name} settings")


def check_inputs(name: str, given, *, as_flags: bool = False) -> None:
    """InputError when the inputs ``given`` (names of a Case's inputs) lack one method ``name`` needs or hold one it
    would ignore; ``as_flags``: name them as the command line does (``--t1``, ``--method lmi``)."""
    module = get(name)
    show = (lambda key: f"--{key}") if as_flags else (lambda key: key)
    method = f"--method {name}" if as_flags else f"method {name}"
    reads = module.REQUIRED_INPUTS + module.OPTIONAL_INPUTS
    for key in given:
        if key not in reads:
            raise InputError(f"{show(key)} is not used by {method} (it reads {', '.join(map(show, reads))})")
    for key in module.REQUIRED_INPUTS:
        if key not in given:
            raise InputError(f"{method} needs {show(key)}{_WHY_NEEDED.get(key, '')}")


_WHY_NEEDED = {
    "flair": ": the FLAIR (T2) abnormality segmentation, tumor core included. A T1Gd-only case cannot be "
             "personalized: the visible extent of infiltration is what the growth model is fitted to, and the "
             "enhancing core alone cannot tell a slow diffuse tumor from a fast compact one",
    "t1gd": ": the enhancing tumor core segmentation (T1 post-contrast), on the grid of the FLAIR segmentation",
    "t1": ": the patient's T1 or T1Gd image, whole head or skull-stripped (registered to the atlas)",
}
"""Why each input is needed, for the message when it is missing."""


def personalize(case, method: str = "lmi", *, settings=None, progress=None, cancel=None, **values):
    """Personalize the growth model to ``case`` with ``method``; returns a
    :class:`~..personalization.Personalization`.

    Parameters
    ----------
    case : Case
    method : str
        A registered name (:func:`names`): "lmi" (Learn-Morph-Infer), "tmcmc" (Bayesian calibration) or "npe"
        (neural posterior estimation).
    settings : Settings or dict, optional
        The method's settings; keyword arguments (``refine=True``) override single fields.
    progress : callable(fraction, message) or None
    cancel : threading.Event or None
        Set it to stop the method at its next progress report (raises Cancelled).
    """
    module = get(method)
    chosen = make_settings(method, settings, **values)
    check_inputs(method, case.given())
    return module.personalize(case, chosen, progress=progress, cancel=cancel)
