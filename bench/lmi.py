"""Learn-Morph-Infer accuracy and speed.

1. Held-out synthetic test set in atlas space (``test`` split of Scripts/lmi_make_dataset.py, never used in
   training): the network's estimate is simulated on the network grid and compared with the ground-truth
   simulation: mean absolute error of the density within WM, GM and CSF (hard labels of the atlas maps) and Dice of
   {c >= level} at 0.01, 0.1 and 0.8 (the thesis' table, chapter 7). The first ``--refine-cases`` cases are also
   refined (Nelder-Mead, at most ``--refine-evaluations`` simulations each) and scored the same way. With
   ``--ablation-cases N``, the first N cases are also scored with true values swapped in for some of the network's
   (mu1, mu2, seed): which estimate costs the most Dice.
2. End to end: the example patient (Resources/ExamplePatient: SRI24 anatomy, 1 mm, synthetic tumor) through the
   whole pipeline, seconds per stage, without and with refinement, and its density against the truth.

Usage::

    python bench/lmi.py --data lmi_data [--cases 600] [--refine-cases 40] [--workers 2] [--ablation-cases 100]
                        [--skip-e2e] [--json out.json]
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

from TumorPersonalizationLib.execution import make_executor  # noqa: E402
from TumorPersonalizationLib.imaging.io import read_volume  # noqa: E402
from TumorPersonalizationLib.imaging.volume import Volume  # noqa: E402
from TumorPersonalizationLib.lmi import dataset  # noqa: E402
from TumorPersonalizationLib.lmi.config import mu_bounds, network_domain, network_tissue  # noqa: E402
from TumorPersonalizationLib.lmi.parameters import from_time_independent  # noqa: E402
from TumorPersonalizationLib.lmi.pipeline import (default_weights, nearest_domain_voxel,  # noqa: E402
                                                  personalize_lmi, predict_labels)
from TumorPersonalizationLib.lmi.refinement import DEFAULT_EVALUATIONS, refine  # noqa: E402
from TumorPersonalizationLib.lmi.training import load_network  # noqa: E402
from TumorPersonalizationLib.metrics import dice_at_levels, mae_by_tissue  # noqa: E402
from TumorPersonalizationLib.models.fisher_kolmogorov import Domain  # noqa: E402 (type of simulate_targets' domain)

LEVELS = (0.01, 0.1, 0.8)
# Thesis ch. 7, Table 1, experiment 3 (FK, mu1/mu2/x predicted): MAE 0.057 (WM), 0.057 (GM), 0.0 (CSF).
THESIS = {"MAE WM": 0.057, "MAE GM": 0.057, "MAE CSF": 0.0, "Dice 0.01": 0.943, "Dice 0.1": 0.932, "Dice 0.8": 0.861}


def score(predicted: np.ndarray, truth: np.ndarray, tissue) -> dict:
    p, t = tissue.wm.like(predicted), tissue.wm.like(truth)
    mae = mae_by_tissue(p, t, tissue.wm, tissue.gm, tissue.csf)
    dice = dice_at_levels(p, t, LEVELS)
    return {"MAE WM": mae["wm"], "MAE GM": mae["gm"], "MAE CSF": mae["csf"],
            **{f"Dice {level:g}": dice[f"{level:g}"] for level in LEVELS}}


def summarise(rows: list) -> dict:
    return {key: float(np.mean([r[key] for r in rows])) for key in rows[0]}


def print_table(title: str, rows: dict) -> None:
    keys = ["MAE WM", "MAE GM", "MAE CSF", "Dice 0.01", "Dice 0.1", "Dice 0.8"]
    print(f"\n{title}\n{'':28s}" + "".join(f"{k:>11s}" for k in keys))
    for name, values in rows.items():
        print(f"{name:28s}" + "".join(f"{values.get(k, float('nan')):11.3f}" for k in keys))


SCORE_KEYS = ("MAE WM", "MAE GM", "MAE CSF", *(f"Dice {level:g}" for level in LEVELS))


class RefineCases:
    """Refines test cases by index and scores them against their truth: (n, 10) array of SCORE_KEYS, then
    evaluations, seconds, objective before, objective after. Picklable: loads the data in the worker."""

    def __init__(self, data_dir, config: dict, predicted: np.ndarray, evaluations: int, parallel: bool):
        self.data_dir, self.config, self.predicted, self.evaluations = data_dir, config, predicted, evaluations
        self.parallel = parallel  # False when several workers share the cores
        self._data = self._grid = None

    def __call__(self, indices) -> np.ndarray:
        if self._data is None:
            self._data = dataset.load_split(self.data_dir, "test", limit=len(self.predicted))
            self._grid = network_domain(self.config), network_tissue(self.config)
        domain, tissue = self._grid
        out = []
        for i in np.asarray(indices, dtype=int):
            labels, p = self._data["labels"][i], self._data["parameters"][i]
            truth = domain.simulate(p[0], p[1], p[2], p[3:6], parallel=self.parallel)
            seed = nearest_domain_voxel(domain.inside, self.predicted[i, 2:5])
            r = refine(domain, labels == 2, labels > 0, self.predicted[i, 0], self.predicted[i, 1], seed,
                       max_evaluations=self.evaluations, mu_bounds=mu_bounds(self.config),
                       parallel=self.parallel)
            refined = simulate_targets(domain, np.array([[r["mu1"], r["mu2"], *r["seed_index"]]]))[0]
            scores = score(refined, truth, tissue)
            out.append([scores[key] for key in SCORE_KEYS] + [r["evaluations"], r["seconds"],
                                                              r["start"]["objective"], r["end"]["objective"]])
        return np.array(out)


def simulate_targets(domain: Domain, targets: np.ndarray) -> np.ndarray:
    """(n, 5) mu1, mu2, seed -> (n, ni, nj, nk) densities (seeds moved into the domain if needed)."""
    dw, rho, days = from_time_independent(targets[:, 0], targets[:, 1])
    seeds = np.array([nearest_domain_voxel(domain.inside, s) for s in targets[:, 2:5]])
    return domain.simulate_batch(dw, rho, days, seeds)


ABLATIONS = {  # which of (mu1, mu2, seed) come from the truth
    "true mu1, mu2; network's seed": (0, 1),
    "true seed; network's mu1, mu2": (2, 3, 4),
    "true mu1 and seed; network's mu2": (0, 2, 3, 4),
    "true mu2 and seed; network's mu1": (1, 2, 3, 4),
}


def ablation(domain, tissue, predicted: np.ndarray, data: dict, network_rows: list) -> dict:
    """Mean scores of the first ``len(network_rows)`` cases (their network-alone scores) with the ABLATIONS' true
    values swapped into the network's estimate."""
    n = len(network_rows)
    p = data["parameters"][:n]
    truth = domain.simulate_batch(p[:, 0], p[:, 1], p[:, 2], p[:, 3:6])
    results = {"network": summarise(network_rows)}
    for name, columns in ABLATIONS.items():
        mixed = np.array(predicted[:n], dtype=np.float64, copy=True)
        mixed[:, list(columns)] = data["targets"][:n][:, list(columns)]
        guess = simulate_targets(domain, mixed)
        results[name] = summarise([score(g, t, tissue) for g, t in zip(guess, truth)])
    print_table(f"Ablation, first {n} test cases: true values swapped in", results)
    return results


