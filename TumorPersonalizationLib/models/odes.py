"""Tumor-size ODEs of thesis chapter 3: exponential, logistic and Gompertz growth.

Each model has ``rate(y, t, ...)`` (the right-hand side dy/dt) and ``solution(t, y0, ...)`` (the closed form), so
callers can integrate numerically or evaluate exactly. Time in days, rates in 1/day, y in the caller's unit of size.

- exponential (eq. 3.1):  dy/dt = alpha y,                    y(t) = y0 exp(alpha t)
- logistic    (eq. 3.2):  dy/dt = rho y (1 - y / K),          y(t) = K y0 / (y0 + (K - y0) exp(-rho t))
- Gompertz    (eq. 3.3):  dy/dt = alpha exp(-beta t) y,       y(t) = y0 exp(alpha / beta (1 - exp(-beta t)))
"""
from __future__ import annotations

import numpy as np

from ..errors import InputError


def _check_nonnegative(name, value):
    value = np.asarray(value, dtype=np.float64)
    if not np.all(np.isfinite(value)) or np.any(value < 0):
        raise InputError(f"{name} must be finite and >= 0, got {value.tolist()}")
    return value


def exponential_rate(y, t, alpha_per_day):
    return alpha_per_day * np.asarray(y, dtype=np.float64)


def exponential_solution(t_days, y0, alpha_per_day):
    t = _check_nonnegative("t_days", t_days)
    return _check_nonnegative("y0", y0) * np.exp(alpha_per_day * t)


def logistic_rate(y, t, rho_per_day, capacity=1.0):
    y = np.asarray(y, dtype=np.float64)
    return rho_per_day * y * (1.0 - y / capacity)


def logistic_solution(t_days, y0, rho_per_day, capacity=1.0):
    t = _check_nonnegative("t_days", t_days)
    y0 = _check_nonnegative("y0", y0)
    if capacity <= 0:
        raise InputError(f"capacity must be > 0, got {capacity}")
    # Written with exp(-rho t) so large rho t does not overflow.
    decay = np.exp(-rho_per_day * t)
    return capacity * y0 / (y0 + (capacity - y0) * decay)


def gompertz_rate(y, t, alpha_per_day, beta_per_day):
    return alpha_per_day * np.exp(-beta_per_day * np.asarray(t, dtype=np.float64)) * np.asarray(y, dtype=np.float64)


def gompertz_solution(t_days, y0, alpha_per_day, beta_per_day):
    t = _check_nonnegative("t_days", t_days)
    if beta_per_day <= 0:
        raise InputError(f"beta_per_day must be > 0, got {beta_per_day}")
    return _check_nonnegative("y0", y0) * np.exp(alpha_per_day / beta_per_day * (1.0 - np.exp(-beta_per_day * t)))
