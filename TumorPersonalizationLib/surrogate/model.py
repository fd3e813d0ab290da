"""The trained surrogate at run time: load the weights, check the inputs, predict, put the density on the tissue grid.

Three ways in, from the most to the least convenient:

- :func:`simulate` has the signature of :func:`TumorPersonalizationLib.forward.simulate`: tissue maps (with CSF), Dw,
  rho, T and a :class:`~TumorPersonalizationLib.forward.Seed` in, a density Volume on the tissue grid out (zero
  outside the crop).
- :class:`SurrogateDomain` mirrors :class:`TumorPersonalizationLib.models.fisher_kolmogorov.Domain`
  (``check_seed``, ``simulate``, ``simulate_batch`` on continuous voxel indices), so a calibration that holds a
  ``Domain`` can hold this instead.
- :meth:`Surrogate.predict_crops` runs the network on prepared crops (benchmarks, evaluation).

Refusals (:class:`~TumorPersonalizationLib.errors.InputError`, each naming what is wrong): a seed outside the image
or where WM + GM < 0.1 (the solver's domain,
:data:`~TumorPersonalizationLib.models.fisher_kolmogorov.DOMAIN_THRESHOLD`);
Dw, rho or T outside the trained range; a Dw / Dg ratio other than the trained one; tissue maps without CSF.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from scipy import ndimage

from ..errors import InputError
from ..forward import Seed
from ..imaging.tissue import TissueMaps
from ..imaging.volume import Volume
from ..lmi.weights import load_state, read_weights_file
from ..models.fisher_kolmogorov import DOMAIN_THRESHOLD, check_seed_in
from ..validation import unit_interval
from . import config as surrogate_config
from .crop import paste_crop, sample_crop, smoothing_sigma
from .network import SurrogateNet

DEFAULT_BATCH = 32
"""Crops per network call in batched prediction (the batch size of the speed measurements)."""


class Surrogate:
    """A trained network with the config it was trained with.

    Parameters
    ----------
    network : SurrogateNet
    config : dict
        The training config (``crop``, ``parameters``, ``simulation``, ``network``).
    device : str
    """

    def __init__(self, network: SurrogateNet, config: dict, device: str = "cpu"):
        self.network = network.to(device).eval()
        self.config = config
        self.device = torch.device(device)
        self.size = surrogate_config.crop_size(config)
        self.spacing_mm = surrogate_config.crop_spacing_mm(config)
        self.ratio = float(config["simulation"]["ratio"])

    def check_ratio(self, ratio: float) -> None:
        if abs(float(ratio) - self.ratio) > 1e-9 * self.ratio:
            raise InputError(f"Dw / Dg ratio {ratio:g}: the surrogate was trained with ratio {self.ratio:g} only; "
                             "use the numerical solver for other ratios")

    def predict_crops(self, tissue_crops: np.ndarray, parameters: np.ndarray, batch_size: int = DEFAULT_BATCH
                      ) -> np.ndarray:
        """Densities on the crop grid.

        Parameters
        ----------
        tissue_crops : (N, 3, D, D, D) float array
            WM, GM, CSF crops of :func:`.crop.sample_crop`.
        parameters : (N, 3) float array
            Dw (mm^2/day), rho (1/day), T (days); InputError outside the trained range.

        Returns
        -------
        (N, D, D, D) float32 in [0, 1]
        """
        inputs = surrogate_config.normalise_parameters(self.config, parameters)
        tissue_crops = np.asarray(tissue_crops, dtype=np.float32)
        if len(tissue_crops) != len(inputs):
            raise InputError(f"{len(tissue_crops)} tissue crops but {len(inputs)} parameter sets")
        out = np.empty((len(inputs),) + (self.size,) * 3, dtype=np.float32)
        with torch.inference_mode():  # the default memory format: channels-last was slower at inference here
            for start in range(0, len(inputs), batch_size):
                block = slice(start, start + batch_size)
                x = torch.from_numpy(tissue_crops[block]).to(self.device)
                p = torch.from_numpy(inputs[block]).to(self.device)
                n = len(p)
                if n == 1 and self.device.type == "cpu":
                    # PyTorch runs CPU 3D convolutions of a batch of one through its slow im2col kernel and larger
                    # batches through oneDNN: predicting the crop twice is several times faster than once.
                    x, p = x.expand(2, -1, -1, -1, -1).contiguous(), p.expand(2, -1)
                out[block] = self.network(x, p)[:n, 0].float().cpu().numpy()
        return out


def default_weights_path() -> Path:
    return surrogate_config.surrogate_dir() / surrogate_config.WEIGHTS_NAME


def load_surrogate(path=None, device: str = "cpu") -> Surrogate:
    """Load trained weights (``torch.load(weights_only=True)``; default: the shipped ``surrogate.pt``).

    The file holds ``state_dict`` and ``config`` (the training config); InputError if it is missing, unreadable or
    does not fit the network its config describes.
    """
    path = Path(path) if path is not None else default_weights_path()
    if not path.is_file():
        raise InputError(f"surrogate weights {path} not found: train them with Scripts/surrogate_train.py "
                         "(docs/methods/surrogate.md)")
    saved = read_weights_file(path, {"state_dict", "config"}, "surrogate weights", device,
                              hint=" (a training checkpoint? use the surrogate.pt a finished run writes)")
    surrogate_config.check_parameter_section(saved["config"], f"surrogate weights {path}")
    network = SurrogateNet.from_config(saved["config"])
    load_state(network, saved, path, "surrogate weights")
    return Surrogate(network, saved["config"], device)


class SurrogateDomain:
    """Tissue maps prepared for repeated surrogate predictions, with the interface of the solver's ``Domain``.

    Parameters
    ----------
    wm, gm, csf : (ni, nj, nk) array_like
        Tissue probabilities in [0, 1] on one grid.
    spacing_mm : 3 float
        Voxel size along i, j, k (mm).
    surrogate : Surrogate, optional
        Default: :func:`load_surrogate` of the shipped weights.
    ratio : float
        Dw / Dg; must equal the trained ratio.

    The maps are low-passed once here for the crop's coarser grid (:mod:`.crop`), so each prediction only samples.
    """

    def __init__(self, wm, gm, csf, spacing_mm, surrogate: Surrogate | None = None, ratio: float = 10.0):
        self.surrogate = surrogate if surrogate is not None else load_surrogate()
        self.surrogate.check_ratio(ratio)
        maps = [unit_interval(m, name, "probabilities") for m, name in ((wm, "wm"), (gm, "gm"), (csf, "csf"))]
        if not maps[0].shape == maps[1].shape == maps[2].shape or maps[0].ndim != 3:
            raise InputError(f"tissue maps must be 3D arrays of one shape, got WM {maps[0].shape}, "
                             f"GM {maps[1].shape}, CSF {maps[2].shape}")
        self.full_shape = maps[0].shape
        self.spacing_mm = np.asarray(spacing_mm, dtype=np.float64)
        self.inside = (maps[0] + maps[1]) >= DOMAIN_THRESHOLD
        sigma = smoothing_sigma(self.spacing_mm, self.surrogate.spacing_mm)
        if np.any(sigma > 0.1):
            maps = [ndimage.gaussian_filter(m, sigma, mode="constant", cval=0.0) for m in maps]
        self.tissue = np.stack(maps).astype(np.float32)

    def check_seed(self, seed_index, name: str = "seed") -> np.ndarray:
        """Validate a continuous voxel index (i, j, k); InputError outside the image or outside WM + GM."""
        return check_seed_in(self.inside, seed_index, name)

    def tissue_crops(self, seeds: np.ndarray) -> np.ndarray:
        """(B, 3) seed indices -> (B, 3, D, D, D) float32 WM / GM / CSF crops."""
        s = self.surrogate
        return np.stack([sample_crop(self.tissue, seed, s.size, self.spacing_mm, s.spacing_mm, smooth=False)
                         for seed in seeds])

    def simulate_batch(self, dw_mm2_per_day, rho_per_day, days, seed_index, *, batch_size: int = DEFAULT_BATCH,
                       **solver_options) -> np.ndarray:
        """Densities of B parameter sets on the full grid, (B, ni, nj, nk) float32 (zero outside each crop).

        Parameters
        ----------
        dw_mm2_per_day, rho_per_day, days : array_like, shape (B,)
        seed_index : array_like, shape (B, 3) or (3,)
            Continuous voxel indices.
        batch_size : int
            Crops per network call.
        **solver_options
            Accepted and ignored (``steps``, ``workers``, ``parallel``, ``progress`` of the solver's Domain).
        """
        columns = [np.atleast_1d(np.asarray(v, dtype=np.float64)) for v in (dw_mm2_per_day, rho_per_day, days)]
        if not (columns[0].shape == columns[1].shape == columns[2].shape) or columns[0].ndim != 1:
            raise InputError(f"batch parameters must be 1D arrays of one length, got Dw {columns[0].shape}, "
                             f"rho {columns[1].shape}, T {columns[2].shape}")
        parameters = np.column_stack(columns)
        seeds = np.asarray(seed_index, dtype=np.float64)
        seeds = np.broadcast_to(seeds, (len(parameters), 3)) if seeds.shape == (3,) else seeds
        if seeds.shape != (len(parameters), 3):
            raise InputError(f"seed_index must have shape (3,) or ({len(parameters)}, 3), got {seeds.shape}")
        surrogate_config.check_parameters(self.surrogate.config, parameters)
        for b, seed in enumerate(seeds):  # every input is checked before any prediction
            self.check_seed(seed, name="seed" if len(seeds) == 1 else f"seed of batch member {b}")
        crops = self.surrogate.predict_crops(self.tissue_crops(seeds), parameters, batch_size)
        self.last_edge_density = crop_edge_density(crops)
        out = np.zeros((len(seeds),) + tuple(self.full_shape), dtype=np.float32)
        for crop, seed, density in zip(crops, seeds, out):
            paste_crop(crop, seed, self.full_shape, self.spacing_mm, self.surrogate.spacing_mm, out=density)
        return out

    def simulate(self, dw_mm2_per_day: float, rho_per_day: float, days: float, seed_index, **solver_options
                 ) -> np.ndarray:
        """One density on the full grid, (ni, nj, nk) float32 in [0, 1]; solver-only options are ignored."""
        if np.ndim(days) != 0:
            raise InputError("the surrogate predicts one time point per call; give T as one number")
        return self.simulate_batch([dw_mm2_per_day], [rho_per_day], [days], seed_index)[0]


class SurrogateRegion:
    """The surrogate's densities on a sub-grid of the tissue maps (a calibration's region of interest).

    A calibration simulates only in a box around the lesion, but the network must read the anatomy of its whole
    cube around the seed: crops come from the whole tissue maps (a :class:`SurrogateDomain`) and the predictions are
    pasted onto the region's grid. Interface of the solver's ``Domain`` on the region: seeds are continuous voxel
    indices of ``region``.

    Parameters
    ----------
    tissue : TissueMaps
        WM, GM and CSF (CSF is required).
    region : Geometry
        The output grid: any spacing, the tissue grid's axis directions.
    surrogate : Surrogate, optional
    ratio : float
    """

    batch = DEFAULT_BATCH
    """Parameter sets per call that keep the network's batches full (a calibration sends this many at once)."""

    def __init__(self, tissue: TissueMaps, region, surrogate: Surrogate | None = None, ratio: float = 10.0):
        if not np.allclose(region.direction_matrix, tissue.geometry.direction_matrix, atol=1e-6):
            raise InputError("the surrogate's region must share the tissue grid's axis directions")
        self.full = SurrogateDomain(tissue.wm.array, tissue.gm.array, _require_csf(tissue).array,
                                    tissue.geometry.spacing_mm, surrogate, ratio)
        self.tissue_geometry = tissue.geometry
        self.region = region

    def _tissue_index(self, region_index) -> np.ndarray:
        return self.tissue_geometry.ras_to_index(self.region.index_to_ras(np.asarray(region_index, float)))

    def check_seed(self, seed_index, name: str = "seed") -> np.ndarray:
        """Validate a region voxel index by the tissue grid's domain (WM + GM >= 0.1); returns it."""
        self.full.check_seed(self._tissue_index(seed_index), name)
        return np.asarray(seed_index, dtype=np.float64)

    def simulate_batch(self, dw_mm2_per_day, rho_per_day, days, seed_index, **solver_options) -> np.ndarray:
        """(B,) parameters and (B, 3) region indices -> (B, *region.shape) float32 densities (solver-only options
        are ignored)."""
        seeds = np.atleast_2d(np.asarray(seed_index, dtype=np.float64))
        parameters = np.column_stack([np.atleast_1d(np.asarray(v, dtype=np.float64))
                                      for v in (dw_mm2_per_day, rho_per_day, days)])
        seeds = np.broadcast_to(seeds, (len(parameters), 3))
        surrogate = self.full.surrogate
        surrogate_config.check_parameters(surrogate.config, parameters)
        for b, seed in enumerate(seeds):
            self.check_seed(seed, name="seed" if len(seeds) == 1 else f"seed of batch member {b}")
        tissue_seeds = self._tissue_index(seeds)
        crops = surrogate.predict_crops(self.full.tissue_crops(tissue_seeds), parameters, self.batch)
        out = np.zeros((len(seeds),) + tuple(int(n) for n in self.region.shape), dtype=np.float32)
        for crop, seed, density in zip(crops, seeds, out):
            paste_crop(crop, seed, out.shape[1:], self.region.spacing_mm, surrogate.spacing_mm, out=density)
        return out

    def simulate(self, dw_mm2_per_day: float, rho_per_day: float, days: float, seed_index, **solver_options
                 ) -> np.ndarray:
        """One density on the region's grid, (ni, nj, nk) float32."""
        return self.simulate_batch([dw_mm2_per_day], [rho_per_day], [days], [seed_index])[0]


