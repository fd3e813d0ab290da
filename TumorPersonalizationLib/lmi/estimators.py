"""mu1, mu2 and the seed of lesions on the network grid, from the inverse network and the shape regressors."""
from __future__ import annotations

import numpy as np
import torch

from ..errors import InputError
from .config import target_scaling
from .grids import network_lesion
from .inputs import assemble, crop_labels
from .labels import absolute_targets
from .lesion_descriptors import GridLesion, features, vectors
from .shape_regressor import predict_mu, predict_seed_offset

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


def regress(shape_model, seed_model, lesion: GridLesion) -> np.ndarray:
    """mu1, mu2 and the seed of one lesion on the network grid from the shape regressors, each reading the inputs
    it was trained on (:mod:`.lesion_descriptors`).

    Returns
    -------
    (5,) float
        mu1 (mm) and mu2 from ``shape_model``, the seed as a network-grid index (the core's centroid plus
        ``seed_model``'s offset); NaN where the model is None.
    """
    out = np.full(5, np.nan)
    models = [m for m in (shape_model, seed_model) if m is not None]
    names = tuple(dict.fromkeys(n for m in models for n in m.feature_names))
    values = dict(zip(names, features(names, lesion)))

    def inputs(model):
        return np.array([[values[n] for n in model.feature_names]])

    if shape_model is not None:
        out[:2] = predict_mu(shape_model, inputs(shape_model))[0]
    if seed_model is not None:
        seed_vectors = vectors(seed_model.vector_names, lesion)
        offset_mm = predict_seed_offset(seed_model, inputs(seed_model), seed_vectors[None])[0]
        out[2:5] = lesion.core_centre() + offset_mm / lesion.spacing_mm
    return out


def predict_crops(model, config: dict, crops: np.ndarray, origins: np.ndarray, centres: np.ndarray,
                  tissue_wm_gm: np.ndarray, batch_size: int = 32) -> np.ndarray:
    """The inverse network's (n, 5) mu1 (mm), mu2, seed (network-grid index) from the lesion-centred crops of
    :func:`~.inputs.crop_labels`."""
    scaled = []
    with torch.no_grad():
        for start in range(0, len(crops), batch_size):
            part = slice(start, start + batch_size)
            x = assemble(crops[part], origins[part], tissue_wm_gm)
            scaled.append(model(torch.from_numpy(x)).numpy())
    return absolute_targets(target_scaling(config).unscale(np.concatenate(scaled)), centres)


def predict_labels(model, config: dict, labels: np.ndarray, tissue_wm_gm: np.ndarray,
                   batch_size: int = 32, shape_model=None, seed_model=None) -> np.ndarray:
    """(n, ni, nj, nk) uint8 labels on the network grid -> (n, 5) mu1 (mm), mu2, seed (network-grid index).

    From the inverse network ``model``, except mu1 and mu2 when ``shape_model`` (a
    :class:`~.shape_regressor.ShapeRegressor`) is given and the seed when ``seed_model`` (a
    :class:`~.shape_regressor.SeedRegressor`) is (:func:`regress`).
    """
    predicted = predict_crops(model, config, *crop_labels(labels, int(config["input"]["crop_size"])),
                              tissue_wm_gm, batch_size)
    if shape_model is not None or seed_model is not None:
        for n, case in enumerate(labels):
            regressed = regress(shape_model, seed_model, network_lesion(case, config))
            known = ~np.isnan(regressed)
            predicted[n, known] = regressed[known]
    return predicted
