"""The amortised round's data: prior simulations in many brains, observed as at run time.

A shard holds ``dataset.shard_size`` accepted cases grown in one anatomy instance (the surrogate's shards'
scheme, :mod:`TumorPersonalizationLib.surrogate.training.dataset`: base anatomy by shard index, a random smooth
deformation for train and val, SRI24 held out for the test split). Each case draws

- a seed voxel among those with WM + GM >= ``sampling.seed_min_wm_plus_gm`` (jittered within the voxel);
- mu1, mu2, u_c^T1Gd, u_c^FLAIR uniformly in ``dataset.ranges``;

simulates on a cube of ``simulation.box_mm`` around the seed (the run time's region of interest stands in for it),
thresholds the density into the label map, and centres the observation crop on the T1Gd centre of mass as run
time does. A case is kept when

- **visible**: the T1Gd region holds at least ``acceptance.t1gd_min_ml`` (run time refuses an empty T1Gd);
- **inside the box**: the FLAIR region covers at most ``acceptance.flair_max_fraction_of_box`` of the cube;
- **seed near the centre**: the seed lies within ``ranges.seed_offset_mm`` of the crop centre along each axis
  (the amortised prior's seed box).

Stored per shard (``{split}_{index:05d}.npz``): ``theta`` float32 (n, 7) in the scaled coordinates of
:mod:`..parameters`, ``x`` float16 (n, 4, N, N, N) observations (label map, WM, GM, CSF), ``anatomy``,
``amplitude_mm``, ``drawn``, ``rejected`` (per reason of :data:`REJECTIONS`), ``simulation_seconds``.
The amortised network infers no PET parameters: PET cases start their rounds from the prior.
"""
from __future__ import annotations

import time

import numpy as np

from ...errors import InputError
from ...lmi.parameters import from_time_independent
from ...lmi.training.dataset import seed_candidates
from ...models.fisher_kolmogorov import Domain
from ...surrogate.crop import extract_box
from ...surrogate.training.anatomies import deform
from ...surrogate.training.dataset import (check_anatomies, read_shard, shard_anatomy, shard_count, shard_path,
                                           shard_rng, write_shard)
from ..observation import CropFrame, thresholded_label_map
from ..parameters import GROWTH_NAMES, SCALE

SPLITS = ("train", "val", "test")
REJECTIONS = ("seed outside the brain", "invisible", "fills the box", "seed far from the centre")
MAX_DRAWS_PER_CASE = 200

__all__ = ["SPLITS", "REJECTIONS", "make_shard", "global_box", "load_split", "shard_path", "shard_count",
           "write_shard", "check_anatomies"]


def global_box(config: dict) -> tuple:
    """(low, high) scaled box of the amortised prior (``dataset.ranges``), in GROWTH_NAMES order."""
    ranges = config["dataset"]["ranges"]
    offset = float(ranges["seed_offset_mm"])
    low = [ranges["mu1"][0], ranges["mu2"][0], -offset, -offset, -offset, ranges["uc_T1Gd"][0],
           ranges["uc_FLAIR"][0]]
    high = [ranges["mu1"][1], ranges["mu2"][1], offset, offset, offset, ranges["uc_T1Gd"][1], ranges["uc_FLAIR"][1]]
    scale = np.array([SCALE[n] for n in GROWTH_NAMES])
    return np.array(low) / scale, np.array(high) / scale


def draw(rng: np.random.Generator, config: dict, candidates: np.ndarray) -> tuple:
    """(seed index (3,), mu1, mu2, uc_T1Gd, uc_FLAIR) uniform in the config's ranges."""
    ranges = config["dataset"]["ranges"]
    seed = candidates[rng.integers(len(candidates))] + rng.uniform(-0.5, 0.5, 3)
    values = [rng.uniform(*ranges[k]) for k in ("mu1", "mu2", "uc_T1Gd", "uc_FLAIR")]
    return (seed, *values)


def simulate_case(maps: np.ndarray, spacing_mm: float, seed: np.ndarray, mu1: float, mu2: float, uc_t1: float,
                  uc_fl: float, config: dict):
    """One case: (theta (7,) scaled, x (4, N, N, N) float32) or the reason it is rejected (a str)."""
    sim = config["dataset"]["simulation"]
    half = int(np.ceil(float(sim["box_mm"]) / 2.0 / spacing_mm))
    start = np.floor(seed).astype(int) - half
    box = extract_box(maps, start, (2 * half + 1,) * 3)
    local_seed = seed - start
    domain = Domain(box[0], box[1], (spacing_mm,) * 3, ratio=float(sim["ratio"]))
    try:
        domain.check_seed(local_seed)
    except InputError:
        return "seed outside the brain"
    dw, rho, days = from_time_independent(mu1, mu2)
    density = domain.simulate(float(dw), float(rho), float(days), local_seed, parallel=False)
    label = thresholded_label_map(density, uc_t1, uc_fl)
    acceptance = config["dataset"]["acceptance"]
    t1gd = label >= 1.0
    if t1gd.sum() * spacing_mm ** 3 / 1000.0 < float(acceptance["t1gd_min_ml"]):
        return "invisible"
    if (label > 0).mean() > float(acceptance["flair_max_fraction_of_box"]):
        return "fills the box"
    centre = np.argwhere(t1gd).mean(axis=0)
    offset_mm = (local_seed - centre) * spacing_mm
    if np.any(np.abs(offset_mm) > float(config["dataset"]["ranges"]["seed_offset_mm"])):
        return "seed far from the centre"
    observation = config["observation"]
    frame = CropFrame(tuple(centre), int(observation["crop_size"]), (spacing_mm,) * 3,
                      float(observation["crop_spacing_mm"]))
    x = frame.crop(np.concatenate([label[None], box]))
    natural = np.array([mu1, mu2, *offset_mm, uc_t1, uc_fl])
    return natural / np.array([SCALE[n] for n in GROWTH_NAMES]), x