def test_set(args, model, config) -> dict:
    tissue = network_tissue(config)
    domain = network_domain(config)
    data = dataset.load_split(args.data, "test", limit=args.cases)
    n = len(data["targets"])
    wm_gm = np.stack([tissue.wm.array, tissue.gm.array])
    start = time.perf_counter()
    predicted = predict_labels(model, config, data["labels"], wm_gm)
    predicted[:, :2] = np.clip(predicted[:, :2], *np.transpose(mu_bounds(config)))  # as the pipeline does
    network_s = (time.perf_counter() - start) / n
    p = data["parameters"]
    rel = np.abs(predicted[:, :2] - data["targets"][:, :2]) / data["targets"][:, :2]
    seed_mm = np.linalg.norm(predicted[:, 2:5] - data["targets"][:, 2:5], axis=1) * tissue.wm.geometry.spacing_mm[0]
    print(f"{n} test cases; network {1000 * network_s:.1f} ms/case; median relative error mu1 "
          f"{np.median(rel[:, 0]):.3f}, mu2 {np.median(rel[:, 1]):.3f}; seed error median {np.median(seed_mm):.1f} mm, "
          f"mean {seed_mm.mean():.1f} mm", flush=True)
    rows = []
    chunk = 50
    for begin in range(0, n, chunk):
        part = slice(begin, min(begin + chunk, n))
        truth = domain.simulate_batch(p[part, 0], p[part, 1], p[part, 2], p[part, 3:6])
        guess = simulate_targets(domain, predicted[part])
        rows += [score(g, t, tissue) for g, t in zip(guess, truth)]
        print(f"  scored {len(rows)}/{n}", flush=True)
    refined_rows, refine_info = [], []
    k = min(args.refine_cases, n)
    if k:
        executor = make_executor(RefineCases(args.data, config, predicted[:k], args.refine_evaluations,
                                             parallel=args.workers == 1), args.workers)
        start = time.perf_counter()
        try:
            for begin in range(0, k, chunk):  # in chunks, to show progress
                out = executor(np.arange(begin, min(begin + chunk, k)))
                refined_rows += [dict(zip(SCORE_KEYS, r[:len(SCORE_KEYS)])) for r in out]
                refine_info += [r[len(SCORE_KEYS):] for r in out]
                print(f"  refined {len(refined_rows)}/{k} ({time.perf_counter() - start:.0f} s)", flush=True)
        finally:
            executor.close()
    network_rows_subset = rows[:k]
    results = {"network": summarise(rows)}
    if args.ablation_cases:
        results["ablation"] = ablation(domain, tissue, predicted, data, rows[:args.ablation_cases])
    table = {f"network ({n} cases)": results["network"], "thesis (12k cases)": THESIS}
    if refined_rows:
        k = len(refined_rows)
        results["network_subset"] = summarise(network_rows_subset)
        results["refined_subset"] = summarise(refined_rows)
        info = np.array(refine_info)
        results["refinement"] = {"cases": k, "mean_evaluations": float(info[:, 0].mean()),
                                 "mean_seconds": float(info[:, 1].mean()),
                                 "objective_before": float(info[:, 2].mean()),
                                 "objective_after": float(info[:, 3].mean())}
        table[f"network (first {k})"] = results["network_subset"]
        table[f"refined (first {k})"] = results["refined_subset"]
    results["parameters"] = {"mu1_median_relative_error": float(np.median(rel[:, 0])),
                             "mu2_median_relative_error": float(np.median(rel[:, 1])),
                             "seed_error_mm_median": float(np.median(seed_mm)),
                             "seed_error_mm_mean": float(seed_mm.mean())}
    print_table("Held-out synthetic test set (atlas space, 3 mm network grid)", table)
    if refined_rows:
        print(f"refinement: {results['refinement']}")
    return results


