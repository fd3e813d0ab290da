"""Training and test data for the inverse network: simulated tumors in the atlas, imaged as two masks.

A case draws (Dw, rho, T, seed, c_T1Gd, c_FLAIR) uniformly from the config's ranges (thesis, chapter 7), with the
seed at a random position in a voxel of WM + GM >= ``seed_min_wm_plus_gm``; simulates on the network grid; and
thresholds the density into T1Gd (c >= c_T1Gd) and FLAIR (c >= c_FLAIR) masks. Cases with a T1Gd lesion under
``t1gd_min_ml`` or a FLAIR lesion outside [flair_min_ml, flair_max_ml] are discarded (the thesis discards
"unrealistically small or large" tumors by BraTS sizes; these bounds are ours: enhancing core >= 1 mL, whole lesion
5-250 mL). Uniform draws over the thesis' ranges mostly make tumors that fill the brain (85 % of draws in a
300-draw sample; 7 % accepted), so draws whose Fisher front radius 2 sqrt(Dw rho) T exceeds ``max_front_radius_mm``
(250 mm) are discarded before simulating: even in grey matter alone (Dw / 10) that front lies 79 mm out, a lesion
far above 250 mL. This only skips simulations that would be discarded; the accepted distribution is unchanged.

With the mass-effect model (the config's ``model`` section: ``{"name": "mass-effect", "gamma_pa": [low, high]}``)
a case also draws gamma (Pa) uniformly, and is grown by :class:`~...models.mass_effect.MassEffectDomain` in the
atlas' WM / GM / CSF. A Fisher-Kolmogorov run screens each draw first (~4x cheaper on this grid): only draws whose
Fisher-Kolmogorov lesion lies within :data:`SCREEN_FACTORS` of the acceptance bounds get the mass-effect run, and
the acceptance is then decided on the mass-effect lesion. In a 60-draw sample (docs/methods/lmi_mass_effect.md)
the mass effect enlarged every FLAIR lesion above 100 mL (up to 3x) and changed those under 10 mL by a factor
0.2-1.2, so the screen dropped no draw there that the mass-effect model would have accepted.

Storage is a folder of shards ``{split}_{index:05d}.npz``, each holding ``shard_size`` accepted cases:

    labels      uint8 (n, ni, nj, nk)   0 outside, 1 FLAIR only, 2 T1Gd (which lies inside FLAIR); zlib-compressed
    targets     float32 (n, 5)          mu1 (mm), mu2, seed i, j, k (continuous network-grid voxel index)
    parameters  float64 (n, 8 or 9)     :func:`parameter_names` (the mass-effect model adds gamma)
    drawn       int                     parameter sets drawn to fill the shard (accepted + discarded)

The folder also holds ``tissue.npz``: the WM and GM maps (float32, (2, ni, nj, nk)) the cases grew in, which
the network receives as input channels; training reads them from there and needs no imaging library.

A shard's random stream depends only on (config seed, split, shard index), so shards can be made in any order, by
any number of processes, and a run that was interrupted resumes by making the shards that are missing.
"""
from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from ...errors import InputError
from ... import files
from ...files import atomic_path
from ...models.fisher_kolmogorov import Domain
from ..config import MASS_EFFECT, growth_model
from ..labels import encode_labels
from ..parameters import to_time_independent

PARAMETER_NAMES = ("Dw", "rho", "T", "seed_i", "seed_j", "seed_k", "uc_T1Gd", "uc_FLAIR")
SPLITS = ("train", "val", "test")
SCREEN_FACTORS = {"t1gd_min_ml": 0.5, "flair_min_ml": 0.5, "flair_max_ml": 1.0}
"""How far the Fisher-Kolmogorov screen of a mass-effect draw relaxes each acceptance bound (module docstring)."""


def parameter_names(config: dict) -> tuple:
    """The columns of a shard's ``parameters``: :data:`PARAMETER_NAMES`, plus ``gamma_pa`` for the mass effect."""
    return PARAMETER_NAMES + (("gamma_pa",) if growth_model(config) == MASS_EFFECT else ())


def seed_candidates(wm: np.ndarray, gm: np.ndarray, min_wm_plus_gm: float) -> np.ndarray:
    """(m, 3) int voxel indices where a seed may be placed."""
    candidates = np.argwhere((wm + gm) >= min_wm_plus_gm)
    if len(candidates) == 0:
        raise InputError(f"no voxel has WM + GM >= {min_wm_plus_gm}: cannot place seeds")
    return candidates


