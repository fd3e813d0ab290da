"""ODE models: closed forms against an independent numerical integration (scipy's RK45 at tight tolerance)."""
import numpy as np
import pytest
from scipy.integrate import solve_ivp

from TumorPersonalizationLib.errors import InputError
from TumorPersonalizationLib.models import odes

T = np.linspace(0.0, 400.0, 41)


def integrate(rate, y0, *params):
    sol = solve_ivp(lambda t, y: rate(y, t, *params), (0.0, T[-1]), [y0], t_eval=T, rtol=1e-10, atol=1e-12)
    return sol.y[0]


@pytest.mark.parametrize("rate, solution, y0, params", [
    (odes.exponential_rate, odes.exponential_solution, 0.01, (0.01,)),
    (odes.logistic_rate, odes.logistic_solution, 0.001, (0.05, 1.0)),
    (odes.logistic_rate, odes.logistic_solution, 2.0, (0.02, 30.0)),
    (odes.gompertz_rate, odes.gompertz_solution, 0.05, (0.08, 0.01)),
])
def test_closed_form_matches_numerical_integration(rate, solution, y0, params):
    np.testing.assert_allclose(solution(T, y0, *params), integrate(rate, y0, *params), rtol=1e-7)


def test_limits():
    assert odes.logistic_solution(1e5, 1e-6, 0.1, 3.0) == pytest.approx(3.0)  # capacity, no overflow
    # Gompertz saturates at y0 exp(alpha / beta).
    assert odes.gompertz_solution(1e5, 1.0, 0.1, 0.05) == pytest.approx(np.exp(2.0))


def test_bad_input():
    with pytest.raises(InputError, match="t_days"):
        odes.exponential_solution(-1.0, 1.0, 0.1)
    with pytest.raises(InputError, match="capacity"):
        odes.logistic_solution(1.0, 0.1, 0.1, capacity=0.0)
    with pytest.raises(InputError, match="beta"):
        odes.gompertz_solution(1.0, 0.1, 0.1, 0.0)
