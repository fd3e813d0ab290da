"""The surrogate's data: tumors simulated by the solver in many brains, cropped around their seeds.

A shard holds ``shard_size`` accepted cases grown in one anatomy instance: shard ``index`` of a split takes the
split's base anatomies in turn (config ``anatomies``) and deforms it randomly (:mod:`.anatomies`; amplitude uniform
in ``deformation.amplitude_mm``, none for the test split), so the training set sees as many brains as it has shards.
Each case draws Dw, rho and T uniformly from the config's ``parameters`` ranges and a seed uniformly among the voxels
with WM + GM >= ``sampling.seed_min_wm_plus_gm`` (jittered within the voxel), simulates on the whole
``simulation.spacing_mm`` grid, and is kept when

- **not invisible**: at least ``visible_min_ml`` mL has c >= ``visible_level``;
- **not filling the brain**: c <= ``max_density_outside_crop`` everywhere outside the crop's cube (the surrogate
  predicts zero there).

Draws whose Fisher front radius 2 sqrt(Dw rho) T exceeds ``max_front_radius_mm`` are discarded without simulating:
even in grey matter alone (Dw / 10) such a front lies far beyond the crop's faces, so these draws could only be
discarded as filling the brain; skipping them changes only the time spent, not the accepted distribution.

The crops (:func:`..crop.sample_crop`, the run-time function) are stored as

    tissue      uint8 (n, 3, D, D, D)   WM, GM, CSF x 255 (rounded)
    density     float16 (n, D, D, D)    solver density on the crop grid
    parameters  float64 (n, 3)          Dw (mm^2/day), rho (1/day), T (days)
    seeds       float64 (n, 3)          seed, continuous voxel index of the simulation grid
    anatomy     str                     base anatomy; amplitude_mm: its deformation (RMS, mm)
    drawn       int                     parameter sets drawn (accepted + rejected)
    rejected    int (3,)                REJECTIONS: skipped by the front radius, invisible, filling the brain
    simulation_seconds  float           solver time for the shard (one core)

in ``{split}_{index:05d}.npz``. A shard's random stream depends only on (config seed, split, index): shards can be
made in any order by any number of processes, and an interrupted run resumes by making the missing ones.
"""
from __future__ import annotations

import time
import zipfile
from pathlib import Path

import numpy as np
from scipy import ndimage

from ...errors import InputError
from ... import files
from ...files import atomic_path
from ...lmi.training.dataset import seed_candidates
from ...models.fisher_kolmogorov import Domain
from ..config import crop_size, crop_spacing_mm, parameter_ranges
from ..crop import sample_crop, smoothing_sigma
from .anatomies import BASE_ANATOMIES, HELD_OUT, deform

SPLITS = ("train", "val", "test")
REJECTIONS = ("front radius", "invisible", "fills the brain")
TISSUE_SCALE = 255.0
MANIFEST_NAME = "dataset.json"
MAX_DRAWS_PER_CASE = 200
"""A shard gives up (InputError) after this many draws per wanted case: the config accepts almost nothing."""


def check_anatomies(config: dict) -> None:
    """InputError unless every split names known anatomies and the held-out ones appear only in ``test``."""
    for split in SPLITS:
        names = config["anatomies"].get(split, [])
        unknown = sorted(set(names) - set(BASE_ANATOMIES))
        if unknown or not names:
            raise InputError(f"surrogate config: anatomies.{split} must list some of {BASE_ANATOMIES}, got {names}")
        if split != "test" and set(names) & set(HELD_OUT):
            raise InputError(f"surrogate config: {sorted(set(names) & set(HELD_OUT))} is held out for evaluation "
                             f"and must not appear in anatomies.{split}")


def shard_rng(config: dict, split: str, index: int) -> np.random.Generator:
    if split not in SPLITS:
        raise InputError(f"split must be one of {SPLITS}, got {split!r}")
    return np.random.default_rng([int(config["dataset"]["seed"]), SPLITS.index(split), int(index)])


def shard_anatomy(config: dict, split: str, index: int, rng: np.random.Generator) -> tuple[str, float]:
    """(base anatomy, deformation amplitude in mm) of a shard; draws the amplitude from ``rng``."""
    names = config["anatomies"][split]
    amplitude = 0.0 if split == "test" else float(rng.uniform(*config["deformation"]["amplitude_mm"]))
    return names[index % len(names)], amplitude