def draw_parameters(rng: np.random.Generator, sampling: dict, candidates: np.ndarray,
                    gamma_pa: tuple | None = None) -> np.ndarray:
    """One parameter set (:func:`parameter_names` order), uniform in the config ranges, seed jittered within its
    voxel; gamma (Pa) drawn last from ``gamma_pa`` (low, high) when given, so the other draws do not change."""
    def uniform(low_high):
        return rng.uniform(*low_high)

    dw, rho, days = (uniform(sampling[k]) for k in ("dw_mm2_per_day", "rho_per_day", "days"))
    seed = candidates[rng.integers(len(candidates))] + rng.uniform(-0.5, 0.5, 3)
    drawn = [dw, rho, days, *seed, uniform(sampling["uc_t1gd"]), uniform(sampling["uc_flair"])]
    if gamma_pa is not None:
        drawn.append(uniform(gamma_pa))
    return np.array(drawn, dtype=np.float64)


def image_case(density: np.ndarray, uc_t1gd: float, uc_flair: float) -> np.ndarray:
    """Threshold a density into the stored labels (T1Gd: c >= uc_t1gd, FLAIR: c >= uc_flair)."""
    return encode_labels(density >= uc_t1gd, density >= uc_flair)


def could_be_accepted(parameters: np.ndarray, acceptance: dict) -> bool:
    """False for draws certain to make a lesion over the size bound (front radius over ``max_front_radius_mm``)."""
    dw, rho, days = parameters[:3]
    return 2.0 * np.sqrt(dw * rho) * days <= acceptance["max_front_radius_mm"]


def accepted(labels: np.ndarray, voxel_ml: float, acceptance: dict, factors: dict | None = None) -> bool:
    """True when the lesion sizes lie within the config's acceptance bounds (each multiplied by its ``factors``
    entry, e.g. :data:`SCREEN_FACTORS`)."""
    bound = {key: acceptance[key] * (factors or {}).get(key, 1.0)
             for key in ("t1gd_min_ml", "flair_min_ml", "flair_max_ml")}
    t1gd_ml = np.count_nonzero(labels == 2) * voxel_ml
    flair_ml = np.count_nonzero(labels) * voxel_ml
    return t1gd_ml >= bound["t1gd_min_ml"] and bound["flair_min_ml"] <= flair_ml <= bound["flair_max_ml"]


def targets_of(parameters: np.ndarray) -> np.ndarray:
    """(n, 8) parameter sets -> (n, 5) targets mu1, mu2, seed i, j, k."""
    parameters = np.atleast_2d(parameters)
    mu1, mu2 = to_time_independent(parameters[:, 0], parameters[:, 1], parameters[:, 2])
    return np.column_stack([mu1, mu2, parameters[:, 3:6]]).astype(np.float32)


def shard_rng(config: dict, split: str, index: int) -> np.random.Generator:
    if split not in SPLITS:
        raise InputError(f"split must be one of {SPLITS}, got {split!r}")
    return np.random.default_rng([int(config["dataset"]["seed"]), SPLITS.index(split), int(index)])


def make_shard(wm: np.ndarray, gm: np.ndarray, csf: np.ndarray, spacing_mm, config: dict, split: str, index: int,
               size: int | None = None) -> dict:
    """Simulate and image cases until ``size`` (default: the config's shard size) are accepted; one core.

    ``wm``, ``gm``, ``csf``: (ni, nj, nk) tissue probabilities on the network grid of spacing ``spacing_mm`` (CSF
    is read by the mass-effect model only).
    """
    size = int(size or config["dataset"]["shard_size"])
    rng = shard_rng(config, split, index)
    domain = Domain(wm, gm, spacing_mm)
    mass_effect, gamma_range = None, None
    if growth_model(config) == MASS_EFFECT:
        from ...models.mass_effect import MassEffectDomain

        mass_effect = MassEffectDomain(wm, gm, csf, spacing_mm)
        gamma_range = tuple(config["model"]["gamma_pa"])
    voxel_ml = float(np.prod(domain.spacing_mm)) / 1000.0
    acceptance = config["acceptance"]
    candidates = seed_candidates(wm, gm, config["sampling"]["seed_min_wm_plus_gm"])
    labels, parameters, drawn = [], [], 0
    while len(labels) < size:
        p = draw_parameters(rng, config["sampling"], candidates, gamma_range)
        drawn += 1
        if not could_be_accepted(p, acceptance):
            continue
        density = domain.simulate(p[0], p[1], p[2], p[3:6], parallel=False)
        case = image_case(density, p[6], p[7])
        if mass_effect is not None:
            if not accepted(case, voxel_ml, acceptance, SCREEN_FACTORS):
                continue
            density = mass_effect.simulate(p[0], p[1], p[2], p[3:6], p[8], parallel=False).density
            case = image_case(density, p[6], p[7])
        if accepted(case, voxel_ml, acceptance):
            labels.append(case)
            parameters.append(p)
    parameters = np.asarray(parameters)
    return {"labels": np.asarray(labels), "targets": targets_of(parameters), "parameters": parameters,
            "drawn": np.int64(drawn)}


