"""Learn-Morph-Infer for one patient, stage by stage (thesis ch. 7); each stage is one function with one typed
result, so that it can be run, tested and reused alone.

1. :func:`register`: the patient T1 to the atlas (affine + demons, tumor masked; :mod:`..registration`).
2. :func:`warp_to_atlas`: T1Gd and FLAIR to the atlas grid, then onto the network grid (anti-aliased, >= 0.5).
3. :func:`estimate`: mu1, mu2 and the seed from the lesion on the network grid: the shape and seed regressors by
   default (:mod:`.shape_regressor`: on the test set, median error of mu1 11.5 % instead of the inverse
   network's 19.3 %, of the seed ~2 mm instead of 3.6 mm; README), or the inverse network.
4. :func:`refine` (optional): Nelder-Mead on the network grid, then on the fine grid (:mod:`.refinement`).
5. :func:`simulate`: (mu1, mu2) -> (Dw, rho, T) at the fixed front speed; one run at the fine grid's resolution.
6. :func:`warp_back`: the density (linear) and the atlas tissue maps back to the patient grid.

With the mass-effect model (``gamma_pa`` given to :func:`fit_grids`) the fits and the simulation run that model
at the given gamma, in the patient's tissue only; :func:`warp_back` then also returns the displacement field and
the deformed tissue maps on the T1's grid.

The fine grid (:func:`fit_grids`) is the atlas' own 1.5 mm grid, or, with the patient's own tissue maps, those maps
on a 1.5 mm grid over the patient's field of view (the seed carried there through the registration): the density
then follows the patient's anatomy and is resampled to the T1's grid (README: across two anatomies, simulating in
the atlas and warping back caps Dice at ~0.8 even with the true parameters). :mod:`.report` turns the results into
the parameters and the report; ``methods/lmi.py`` composes the stages.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import InputError
from ..forward import DisplacementField, mass_effect_output
from ..imaging.atlas import load_atlas
from ..imaging.io import resample, resample_smooth
from ..imaging.tissue import TissueMaps
from ..imaging.volume import Volume
from ..models.mass_effect import AtGamma, MassEffectResult
from ..registration import Registration, RegistrationSettings, register_to_atlas
from .config import mu_bounds, network_domain, network_tissue
from .estimators import predict_labels
from .grids import (FitGrid, atlas_fit_grid, growth_domain, lesion_on_network_grid, nearest_domain_voxel,
                    patient_fit_grid)
from .inputs import crop_labels
from .lesion_descriptors import GridLesion
from .models import Models
from .parameters import simulate_time_independent
from .refinement import SHARP, SMOOTH, Fit, Refinement, mask_fit, refine_coarse_to_fine


def register(t1: Volume, tumor: Volume, *, skull_stripped: bool | None = None, t1_name: str = "T1",
             settings: RegistrationSettings = RegistrationSettings(), progress=None) -> Registration:
    """Stage 1: the T1 registered to the atlas with the ``tumor`` mask (on its grid) left out of the similarity;
    ``skull_stripped`` None: detected. InputError names the T1 (``t1_name``)."""
    try:
        return register_to_atlas(t1, tumor_mask=tumor, skull_stripped=skull_stripped, settings=settings,
                                 progress=progress)
    except InputError as error:
        raise InputError(f"{t1_name}: {error}") from error


@dataclass(frozen=True, eq=False)
class AtlasLesion:
    """Stage 2's result: the segmentations warped to the atlas grid (nearest neighbour) and the lesion on the
    network grid, with the atlas' tissue there (what the estimators read)."""

    t1gd: Volume
    flair: Volume
    network: GridLesion


def warp_to_atlas(registration: Registration, t1gd: Volume, flair: Volume, config: dict) -> AtlasLesion:
    """Stage 2: T1Gd and FLAIR (on the patient's grid) to the atlas, then onto the network grid."""
    t1gd_atlas = registration.to_atlas(t1gd, "nearest")
    flair_atlas = registration.to_atlas(flair, "nearest")
    network = lesion_on_network_grid(t1gd_atlas, flair_atlas, config)
    if not (network.labels == 2).any():
        raise InputError("the T1Gd lesion vanished when warped to the atlas (is it smaller than the 3 mm grid, or "
                         "outside the registered brain?)")
    return AtlasLesion(t1gd_atlas, flair_atlas, network)


@dataclass(frozen=True)
class Estimate:
    """Stage 3's result: mu1 (mm) and mu2 (clipped to the trained range), the seed (network-grid index, moved
    into the WM/GM domain), where each came from, and notes for the report."""

    mu1: float
    mu2: float
    seed_index: tuple
    mu_from: str
    seed_from: str
    notes: tuple = ()

    def as_dict(self) -> dict:
        """The report's ``network_estimate``."""
        return {"mu1": self.mu1, "mu2": self.mu2, "seed_index": list(self.seed_index), "mu_from": self.mu_from,
                "seed_from": self.seed_from}