def draw_case(rng: np.random.Generator, config: dict, candidates: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One draw: (Dw, rho, T) uniform in the config's ranges, and a seed index jittered within a candidate voxel."""
    ranges = parameter_ranges(config)
    parameters = rng.uniform(ranges[:, 0], ranges[:, 1])
    seed = candidates[rng.integers(len(candidates))] + rng.uniform(-0.5, 0.5, 3)
    return parameters, seed


def could_be_accepted(parameters: np.ndarray, acceptance: dict) -> bool:
    """False for draws certain to fill the brain (front radius over ``max_front_radius_mm``)."""
    dw, rho, days = parameters
    return 2.0 * np.sqrt(dw * rho) * days <= acceptance["max_front_radius_mm"]


def max_outside_crop(density: np.ndarray, seed: np.ndarray, spacing_mm: float, config: dict) -> float:
    """The largest density outside the crop's cube (the surrogate predicts zero there)."""
    half = crop_size(config) / 2.0 * crop_spacing_mm(config) / spacing_mm  # cube half-width, simulation voxels
    lo = np.maximum(np.ceil(seed - half).astype(int), 0)
    hi = np.minimum(np.floor(seed + half).astype(int) + 1, density.shape)
    outside = density.copy()
    outside[tuple(slice(a, max(a, b)) for a, b in zip(lo, hi))] = 0.0
    return float(outside.max())


def rejection(density: np.ndarray, seed: np.ndarray, spacing_mm: float, config: dict) -> str | None:
    """Why a simulated case is discarded (one of REJECTIONS), or None when it is kept."""
    acceptance = config["acceptance"]
    visible_ml = np.count_nonzero(density >= acceptance["visible_level"]) * spacing_mm ** 3 / 1000.0
    if visible_ml < acceptance["visible_min_ml"]:
        return "invisible"
    if max_outside_crop(density, seed, spacing_mm, config) > acceptance["max_density_outside_crop"]:
        return "fills the brain"
    return None


def quantise_tissue(crops: np.ndarray) -> np.ndarray:
    return np.rint(np.clip(crops, 0.0, 1.0) * TISSUE_SCALE).astype(np.uint8)


def dequantise_tissue(stored: np.ndarray) -> np.ndarray:
    return stored.astype(np.float32) / np.float32(TISSUE_SCALE)


class AnatomyInstance:
    """One brain on the simulation grid, ready to simulate and crop: solver domain, smoothed maps, seed voxels.

    Parameters
    ----------
    maps : (3, ni, nj, nk) float32
        WM, GM, CSF on the isotropic simulation grid.
    config : dict
    """

    def __init__(self, maps: np.ndarray, config: dict):
        self.config = config
        self.spacing_mm = float(config["simulation"]["spacing_mm"])
        self.maps = maps
        self.domain = Domain(maps[0], maps[1], (self.spacing_mm,) * 3, ratio=float(config["simulation"]["ratio"]))
        sigma = smoothing_sigma((self.spacing_mm,) * 3, crop_spacing_mm(config))
        # Low-pass once for all crops of this brain (the run time's SurrogateDomain does the same).
        self.smoothed = np.stack([ndimage.gaussian_filter(m, sigma, mode="constant", cval=0.0) for m in maps]
                                 ) if np.any(sigma > 0.1) else maps
        self.candidates = seed_candidates(maps[0], maps[1], config["sampling"]["seed_min_wm_plus_gm"])

    def simulate(self, parameters: np.ndarray, seed: np.ndarray) -> np.ndarray:
        """The solver's density on the simulation grid (one core)."""
        return self.domain.simulate(*parameters, seed, parallel=False)

    def crops(self, density: np.ndarray, seed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(3, D, D, D) tissue and (D, D, D) density crops around the seed, float32."""
        size, spacing = crop_size(self.config), crop_spacing_mm(self.config)
        grid = (self.spacing_mm,) * 3
        tissue = sample_crop(self.smoothed, seed, size, grid, spacing, smooth=False)
        return tissue, np.clip(sample_crop(density, seed, size, grid, spacing), 0.0, 1.0)


def make_shard(base_maps: dict, config: dict, split: str, index: int, size: int | None = None) -> dict:
    """Simulate until ``size`` (default: the config's shard size) cases are accepted; one core.

    ``base_maps`` maps anatomy names to (3, ni, nj, nk) WM / GM / CSF on the simulation grid
    (:func:`.anatomies.simulation_maps`).
    """
    check_anatomies(config)
    size = int(size or config["dataset"]["shard_size"])
    rng = shard_rng(config, split, index)
    name, amplitude = shard_anatomy(config, split, index, rng)
    if name not in base_maps:
        raise InputError(f"shard {split} {index} grows in {name}, which was not loaded")
    spacing = float(config["simulation"]["spacing_mm"])
    instance = AnatomyInstance(deform(base_maps[name], spacing, amplitude, config["deformation"]["smoothness_mm"],
                                      rng), config)
    tissue, density, parameters, seeds = [], [], [], []
    rejected = dict.fromkeys(REJECTIONS, 0)
    drawn, seconds = 0, 0.0
    while len(parameters) < size:
        if drawn >= MAX_DRAWS_PER_CASE * size:
            raise InputError(f"shard {split} {index}: {drawn} draws gave {len(parameters)} accepted cases; the "
                             "config's parameter ranges and acceptance rules leave almost nothing")
        p, seed = draw_case(rng, config, instance.candidates)
        drawn += 1
        if not could_be_accepted(p, config["acceptance"]):
            rejected["front radius"] += 1
            continue
        start = time.perf_counter()
        c = instance.simulate(p, seed)
        seconds += time.perf_counter() - start
        reason = rejection(c, seed, spacing, config)
        if reason is not None:
            rejected[reason] += 1
            continue
        tissue_crop, density_crop = instance.crops(c, seed)
        tissue.append(quantise_tissue(tissue_crop))
        density.append(density_crop.astype(np.float16))
        parameters.append(p)
        seeds.append(seed)
    return {"tissue": np.asarray(tissue), "density": np.asarray(density), "parameters": np.asarray(parameters),
            "seeds": np.asarray(seeds), "anatomy": np.str_(name), "amplitude_mm": np.float64(amplitude),
            "drawn": np.int64(drawn), "rejected": np.array([rejected[r] for r in REJECTIONS], dtype=np.int64),
            "simulation_seconds": np.float64(seconds)}


def shard_path(folder, split: str, index: int) -> Path:
    return Path(folder) / f"{split}_{index:05d}.npz"


def shard_count(config: dict, split: str) -> int:
    return -(-int(config["dataset"]["cases"][split]) // int(config["dataset"]["shard_size"]))


def write_shard(shard: dict, path) -> Path:
    """Write a shard atomically (a half-written shard never exists under its name)."""
    with atomic_path(path, ".npz") as tmp:
        np.savez_compressed(tmp, **shard)
    return Path(path)


def read_shard(path) -> dict:
    try:
        with np.load(path) as data:
            return {key: data[key] for key in data.files}
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as error:
        raise InputError(f"surrogate shard {path}: cannot read it ({error})") from error


def generation_settings(config: dict) -> dict:
    """The parts of a config that decide what the shards hold (not how many there are)."""
    keys = ("crop", "simulation", "parameters", "sampling", "acceptance", "anatomies", "deformation")
    return {**{k: config[k] for k in keys}, "seed": config["dataset"]["seed"],
            "shard_size": config["dataset"]["shard_size"]}


def check_manifest(folder, config: dict, create: bool = False) -> None:
    """Refuse a dataset folder whose shards were made from other generation settings than ``config``'s.

    ``dataset.json`` in the folder records :func:`generation_settings`; with ``create`` it is written when absent.
    """
    files.check_manifest(Path(folder) / MANIFEST_NAME, generation_settings(config), create=create, missing="make the dataset with Scripts/surrogate_make_dataset.py")


def load_split(folder, split: str, limit: int | None = None) -> dict:
    """The shards of a split, concatenated in index order (``limit``: the first cases only).

    InputError when a shard before the last needed one is missing (a later shard must not stand in for it).
    """
    n_cases, shards = 0, []
    for index in range(10 ** 6):
        if limit is not None and n_cases >= limit:
            break
        path = shard_path(folder, split, index)
        if not path.exists():
            if limit is not None and index == 0:
                raise InputError(f"no {split} shards in {folder} (make them with Scripts/surrogate_make_dataset.py)")
            if limit is not None:
                raise InputError(f"dataset {folder}: {path.name} is missing (make it with "
                                 "Scripts/surrogate_make_dataset.py)")
            break
        shards.append(read_shard(path))
        n_cases += len(shards[-1]["parameters"])
    if not shards:
        raise InputError(f"no {split} shards in {folder} (make them with Scripts/surrogate_make_dataset.py)")
    keys = ("tissue", "density", "parameters", "seeds")
    data = {key: np.concatenate([s[key] for s in shards])[:limit] for key in keys}
    data["anatomy"] = np.concatenate([[str(s["anatomy"])] * len(s["parameters"]) for s in shards])[:limit]
    data["drawn"] = int(sum(int(s["drawn"]) for s in shards))
    data["rejected"] = np.sum([s["rejected"] for s in shards], axis=0)
    return data
