"""Synthetic cohorts on disk, in each layout :mod:`.layouts` reads (for tests, benchmarks and trying the command).

A patient is a :class:`~..synthetic.SyntheticCase` grown in given tissue maps; :func:`write_patient` stores it as
our files, BraTS files (a ``seg`` label map) or the PREDICT-GBM container layout, and :func:`make_cohort` grows
and writes several with different parameters and seeds.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..imaging.io import write_volume
from ..imaging.tissue import TissueMaps
from ..synthetic import SyntheticCase, synthetic_case
from .layouts import PREDICT_GBM_PREFIX

NECROSIS, EDEMA = 1, 2
ENHANCING = {"brats2021": 4, "brats2023": 3}
"""The enhancing label of the two BraTS labelings (PREDICT-GBM uses 2023's)."""


def label_map(case: SyntheticCase, labeling: str = "brats2021") -> np.ndarray:
    """The case's masks as one BraTS label map (uint8): enhancing where T1Gd, edema elsewhere in FLAIR (a synthetic
    tumor has no necrosis)."""
    seg = np.where(case.flair.array > 0, EDEMA, 0)
    seg[case.t1gd.array > 0] = ENHANCING[labeling]
    return seg.astype(np.uint8)


def write_patient(root, name: str, tissue: TissueMaps, case: SyntheticCase, layout: str = "ours", *,
                  labeling: str = "brats2021", recurrence=None) -> Path:
    """Write one patient under ``root`` in ``layout`` ("ours", "brats" or "predict-gbm"); returns its folder.

    ``recurrence``: a boolean array on the tissue grid written as the follow-up segmentation (ours and BraTS).
    PREDICT-GBM folders are named ``Patient-<name>`` with files ``<name>-<input>.nii.gz``.
    """
    root = Path(root)
    like = tissue.wm.like
    tissues = {"wm": tissue.wm, "gm": tissue.gm, "csf": tissue.csf}
    if layout == "predict-gbm":
        folder = root / f"{PREDICT_GBM_PREFIX}{name}"
        files = {**tissues, "tumorseg": like(label_map(case, "brats2023"))}
        if case.pet is not None:
            files["pet"] = case.pet
        for role, volume in files.items():
            write_volume(volume, folder / f"{name}-{role}.nii.gz")
        return folder
    folder = root / name
    files = dict(tissues)
    if tissue.background is not None:
        files["t1"] = tissue.background
    if case.pet is not None:
        files["pet"] = case.pet
    if recurrence is not None:
        files["recurrence"] = like(np.asarray(recurrence, dtype=np.uint8))
    if layout == "ours":
        files.update(t1gd=case.t1gd, flair=case.flair)
        for role, volume in files.items():
            write_volume(volume, folder / f"{role}.nii.gz")
    elif layout == "brats":
        files["seg"] = like(label_map(case, labeling))
        for role, volume in files.items():
            write_volume(volume, folder / f"{name}_{role}.nii.gz")
    else:
        raise ValueError(f"unknown layout {layout!r}")
    return folder


def make_cohort(root, tissue: TissueMaps, n: int, *, layout: str = "ours", days=(150.0, 200.0), rng_seed: int = 0,
                prefix: str = "P") -> list[Path]:
    """Grow and write ``n`` synthetic patients (``P000``, ``P001``, ...) with Dw in 0.2-0.4 mm^2/day, rho in
    0.045-0.06 /day, T in ``days`` and the seed drawn at random; returns their folders.

    The seed is drawn among white-matter voxels (WM >= 0.9) at least a fifth of the grid away from its border;
    a draw whose T1Gd mask is empty (too small a tumor for the grid) is drawn again.
    """
    rng = np.random.default_rng(rng_seed)
    shape = np.asarray(tissue.wm.shape)
    index = np.indices(tissue.wm.shape).reshape(3, -1).T
    inner = np.all((index >= shape / 5) & (index < shape * 4 / 5), axis=1)
    candidates = index[inner & (tissue.wm.array.reshape(-1) >= 0.9)]
    folders = []
    for i in range(n):
        for _ in range(20):
            seed_ras = tuple(float(v) for v in tissue.geometry.index_to_ras(candidates[rng.integers(len(candidates))]))
            case = synthetic_case(tissue, float(rng.uniform(0.2, 0.4)), float(rng.uniform(0.045, 0.06)),
                                  float(rng.uniform(*days)), seed_ras, rng_seed=int(rng.integers(1 << 30)))
            if case.t1gd.array.any():
                break
        else:
            raise ValueError("no visible synthetic tumor in 20 draws: the tissue grid is too coarse for these ranges")
        folders.append(write_patient(root, f"{prefix}{i:03d}", tissue, case, layout))
    return folders
