"""Learn-Morph-Infer on the mass-effect model: accuracy on held-out simulations and the end-to-end time.

Run through ``bench/lmi.py --model mass-effect`` (same flags). The test set is the ``test`` split of
``Scripts/lmi_make_dataset.py --config Resources/LMI/mass_effect/config.json`` (never used in training): tumors grown
by the mass-effect model on the 3 mm network grid of the atlas with gamma drawn from 0-10,000 Pa, thresholded into
T1Gd and FLAIR masks. Scored on that grid (a mass-effect run at the atlas' 1.5 mm costs ~12 s, 60x the 3 mm one):
each case's truth is simulated again from its parameters; the estimate (mu1, mu2 and the seed from the shape and
seed regressors, as the pipeline takes them) is simulated with the mass-effect model at the pipeline's default
gamma, at the true gamma (what knowing gamma would give) and with Fisher-Kolmogorov (gamma = 0: what ignoring the
mass effect costs); the first ``--refine-cases`` are also fitted to the masks on that grid as the pipeline's default
coarse fit does (Nelder-Mead, the mass-effect model at the default gamma) and scored the same way. MAE of the
density within WM, GM and CSF (the atlas' undeformed hard labels, as the thesis scores) and Dice of {c >= level} at
0.01, 0.1 and 0.8, against the thesis' Table 2 row 6.
"""
from __future__ import annotations

import time

import numpy as np

from TumorPersonalizationLib.execution import make_executor
from TumorPersonalizationLib.lmi.config import mu_bounds, network_tissue
from TumorPersonalizationLib.lmi.estimators import predict_labels
from TumorPersonalizationLib.lmi.grids import FitGrid, nearest_domain_voxel
from TumorPersonalizationLib.lmi.models import load_seed_model, load_shape_model
from TumorPersonalizationLib.lmi.network import load_network
from TumorPersonalizationLib.lmi.parameters import simulate_time_independent
from TumorPersonalizationLib.lmi.refinement import refine_coarse_to_fine
from TumorPersonalizationLib.lmi.training import dataset
from TumorPersonalizationLib.methods.lmi import DEFAULT_GAMMA_PA
from TumorPersonalizationLib.models.fisher_kolmogorov import Domain
from TumorPersonalizationLib.models.mass_effect import AtGamma, MassEffectDomain

# Thesis ch. 7, Table 2, row 6 (mass effect, mu1/mu2/x predicted): MAE GM 0.055, WM 0.054, CSF 0.054.
THESIS = {"MAE WM": 0.054, "MAE GM": 0.055, "MAE CSF": 0.054, "Dice 0.01": 0.886, "Dice 0.1": 0.850,
          "Dice 0.8": 0.783}
VARIANTS = ("default gamma", "true gamma", "Fisher-Kolmogorov", "coarse fit, default gamma")


class MassEffectCases:
    """The test cases on the network grid; ``score(indices)`` gives per case and :data:`VARIANTS` entry the scores
    (NaN for the fit outside ``refined``), then the fit's seconds and simulations, the true gamma and FLAIR mL.
    Picklable: each worker builds its solver domains once."""

    def __init__(self, data_dir, config: dict, cases: int, predicted: np.ndarray, refined: range,
                 evaluations: int):
        self.data_dir, self.config, self.cases = data_dir, config, cases
        self.predicted, self.refined, self.evaluations = predicted, refined, evaluations
        self._state = None

    def _load(self):
        if self._state is None:
            tissue = network_tissue(self.config)
            arrays = (tissue.wm.array, tissue.gm.array, tissue.csf.array, tissue.wm.geometry.spacing_mm)
            self._state = {"data": dataset.load_split(self.data_dir, "test", limit=self.cases), "tissue": tissue,
                           "me": MassEffectDomain(*arrays),
                           "fk": Domain(tissue.wm.array, tissue.gm.array, tissue.wm.geometry.spacing_mm)}
        return self._state

    def score(self, indices) -> np.ndarray:
        from lmi import SCORE_KEYS, score

        state = self._load()
        me, tissue = state["me"], state["tissue"]
        at_default = AtGamma(me, DEFAULT_GAMMA_PA)
        rows = []
        for i in np.asarray(indices, dtype=int):
            p, labels = state["data"]["parameters"][i], state["data"]["labels"][i]
            truth = me.simulate(p[0], p[1], p[2], p[3:6], p[8], parallel=False).density
            mu1, mu2, *seed = self.predicted[i]
            seed = nearest_domain_voxel(me.fk.inside, seed)
            row = []
            for domain in (at_default, AtGamma(me, p[8]), state["fk"]):
                density = simulate_time_independent(domain, mu1, mu2, seed, parallel=False)
                row += [score(density, truth, tissue)[k] for k in SCORE_KEYS]
            fit_s, fit_runs = np.nan, np.nan
            if i in self.refined:
                start = time.perf_counter()
                fit = refine_coarse_to_fine(FitGrid(at_default, tissue.wm.geometry, labels == 2, labels > 0), None,
                                            mu1, mu2, seed, evaluations=self.evaluations, fine_evaluations=0,
                                            polish_evaluations=0, mu_bounds=mu_bounds(self.config), parallel=False)
                density = simulate_time_independent(at_default, fit.mu1, fit.mu2, fit.seed_index, parallel=False)
                fit_s, fit_runs = time.perf_counter() - start, fit.coarse.evaluations
                row += [score(density, truth, tissue)[k] for k in SCORE_KEYS]
            else:
                row += [np.nan] * len(SCORE_KEYS)
            voxel_ml = float(np.prod(tissue.wm.geometry.spacing_mm)) / 1000.0
            rows.append(row + [fit_s, fit_runs, p[8], np.count_nonzero(labels) * voxel_ml])
        return np.array(rows, dtype=np.float64)


