"""What the network sees: a lesion-centred crop of the summed T1Gd + FLAIR label map, with the anatomy.

The thesis (ch. 6) sums the thresholded T1Gd and FLAIR masks into one label map (0 outside, 1 FLAIR only,
2 T1Gd); here it is divided by 2 so it lies in [0, 1]. The crop is ``crop_size``^3 voxels of ``crop_spacing_mm``
centred on the T1Gd centre of mass, read with the surrogate's cropper
(:func:`TumorPersonalizationLib.surrogate.crop.sample_crop`: aligned with the grid's axes, low-passed where it is
coarser than the grid, zero outside the grid), so a coarse crop sees partial-volume labels, not aliasing.

Channels, in order: the label map, with FET-PET the PET image (normalised as
:class:`~TumorPersonalizationLib.inference.likelihood.Observation` normalises the patient's), then WM, GM, CSF.
Simulations return only the channels that change (label map, PET); the anatomy channels are the same for every
simulation of one case and are added once (:func:`assemble`).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..surrogate.crop import sample_crop

TISSUE_CHANNELS = ("wm", "gm", "csf")


def variable_channels(pet: bool) -> tuple:
    """Names of the channels a simulation produces."""
    return ("label", "pet") if pet else ("label",)


def channel_names(pet: bool) -> tuple:
    """Names of all channels of an observation, in order."""
    return variable_channels(pet) + TISSUE_CHANNELS


def label_map(t1gd: np.ndarray, flair: np.ndarray) -> np.ndarray:
    """(T1Gd + (FLAIR or T1Gd)) / 2 as float32: 0 healthy, 0.5 FLAIR only, 1 T1Gd; masks may be fractions."""
    t1gd = np.asarray(t1gd, dtype=np.float32)
    flair = np.maximum(np.asarray(flair, dtype=np.float32), t1gd)  # FLAIR shows the whole visible lesion
    return np.float32(0.5) * (t1gd + flair)


def thresholded_label_map(density: np.ndarray, uc_t1gd: float, uc_flair: float) -> np.ndarray:
    """The label map of a simulated density: visible in T1Gd where u >= u_c^T1Gd, in FLAIR where u >= u_c^FLAIR."""
    return label_map(density >= uc_t1gd, density >= uc_flair)


@dataclass(frozen=True)
class CropFrame:
    """The observation crop on one grid.

    Attributes
    ----------
    centre_index : tuple of 3 float
        Crop centre, continuous voxel index of the grid.
    size : int
        Crop edge in voxels.
    grid_spacing_mm : tuple of 3 float
        The grid's voxel size.
    crop_spacing_mm : float
        The crop's voxel size (isotropic).
    """

    centre_index: tuple
    size: int
    grid_spacing_mm: tuple
    crop_spacing_mm: float

    def crop(self, maps: np.ndarray) -> np.ndarray:
        """(..., ni, nj, nk) maps on the grid -> (..., size, size, size) float32 crops."""
        return sample_crop(maps, self.centre_index, self.size, self.grid_spacing_mm, self.crop_spacing_mm)


def assemble(variable: np.ndarray, tissue_crop: np.ndarray, size: int) -> np.ndarray:
    """Full observations from simulated channels and the case's anatomy crop.

    Parameters
    ----------
    variable : (n, Cv * size^3) float32
        Simulated channels, flattened (:class:`~.simulator.NPESimulator`'s output).
    tissue_crop : (3, size, size, size) float32
        WM, GM, CSF crops of the case.
    size : int

    Returns
    -------
    (n, Cv + 3, size, size, size) float32
    """
    n = len(variable)
    grids = np.asarray(variable, dtype=np.float32).reshape(n, -1, size, size, size)
    tissue = np.broadcast_to(np.asarray(tissue_crop, dtype=np.float32), (n,) + tissue_crop.shape)
    return np.concatenate([grids, tissue], axis=1)