def _lesion_notes(labels: np.ndarray, lesion: GridLesion, config: dict) -> list:
    """Notes when the lesion is wider than the network's input cube or outside the trained sizes."""
    notes, crop_size = [], int(config["input"]["crop_size"])
    if np.count_nonzero(crop_labels(labels[None], crop_size)[0]) < np.count_nonzero(labels):
        notes.append(f"the lesion extends beyond the network's {crop_size}^3 input cube around the enhancing core; "
                     f"the network saw only the part inside it")
    voxel_ml = float(np.prod(lesion.geometry.spacing_mm)) / 1000.0
    t1gd_ml, flair_ml = (labels == 2).sum() * voxel_ml, (labels > 0).sum() * voxel_ml
    acceptance = config["acceptance"]
    if t1gd_ml < acceptance["t1gd_min_ml"] or not acceptance["flair_min_ml"] <= flair_ml <= acceptance["flair_max_ml"]:
        notes.append(f"lesion in atlas space (T1Gd {t1gd_ml:.1f} mL, FLAIR {flair_ml:.1f} mL) is outside the sizes "
                     f"the network was trained on (T1Gd >= {acceptance['t1gd_min_ml']:g} mL, FLAIR "
                     f"{acceptance['flair_min_ml']:g}-{acceptance['flair_max_ml']:g} mL): treat the estimate with care")
    return notes


def estimate(models: Models, lesion: GridLesion) -> Estimate:
    """Stage 3: mu1, mu2 and the seed of the lesion on the network grid (:func:`.grids.network_lesion`), from the
    shape and seed regressors where ``models`` holds them, else from the inverse network."""
    config = models.config
    tissue = network_tissue(config)
    wm_gm = np.stack([tissue.wm.array, tissue.gm.array])
    natural = predict_labels(models.network, config, lesion.labels[None], wm_gm, shape_model=models.shape,
                             seed_model=models.seed)[0]
    mu_from = "shape regressor" if models.shape is not None else "inverse network"
    seed_from = "seed regressor" if models.seed is not None else "inverse network"
    mu, notes = [float(natural[0]), float(natural[1])], []
    for k, (key, (low, high)) in enumerate(zip(("mu1", "mu2"), mu_bounds(config))):
        if not low <= mu[k] <= high:
            notes.append(f"the {mu_from}'s {key} = {mu[k]:.3g} lay outside the trained range [{low:g}, {high:g}] "
                         f"and was clipped to it")
            mu[k] = float(np.clip(mu[k], low, high))
    notes += _lesion_notes(lesion.labels, lesion, config)
    seed = nearest_domain_voxel(network_domain(config).inside, natural[2:5].tolist())
    return Estimate(mu[0], mu[1], tuple(seed.tolist()), mu_from, seed_from, tuple(notes))


@dataclass(frozen=True, eq=False)
class FitGrids:
    """Where the refinement and the simulation run: the network grid (coarse) and the fine grid (the atlas', or
    the patient's own tissue maps'), each with the lesion's masks on it."""

    network: FitGrid
    fine: FitGrid


def fit_grids(lesion: AtlasLesion, config: dict, registration: Registration, tissue: TissueMaps | None = None,
              t1gd: Volume | None = None, flair: Volume | None = None, gamma_pa: float | None = None) -> FitGrids:
    """The grids for :func:`refine` and :func:`simulate`; with the patient's ``tissue`` (on the grid of the T1,
    like ``t1gd`` and ``flair``) the fine grid is theirs (:func:`.grids.patient_fit_grid`). ``gamma_pa``: the
    mass-effect model at that gamma (Pa) on both grids, else Fisher-Kolmogorov."""
    labels = lesion.network.labels
    if gamma_pa is None:
        domain = network_domain(config)
    else:
        net = network_tissue(config)
        domain = growth_domain(net.wm.array, net.gm.array, net.csf.array, net.wm.geometry.spacing_mm, gamma_pa)
    network = FitGrid(domain, lesion.network.geometry, labels == 2, labels > 0)
    if tissue is not None:
        fine = patient_fit_grid(tissue, t1gd, flair, registration.atlas_point_to_patient, gamma_pa)
    elif gamma_pa is not None:
        raise InputError("the mass-effect model runs in the patient's tissue: not with --anatomy atlas or --fast")
    else:
        t1gd_atlas = np.asarray(lesion.t1gd.array) > 0
        fine = atlas_fit_grid(load_atlas(), t1gd_atlas, t1gd_atlas | (np.asarray(lesion.flair.array) > 0))
    return FitGrids(network, fine)


def refine(estimate: Estimate, grids: FitGrids, config: dict, *, evaluations: int, fine_evaluations: int,
           polish_evaluations: int, progress=None) -> Refinement:
    """Stage 4 (optional): the estimate refined by fitting the masks, on the network grid, then on the fine grid,
    then polished there (:func:`.refinement.refine_coarse_to_fine`; each budget counts simulations, 0 skips the
    fine stage or the polish), within the trained range of mu1, mu2."""
    return refine_coarse_to_fine(grids.network, grids.fine, estimate.mu1, estimate.mu2, estimate.seed_index,
                                 evaluations=evaluations, fine_evaluations=fine_evaluations,
                                 polish_evaluations=polish_evaluations, mu_bounds=mu_bounds(config),
                                 progress=progress)