class _Score:
    def __init__(self, cases: MassEffectCases):
        self.cases = cases

    def __call__(self, indices):
        return self.cases.score(indices)


def test_set(args) -> dict:
    """The held-out mass-effect test cases (module docstring); prints the table and returns the numbers."""
    from lmi import SCORE_KEYS, print_table

    model, config = load_network(args.weights)
    data = dataset.load_split(args.data, "test", limit=args.cases)
    n = len(data["targets"])
    tissue = network_tissue(config)
    start = time.perf_counter()
    predicted = predict_labels(model, config, data["labels"], np.stack([tissue.wm.array, tissue.gm.array]),
                               shape_model=load_shape_model(args.shape_weights, config),
                               seed_model=load_seed_model(args.seed_weights, config))
    estimate_ms = 1000 * (time.perf_counter() - start) / n
    predicted[:, :2] = np.clip(predicted[:, :2], *np.transpose(mu_bounds(config)))  # as the pipeline does
    geometry = tissue.wm.geometry
    relative = np.abs(predicted[:, :2] - data["targets"][:, :2]) / data["targets"][:, :2]
    seed_mm = np.linalg.norm(geometry.index_to_ras(predicted[:, 2:5]) - geometry.index_to_ras(data["targets"][:, 2:5]),
                             axis=-1)
    print(f"{n} mass-effect test cases; estimate {estimate_ms:.1f} ms/case: median relative error mu1 "
          f"{np.median(relative[:, 0]):.3f}, mu2 {np.median(relative[:, 1]):.3f}; seed error median "
          f"{np.median(seed_mm):.1f} mm", flush=True)
    refined = range(0, min(args.refine_cases, n))
    cases = MassEffectCases(args.data, config, n, predicted, refined, args.refine_evaluations)
    executor = make_executor(_Score(cases), args.workers)
    chunks, begin_s = [], time.perf_counter()
    try:
        for begin in range(0, n, 50):
            chunks.append(executor(np.arange(begin, min(begin + 50, n))))
            print(f"  scored {begin + len(chunks[-1])}/{n} ({time.perf_counter() - begin_s:.0f} s)", flush=True)
    finally:
        executor.close()
    table = np.concatenate(chunks)
    k = len(SCORE_KEYS)
    results = {"cases": n, "default_gamma_pa": DEFAULT_GAMMA_PA,
               "parameters": {"mu1_median_relative_error": float(np.median(relative[:, 0])),
                              "mu2_median_relative_error": float(np.median(relative[:, 1])),
                              "seed_error_mm_median": float(np.median(seed_mm))}}
    shown = {}
    for v, name in enumerate(VARIANTS):
        block = table[:, v * k:(v + 1) * k]
        keep = ~np.isnan(block[:, 0])
        means = dict(zip(SCORE_KEYS, block[keep].mean(axis=0).tolist()))
        results[name] = {"cases": int(keep.sum()), **means}
        shown[f"{name} ({int(keep.sum())} cases)"] = means
    if len(refined):
        sub = table[refined.start:refined.stop]
        shown[f"default gamma, same {len(refined)} cases"] = dict(zip(SCORE_KEYS, sub[:, :k].mean(axis=0).tolist()))
        results["default gamma, fitted cases"] = shown[f"default gamma, same {len(refined)} cases"]
        results["coarse fit"] = {"seconds_mean": float(np.nanmean(sub[:, -4])),
                                 "simulations_mean": float(np.nanmean(sub[:, -3]))}
        print(f"coarse fit: {results['coarse fit']['seconds_mean']:.1f} s and "
              f"{results['coarse fit']['simulations_mean']:.0f} simulations per case")
    shown["thesis, Table 2 row 6 (12k cases)"] = THESIS
    print_table("Held-out mass-effect test set (atlas space, 3 mm network grid)", shown)
    results["rows"] = table.tolist()
    return results
