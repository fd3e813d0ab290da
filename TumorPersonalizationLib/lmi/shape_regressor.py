"""mu1 and mu2 from the lesion's shape descriptors: a small MLP trained on the simulated training set.

The Learn-Morph-Infer estimate takes the seed from the inverse ResNet (:mod:`.network`) and mu1, mu2 from this
regressor on :mod:`.shape_features`: on the held-out test set (masks grown at the atlas' 1.5 mm, as a patient's
arrive) the ResNet's mu1 is 19.3 % off and mu2 8.8 % (medians), this regressor's 11.5 % and 5.3 % (README,
``bench/lmi.py``). Both are trained once on the same simulations; neither simulates at inference.

Trained by ``Scripts/lmi_train_shape.py`` with the config's ``shape_regressor`` section; the shipped weights are
``Resources/LMI/shape_regressor.pt`` (state dict, config, summary; ``torch.load(weights_only=True)``).
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from ..errors import InputError
from .shape_features import FEATURE_NAMES
from .weights import load_state, read_weights_file

WEIGHTS_NAME = "shape_regressor.pt"
DEFAULT_SETTINGS = {"hidden": 64, "steps": 10000, "batch_size": 64, "learning_rate": 1e-3, "weight_decay": 0.0,
                    "seed": 0}
"""Used when the config has no ``shape_regressor`` section (probe on 4,000 cases: hidden 64 vs 128 and 6,000 vs
20,000 steps differed by less than the spread between seeds)."""


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


def predict_mu(model: ShapeRegressor, features: np.ndarray) -> np.ndarray:
    """(n, F) shape features -> (n, 2) mu1 (mm), mu2."""
    with torch.no_grad():
        return np.exp(model(torch.as_tensor(features, dtype=torch.float32)).double().numpy())


def fit(settings: dict, train_features: np.ndarray, train_mu: np.ndarray, val_features: np.ndarray,
        val_mu: np.ndarray, log=print) -> tuple[ShapeRegressor, dict]:
    """Train a :class:`ShapeRegressor`: AdamW on the squared error of log mu, cosine learning-rate decay.

    Parameters
    ----------
    settings : dict
        The config's ``shape_regressor`` section: ``hidden``, ``steps``, ``batch_size``, ``learning_rate``,
        ``weight_decay``, ``seed`` (``labels`` is read by the training script: which masks the features come from).
    train_features, val_features : (n, F) float
    train_mu, val_mu : (n, 2) float
        mu1 (mm) and mu2 of each case.

    Returns
    -------
    model, summary
        The model in eval mode; the summary holds the validation set's median |log error| of mu1, mu2, their
        product and ratio, and the loss curve every tenth of the steps.
    """
    if np.any(~np.isfinite(train_features)) or np.any(np.asarray(train_mu) <= 0):
        raise InputError("shape regressor: non-finite features or non-positive mu in the training set")
    torch.manual_seed(int(settings["seed"]))
    model = ShapeRegressor(train_features.shape[1], int(settings["hidden"]))
    x = torch.as_tensor(train_features, dtype=torch.float32)
    y = torch.as_tensor(np.log(train_mu), dtype=torch.float32)
    model.feature_mean.copy_(x.mean(dim=0))
    model.feature_std.copy_(x.std(dim=0).clamp(min=1e-6))
    steps, batch = int(settings["steps"]), int(settings["batch_size"])
    lr0 = float(settings["learning_rate"])
    optimiser = torch.optim.AdamW(model.parameters(), lr=lr0, weight_decay=float(settings["weight_decay"]))
    generator = torch.Generator().manual_seed(int(settings["seed"]))
    curve, running = [], 0.0
    for step in range(steps):
        for group in optimiser.param_groups:
            group["lr"] = 0.5 * lr0 * (1.0 + math.cos(math.pi * step / steps))
        index = torch.randint(0, len(x), (batch,), generator=generator)
        loss = torch.mean((model(x[index]) - y[index]) ** 2)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        running += float(loss.detach())
        if (step + 1) % max(steps // 10, 1) == 0:
            curve.append({"step": step + 1, "train_mse_log": running / max(steps // 10, 1)})
            log(f"shape regressor step {step + 1}/{steps}: training MSE (log mu) {curve[-1]['train_mse_log']:.4f}")
            running = 0.0
    model.eval()
    error = np.log(predict_mu(model, val_features)) - np.log(val_mu)
    summary = {"train_cases": len(x), "val_cases": len(val_mu), "loss_curve": curve,
               "val_median_abs_log_error": {
                   "mu1": float(np.median(np.abs(error[:, 0]))), "mu2": float(np.median(np.abs(error[:, 1]))),
                   "mu1*mu2": float(np.median(np.abs(error.sum(axis=1)))),
                   "mu1/mu2": float(np.median(np.abs(error[:, 0] - error[:, 1])))}}
    return model, summary


def load_shape_regressor(path) -> tuple[ShapeRegressor, dict]:
    """Load weights written by ``Scripts/lmi_train_shape.py``: the model in eval mode and the config it was trained
    with."""
    saved = read_weights_file(path, {"state_dict", "config", "feature_names"}, "shape regressor weights")
    if tuple(saved["feature_names"]) != FEATURE_NAMES:
        raise InputError(f"shape regressor weights {path}: trained on other features than this version computes")
    hidden = int(saved["config"].get("shape_regressor", DEFAULT_SETTINGS)["hidden"])
    model = ShapeRegressor(len(FEATURE_NAMES), hidden)
    load_state(model, saved, path, "shape regressor weights")
    return model, saved["config"]
