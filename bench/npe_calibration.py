"""Simulation-based calibration of NPE's amortised posterior on held-out synthetic cases.

    .venv/bin/python bench/npe_calibration.py --data npe_data [--split test] [--cases 200] \
        [--weights Resources/NPE/npe.pt] [--figure bench/results/npe_sbc.png] [--json bench/results/npe_sbc.json]

For every case of the split (``Scripts/npe_make_dataset.py``'s test split grows its tumors in SRI24, a brain the
network never saw), the amortised network's posterior at the case's observation is sampled; printed per
parameter: the share of cases whose truth lies in the central 50 %, 90 % and 95 % credible intervals (nominal:
50 / 90 / 95), the mean posterior std and the mean absolute error of the posterior mean, both in natural units.
The rank histograms (rank of the truth among the draws: uniform when the posterior is calibrated) go to
``--figure``. Also printed: the time of one amortised answer (a forward pass and the draws).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from TumorPersonalizationLib.npe import estimator as est  # noqa: E402
from TumorPersonalizationLib.npe.config import default_weights  # noqa: E402
from TumorPersonalizationLib.npe.parameters import GROWTH_NAMES, SCALE  # noqa: E402
from TumorPersonalizationLib.npe.training.dataset import load_split  # noqa: E402
from TumorPersonalizationLib.npe.training.train import coverage  # noqa: E402

LEVELS = (0.5, 0.9, 0.95)
UNITS = {"mu1": "mm", "mu2": "", "di": "mm", "dj": "mm", "dk": "mm", "uc_T1Gd": "", "uc_FLAIR": ""}


def rank_figure(ranks: np.ndarray, draws: int, names, path: Path, bins: int = 20) -> None:
    """One rank histogram per parameter with the uniform expectation and its 99 % band."""
    from matplotlib.figure import Figure
    from scipy.stats import binom

    n = len(ranks)
    figure = Figure(figsize=(2.6 * len(names), 2.6))
    expected = n / bins
    lo, hi = binom.ppf([0.005, 0.995], n, 1.0 / bins)
    for d, name in enumerate(names):
        axis = figure.add_subplot(1, len(names), d + 1)
        axis.axhspan(lo, hi, color="0.85")
        axis.axhline(expected, color="0.4", lw=1)
        axis.hist(ranks[:, d], bins=bins, range=(0, draws), color="tab:blue")
        axis.set_title(name)
        axis.set_xticks([])
        if d:
            axis.set_yticks([])
    figure.suptitle(f"NPE amortised posterior: rank of the truth among {draws} draws, {n} held-out cases "
                    f"(grey: uniform, 99 % band)", fontsize=9)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="dataset folder (Scripts/npe_make_dataset.py)")
    parser.add_argument("--split", default="test", choices=("train", "val", "test"))
    parser.add_argument("--cases", type=int, default=200)
    parser.add_argument("--draws", type=int, default=500, help="posterior draws per case")
    parser.add_argument("--weights", type=Path, default=default_weights())
    parser.add_argument("--figure", type=Path, help="rank histograms (PNG)")
    parser.add_argument("--json", type=Path, help="the numbers as JSON")
    args = parser.parse_args(argv)

    estimator, saved = est.load_weights(args.weights)
    prior = est.box_prior(saved["low"], saved["high"])
    theta, x = load_split(args.data, args.split, args.cases)
    x = x.astype(np.float32)
    names = saved["names"]
    started = time.perf_counter()
    found = coverage(lambda obs: est.direct_posterior(estimator, prior, obs), theta, x, levels=LEVELS,
                     samples=args.draws)
    seconds = time.perf_counter() - started
    scale = np.array([SCALE[n] for n in names])
    means, stds = [], []
    for n in range(len(theta)):
        draws = est.sample(est.direct_posterior(estimator, prior, x[n]), 200, 10_000 + n) * scale
        means.append(draws.mean(axis=0))
        stds.append(draws.std(axis=0))
    error = np.abs(np.array(means) - theta * scale).mean(axis=0)
    spread = np.array(stds).mean(axis=0)
    print(f"{len(theta)} {args.split} cases, {args.draws} draws each; {seconds / len(theta):.2f} s per amortised "
          f"answer (forward pass + draws)")
    print(f"{'parameter':10s} " + " ".join(f"{int(100 * level):>6d} %" for level in LEVELS)
          + "   mean std   mean |error|")
    rows = {}
    for d, name in enumerate(names):
        shares = [found[str(level)][name] for level in LEVELS]
        unit = UNITS.get(name, "")
        print(f"{name:10s} " + " ".join(f"{100 * s:7.1f}%" for s in shares)
              + f"   {spread[d]:8.3f}   {error[d]:8.3f} {unit}")
        rows[name] = {"coverage": dict(zip(map(str, LEVELS), shares)), "mean_std": float(spread[d]),
                      "mean_abs_error": float(error[d]), "unit": unit}
    if args.figure is not None:
        rank_figure(found["ranks"], args.draws, names, args.figure)
        print(f"rank histograms: {args.figure}")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"split": args.split, "cases": int(len(theta)), "draws": args.draws,
                                         "seconds_per_answer": seconds / len(theta), "parameters": rows},
                                        indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