def end_to_end(refine_fit: bool) -> dict:
    folder = ROOT / "Resources" / "ExamplePatient"
    t1 = read_volume(folder / "t1.nii.gz")
    t1gd, flair = read_volume(folder / "t1gd.nii.gz"), read_volume(folder / "flair.nii.gz")
    truth = read_volume(folder / "density_truth.nii.gz")
    start = time.perf_counter()
    result, tissue, _ = personalize_lmi(t1, t1gd, flair, refine_fit=refine_fit)
    total = time.perf_counter() - start
    truth_density = truth.array.astype(np.float32) / 255.0
    dice = dice_at_levels(result.density, Volume(truth_density, truth.geometry), LEVELS)
    brain = t1.array > 0
    mae = float(np.abs(result.density.array - truth_density)[brain].mean())
    out = {"refine": refine_fit, "total_s": total, "stages_s": result.timings,
           "dice": {f"{k}": v for k, v in dice.items()}, "mae_brain": mae,
           "parameters": {k: result.parameters[k]["value"] for k in ("mu1", "mu2", "Dw", "rho", "T")},
           "truth": json.loads((folder / "truth.json").read_text())}
    stages = ", ".join(f"{k} {v:.1f} s" for k, v in result.timings.items())
    print(f"\nEnd to end, example patient (1 mm, {t1.shape}), refine={refine_fit}: {total:.1f} s ({stages})")
    print(f"  mu1 {out['parameters']['mu1']:.2f} (truth {out['truth']['mu1']:.2f}), mu2 {out['parameters']['mu2']:.2f} "
          f"(truth {out['truth']['mu2']:.2f}); Dice vs truth at {LEVELS}: "
          f"{[round(v, 3) for v in dice.values()]}; MAE in brain {mae:.3f}", flush=True)
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=ROOT / ".lmi_data", help="dataset folder with test shards")
    parser.add_argument("--weights", type=Path, default=default_weights())
    parser.add_argument("--cases", type=int, default=600)
    parser.add_argument("--refine-cases", type=int, default=40)
    parser.add_argument("--refine-evaluations", type=int, default=DEFAULT_EVALUATIONS)
    parser.add_argument("--workers", type=int, default=1, help="processes for the refinement")
    parser.add_argument("--ablation-cases", type=int, default=0, help="score true-value swaps on these cases")
    parser.add_argument("--skip-test-set", action="store_true")
    parser.add_argument("--skip-e2e", action="store_true")
    parser.add_argument("--json", type=Path, help="write the numbers here")
    args = parser.parse_args(argv)
    model, config = load_network(args.weights)
    results = {}
    if not args.skip_test_set:
        results["test_set"] = test_set(args, model, config)
    if not args.skip_e2e:
        results["end_to_end"] = [end_to_end(False), end_to_end(True)]
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
