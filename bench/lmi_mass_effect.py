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

With ``--anatomy sri24`` (:func:`across_anatomy`): the first ``--cases`` test cases' parameters grown instead in
another brain, SRI24 at 1.5 mm with its own WM / GM / CSF (``bench/lmi_anatomy.py``'s patient, the seed carried there
through a registration of its T1 to the atlas), with their true gamma, and personalized by the whole pipeline
(``personalize(..., model="mass-effect")``: registration with the lesion, estimate, coarse fit, simulation in the
given maps at the default gamma), scored in SRI24 against the truth; cases outside the acceptance sizes are skipped.
"""
from __future__ import annotations

import time

import numpy as np

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


class AnatomyCases:
    """Test cases grown in another anatomy and personalized end to end (module docstring); picklable.
    ``score(indices)``: per case accepted (0/1), SCORE_KEYS, seconds, true gamma, FLAIR mL."""

    def __init__(self, data_dir, config: dict, cases: int, t1, tissue, registration):
        self.data_dir, self.config, self.cases = data_dir, config, cases
        self.t1, self.tissue, self.registration = t1, tissue, registration
        self._state = None

    def score(self, indices) -> np.ndarray:
        from lmi import SCORE_KEYS, score

        from TumorPersonalizationLib.lmi.config import network_geometry
        from TumorPersonalizationLib.imaging.atlas import load_atlas
        from TumorPersonalizationLib.methods import personalize
        from TumorPersonalizationLib.personalization import Case

        if self._state is None:
            t = self.tissue
            self._state = {"data": dataset.load_split(self.data_dir, "test", limit=self.cases),
                           "me": MassEffectDomain(t.wm.array, t.gm.array, t.csf.array, t.wm.geometry.spacing_mm),
                           "net": network_geometry(load_atlas(), self.config)}
        state, t, g = self._state, self.tissue, self.tissue.wm.geometry
        acceptance, voxel_ml = self.config["acceptance"], float(np.prod(g.spacing_mm)) / 1000.0
        rows = []
        for i in np.asarray(indices, dtype=int):
            dw, rho, days, *seed_net, uc_t1gd, uc_flair, gamma = state["data"]["parameters"][i]
            seed_ras = self.registration.atlas_point_to_patient(state["net"].index_to_ras(seed_net))
            seed = nearest_domain_voxel(state["me"].fk.inside, g.ras_to_index(seed_ras))
            truth = state["me"].simulate(dw, rho, days, seed, gamma, parallel=False).density
            t1gd, flair = truth >= uc_t1gd, truth >= uc_flair
            flair_ml = float(flair.sum()) * voxel_ml
            if (t1gd.sum() * voxel_ml < acceptance["t1gd_min_ml"]
                    or not acceptance["flair_min_ml"] <= flair_ml <= acceptance["flair_max_ml"]):
                rows.append([0.0] + [np.nan] * (len(SCORE_KEYS) + 1) + [gamma, flair_ml])
                continue
            case = Case.from_volumes(t.wm.like(t1gd.astype(np.uint8)), t.wm.like(flair.astype(np.uint8)), t1=self.t1,
                                     wm=t.wm, gm=t.gm, csf=t.csf)
            start = time.perf_counter()
            result = personalize(case, "lmi", model="mass-effect")
            seconds = time.perf_counter() - start
            scores = score(result.density.array, truth, t)
            rows.append([1.0] + [scores[k] for k in SCORE_KEYS] + [seconds, gamma, flair_ml])
        return np.array(rows, dtype=np.float64)


def across_anatomy(args) -> dict:
    """``--anatomy sri24``: the pipeline on mass-effect tumors grown in SRI24 (module docstring)."""
    from lmi import SCORE_KEYS, run_chunks, print_table
    from lmi_anatomy import load_patient

    from TumorPersonalizationLib.imaging.tissue import TissueMaps
    from TumorPersonalizationLib.registration import register_to_atlas

    _, config = load_network(args.weights)
    t1, tissue = load_patient(args.anatomy, args.wheel, None)
    # SRI24's maps overlap in places (WM + GM + CSF up to ~2), which a Case refuses: scale those voxels to a sum of 1.
    scale = 1.0 / np.maximum(tissue.wm.array + tissue.gm.array + tissue.csf.array, 1.0)
    tissue = TissueMaps(*(v.like((v.array * scale).astype(np.float32)) for v in (tissue.wm, tissue.gm, tissue.csf)),
                        background=tissue.background, source=tissue.source)
    registration = register_to_atlas(t1)
    n = min(args.cases, len(dataset.load_split(args.data, "test", limit=args.cases)["targets"]))
    table = run_chunks(AnatomyCases(args.data, config, n, t1, tissue, registration), "score", args.workers, n,
                        "personalized", chunk=10)
    kept = table[table[:, 0] == 1]
    k = len(SCORE_KEYS)
    means = dict(zip(SCORE_KEYS, kept[:, 1:1 + k].mean(axis=0).tolist()))
    results = {"anatomy": args.anatomy, "cases_drawn": n, "cases_scored": int(len(kept)),
               "seconds_per_case": float(kept[:, 1 + k].mean()), **means, "rows": table.tolist()}
    print_table(f"Mass-effect tumors grown in {args.anatomy} (1.5 mm), the whole pipeline with the true maps given",
                {f"lmi --model mass-effect ({len(kept)} cases)": means})
    print(f"{results['seconds_per_case']:.1f} s per case (one core each)")
    return results


def test_set(args) -> dict:
    """The held-out mass-effect test cases (module docstring); prints the table and returns the numbers."""
    from lmi import SCORE_KEYS, run_chunks, print_table

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
    table = run_chunks(MassEffectCases(args.data, config, n, predicted, refined, args.refine_evaluations), "score",
                        args.workers, n, "scored")
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