def shard_path(folder, split: str, index: int) -> Path:
    return Path(folder) / f"{split}_{index:05d}.npz"


def write_shard(shard: dict, path) -> Path:
    with atomic_path(path, ".npz") as tmp:
        np.savez_compressed(tmp, **shard)
    return Path(path)


TISSUE_NAME = "tissue.npz"
MANIFEST_NAME = "dataset.json"


def generation_settings(config: dict) -> dict:
    """The parts of an LMI config that decide what the shards hold (not how many there are)."""
    settings = {"grid": config["grid"], "sampling": config["sampling"], "acceptance": config["acceptance"],
                "seed": config["dataset"]["seed"], "shard_size": config["dataset"]["shard_size"]}
    if "model" in config:  # absent in the Fisher-Kolmogorov manifests written before the mass-effect model
        settings["model"] = config["model"]
    return settings


def check_manifest(folder, config: dict, create: bool = False) -> None:
    """Refuse a dataset folder whose shards were made from other generation settings than ``config``'s.

    The folder's ``dataset.json`` records :func:`generation_settings`; with ``create`` it is written when absent
    (Scripts/lmi_make_dataset.py). A folder without one (made before it existed) is accepted as it is.
    """
    files.check_manifest(Path(folder) / MANIFEST_NAME, generation_settings(config), create=create)


def write_tissue(folder, wm: np.ndarray, gm: np.ndarray) -> Path:
    """Store the network-grid WM/GM maps next to the shards (atomically)."""
    path = Path(folder) / TISSUE_NAME
    with atomic_path(path, ".npz") as tmp:
        np.savez_compressed(tmp, wm_gm=np.stack([wm, gm]).astype(np.float32))
    return path


def load_tissue(folder) -> np.ndarray:
    """(2, ni, nj, nk) float32 WM/GM maps stored by :func:`write_tissue`."""
    path = Path(folder) / TISSUE_NAME
    try:
        with np.load(path) as data:
            return data["wm_gm"]
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as error:
        raise InputError(f"dataset tissue {path}: cannot read it ({error}); Scripts/lmi_make_dataset.py writes it")


def shard_paths(folder, split: str, check_all: bool = True) -> list:
    """The shards of one split in index order; InputError when there are none or one is missing before the last
    (a gap would let a later shard stand in for a missing one). ``check_all=False`` leaves the gaps to the caller
    (:func:`load_split` checks only as far as it reads)."""
    paths = sorted(Path(folder).glob(f"{split}_*.npz"))
    if not paths:
        raise InputError(f"no {split} shards in {folder} (make them with Scripts/lmi_make_dataset.py)")
    for expected, path in enumerate(paths if check_all else ()):
        check_shard_index(folder, split, expected, path)
    return paths


def check_shard_index(folder, split: str, expected: int, path: Path) -> None:
    """InputError naming the missing shard when ``path`` (the ``expected``-th in index order) has another index."""
    if path != shard_path(folder, split, expected):
        raise InputError(f"dataset {folder}: {shard_path(folder, split, expected).name} is missing (make it "
                         "with Scripts/lmi_make_dataset.py)")


def load_split(folder, split: str, limit: int | None = None) -> dict:
    """Concatenate the shards of one split (in index order): labels, targets, parameters, drawn (total).

    Raises InputError when there is no shard, a shard cannot be read or one is missing before the last.
    """
    parts = {"labels": [], "targets": [], "parameters": []}
    drawn, count = 0, 0
    for expected, path in enumerate(shard_paths(folder, split, check_all=False)):
        check_shard_index(folder, split, expected, path)
        try:
            with np.load(path) as shard:
                for key in parts:
                    parts[key].append(shard[key])
                drawn += int(shard["drawn"])
                count += len(shard["targets"])
        except (OSError, ValueError, KeyError, zipfile.BadZipFile) as error:
            raise InputError(f"dataset shard {path}: cannot read it ({error})") from error
        if limit is not None and count >= limit:
            break
    out = {key: np.concatenate(value)[:limit] for key, value in parts.items()}
    out["drawn"] = drawn
    return out
