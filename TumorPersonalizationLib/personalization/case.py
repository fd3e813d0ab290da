"""A patient's inputs, checked once: what every personalization method reads.

A :class:`Case` holds Volumes (array + geometry, RAS mm) on one grid: the T1Gd and FLAIR segmentations, and
optionally the T1 image, a FET-PET uptake image, the patient's WM / GM / CSF probability maps and a follow-up
(recurrence) segmentation. Making one checks everything a method would otherwise find late: one grid for all
inputs, binary and non-empty segmentations, FLAIR containing the T1Gd lesion, finite values, probabilities in
[0, 1]. Every error names the input (``names``: the CLI passes its flags and file names).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..imaging.io import read_volume
from ..imaging.tissue import TissueMaps, tissue_maps_from_volumes
from ..imaging.volume import Geometry, Volume, require_same_grid
from ..inference.likelihood import Observation
from ..validation import binary
from . import INPUTS


@dataclass(frozen=True)
class Case:
    """One patient's validated inputs on one grid (make it with :meth:`from_volumes` or :meth:`from_files`).

    Attributes
    ----------
    t1gd, flair : Volume
        Boolean segmentations; ``flair`` is the union of the two (FLAIR shows the whole visible lesion).
    t1 : Volume or None
        The T1 (or T1Gd) image, float32: Learn-Morph-Infer registers it to the atlas; figures are drawn on it.
    pet : Volume or None
        FET-PET divided by its maximum inside the lesion (the lesion peaks at 1), float32 >= 0.
    wm, gm, csf : Volume or None
        The patient's tissue probabilities, float32 in [0, 1] (WM and GM together or neither; CSF needs both).
    recurrence : Volume or None
        Follow-up segmentation (boolean): the plans' recurrence coverage is reported.
    names : dict
        How messages name each input ("t1gd" -> "--t1gd path/t1gd.nii.gz").
    paths : dict
        The files the inputs were read from ("t1gd" -> Path), when made by :meth:`from_files`: outputs never
        overwrite them.
    """

    t1gd: Volume
    flair: Volume
    t1: Volume | None = None
    pet: Volume | None = None
    wm: Volume | None = None
    gm: Volume | None = None
    csf: Volume | None = None
    recurrence: Volume | None = None
    names: dict = field(default_factory=dict)
    paths: dict = field(default_factory=dict)

    @property
    def geometry(self) -> Geometry:
        """The grid every input of the case lies on."""
        return self.t1gd.geometry

    @property
    def tissue(self) -> TissueMaps | None:
        """The patient's tissue maps (with the T1 as background), or None when none were given."""
        if self.wm is None:
            return None
        return TissueMaps(self.wm, self.gm, self.csf, self.t1, source=f"{self.name('wm')}, {self.name('gm')}")

    def name(self, key: str) -> str:
        """How messages name input ``key``."""
        return self.names.get(key, key)

    def given(self) -> tuple:
        """The names of the inputs this case holds."""
        return tuple(k for k in INPUTS if getattr(self, k) is not None)

    @classmethod
    def from_volumes(cls, t1gd: Volume, flair: Volume, *, t1: Volume | None = None, pet: Volume | None = None,
                     wm: Volume | None = None, gm: Volume | None = None, csf: Volume | None = None,
                     recurrence: Volume | None = None, names: dict | None = None,
                     paths: dict | None = None) -> "Case":
        """Check the inputs (see the module docstring) and return the case; InputError names the culprit."""
        names = {key: key for key in INPUTS} | (names or {})
        reference, reference_name = (t1, names["t1"]) if t1 is not None else (t1gd, names["t1gd"])
        for key, volume in (("t1", t1), ("wm", wm), ("gm", gm), ("csf", csf), ("recurrence", recurrence)):
            if volume is not None:
                require_same_grid(reference, reference_name, volume, names[key])
        if t1 is not None:
            t1 = _finite_image(t1, names["t1"])
        lesion = Observation.from_volumes(t1gd, flair, pet, reference.geometry,
                                          names=(names["t1gd"], names["flair"], names["pet"]),
                                          grid_name=reference_name)
        tissue = _tissue(wm, gm, csf, names)
        if recurrence is not None:
            recurrence = recurrence.like(binary(recurrence.array, names["recurrence"], "a binary segmentation"))
        return cls(lesion.t1gd, lesion.flair, t1, lesion.pet, *tissue, recurrence, names, dict(paths or {}))

    @classmethod
    def from_files(cls, t1gd, flair, *, t1=None, pet=None, wm=None, gm=None, csf=None, recurrence=None,
                   names: dict | None = None) -> "Case":
        """Read NIfTI / NRRD files (paths) and check them as :meth:`from_volumes` does.

        ``names`` overrides how messages name each input (default: ``"t1gd path"``).
        """
        paths = {"t1": t1, "t1gd": t1gd, "flair": flair, "pet": pet, "wm": wm, "gm": gm, "csf": csf,
                 "recurrence": recurrence}
        names = {key: f"{key} {path}" for key, path in paths.items() if path is not None} | (names or {})
        volumes = {key: read_volume(path, names[key]) if path is not None else None for key, path in paths.items()}
        return cls.from_volumes(**volumes, names=names,
                                paths={key: Path(path) for key, path in paths.items() if path is not None})


def _finite_image(image: Volume, name: str) -> Volume:
    values = np.asarray(image.array)
    if not (np.issubdtype(values.dtype, np.number) or values.dtype == bool):
        raise InputError(f"{name}: expected an image of numbers, got dtype {values.dtype}")
    values = values.astype(np.float32)
    if not np.all(np.isfinite(values)):
        raise InputError(f"{name}: the image contains NaN or infinite values")
    return image.like(values)


def _tissue(wm, gm, csf, names) -> tuple:
    """(wm, gm, csf) checked, or (None, None, None)."""
    if wm is None and gm is None:
        if csf is not None:
            raise InputError(f"{names['csf']} was given without WM and GM maps; give all tissue maps or none")
        return None, None, None
    if wm is None or gm is None:
        raise InputError("give both the WM and the GM map (or neither)")
    maps = tissue_maps_from_volumes(wm, gm, csf, names=names)
    return maps.wm, maps.gm, maps.csf
