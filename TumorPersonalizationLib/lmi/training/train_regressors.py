"""Training of the shape and seed regressors (:mod:`..shape_regressor`) on lesion descriptors of the simulated
training set; ``Scripts/lmi_train_shape.py`` computes the descriptors and writes the weights."""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from ...errors import InputError
from ..shape_regressor import MemberMean, SeedRegressor, ShapeRegressor, member_count, predict_mu, predict_seed_offset


def _fit_members(settings: dict, fit_one) -> tuple[MemberMean, list]:
    """``fit_one(settings)`` for each member, its ``seed`` shifted by the member's number; the members and their
    training-loss curves."""
    members, curves = [], []
    for k in range(member_count(settings)):
        member, curve = fit_one(dict(settings, seed=int(settings["seed"]) + k))
        members.append(member)
        curves.append(curve)
    return MemberMean(members).eval(), curves


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


