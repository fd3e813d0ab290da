"""Learn-Morph-Infer for one patient: register, warp the masks, predict, (refine,) simulate in the atlas, warp back.

Stages (each timed in the report):

1. ``registration``: the patient T1 to the atlas (affine + demons, tumor masked; :mod:`..registration`).
2. ``warp_to_atlas``: T1Gd and FLAIR to the atlas grid, then onto the network grid (anti-aliased, >= 0.5).
3. ``network``: the inverse network predicts mu1, mu2 and the seed from the lesion-centred crop; by default
   they come from the shape regressors on the lesion's shape descriptors instead (:mod:`.shape_regressor`: on
   the test set, median error of mu1 11.5 % instead of 19.3 %, of the seed ~2 mm instead of 3.6 mm; README).
4. ``refinement`` (optional): Nelder-Mead on the network grid, then on the atlas grid (:mod:`.refinement`).
5. ``simulation``: (mu1, mu2) -> (Dw, rho, T) at the fixed front speed; one run at the atlas' full resolution.
6. ``warp_to_patient``: the density (linear) and the atlas tissue maps back to the patient grid.

With the patient's own tissue maps (``patient_tissue``), the refinement's fine stage and the simulation run in
them on a 1.5 mm grid over the patient's field of view (the seed carried there through the registration), and the
density is resampled to the T1's grid: no ``warp_to_patient``.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..errors import InputError
from ..imaging.atlas import load_atlas
from ..imaging.io import resample, resample_smooth
from ..imaging.tissue import TissueMaps, regrid_tissue
from ..imaging.volume import Volume, require_same_grid
from ..inference.likelihood import Observation
from ..models.fisher_kolmogorov import Domain
from ..personalization.result import IDENTIFIABILITY_NOTE, SEED_NOTE
from ..registration import RegistrationSettings, register_to_atlas
from ..stage_timer import StageTimer
from .config import lmi_dir, mu_bounds, network_domain, network_geometry, network_tissue, target_scaling
from .dataset import absolute_targets, encode_labels
from .inputs import crop_labels, network_input
from .parameters import FRONT_SPEED_MM_PER_DAY, from_time_independent, simulate_time_independent
from .refinement import (DEFAULT_EVALUATIONS, FINE_EVALUATIONS, POLISH_EVALUATIONS, SHARP, SMOOTH, FitGrid,
                         mask_fit, nearest_domain_voxel,
                         refine_coarse_to_fine)
from .lesion_descriptors import GridLesion, features, vectors
from .shape_regressor import SEED_WEIGHTS_NAME
from .shape_regressor import WEIGHTS_NAME as SHAPE_WEIGHTS_NAME
from .shape_regressor import load_seed_regressor, load_shape_regressor, predict_mu, predict_seed_offset
from .training import WEIGHTS_NAME, load_network


MU_SOURCES = ("shape", "network")
"""Where the LMI estimate takes mu1, mu2 from: the shape regressor or the inverse network (``"auto"``, the
default, picks one of them: :func:`choose_mu_source`)."""
SEED_SOURCES = ("shape", "network")
"""Where the LMI estimate takes the seed from: the seed regressor (default) or the inverse network."""


def choose_mu_source(mu_from: str, patient_tissue_given: bool, refine_fit: bool) -> str:
    """Resolve ``mu_from`` (``"auto"`` or one of :data:`MU_SOURCES`) to a source.

    ``"auto"`` takes the inverse network's mu when the density is simulated in the patient's own tissue without a
    refinement, and the shape regressor's otherwise. Why (README, "Across anatomies", 98 paired cases grown in
    SRI24): simulated in the patient's tissue, the shape regressor's tumors come out too large, and the network's
    mu give Dice +0.056 +- 0.015 at c = 0.1 and +0.086 +- 0.019 at 0.8 and a third of the MAE; in the atlas, and
    as the refinement's start, the shape regressor's are the better ones.
    """
    if mu_from == "auto":
        return "network" if patient_tissue_given and not refine_fit else "shape"
    if mu_from not in MU_SOURCES:
        raise InputError(f"mu_from must be 'auto' or one of {MU_SOURCES}, got {mu_from!r}")
    return mu_from


PATIENT_FIT_SPACING_MM = 1.5
"""Grid of the patient's own tissue maps for the fine refinement and the final simulation (the atlas' resolution:
the same cost per simulation as in the atlas)."""


def default_weights() -> Path:
    return lmi_dir() / WEIGHTS_NAME


def default_shape_weights() -> Path:
    return lmi_dir() / SHAPE_WEIGHTS_NAME


def default_seed_weights() -> Path:
    return lmi_dir() / SEED_WEIGHTS_NAME


def _load_regressor(path, network_config: dict, load, what: str, takes: str):
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{what} weights {path} not found (train them with Scripts/lmi_train_shape.py, or take "
                         f"{takes} from the network)")
    model, config = load(path)
    if config["grid"] != network_config["grid"]:
        raise InputError(f"{what} weights {path}: trained on the grid {config['grid']}, the network on "
                         f"{network_config['grid']}")
    return model


def load_shape_model(path, network_config: dict):
    """The shape regressor at ``path``; InputError if it is missing or was trained for another network grid."""
    return _load_regressor(path, network_config, load_shape_regressor, "shape regressor", "mu1, mu2")


def load_seed_model(path, network_config: dict):
    """The seed regressor at ``path``; InputError if it is missing or was trained for another network grid."""
    return _load_regressor(path, network_config, load_seed_regressor, "seed regressor", "the seed")


def regress(shape_model, seed_model, network: GridLesion, atlas: GridLesion | None = None) -> np.ndarray:
    """mu1, mu2 and the seed of one lesion from the shape regressors, each reading the inputs it was trained on
    (:mod:`.lesion_descriptors`: from the lesion on the network grid, ``network``, and on the atlas grid,
    ``atlas``).

    Returns
    -------
    (5,) float
        mu1 (mm) and mu2 from ``shape_model``, the seed as a network-grid index (the core's centroid plus
        ``seed_model``'s offset, carried to the network grid when read on the atlas grid); NaN where the model
        is None.
    """
    out = np.full(5, np.nan)
    models = [m for m in (shape_model, seed_model) if m is not None]
    names = tuple(dict.fromkeys(n for m in models for n in m.feature_names))
    values = dict(zip(names, features(names, network, atlas)))

    def inputs(model):
        return np.array([[values[n] for n in model.feature_names]])

    if shape_model is not None:
        out[:2] = predict_mu(shape_model, inputs(shape_model))[0]
    if seed_model is not None:
        seed_vectors, grid = vectors(seed_model.vector_names, network, atlas)
        lesion = network if grid == "network" else atlas
        offset_mm = predict_seed_offset(seed_model, inputs(seed_model), seed_vectors[None])[0]
        seed = lesion.core_centre() + offset_mm / lesion.spacing_mm
        if lesion is not network:
            seed = network.geometry.ras_to_index(lesion.geometry.index_to_ras(seed))
        out[2:5] = seed
    return out


def mask_on_grid(mask: Volume, geometry) -> np.ndarray:
    """A 0/1 mask -> bool on another grid of the same space (e.g. the atlas' to the 3 mm network grid):
    anti-aliased fraction >= 0.5."""
    return resample_smooth(mask.like(mask.array.astype(np.float32)), geometry).array >= 0.5


def lesion_on_grid(t1gd: Volume, flair: Volume, geometry) -> tuple:
    """T1Gd and FLAIR 0/1 masks -> (t1gd, flair) bool on ``geometry``, FLAIR containing T1Gd (resampling can break
    that at the edges)."""
    t1gd_on = mask_on_grid(t1gd, geometry)
    return t1gd_on, mask_on_grid(flair, geometry) | t1gd_on


def lesion_on_network_grid(labels: np.ndarray, config: dict) -> GridLesion:
    """(ni, nj, nk) uint8 labels on the network grid -> the lesion there, with the atlas' tissue on that grid."""
    tissue = network_tissue(config)
    return GridLesion(labels, tissue.wm.array, tissue.gm.array, float(config["grid"]["spacing_mm"]),
                      tissue.wm.geometry)


def lesion_on_atlas_grid(labels: np.ndarray) -> GridLesion:
    """(ni, nj, nk) uint8 labels on the atlas grid -> the lesion there, with the atlas' tissue."""
    atlas = load_atlas()
    return GridLesion(labels, atlas.wm.array, atlas.gm.array, float(atlas.wm.geometry.spacing_mm[0]),
                      atlas.wm.geometry)


def lesion_on_grids(t1gd_atlas: Volume, flair_atlas: Volume, config: dict) -> tuple[GridLesion, GridLesion]:
    """T1Gd and FLAIR 0/1 masks on the atlas grid -> the lesion on the network grid (:func:`lesion_on_grid`) and
    on the atlas grid, each with the atlas' tissue there: what the shape regressors read (:func:`regress`)."""
    on_network = lesion_on_grid(t1gd_atlas, flair_atlas, network_tissue(config).wm.geometry)
    return (lesion_on_network_grid(encode_labels(*on_network), config),
            lesion_on_atlas_grid(encode_labels(t1gd_atlas.array, flair_atlas.array)))


def patient_fit_grid(tissue: TissueMaps, t1gd: Volume, flair: Volume, registration) -> FitGrid:
    """The patient's own WM / GM and masks on a ``PATIENT_FIT_SPACING_MM`` grid over their field of view: where
    the refinement's fine stage and the final simulation run when the patient's tissue maps are given. Seeds reach
    it from the atlas through ``registration``."""
    fit_tissue = regrid_tissue(tissue, PATIENT_FIT_SPACING_MM)
    geometry = fit_tissue.geometry
    domain = Domain(fit_tissue.wm.array, fit_tissue.gm.array, geometry.spacing_mm)
    t1gd_fit, flair_fit = lesion_on_grid(t1gd, flair, geometry)
    if not (t1gd_fit & domain.inside).any():
        raise InputError("the T1Gd lesion lies outside the WM/GM of the given tissue maps (WM + GM < 0.1 "
                         "everywhere in it): are the maps the patient's, on the T1's grid?")
    return FitGrid(domain, geometry, t1gd_fit, flair_fit, point_from_atlas=registration.atlas_point_to_patient)


def predict_labels(model, config: dict, labels: np.ndarray, tissue_wm_gm: np.ndarray,
                   batch_size: int = 32, shape_model=None, seed_model=None, atlas_lesions=None) -> np.ndarray:
    """(n, ni, nj, nk) uint8 labels on the network grid -> (n, 5) mu1 (mm), mu2, seed (network-grid index).

    From the inverse network ``model``, except mu1 and mu2 when ``shape_model`` (a
    :class:`~.shape_regressor.ShapeRegressor`) is given and the seed when ``seed_model`` (a
    :class:`~.shape_regressor.SeedRegressor`) is (:func:`regress`; ``atlas_lesions``: the n lesions on the atlas
    grid, for regressors that read them there).
    """
    predicted = predict_crops(model, config, *crop_labels(labels, int(config["input"]["crop_size"])),
                              tissue_wm_gm, batch_size)
    if shape_model is not None or seed_model is not None:
        for n, case in enumerate(labels):
            regressed = regress(shape_model, seed_model, lesion_on_network_grid(case, config),
                                None if atlas_lesions is None else atlas_lesions[n])
            known = ~np.isnan(regressed)
            predicted[n, known] = regressed[known]
    return predicted


def predict_crops(model, config: dict, crops: np.ndarray, origins: np.ndarray, centres: np.ndarray,
                  tissue_wm_gm: np.ndarray, batch_size: int = 32) -> np.ndarray:
    """:func:`predict_labels` from the lesion-centred crops of :func:`~.inputs.crop_labels`."""
    scaled = []
    with torch.no_grad():
        for start in range(0, len(crops), batch_size):
            part = slice(start, start + batch_size)
            x = network_input(config, crops[part], origins[part], centres[part], tissue_wm_gm)
            scaled.append(model(torch.from_numpy(x)).numpy())
    return absolute_targets(target_scaling(config).unscale(np.concatenate(scaled)), centres)


def personalize_lmi(t1: Volume, t1gd: Volume, flair: Volume, *, names=("T1", "T1Gd", "FLAIR"),
                    refine_fit: bool = False,
                    refine_evaluations: int = DEFAULT_EVALUATIONS,
                    refine_fine_evaluations: int = FINE_EVALUATIONS,
                    refine_polish_evaluations: int = POLISH_EVALUATIONS, skull_stripped: bool | None = None,
                    weights=None, mu_from: str = "auto", shape_weights=None, seed_from: str = "shape",
                    seed_weights=None, patient_tissue: TissueMaps | None = None,
                    registration_settings: RegistrationSettings = RegistrationSettings(),
                    progress=None) -> tuple[Volume, dict, dict, TissueMaps]:
    """Personalize the Fisher-Kolmogorov model to one patient with Learn-Morph-Infer.

    Parameters
    ----------
    t1 : Volume
        The patient's T1 (or T1Gd), whole-head or skull-stripped, any grid.
    t1gd, flair : Volume
        Binary segmentations on the grid of ``t1`` (FLAIR contains the T1Gd lesion; the union is used).
    names : (str, str, str)
        How error messages name the three inputs (the CLI gives its options and file names).
    refine_fit : bool
        Run the Nelder-Mead refinement: ``refine_evaluations`` simulations on the 3 mm network grid, then
        ``refine_fine_evaluations`` on the atlas grid (1.5 mm) with the masks warped there (0: skip that stage),
        then ``refine_polish_evaluations`` there with the sharper objective (0: skip the polish;
        :func:`.refinement.refine_coarse_to_fine`).
    weights : path, optional
        Trained network (default ``Resources/LMI/inverse_net.pt``).
    mu_from : {"auto", "shape", "network"}
        Take mu1, mu2 from the shape regressor (``shape_weights``, default ``Resources/LMI/shape_regressor.pt``) or
        from the inverse network; ``"auto"`` (default): the network's with ``patient_tissue`` and no refinement,
        the shape regressor's otherwise (:func:`choose_mu_source`).
    seed_from : {"shape", "network"}
        Take the seed from the seed regressor (``seed_weights``, default ``Resources/LMI/seed_regressor.pt``) or
        from the inverse network.
    patient_tissue : TissueMaps, optional
        The patient's own WM / GM (/ CSF) probabilities on the grid of ``t1``. Given, the fine refinement and the
        final simulation run in them (on a 1.5 mm grid over the T1's field of view) instead of in the atlas: the
        estimate is still made in the atlas, but the density follows the patient's anatomy (README: across two
        anatomies, simulating in the atlas and warping back caps Dice at ~0.8 even with the true parameters).
    progress : callable(fraction, message) or None
        Called between and within stages; may raise Cancelled.

    Returns
    -------
    (Volume, dict, dict, TissueMaps)
        The density on the patient grid, the parameters, the report, and the tissue maps on the patient grid
        (the patient's, or the atlas' warped there; for plans and figures, with the patient T1 as background).
    """
    report_progress = progress or (lambda fraction, message: None)
    mu_from = choose_mu_source(mu_from, patient_tissue is not None, refine_fit)
    if seed_from not in SEED_SOURCES:
        raise InputError(f"seed_from must be one of {SEED_SOURCES}, got {seed_from!r}")
    observation = Observation.from_volumes(t1gd, flair, None, t1.geometry, names=(names[1], names[2], "PET"),
                                           grid_name=names[0])
    if patient_tissue is not None:
        for name, volume in (("WM map", patient_tissue.wm), ("GM map", patient_tissue.gm)):
            require_same_grid(t1, names[0], volume, f"the patient's {name}")
    timer = StageTimer()
    timer.start("registration")
    weights = Path(weights) if weights is not None else default_weights()
    if not weights.is_file():
        raise InputError(f"LMI weights {weights} not found (train them with Scripts/lmi_train.py)")
    model, config = load_network(weights)
    shape_model = seed_model = None
    if mu_from == "shape":
        shape_weights = Path(shape_weights) if shape_weights is not None else default_shape_weights()
        shape_model = load_shape_model(shape_weights, config)
    if seed_from == "shape":
        seed_weights = Path(seed_weights) if seed_weights is not None else default_seed_weights()
        seed_model = load_seed_model(seed_weights, config)
    atlas = load_atlas()

    report_progress(0.0, "registering the T1 to the atlas")
    try:
        registration = register_to_atlas(
            t1, tumor_mask=observation.flair, skull_stripped=skull_stripped, settings=registration_settings,
            progress=lambda f, m: report_progress(0.35 * f, m))
    except InputError as error:
        raise InputError(f"{names[0]}: {error}") from error
    timer.start("warp_to_atlas")

    report_progress(0.35, "warping the segmentations to the atlas")
    net_geometry = network_geometry(atlas, config)
    t1gd_atlas = registration.to_atlas(observation.t1gd, "nearest")
    flair_atlas = registration.to_atlas(observation.flair, "nearest")
    network_lesion, atlas_lesion = lesion_on_grids(t1gd_atlas, flair_atlas, config)
    t1gd_net, flair_net = network_lesion.labels == 2, network_lesion.labels > 0
    if not t1gd_net.any():
        raise InputError("the T1Gd lesion vanished when warped to the atlas (is it smaller than the 3 mm grid, or "
                         "outside the registered brain?)")
    timer.start("network")

    report_progress(0.4, "predicting the growth parameters")
    tissue_net = network_tissue(config)
    wm_gm = np.stack([tissue_net.wm.array, tissue_net.gm.array])
    labels = network_lesion.labels[None]
    crop_size = int(config["input"]["crop_size"])
    natural = predict_labels(model, config, labels, wm_gm, shape_model=shape_model, seed_model=seed_model,
                             atlas_lesions=[atlas_lesion])[0]
    estimate = {"mu1": float(natural[0]), "mu2": float(natural[1]), "seed_index": natural[2:5].tolist(),
                "mu_from": "shape regressor" if mu_from == "shape" else "inverse network",
                "seed_from": "seed regressor" if seed_from == "shape" else "inverse network"}
    notes = []
    if seed_weights is not None and seed_from == "network":
        notes.append(f"the seed regressor weights {seed_weights} were not read: the seed came from the inverse "
                     "network (seed_from 'network')")
    if shape_weights is not None and mu_from == "network":
        notes.append(f"the shape regressor weights {shape_weights} were not read: mu1, mu2 came from the inverse "
                     "network (mu_from 'auto' takes them there with the patient's tissue maps and no refinement)")
    bounds = mu_bounds(config)
    for key, (low, high) in zip(("mu1", "mu2"), bounds):
        if not low <= estimate[key] <= high:
            notes.append(f"the {estimate['mu_from']}'s {key} = {estimate[key]:.3g} lay outside the trained range "
                         f"[{low:g}, {high:g}] and was clipped to it")
            estimate[key] = float(np.clip(estimate[key], low, high))
    if np.count_nonzero(crop_labels(labels, crop_size)[0]) < np.count_nonzero(labels):
        notes.append(f"the lesion extends beyond the network's {crop_size}^3 input cube around the enhancing core; "
                     f"the network saw only the part inside it")
    voxel_ml = float(np.prod(net_geometry.spacing_mm)) / 1000.0
    t1gd_ml, flair_ml = t1gd_net.sum() * voxel_ml, flair_net.sum() * voxel_ml
    acceptance = config["acceptance"]
    if t1gd_ml < acceptance["t1gd_min_ml"] or not acceptance["flair_min_ml"] <= flair_ml <= acceptance["flair_max_ml"]:
        notes.append(f"lesion in atlas space (T1Gd {t1gd_ml:.1f} mL, FLAIR {flair_ml:.1f} mL) is outside the sizes "
                     f"the network was trained on (T1Gd >= {acceptance['t1gd_min_ml']:g} mL, FLAIR "
                     f"{acceptance['flair_min_ml']:g}-{acceptance['flair_max_ml']:g} mL): treat the estimate with care")
    net_domain = network_domain(config)
    estimate["seed_index"] = nearest_domain_voxel(net_domain.inside, estimate["seed_index"]).tolist()
    timer.stop()

    refinement = None
    # The grid the fine refinement and the final simulation run on: the patient's own tissue when given (no
    # anatomy mismatch: README), else the atlas with the masks warped there.
    in_patient = patient_tissue is not None
    if in_patient:
        final_grid = patient_fit_grid(patient_tissue, observation.t1gd, observation.flair, registration)
    else:
        final_grid = FitGrid(Domain(atlas.wm.array, atlas.gm.array, atlas.wm.geometry.spacing_mm),
                             atlas.wm.geometry, atlas_lesion.labels == 2, atlas_lesion.labels > 0)
    net_grid = FitGrid(net_domain, net_geometry, t1gd_net, flair_net)
    if refine_fit:
        timer.start("refinement")
        report_progress(0.45, "refining the fit")
        refinement = refine_coarse_to_fine(
            net_grid, final_grid, estimate["mu1"], estimate["mu2"], estimate["seed_index"],
            evaluations=refine_evaluations, fine_evaluations=refine_fine_evaluations,
            polish_evaluations=refine_polish_evaluations, mu_bounds=bounds,
            progress=lambda f: report_progress(0.45 + 0.35 * f, "refining the fit"))
        final = {"mu1": refinement["mu1"], "mu2": refinement["mu2"]}
        seed_grid, seed_index = (final_grid, refinement["seed_index"]) if refinement["grid"] == "fine" else (
            net_grid, refinement["seed_index"])
    else:
        final = {"mu1": estimate["mu1"], "mu2": estimate["mu2"]}
        seed_grid, seed_index = net_grid, estimate["seed_index"]

    timer.start("simulation")
    report_progress(0.8, "simulating in the patient's tissue" if in_patient else "simulating in the atlas")
    seed_final = final_grid.seed_from(seed_grid, seed_index)  # the seed as simulated
    density_final = simulate_time_independent(
        final_grid.domain, final["mu1"], final["mu2"], seed_final,
        progress=lambda f: report_progress(0.8 + 0.1 * f, "simulating"))
    # Judged where and how it was fitted: the report's fit is the one the refinement reached.
    polished = refinement is not None and refinement["polish"] is not None
    objective = SHARP if polished else SMOOTH
    if in_patient or (refinement is not None and refinement["grid"] == "fine"):
        fit = mask_fit(density_final, final_grid.t1gd, final_grid.flair, final_grid.domain.inside,
                       objective=objective)
        fit_grid = "patient" if in_patient else "atlas"
    else:
        fit = mask_fit(resample_smooth(atlas.wm.like(density_final), net_geometry).array, t1gd_net, flair_net,
                       net_domain.inside)
        fit_grid = "network"
    seed_ras = final_grid.geometry.index_to_ras(seed_final)
    if in_patient:
        seed_patient, seed_atlas = seed_ras, registration.patient_point_to_atlas(seed_ras)
    else:
        seed_patient, seed_atlas = registration.atlas_point_to_patient(seed_ras), seed_ras
    report_progress(0.9, "taking the density to the patient's grid")
    if in_patient:
        density = resample(Volume(density_final, final_grid.geometry), t1.geometry, "linear")
        tissue = TissueMaps(patient_tissue.wm, patient_tissue.gm, patient_tissue.csf,
                            background=t1.like(t1.array.astype(np.float32)), source=patient_tissue.source)
    else:
        timer.start("warp_to_patient")
        density = registration.to_patient(atlas.wm.like(density_final), "linear")
        tissue = TissueMaps(*(registration.to_patient(v, "linear") for v in (atlas.wm, atlas.gm, atlas.csf)),
                            background=t1.like(t1.array.astype(np.float32)),
                            source="bundled atlas warped to the patient")
    density = density.like(np.clip(density.array, 0.0, 1.0).astype(np.float32))
    timer.stop()
    report_progress(1.0, "done")

    dw, rho, days = (float(v) for v in from_time_independent(final["mu1"], final["mu2"]))  # for the report
    parameters = {"mu1": {"value": final["mu1"], "unit": "mm"}, "mu2": {"value": final["mu2"], "unit": "-"},
                  "Dw": {"value": dw, "unit": "mm^2/day"}, "rho": {"value": rho, "unit": "1/day"},
                  "T": {"value": days, "unit": "days"},
                  "v": {"value": FRONT_SPEED_MM_PER_DAY, "unit": "mm/day", "note": "fixed (200 mm/year)"},
                  **{axis: {"value": float(seed_atlas[n]), "unit": "mm (RAS, atlas space)"}
                     for n, axis in enumerate("xyz")},
                  "uc_T1Gd": {"value": fit.uc_t1gd, "unit": "density", "note": "best fit, not predicted"},
                  "uc_FLAIR": {"value": fit.uc_flair, "unit": "density", "note": "best fit, not predicted"}}
    simulated_in = (f"the patient's tissue maps ({patient_tissue.source}) at {PATIENT_FIT_SPACING_MM:g} mm"
                    if in_patient else "the atlas (1.5 mm), warped to the patient")
    report = {"method": "lmi", "parameters": parameters, "simulated_in": simulated_in,
              "seed_in_patient_ras_mm": np.round(seed_patient, 2).tolist(),
              "network_estimate": estimate, "refinement": refinement,
              "fit": {**vars(fit), "grid": fit_grid, "objective_kind": "sharp" if polished else "smooth"},
              "timings_s": timer.seconds,
              "total_s": round(sum(timer.seconds.values()), 3),
              "registration": registration.report, "weights": str(weights),
              "shape_weights": str(shape_weights) if mu_from == "shape" else None,
              "seed_weights": str(seed_weights) if seed_from == "shape" else None,
              "notes": notes + [IDENTIFIABILITY_NOTE, SEED_NOTE,
                        "Dw, rho and T follow from mu1, mu2 at the fixed front speed v; any v gives the same density."]}
    return density, parameters, report, tissue