@dataclass(frozen=True, eq=False)
class Simulated:
    """Stage 5's result: the density of (mu1, mu2) from ``seed_index`` on the fine grid, and how well it fits the
    masks there, or on the network grid (``fit_grid``: "patient", "atlas" or "network"), with the objective the
    estimate was fitted with (``objective_kind``: "sharp" after the polish, else "smooth"); with the mass-effect
    model also its whole run (``mass_effect``: displacement, deformed tissue, solver work) and its ``gamma_pa``."""

    mu1: float
    mu2: float
    density: np.ndarray
    seed_index: np.ndarray
    fit: Fit
    fit_grid: str
    objective_kind: str
    mass_effect: MassEffectResult | None = None
    gamma_pa: float | None = None


def simulate(grids: FitGrids, estimate: Estimate, refinement: Refinement | None = None,
             progress=None) -> Simulated:
    """Stage 5: simulate the refined parameters (else the estimate's) on the fine grid. The fit is judged where and
    how the parameters were fitted: on the fine grid when the refinement ended there or the grid is the patient's,
    with the sharp objective after a polish; else on the network grid."""
    fine = grids.fine
    if refinement is None:
        mu1, mu2, seed, on_fine, sharp = estimate.mu1, estimate.mu2, estimate.seed_index, False, False
    else:
        mu1, mu2, seed = refinement.mu1, refinement.mu2, refinement.seed_index
        on_fine, sharp = refinement.grid == "fine", refinement.polish is not None
    seed_final = fine.seed_from(fine if on_fine else grids.network, seed)  # the seed as simulated
    density = simulate_time_independent(fine.domain, mu1, mu2, seed_final, progress=progress)
    if fine.in_patient_space or on_fine:
        fit = mask_fit(density, fine.t1gd, fine.flair, fine.domain.inside, objective=SHARP if sharp else SMOOTH)
        fit_grid = "patient" if fine.in_patient_space else "atlas"
    else:
        net = grids.network
        on_network = resample_smooth(Volume(density, fine.geometry), net.geometry).array
        fit, fit_grid = mask_fit(on_network, net.t1gd, net.flair, net.domain.inside), "network"
    if isinstance(fine.domain, AtGamma):  # its last run is the one just made
        return Simulated(mu1, mu2, density, seed_final, fit, fit_grid, "sharp" if sharp else "smooth",
                         fine.domain.last, fine.domain.gamma_pa)
    return Simulated(mu1, mu2, density, seed_final, fit, fit_grid, "sharp" if sharp else "smooth")


@dataclass(frozen=True, eq=False)
class OnPatient:
    """Stage 6's result: the density on the T1's grid (float32 in [0, 1]), the tissue maps there (the patient's,
    or the atlas' warped there; the T1 as background) and the simulated seed in the patient's and the atlas'
    space (RAS mm); with the mass-effect model the displacement field and the deformed tissue maps there."""

    density: Volume
    tissue: TissueMaps
    seed_patient_ras: np.ndarray
    seed_atlas_ras: np.ndarray
    displacement: DisplacementField | None = None
    deformed_tissue: TissueMaps | None = None


def warp_back(simulated: Simulated, grids: FitGrids, registration: Registration, t1: Volume,
              tissue: TissueMaps | None = None) -> OnPatient:
    """Stage 6: the density to the T1's grid: resampled from the patient's own tissue grid, or warped from the
    atlas with the atlas' tissue maps (``tissue``: the patient's maps when the fine grid is theirs)."""
    fine = grids.fine
    seed_ras = fine.geometry.index_to_ras(simulated.seed_index)
    background = t1.like(t1.array.astype(np.float32))
    if fine.in_patient_space:
        seed_patient, seed_atlas = seed_ras, registration.patient_point_to_atlas(seed_ras)
        density = resample(Volume(simulated.density, fine.geometry), t1.geometry, "linear")
        tissue = TissueMaps(tissue.wm, tissue.gm, tissue.csf, background=background, source=tissue.source)
    else:
        atlas = load_atlas()
        seed_patient, seed_atlas = registration.atlas_point_to_patient(seed_ras), seed_ras
        density = registration.to_patient(Volume(simulated.density, fine.geometry), "linear")
        tissue = TissueMaps(*(registration.to_patient(v, "linear") for v in (atlas.wm, atlas.gm, atlas.csf)),
                            background=background, source="bundled atlas warped to the patient")
    density = density.like(np.clip(density.array, 0.0, 1.0).astype(np.float32))
    displacement = deformed = None
    if simulated.mass_effect is not None:  # fit_grids allows it in the patient's space only
        moved = mass_effect_output(simulated.mass_effect, fine.geometry, "the patient's tissue")
        displacement = moved.displacement.resampled(t1.geometry)
        deformed = TissueMaps(*(resample(v, t1.geometry, "linear") for v in (moved.tissue.wm, moved.tissue.gm,
                                                                               moved.tissue.csf)),
                              background=background, source=f"{tissue.source}, deformed by the mass-effect model")
    return OnPatient(density, tissue, seed_patient, seed_atlas, displacement, deformed)
