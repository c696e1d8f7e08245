"""The Fourier table of the Sérsic profile: exact where closed forms exist, well interpolated."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import special

from astroprob.tasks._sersic_profile import (
    N_MAX,
    N_MIN,
    fourier_profile,
    hankel_transform,
    load_table,
    profile_row,
    real_space_constants,
    sersic_b,
    table_grid,
)

KAPPA = np.exp(np.linspace(np.log(1e-4), np.log(1e4), 60))


def test_gaussian_and_exponential_closed_forms():
    # n = 1/2: I ∝ exp(-b r²), F = exp(-κ²/(4b)); n = 1: F = (1 + (κ/b)²)^(-3/2).
    b_half, b_one = sersic_b(0.5), sersic_b(1.0)
    np.testing.assert_allclose(
        hankel_transform(KAPPA, 0.5), np.exp(-(KAPPA**2) / (4 * b_half)), atol=1e-13
    )
    np.testing.assert_allclose(
        hankel_transform(KAPPA, 1.0), (1 + (KAPPA / b_one) ** 2) ** -1.5, atol=1e-13
    )


def test_half_light_constant():
    # Half the light within r_e: P(2n, b_n) = 1/2.
    n = np.array([0.5, 1.0, 2.5, 4.0, 6.0])
    np.testing.assert_allclose(special.gammainc(2 * n, sersic_b(n)), 0.5, rtol=1e-12)
    assert sersic_b(4.0) == pytest.approx(7.669, abs=1e-3)  # de Vaucouleurs


def test_shipped_table_matches_the_code():
    values = np.asarray(load_table().values)
    n_grid, x_grid = table_grid()
    for i in (int(np.argmin(np.abs(n_grid - 1.5))), int(np.argmin(np.abs(n_grid - 4.0)))):
        fresh = hankel_transform(np.exp(x_grid[::10]), n_grid[i])
        np.testing.assert_allclose(values[i, ::10], fresh, atol=2e-7)


def test_interpolation_error_is_small_off_the_grid():
    table = load_table()
    rng = np.random.default_rng(3)
    worst = 0.0
    for n in [N_MIN, 0.537, 1.234, 2.718, 4.44, 5.93, N_MAX]:
        kappa = np.exp(rng.uniform(np.log(1e-3), np.log(30.0), 25))
        exact = hankel_transform(kappa, n)
        row = profile_row(table, jnp.float32(n))
        got = np.asarray(fourier_profile(table, row, jnp.asarray(kappa**2, jnp.float32)))
        worst = max(worst, float(np.abs(got - exact).max()))
    assert worst < 2e-5


def test_profile_is_differentiable_and_smooth_in_n():
    table = load_table()

    def f(n, kappa_sq):
        return fourier_profile(table, profile_row(table, n), kappa_sq)

    grad_n = jax.grad(f)(jnp.float32(2.3), jnp.float32(4.0))
    step = 1e-3
    fd = (
        hankel_transform(np.array([2.0]), 2.3 + step)
        - hankel_transform(np.array([2.0]), 2.3 - step)
    ) / (2 * step)
    assert np.isfinite(grad_n)
    assert float(grad_n) == pytest.approx(float(fd[0]), rel=0.02)
    # At κ = 0 the gradient exists (no NaN from log(0)).
    assert np.isfinite(jax.grad(f, argnums=1)(jnp.float32(3.0), jnp.float32(0.0)))


def test_real_space_constants_interpolate_b_and_norm():
    table = load_table()
    for n in (0.5, 1.7, 6.0):
        b, log_norm = real_space_constants(table, jnp.float32(n))
        exact_b = sersic_b(n)
        assert float(b) == pytest.approx(exact_b, rel=1e-5)
        exact = 2 * n * np.log(exact_b) - np.log(2 * np.pi * n) - special.gammaln(2 * n)
        assert float(log_norm) == pytest.approx(exact, abs=1e-4)