def make_shard(base_maps: dict, config: dict, split: str, index: int, size: int | None = None) -> dict:
    """Simulate until ``size`` (default: the config's shard size) cases are accepted; one core.

    ``base_maps``: anatomy name -> (3, ni, nj, nk) WM / GM / CSF on the isotropic simulation grid
    (:func:`TumorPersonalizationLib.surrogate.training.anatomies.simulation_maps`).
    """
    check_anatomies(config)
    size = int(size or config["dataset"]["shard_size"])
    rng = shard_rng(config, split, index)
    name, amplitude = shard_anatomy(config, split, index, rng)
    if name not in base_maps:
        raise InputError(f"shard {split} {index} grows in {name}, which was not loaded")
    spacing = float(config["dataset"]["simulation"]["spacing_mm"])
    maps = deform(base_maps[name], spacing, amplitude, config["deformation"]["smoothness_mm"], rng)
    candidates = seed_candidates(maps[0], maps[1], config["dataset"]["sampling"]["seed_min_wm_plus_gm"])
    theta, x, rejected = [], [], dict.fromkeys(REJECTIONS, 0)
    drawn, seconds = 0, 0.0
    while len(theta) < size:
        if drawn >= MAX_DRAWS_PER_CASE * size:
            raise InputError(f"NPE shard {split} {index}: {drawn} draws gave {len(theta)} accepted cases; the "
                             "config's ranges and acceptance rules leave almost nothing")
        drawn += 1
        started = time.perf_counter()
        made = simulate_case(maps, spacing, *draw(rng, config, candidates), config)
        seconds += time.perf_counter() - started
        if isinstance(made, str):
            rejected[made] += 1
            continue
        theta.append(made[0].astype(np.float32))
        x.append(made[1].astype(np.float16))
    return {"theta": np.asarray(theta), "x": np.asarray(x), "anatomy": np.str_(name),
            "amplitude_mm": np.float64(amplitude), "drawn": np.int64(drawn),
            "rejected": np.array([rejected[r] for r in REJECTIONS], dtype=np.int64),
            "simulation_seconds": np.float64(seconds)}


def load_split(folder, split: str, limit: int | None = None) -> tuple:
    """(theta (n, 7) float32, x (n, 4, N, N, N) float16) of a split's shards in index order (``limit``: the first
    cases only); InputError when there are none."""
    thetas, xs, count = [], [], 0
    for index in range(shard_count_on_disk(folder, split)):
        shard = read_shard(shard_path(folder, split, index))
        thetas.append(shard["theta"])
        xs.append(shard["x"])
        count += len(shard["theta"])
        if limit is not None and count >= limit:
            break
    if not thetas:
        raise InputError(f"no {split} shards in {folder} (make them with Scripts/npe_make_dataset.py)")
    theta, x = np.concatenate(thetas), np.concatenate(xs)
    return (theta[:limit], x[:limit]) if limit is not None else (theta, x)


def shard_count_on_disk(folder, split: str) -> int:
    """How many consecutive shards of ``split`` exist from index 0."""
    index = 0
    while shard_path(folder, split, index).exists():
        index += 1
    return index


MANIFEST_NAME = "dataset.json"


def generation_settings(config: dict) -> dict:
    """The parts of a config that decide what the shards hold (not how many there are)."""
    made = {k: v for k, v in config["dataset"].items() if k != "cases"}
    return {"observation": config["observation"], "anatomies": config["anatomies"],
            "deformation": config["deformation"], **made}


def check_manifest(folder, config: dict, create: bool = False) -> None:
    """Refuse a dataset folder whose shards were made with other generation settings than ``config``'s
    (``dataset.json`` records them; with ``create`` it is written when absent)."""
    from pathlib import Path

    from ... import files

    files.check_manifest(Path(folder) / MANIFEST_NAME, generation_settings(config), create=create,
                         missing="make the dataset with Scripts/npe_make_dataset.py")
