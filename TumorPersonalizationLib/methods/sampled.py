"""What the sampling methods (TMCMC, NPE) share: the tissue maps they run in, and the result built from posterior
samples and posterior-predictive draws. Not a registered method."""
from __future__ import annotations


def tissue_for(case, progress=None) -> tuple:
    """``(TissueMaps, report)``: the patient's tissue maps (given, or segmented from the case's T1: then the
    masks lie on the T1's grid), or the bundled atlas, on whose grid the case's masks must then lie.
    ``progress``: a :class:`~..personalization.Progress` for the registration and segmentation."""
    from ..imaging.atlas import load_atlas
    from ..imaging.tissue import TissueMaps
    from ..imaging.volume import require_same_grid
    from ..personalization.anatomy import patient_tissue

    tissue, report = patient_tissue(case, progress=progress)
    if tissue is None:
        atlas = load_atlas()
        tissue = TissueMaps(atlas.wm, atlas.gm, atlas.csf, atlas.t1, source="bundled ICBM152 2009a atlas (1.5 mm)")
        reference = ("the bundled atlas (1.5 mm; give the patient's T1 (--t1) or WM/GM maps to calibrate on the "
                     "patient's grid)")
        require_same_grid(tissue.wm, reference, case.t1gd, case.name("t1gd"))
    return tissue, report


def summarised(names, natural, map_index: int) -> tuple:
    """(names, samples, parameters): the samples with mu1, mu2 and v appended, and each parameter's MAP, mean,
    median and 95 % interval with its unit (:func:`..inference.posterior.summarise`)."""
    from ..inference.posterior import summarise, with_derived

    names, natural = with_derived(names, natural)
    return names, natural, summarise(names, natural, map_index)


def from_posterior(method: str, case, tissue, names, natural, parameters: dict, report: dict, predictive, *,
                   margin_mm: float, timings: dict):
    """The Personalization of a sampling method: density = posterior-predictive mean of ``predictive``'s draws,
    its standard deviation, the MAP density, the samples (``natural``, columns ``names``) and the plans."""
    import numpy as np

    from ..personalization import Personalization

    draws = predictive.draws
    like = tissue.wm.like
    return Personalization.create(
        method, case, tissue, like(draws.mean(axis=0).astype(np.float32)), parameters, report,
        margin_mm=margin_mm, density_std=like(draws.std(axis=0).astype(np.float32)),
        density_map=like(predictive.map_density), samples=natural, sample_names=names, predictive_samples=draws,
        timings=timings)
