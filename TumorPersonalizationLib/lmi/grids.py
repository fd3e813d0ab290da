"""The grids Learn-Morph-Infer works on, the lesion's masks on each, and seeds carried between them.

- the network grid: 64^3 at 3 mm over the atlas brain (:func:`.config.network_geometry`), where the estimators read
  the lesion and the refinement's coarse stage runs;
- the atlas grid: the bundled atlas' own 1.5 mm grid, where the density is simulated by default;
- the patient grid: the patient's own tissue maps at :data:`PATIENT_FIT_SPACING_MM` over the T1's field of view,
  where the fine refinement and the simulation run when those maps are given.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from ..errors import InputError
from ..imaging.io import resample_smooth
from ..imaging.tissue import TissueMaps, regrid_tissue
from ..imaging.volume import Geometry, Volume
from ..models.fisher_kolmogorov import Domain, nearest_voxel
from ..models.mass_effect import AtGamma, MassEffectDomain
from .config import network_tissue
from .labels import encode_labels
from .lesion_descriptors import GridLesion

PATIENT_FIT_SPACING_MM = 1.5
"""Grid of the patient's own tissue maps for the fine refinement and the final simulation (the atlas' resolution:
the same cost per simulation as in the atlas)."""


MASS_EFFECT_NEEDS_CSF = ("the mass-effect model needs a CSF map: give --csf with --wm and --gm, or leave all three "
                         "out so the T1 is segmented")


def growth_domain(wm: np.ndarray, gm: np.ndarray, csf: np.ndarray | None, spacing_mm, gamma_pa: float | None = None):
    """The solver domain of the fits and the simulation: Fisher-Kolmogorov (``gamma_pa`` None), or the
    mass-effect model at ``gamma_pa`` (Pa; :class:`~..models.mass_effect.AtGamma`, which needs ``csf``)."""
    if gamma_pa is None:
        return Domain(wm, gm, spacing_mm)
    if csf is None:
        raise InputError(MASS_EFFECT_NEEDS_CSF)
    return AtGamma(MassEffectDomain(wm, gm, csf, spacing_mm), gamma_pa)


def mask_on_grid(mask: Volume, geometry) -> np.ndarray:
    """A 0/1 mask -> bool on another grid of the same space (e.g. the atlas' to the 3 mm network grid):
    anti-aliased fraction >= 0.5."""
    return resample_smooth(mask.like(mask.array.astype(np.float32)), geometry).array >= 0.5


def lesion_on_grid(t1gd: Volume, flair: Volume, geometry) -> tuple:
    """T1Gd and FLAIR 0/1 masks -> (t1gd, flair) bool on ``geometry``, FLAIR containing T1Gd (resampling can break
    that at the edges)."""
    t1gd_on = mask_on_grid(t1gd, geometry)
    return t1gd_on, mask_on_grid(flair, geometry) | t1gd_on


def lesion_on_network_grid(t1gd: Volume, flair: Volume, config: dict) -> GridLesion:
    """T1Gd and FLAIR 0/1 masks in the atlas' space (e.g. on the atlas grid) -> the lesion on the network grid
    (:func:`lesion_on_grid`), with the atlas' tissue there: what the estimators read."""
    tissue = network_tissue(config)
    labels = encode_labels(*lesion_on_grid(t1gd, flair, tissue.wm.geometry))
    return network_lesion(labels, config)


def network_lesion(labels: np.ndarray, config: dict) -> GridLesion:
    """(ni, nj, nk) uint8 labels on the network grid -> the lesion there, with the atlas' tissue on that grid."""
    tissue = network_tissue(config)
    return GridLesion(labels, tissue.wm.array, tissue.gm.array, float(config["grid"]["spacing_mm"]),
                      tissue.wm.geometry)


def nearest_domain_voxel(domain_mask: np.ndarray, index) -> np.ndarray:
    """The seed itself if its voxel lies in the WM/GM domain, else the centre of the nearest domain voxel."""
    nearest = nearest_voxel(index, domain_mask.shape)
    if domain_mask[nearest]:
        return np.asarray(index, dtype=float)
    _, (i, j, k) = ndimage.distance_transform_edt(~domain_mask, return_indices=True)
    return np.array([i[nearest], j[nearest], k[nearest]], dtype=float)


@dataclass(frozen=True, eq=False)  # eq=False: arrays do not compare as one bool
class FitGrid:
    """One grid of the refinement and the simulation: the solver domain, the observed masks on it, and its
    geometry (to carry the seed from one grid to the other through RAS millimetres).

    Attributes
    ----------
    domain : Domain or AtGamma
        Fisher-Kolmogorov, or the mass-effect model at one gamma (:func:`growth_domain`).
    geometry : Geometry
        Of the domain's arrays.
    t1gd, flair : (ni, nj, nk) bool or None
        Observed masks on that grid (None where only the grid is needed, e.g. to carry a seed).
    point_from_atlas : callable or None
        For a grid in the patient's space: maps an atlas point (RAS mm, (3,)) to the patient's
        (``Registration.atlas_point_to_patient``); seeds coming from an atlas grid go through it. None: this grid
        lies in the atlas' space.
    """

    domain: Domain | AtGamma
    geometry: Geometry
    t1gd: np.ndarray | None
    flair: np.ndarray | None
    point_from_atlas: Callable | None = None

    @property
    def in_patient_space(self) -> bool:
        return self.point_from_atlas is not None

    def seed_from(self, other: "FitGrid", seed_index) -> np.ndarray:
        """A continuous index of ``other``'s grid (in the atlas' space, or in this grid's own) -> this grid's index
        of the same point, moved into the domain."""
        point = other.geometry.index_to_ras(seed_index)
        if self.point_from_atlas is not None and other.point_from_atlas is None:
            point = self.point_from_atlas(point)
        return nearest_domain_voxel(self.domain.inside, self.geometry.ras_to_index(point))


def atlas_fit_grid(atlas, t1gd: np.ndarray | None = None, flair: np.ndarray | None = None,
                   gamma_pa: float | None = None) -> FitGrid:
    """The atlas' own grid (``atlas``: :func:`~..imaging.atlas.load_atlas`) with its WM / GM domain and the masks
    given on it (``gamma_pa``: :func:`growth_domain`)."""
    domain = growth_domain(atlas.wm.array, atlas.gm.array, atlas.csf.array, atlas.wm.geometry.spacing_mm, gamma_pa)
    return FitGrid(domain, atlas.wm.geometry, t1gd, flair)


def patient_fit_grid(tissue: TissueMaps, t1gd: Volume, flair: Volume, point_from_atlas: Callable,
                     gamma_pa: float | None = None) -> FitGrid:
    """The patient's own WM / GM and masks on a :data:`PATIENT_FIT_SPACING_MM` grid over their field of view:
    where the refinement's fine stage and the final simulation run when the patient's tissue maps are given.
    Seeds reach it from the atlas through ``point_from_atlas`` (``Registration.atlas_point_to_patient``);
    ``gamma_pa``: :func:`growth_domain`."""
    fit_tissue = regrid_tissue(tissue, PATIENT_FIT_SPACING_MM)
    geometry = fit_tissue.geometry
    csf = None if fit_tissue.csf is None else fit_tissue.csf.array
    domain = growth_domain(fit_tissue.wm.array, fit_tissue.gm.array, csf, geometry.spacing_mm, gamma_pa)
    t1gd_fit, flair_fit = lesion_on_grid(t1gd, flair, geometry)
    if not (t1gd_fit & domain.inside).any():
        raise InputError("the T1Gd lesion lies outside the WM/GM of the given tissue maps (WM + GM < 0.1 "
                         "everywhere in it): are the maps the patient's, on the T1's grid?")
    return FitGrid(domain, geometry, t1gd_fit, flair_fit, point_from_atlas=point_from_atlas)