def _require_csf(tissue: TissueMaps) -> Volume:
    if tissue.csf is None:
        raise InputError("the surrogate needs a CSF map besides WM and GM (its anatomy encoder reads all three); "
                         "give --csf, or use the numerical solver")
    return tissue.csf


EDGE_WARNING_DENSITY = 0.01
"""A predicted density above this next to the crop's faces means the tumor outgrew the surrogate's cube."""


def crop_edge_density(crops: np.ndarray, layers: int = 2) -> np.ndarray:
    """(B, D, D, D) crops -> (B,) the largest density within ``layers`` voxels of each crop's six faces.

    Two layers, not one: the network learned from tumors that never reached the faces, so its outermost layer
    stays near 0 even when the tumor beyond it is cut off (0.006 there, 0.09 one voxel in, for the README's
    example tumor in the atlas)."""
    n = len(crops)
    slabs = [crops[:, :layers], crops[:, -layers:], crops[:, :, :layers], crops[:, :, -layers:],
             crops[:, :, :, :layers], crops[:, :, :, -layers:]]
    return np.max([slab.reshape(n, -1).max(axis=1) for slab in slabs], axis=0)


def simulate(tissue: TissueMaps, dw_mm2_per_day: float, rho_per_day: float, days: float, seed: Seed, *,
             ratio: float = 10.0, surrogate: Surrogate | None = None, warn=None) -> Volume:
    """Tumor cell density predicted by the surrogate, on the tissue maps' grid (float32 Volume in [0, 1]).

    The call of :func:`TumorPersonalizationLib.forward.simulate`: Dw in mm^2/day, rho in 1/day, T in days since
    seeding (the solver's seed convention, which the training data used), seed in RAS mm or as a voxel index.
    The density is zero outside the surrogate's crop (``crop.size`` voxels of ``crop.spacing_mm`` around the seed).

    Parameters
    ----------
    surrogate : Surrogate, optional
        Default: the shipped weights (loaded on each call; hold a :class:`SurrogateDomain` for repeated calls).
    warn : callable(str), optional
        Told when the density reaches the crop's faces (above :data:`EDGE_WARNING_DENSITY`): the tumor is larger
        than the surrogate's cube and is cut there.
    """
    csf = _require_csf(tissue)
    index = seed.index_in(tissue)
    domain = SurrogateDomain(tissue.wm.array, tissue.gm.array, csf.array, tissue.geometry.spacing_mm,
                             surrogate, ratio)
    try:
        domain.check_seed(index)
    except InputError as exc:
        where = f"RAS {tuple(seed.ras_mm)} mm" if seed.ras_mm is not None else f"voxel {tuple(seed.voxel)}"
        raise InputError(f"seed at {where}: {str(exc).split(': ', 1)[1]}") from None
    density = domain.simulate(dw_mm2_per_day, rho_per_day, days, index)
    edge = float(domain.last_edge_density[0])
    if edge > EDGE_WARNING_DENSITY and warn is not None:
        size_mm = domain.surrogate.size * domain.surrogate.spacing_mm
        warn(f"the density reaches the surrogate's {size_mm:g} mm cube around the seed (c = {edge:.2f} on its "
             "faces): the tumor is larger than the cube and is cut there; use the numerical solver")
    return tissue.wm.like(density)
