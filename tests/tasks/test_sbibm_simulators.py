"""Simulator moments at fixed θ against the analytic values of the sbibm definitions."""

import math

import jax.numpy as jnp
import numpy as np
import pytest
from _sbibm_spec import (
    GL_NOISE_COV,
    GM_SCALES,
    GM_WEIGHTS,
    N_SIM,
    SLCP_EPS,
    TM_A_RANGE,
    TM_R_LOC,
    TM_R_SCALE,
    bernoulli_glm_design_matrix,
    slcp_mean_cov,
    two_moons_invert,
)
from scipy import stats

import astroprob.tasks as tasks


def simulate_at(name, theta, key):
    task = tasks.get(name)
    theta = jnp.broadcast_to(jnp.asarray(theta, jnp.float32), (N_SIM, task.dim))
    return np.asarray(task.run_simulator(key, theta), dtype=np.float64)


@pytest.mark.parametrize("theta", [(0.3, -0.6), (-0.7, -0.2), (0.9, 0.8)])
def test_two_moons_radius_and_angle(theta, keys):
    x = simulate_at("two_moons", theta, next(keys))
    u, v = two_moons_invert(np.array(theta), x)
    r = np.hypot(u, v)
    a = np.arctan2(v, u)
    # r ~ N(0.1, 0.01^2), a ~ U(-pi/2, pi/2): the inverted points lie on the right half-ring
    assert stats.kstest(r, stats.norm(TM_R_LOC, TM_R_SCALE).cdf).pvalue > 1e-3
    low, high = TM_A_RANGE
    assert stats.kstest(a, stats.uniform(low, high - low).cdf).pvalue > 1e-3
    assert np.all(u > 0)
    # negative control: the mirrored θ (wrong sign of the rotated coordinate) misses the ring
    u_bad, v_bad = two_moons_invert(np.array(theta)[::-1], x)
    r_bad = np.hypot(u_bad, v_bad)
    assert stats.kstest(r_bad, stats.norm(TM_R_LOC, TM_R_SCALE).cdf).pvalue < 1e-6


def test_two_moons_is_symmetric_in_the_sum_direction(keys):
    """x depends on θ1 + θ2 only through |θ1 + θ2|: θ and its reflection give the same x."""
    key = next(keys)
    theta = np.array([0.4, 0.1])
    reflected = -theta[::-1]  # flips θ1 + θ2, keeps θ2 - θ1
    np.testing.assert_allclose(
        simulate_at("two_moons", theta, key), simulate_at("two_moons", reflected, key), atol=1e-6
    )


@pytest.mark.parametrize("theta", [(0.5, -1.0, 1.2, 0.8, 0.7), (-2.0, 1.5, -1.1, 1.3, -1.5)])
def test_slcp_four_iid_gaussian_draws(theta, keys):
    x = simulate_at("slcp", theta, next(keys)).reshape(N_SIM, 4, 2)
    mean, cov = slcp_mean_cov(np.array(theta))
    np.testing.assert_allclose(tasks.slcp.covariance(jnp.asarray(theta)), cov, rtol=1e-5)
    sd = np.sqrt(np.diag(cov))
    se_cov = np.sqrt((np.outer(np.diag(cov), np.diag(cov)) + cov**2) / N_SIM)
    for k in range(4):
        np.testing.assert_array_less(np.abs(x[:, k].mean(0) - mean), 5 * sd / math.sqrt(N_SIM))
        np.testing.assert_array_less(np.abs(np.cov(x[:, k].T) - cov), 5 * se_cov)
    # draws are independent of each other
    flat = x.reshape(N_SIM, 8)
    corr = np.corrcoef(flat.T)
    for k in range(4):
        for m in range(k + 1, 4):
            block = corr[2 * k : 2 * k + 2, 2 * m : 2 * m + 2]
            assert np.all(np.abs(block) < 5 / math.sqrt(N_SIM))


def test_slcp_diagonal_jitter(keys):
    """With θ3 = 0 the first coordinate keeps only sbibm's ε = 1e-6 variance."""
    x = simulate_at("slcp", (1.0, 2.0, 0.0, 1.0, 0.5), next(keys)).reshape(N_SIM, 4, 2)
    std = x[..., 0].std()
    assert abs(std - math.sqrt(SLCP_EPS)) < 0.05 * math.sqrt(SLCP_EPS)
    assert abs(x[..., 0].mean() - 1.0) < 1e-4


@pytest.mark.parametrize("name", ["gaussian_linear", "gaussian_linear_uniform"])
def test_gaussian_linear_noise(name, keys):
    theta = np.linspace(-0.9, 0.9, 10)
    noise = simulate_at(name, theta, next(keys)) - theta
    sd = np.sqrt(np.diag(GL_NOISE_COV))
    np.testing.assert_array_less(np.abs(noise.mean(0)), 5 * sd / math.sqrt(N_SIM))
    var = np.diag(GL_NOISE_COV)
    se_cov = np.sqrt((np.outer(var, var) + GL_NOISE_COV**2) / N_SIM)
    np.testing.assert_array_less(np.abs(np.cov(noise.T) - GL_NOISE_COV), 5 * se_cov)
    for j in range(10):
        assert stats.kstest(noise[:, j], stats.norm(0, sd[j]).cdf).pvalue > 1e-3


def test_gaussian_mixture_shares_the_component_across_coordinates(keys):
    theta = np.array([3.0, -7.0])
    d = simulate_at("gaussian_mixture", theta, next(keys)) - theta
    w, s = np.array(GM_WEIGHTS), np.array(GM_SCALES)
    second = w @ s**2  # E d_j^2
    fourth = 3 * w @ s**4  # E d_j^4
    cross = w @ s**4  # E d_1^2 d_2^2 when both coordinates share the component
    np.testing.assert_array_less(np.abs(d.mean(0)), 5 * math.sqrt(second / N_SIM))
    se2 = math.sqrt((fourth - second**2) / N_SIM)
    np.testing.assert_array_less(np.abs((d**2).mean(0) - second), 5 * se2)
    prod = d[:, 0] ** 2 * d[:, 1] ** 2
    se_cross = prod.std() / math.sqrt(N_SIM)
    assert abs(prod.mean() - cross) < 5 * se_cross
    assert abs(prod.mean() - second**2) > 10 * se_cross  # independent components would fail

    # each coordinate's marginal is the published mixture of two normals
    def mixture_cdf(t):
        return sum(wk * stats.norm(0, sk).cdf(t) for wk, sk in zip(w, s, strict=True))

    assert stats.kstest(d[:, 0], mixture_cdf).pvalue > 1e-3


def test_bernoulli_glm_summary_moments(keys):
    task = tasks.get("bernoulli_glm")
    theta = np.asarray(task.true_parameters_of(3), np.float64)
    x = simulate_at("bernoulli_glm", theta, next(keys))
    design = bernoulli_glm_design_matrix(tasks.bernoulli_glm.stimulus().astype(np.float64))
    p = 1 / (1 + np.exp(-design @ theta))
    mean = design.T @ p
    cov = design.T @ (design * (p * (1 - p))[:, None])
    sd = np.sqrt(np.diag(cov))
    np.testing.assert_array_less(np.abs(x.mean(0) - mean), 5 * sd / math.sqrt(N_SIM))
    np.testing.assert_allclose(x.std(0), sd, rtol=0.05)
    counts = x[:, 0]
    assert np.all(counts == np.round(counts))
    assert counts.min() >= 0
    assert counts.max() <= 100
