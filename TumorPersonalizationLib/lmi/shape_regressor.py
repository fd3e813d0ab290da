"""mu1, mu2 and the seed from the lesion's shape descriptors: small MLPs trained on the simulated training set.

- :class:`ShapeRegressor`: mu1 and mu2 from :mod:`.shape_features`. On the held-out test set (masks grown at the
  atlas' 1.5 mm, as a patient's arrive) the inverse ResNet's (:mod:`.network`) mu1 is 19.3 % off and mu2 8.8 %
  (medians), this regressor's 11.5 % and 5.3 % (README, ``bench/lmi.py``).
- :class:`SeedRegressor`: the seed as the enhancing core's centroid plus a combination of the direction vectors of
  :mod:`.seed_features`, with coefficients an MLP reads from the shape descriptors: equivariant by construction
  (rotate or mirror the lesion and its tissue, and the predicted offset turns with them), which the ResNet must
  learn from data.
- :class:`MemberMean`: the mean output of several of either, trained alike from different random seeds (the
  settings' ``members``). Ten of each lift the network alone's Dice by +0.005 / +0.005 / +0.013 over one
  (600 test cases, paired; docs/lmi_notes.md, "Ensembles of the shape regressors").

All are trained once on the same simulations; none simulates at inference. Trained by ``Scripts/lmi_train_shape.py``
with the config's ``shape_regressor`` and ``seed_regressor`` sections; the shipped weights are
``Resources/LMI/shape_regressor.pt`` and ``seed_regressor.pt`` (state dict, config, names of the inputs, summary;
``torch.load(weights_only=True)``).
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from ..errors import InputError
from .lesion_descriptors import grids_of
from .seed_features import VECTOR_NAMES
from .shape_features import FEATURE_NAMES
from .weights import load_state, read_weights_file

WEIGHTS_NAME = "shape_regressor.pt"
SEED_WEIGHTS_NAME = "seed_regressor.pt"
DEFAULT_SETTINGS = {"hidden": 64, "steps": 10000, "batch_size": 64, "learning_rate": 1e-3, "weight_decay": 0.0,
                    "seed": 0, "members": 1}
"""Used when the config has no ``shape_regressor`` section (probe on 4,000 cases: hidden 64 vs 128 and 6,000 vs
20,000 steps differed by less than the spread between seeds). ``members``: how many regressors are trained (member
k from the random seed ``seed + k``) and averaged (:class:`MemberMean`); 1 when a section leaves it out."""


class ShapeRegressor(nn.Module):
    """Shape descriptors -> log mu1, log mu2.

    Input: (B, F) float, the :data:`~.shape_features.FEATURE_NAMES` in their units (standardised inside with the
    training set's mean and standard deviation, stored as buffers). Output: (B, 2) float, log mu1 (mu1 in mm) and
    log mu2. Two hidden ReLU layers of ``hidden`` units.
    """

    def __init__(self, n_features: int = len(FEATURE_NAMES), hidden: int = 64):
        super().__init__()
        self.register_buffer("feature_mean", torch.zeros(n_features))
        self.register_buffer("feature_std", torch.ones(n_features))
        self.body = nn.Sequential(nn.Linear(n_features, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                                  nn.Linear(hidden, 2))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        if features.ndim != 2 or features.shape[1] != self.feature_mean.numel():
            raise ValueError(f"ShapeRegressor expects (B, {self.feature_mean.numel()}), got {tuple(features.shape)}")
        return self.body((features - self.feature_mean) / self.feature_std)


class SeedRegressor(nn.Module):
    """Shape descriptors and direction vectors -> the seed's offset from the enhancing core's centroid.

    Input: (B, F) float, the :data:`~.shape_features.FEATURE_NAMES` (standardised inside, as in
    :class:`ShapeRegressor`), and (B, V, 3) float, the :data:`~.seed_features.VECTOR_NAMES` in mm. Output: (B, 3)
    float, the offset in mm: sum over v of a_v(features) times vector v, with the coefficients a from an MLP of two
    hidden ReLU layers of ``hidden`` units. Its last layer starts at zero weight and the least-squares constant
    coefficients as bias (:func:`fit_seed`).
    """

    def __init__(self, n_features: int = len(FEATURE_NAMES), n_vectors: int = len(VECTOR_NAMES), hidden: int = 64):
        super().__init__()
        self.register_buffer("feature_mean", torch.zeros(n_features))
        self.register_buffer("feature_std", torch.ones(n_features))
        self.coefficients = nn.Sequential(nn.Linear(n_features, hidden), nn.ReLU(), nn.Linear(hidden, hidden),
                                          nn.ReLU(), nn.Linear(hidden, n_vectors))

    def forward(self, features: torch.Tensor, vectors: torch.Tensor) -> torch.Tensor:
        n_features, n_vectors = self.feature_mean.numel(), self.coefficients[-1].out_features
        if features.ndim != 2 or features.shape[1] != n_features or vectors.shape[1:] != (n_vectors, 3) \
                or len(vectors) != len(features):
            raise ValueError(f"SeedRegressor expects (B, {n_features}) and (B, {n_vectors}, 3), got "
                             f"{tuple(features.shape)} and {tuple(vectors.shape)}")
        a = self.coefficients((features - self.feature_mean) / self.feature_std)
        return torch.einsum("bv,bvd->bd", a, vectors)


class MemberMean(nn.Module):
    """The mean output of regressors of one kind (a deep ensemble): the members' errors from their random starts
    and batches partly cancel.

    Input: whatever every member takes (:class:`ShapeRegressor`: (B, F); :class:`SeedRegressor`: (B, F) and
    (B, V, 3)). Output: the members' outputs averaged, same shape as one member's (for the shape regressor the
    mean of log mu, i.e. the geometric mean of mu).
    """

    def __init__(self, members):
        super().__init__()
        if not len(members):
            raise ValueError("MemberMean needs at least one member")
        self.members = nn.ModuleList(members)

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return torch.stack([member(*inputs) for member in self.members]).mean(dim=0)


def _member_count(settings: dict) -> int:
    members = int(settings.get("members", 1))
    if members < 1:
        raise InputError(f"regressor settings: members must be at least 1, got {members}")
    return members


def _fit_members(settings: dict, fit_one) -> tuple[MemberMean, list]:
    """``fit_one(settings)`` for each member, its ``seed`` shifted by the member's number; the members and their
    training-loss curves."""
    members, curves = [], []
    for k in range(_member_count(settings)):
        member, curve = fit_one(dict(settings, seed=int(settings["seed"]) + k))
        members.append(member)
        curves.append(curve)
    return MemberMean(members).eval(), curves


def predict_seed_offset(model: nn.Module, features: np.ndarray, vectors: np.ndarray) -> np.ndarray:
    """(n, F) shape features and (n, V, 3) vectors (mm) -> (n, 3) seed offset from the core's centroid (mm)."""
    with torch.no_grad():
        return model(torch.as_tensor(features, dtype=torch.float32),
                     torch.as_tensor(vectors, dtype=torch.float32)).double().numpy()


def predict_mu(model: nn.Module, features: np.ndarray) -> np.ndarray:
    """(n, F) shape features -> (n, 2) mu1 (mm), mu2."""
    with torch.no_grad():
        return np.exp(model(torch.as_tensor(features, dtype=torch.float32)).double().numpy())


def _standardise(model: nn.Module, x: torch.Tensor) -> None:
    model.feature_mean.copy_(x.mean(dim=0))
    model.feature_std.copy_(x.std(dim=0).clamp(min=1e-6))


def _train(model: nn.Module, inputs: tuple, target: torch.Tensor, loss, settings: dict, name: str, log) -> list:
    """AdamW on ``loss(model(*inputs[batch]), target[batch])``, cosine learning-rate decay, random batches drawn
    with the settings' seed; returns the training loss every tenth of the steps."""
    steps, batch = int(settings["steps"]), int(settings["batch_size"])
    lr0 = float(settings["learning_rate"])
    optimiser = torch.optim.AdamW(model.parameters(), lr=lr0, weight_decay=float(settings["weight_decay"]))
    generator = torch.Generator().manual_seed(int(settings["seed"]))
    curve, running = [], 0.0
    for step in range(steps):
        for group in optimiser.param_groups:
            group["lr"] = 0.5 * lr0 * (1.0 + math.cos(math.pi * step / steps))
        index = torch.randint(0, len(target), (batch,), generator=generator)
        value = loss(model(*(x[index] for x in inputs)), target[index])
        optimiser.zero_grad(set_to_none=True)
        value.backward()
        optimiser.step()
        running += float(value.detach())
        if (step + 1) % max(steps // 10, 1) == 0:
            curve.append({"step": step + 1, "train_loss": running / max(steps // 10, 1)})
            log(f"{name} step {step + 1}/{steps}: training loss {curve[-1]['train_loss']:.4f}")
            running = 0.0
    model.eval()
    return curve


def fit(settings: dict, train_features: np.ndarray, train_mu: np.ndarray, val_features: np.ndarray,
        val_mu: np.ndarray, log=print) -> tuple[MemberMean, dict]:
    """Train ``settings["members"]`` :class:`ShapeRegressor` on the squared error of log mu and average them.

    Parameters
    ----------
    settings : dict
        The config's ``shape_regressor`` section: ``hidden``, ``steps``, ``batch_size``, ``learning_rate``,
        ``weight_decay``, ``seed``, ``members`` (optional, 1) (``labels`` is read by the training script: which
        masks the features come from).
    train_features, val_features : (n, F) float
    train_mu, val_mu : (n, 2) float
        mu1 (mm) and mu2 of each case.

    Returns
    -------
    model, summary
        The :class:`MemberMean` in eval mode; the summary holds the validation set's median |log error| of mu1,
        mu2, their product and ratio (of the mean, and mu1 and mu2 of each member alone), and each member's loss
        curve (MSE of log mu) every tenth of the steps.
    """
    if np.any(~np.isfinite(train_features)) or np.any(np.asarray(train_mu) <= 0):
        raise InputError("shape regressor: non-finite features or non-positive mu in the training set")
    x = torch.as_tensor(train_features, dtype=torch.float32)
    y = torch.as_tensor(np.log(train_mu), dtype=torch.float32)

    def fit_one(member_settings):
        torch.manual_seed(int(member_settings["seed"]))
        member = ShapeRegressor(train_features.shape[1], int(member_settings["hidden"]))
        _standardise(member, x)
        return member, _train(member, (x,), y, lambda p, t: torch.mean((p - t) ** 2), member_settings,
                              f"shape regressor (seed {member_settings['seed']})", log)

    model, curves = _fit_members(settings, fit_one)

    def median_errors(m):
        error = np.log(predict_mu(m, val_features)) - np.log(val_mu)
        return {"mu1": float(np.median(np.abs(error[:, 0]))), "mu2": float(np.median(np.abs(error[:, 1]))),
                "mu1*mu2": float(np.median(np.abs(error.sum(axis=1)))),
                "mu1/mu2": float(np.median(np.abs(error[:, 0] - error[:, 1])))}

    summary = {"train_cases": len(x), "val_cases": len(val_mu), "members": len(curves), "loss_curves": curves,
               "val_median_abs_log_error": median_errors(model),
               "val_median_abs_log_error_of_each_member": [
                   {k: v for k, v in median_errors(member).items() if k in ("mu1", "mu2")}
                   for member in model.members]}
    return model, summary


def fit_seed(settings: dict, train: tuple, val: tuple, log=print) -> tuple[MemberMean, dict]:
    """Train ``settings["members"]`` :class:`SeedRegressor` on the squared distance (mm^2) between predicted and
    true seed and average them.

    Parameters
    ----------
    settings : dict
        The config's ``seed_regressor`` section (the keys of :data:`DEFAULT_SETTINGS`).
    train, val : (features, vectors, offsets)
        (n, F) shape features, (n, V, 3) direction vectors in mm, (n, 3) true seed minus core centroid in mm.

    Returns
    -------
    model, summary
        The :class:`MemberMean` in eval mode; the summary holds the validation set's median and mean seed distance
        (mm) of the mean, of each member alone, of the core's centroid alone and of the least-squares constant
        combination every member starts from.
    """
    features, vectors, offsets = (np.asarray(a, dtype=np.float64) for a in train)
    if not (np.all(np.isfinite(features)) and np.all(np.isfinite(vectors)) and np.all(np.isfinite(offsets))):
        raise InputError("seed regressor: non-finite features, vectors or offsets in the training set")
    x = torch.as_tensor(features, dtype=torch.float32)
    v = torch.as_tensor(vectors, dtype=torch.float32)
    y = torch.as_tensor(offsets, dtype=torch.float32)
    # Start from the best constant combination: the MLP then only learns how the mix depends on the shape.
    stacked = vectors.transpose(0, 2, 1).reshape(-1, vectors.shape[1])
    constant, *_ = np.linalg.lstsq(stacked, offsets.reshape(-1), rcond=None)

    def fit_one(member_settings):
        torch.manual_seed(int(member_settings["seed"]))
        member = SeedRegressor(features.shape[1], vectors.shape[1], int(member_settings["hidden"]))
        _standardise(member, x)
        with torch.no_grad():
            member.coefficients[-1].weight.zero_()
            member.coefficients[-1].bias.copy_(torch.as_tensor(constant, dtype=torch.float32))
        return member, _train(member, (x, v), y, lambda p, t: torch.mean(torch.sum((p - t) ** 2, dim=1)),
                              member_settings, f"seed regressor (seed {member_settings['seed']})", log)

    model, curves = _fit_members(settings, fit_one)
    val_features, val_vectors, val_offsets = (np.asarray(a, dtype=np.float64) for a in val)

    def distance(offset):
        d = np.linalg.norm(offset - val_offsets, axis=1)
        return {"median": float(np.median(d)), "mean": float(np.mean(d))}

    summary = {"train_cases": len(x), "val_cases": len(val_offsets), "members": len(curves), "loss_curves": curves,
               "val_seed_error_mm": {
                   "core centroid": distance(np.zeros_like(val_offsets)),
                   "least-squares constant combination": distance(np.einsum("nvd,v->nd", val_vectors, constant)),
                   "seed regressor": distance(predict_seed_offset(model, val_features, val_vectors))},
               "val_seed_error_mm_of_each_member": [
                   distance(predict_seed_offset(member, val_features, val_vectors)) for member in model.members]}
    return model, summary


def _load(path, what: str, section: str, bases: dict, build) -> tuple[nn.Module, dict]:
    """Weights written by ``Scripts/lmi_train_shape.py`` into ``build(hidden, *input counts)``; the input names
    they were trained on (``{key in the file: the names this version computes from}``, e.g. ``feature_names``)
    are checked (:func:`.lesion_descriptors.grids_of`) and set on the model as attributes of the same keys."""
    saved = read_weights_file(path, {"state_dict", "config", *bases}, f"{what} weights")
    names = {}
    for key, base in bases.items():
        names[key] = tuple(str(n) for n in saved[key])
        try:
            grids_of(names[key], base, key)
        except InputError as error:
            raise InputError(f"{what} weights {path}: trained on other inputs than this version computes "
                             f"({error})") from None
    settings = saved["config"].get(section, DEFAULT_SETTINGS)
    # Files written before ensembles (sessions 10-17) hold the state of one bare regressor.
    ensemble = isinstance(saved["state_dict"], dict) and any(str(key).startswith("members.")
                                                              for key in saved["state_dict"])
    members = [build(int(settings["hidden"]), *(len(n) for n in names.values()))
               for _ in range(_member_count(settings) if ensemble else 1)]
    model = MemberMean(members)
    load_state(model if ensemble else members[0], saved, path, f"{what} weights")
    model.eval()
    for key, value in names.items():
        setattr(model, key, value)
    return model, saved["config"]


def load_shape_regressor(path) -> tuple[MemberMean, dict]:
    """Load weights written by ``Scripts/lmi_train_shape.py``: the :class:`MemberMean` of its
    :class:`ShapeRegressor` members in eval mode (its ``feature_names`` set) and the config it was trained with."""
    return _load(path, "shape regressor", "shape_regressor", {"feature_names": FEATURE_NAMES},
                 lambda hidden, n_features: ShapeRegressor(n_features, hidden))


def load_seed_regressor(path) -> tuple[MemberMean, dict]:
    """Load seed regressor weights written by ``Scripts/lmi_train_shape.py``: the :class:`MemberMean` of its
    :class:`SeedRegressor` members in eval mode (its ``feature_names`` and ``vector_names`` set) and the config it
    was trained with."""
    return _load(path, "seed regressor", "seed_regressor",
                 {"feature_names": FEATURE_NAMES, "vector_names": VECTOR_NAMES},
                 lambda hidden, n_features, n_vectors: SeedRegressor(n_features, n_vectors, hidden))
