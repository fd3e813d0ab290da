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
  (600 test cases, paired; docs/methods/lmi.md, "Ensembles of the shape regressors").

All are trained once on the same simulations (:mod:`.training.train_regressors`, ``Scripts/lmi_train_shape.py``, with
the config's ``shape_regressor`` and ``seed_regressor`` sections); none simulates at inference. The shipped weights
are ``Resources/LMI/shape_regressor.pt`` and ``seed_regressor.pt`` (state dict, config, names of the inputs,
summary; ``torch.load(weights_only=True)``).
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..errors import InputError
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
    coefficients as bias (:func:`.training.train_regressors.fit_seed`).
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


def member_count(settings: dict) -> int:
    """How many members the regressor settings ask for (``members``, 1 when left out)."""
    members = int(settings.get("members", 1))
    if members < 1:
        raise InputError(f"regressor settings: members must be at least 1, got {members}")
    return members


def predict_seed_offset(model: nn.Module, features: np.ndarray, vectors: np.ndarray) -> np.ndarray:
    """(n, F) shape features and (n, V, 3) vectors (mm) -> (n, 3) seed offset from the core's centroid (mm)."""
    with torch.no_grad():
        return model(torch.as_tensor(features, dtype=torch.float32),
                     torch.as_tensor(vectors, dtype=torch.float32)).double().numpy()


def predict_mu(model: nn.Module, features: np.ndarray) -> np.ndarray:
    """(n, F) shape features -> (n, 2) mu1 (mm), mu2."""
    with torch.no_grad():
        return np.exp(model(torch.as_tensor(features, dtype=torch.float32)).double().numpy())


def _load(path, what: str, section: str, bases: dict, build) -> tuple[nn.Module, dict]:
    """Weights written by ``Scripts/lmi_train_shape.py`` into ``build(hidden, *input counts)``; the input names
    they were trained on (``{key in the file: the names this version computes}``, e.g. ``feature_names``) are
    checked and set on the model as attributes of the same keys."""
    saved = read_weights_file(path, {"state_dict", "config", *bases}, f"{what} weights")
    names = {}
    for key, base in bases.items():
        names[key] = tuple(str(n) for n in saved[key])
        unknown = [n for n in names[key] if n not in base]
        if unknown:
            raise InputError(f"{what} weights {path}: trained on other inputs than this version computes "
                             f"({key}: {unknown[:3]} are not computed by this version)")
    settings = saved["config"].get(section, DEFAULT_SETTINGS)
    # Files written before ensembles hold the state of one bare regressor.
    ensemble = isinstance(saved["state_dict"], dict) and any(str(key).startswith("members.")
                                                              for key in saved["state_dict"])
    members = [build(int(settings["hidden"]), *(len(n) for n in names.values()))
               for _ in range(member_count(settings) if ensemble else 1)]
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
