"""Refined targets: what the refinement finds for each training case, so that a network can learn to do it.

Trained on the true parameters with a squared loss, the network learns their mean given the two masks. From two masks
whose visibility levels are unknown, mu1 (how far the tumor reaches beyond FLAIR) is weakly determined, and that mean
simulates a density that explains the masks worse than what the refinement finds by simulating (docs/lmi_notes.md:
test Dice 0.820 / 0.816 / 0.676 alone, 0.920 / 0.925 / 0.809 refined). Refining every training case, starting from its
true parameters, gives the parameters that the masks point to under the refinement's objective: a function of the
masks alone, without the levels' noise, which is what a network would have to learn to amortise the refinement.
Training reads them instead of the true targets when the config's ``training.targets`` is ``"refined"``
(:func:`~TumorPersonalizationLib.lmi.dataset.load_split`).

Storage: ``refined_{split}_{index:05d}.npz`` beside each shard (written atomically, so a run resumes by refining
the shards that have no such file):

    targets          float32 (n, 5)   refined mu1 (mm), mu2, seed i, j, k (network-grid voxel index)
    objective_start  float64 (n,)     the refinement's objective at the true parameters
    objective_end    float64 (n,)     and at the refined ones (never higher)
    evaluations      int64 (n,)       simulations spent per case
    max_evaluations  int64 ()         simulations allowed per case (``--evaluations``): a rerun with another
                                      value is refused instead of mixing two searches in one dataset (files
                                      written before this field existed are taken as they are)
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import InputError
from ..models.fisher_kolmogorov import Domain
from . import dataset
from .config import mu_bounds
from .refinement import refine


def refine_shard(domain: Domain, shard: dict, mu_bounds, max_evaluations: int, *, parallel: bool = False,
                 progress=None) -> dict:
    """Refine every case of a shard from its true parameters.

    Parameters
    ----------
    domain : Domain
        The network grid's solver domain (the one the cases grew in).
    shard : dict
        ``labels`` (n, ni, nj, nk) uint8 and ``targets`` (n, 5), as :func:`~.dataset.make_shard` returns.
    mu_bounds : ((mu1_low, mu1_high), (mu2_low, mu2_high))
        The search box (the network's target range, :func:`~.config.mu_bounds`).
    max_evaluations : int
        Simulations allowed per case.
    parallel : bool
        Let each simulation use every core (False in worker processes side by side).
    progress : callable(cases_done: int) or None

    Returns
    -------
    dict
        The arrays stored in a ``refined_*.npz`` file (module docstring).
    """
    labels, targets = np.asarray(shard["labels"]), np.asarray(shard["targets"], dtype=np.float64)
    out = {"targets": np.empty((len(targets), 5), np.float32), "objective_start": np.empty(len(targets)),
           "objective_end": np.empty(len(targets)), "evaluations": np.empty(len(targets), np.int64),
           "max_evaluations": np.int64(max_evaluations)}
    for n, (case, (mu1, mu2, *seed)) in enumerate(zip(labels, targets)):
        # A few true mu1 lie just above the box (41 mm vs 40): the search must start inside it.
        mu1, mu2 = np.clip(mu1, *mu_bounds[0]), np.clip(mu2, *mu_bounds[1])
        result = refine(domain, case == 2, case > 0, mu1, mu2, seed, max_evaluations=max_evaluations,
                        mu_bounds=mu_bounds, parallel=parallel)
        out["targets"][n] = [result["mu1"], result["mu2"], *result["seed_index"]]
        out["objective_start"][n] = result["start"]["objective"]
        out["objective_end"][n] = result["end"]["objective"]
        out["evaluations"][n] = result["evaluations"]
        if progress is not None:
            progress(n + 1)
    return out


def check_budget(path, max_evaluations: int) -> None:
    """Refuse to add to refined files made with another simulation budget (``max_evaluations``) than this run's."""
    path = Path(path)
    with np.load(path) as refined:
        if "max_evaluations" not in refined.files:  # made before the budget was recorded
            return
        made_with = int(refined["max_evaluations"])
    if made_with != max_evaluations:
        raise InputError(f"{path} was refined with {made_with} simulations per case, this run allows "
                         f"{max_evaluations}: rerun with --evaluations {made_with}, or delete the "
                         f"{path.name.rsplit('_', 1)[0]}_* files to redo them")


class RefineShards:
    """Refines whole shards by index and writes their ``refined_*`` files; skips shards that have one.

    A picklable batch function for :mod:`~TumorPersonalizationLib.execution` (a process pool or a Dask cluster):
    ``RefineShards(folder, "train", config, 100)(indices)`` returns an (n, 4) array per shard: cases, mean
    objective at the true parameters, mean after refinement, mean simulations per case (NaN for skipped shards).
    The domain is the one the cases grew in: the folder's ``tissue.npz`` on the config's grid spacing.
    """

    def __init__(self, folder, split: str, config: dict, max_evaluations: int):
        self.folder, self.split, self.max_evaluations = Path(folder), split, max_evaluations
        self.spacing_mm = (float(config["grid"]["spacing_mm"]),) * 3
        self.mu_bounds = mu_bounds(config)
        self._domain = None

    def __call__(self, indices) -> np.ndarray:
        if self._domain is None:
            wm, gm = dataset.load_tissue(self.folder)
            self._domain = Domain(wm, gm, self.spacing_mm)
        rows = []
        for index in np.asarray(indices, dtype=int):
            out_path = dataset.refined_path(self.folder, self.split, index)
            if out_path.exists():
                check_budget(out_path, self.max_evaluations)
                rows.append([np.nan] * 4)
                continue
            with np.load(dataset.shard_path(self.folder, self.split, index)) as shard:
                cases = {"labels": shard["labels"], "targets": shard["targets"]}
            # Serial kernels (one core per process): the results do not depend on how many processes run.
            refined = refine_shard(self._domain, cases, self.mu_bounds, self.max_evaluations, parallel=False)
            dataset.write_shard(refined, out_path)
            rows.append([len(refined["targets"]), refined["objective_start"].mean(), refined["objective_end"].mean(),
                         refined["evaluations"].mean()])
        return np.array(rows, dtype=np.float64).reshape(-1, 4)
