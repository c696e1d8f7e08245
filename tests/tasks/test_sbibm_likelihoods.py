"""Likelihoods against the published densities, and the published observations against
the simulator at their true parameters."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _sbibm_spec import (
    GL_NOISE_COV,
    GM_SCALES,
    GM_WEIGHTS,
    N_SIM,
    OBS_DIM,
    TM_R_LOC,
    TM_R_SCALE,
    WITH_LIKELIHOOD,
    loglik,
    slcp_mean_cov,
    tile,
    two_moons_invert,
)
from scipy import special, stats

import astroprob.tasks as tasks


def published_log_likelihood(name, theta, x):
    theta = np.asarray(theta, np.float64)
    x = np.asarray(x, np.float64)
    if name in ("gaussian_linear", "gaussian_linear_uniform"):
        return stats.multivariate_normal(theta, GL_NOISE_COV).logpdf(x)
    if name == "slcp":
        mean, cov = slcp_mean_cov(theta)
        normal = stats.multivariate_normal(mean, cov)
        return sum(normal.logpdf(x[2 * k : 2 * k + 2]) for k in range(4))
    if name == "gaussian_mixture":
        parts = [
            math.log(w) + stats.multivariate_normal(theta, s**2 * np.eye(2)).logpdf(x)
            for w, s in zip(GM_WEIGHTS, GM_SCALES, strict=True)
        ]
        return special.logsumexp(parts)
    raise AssertionError(name)


@pytest.mark.parametrize("name", WITH_LIKELIHOOD)
def test_likelihood_matches_published_density(name, keys):
    task = tasks.get(name)
    theta = task.sample_prior(next(keys), N_SIM)
    x = task.run_simulator(next(keys), theta)
    lik = task.likelihood(theta)
    assert lik.batch_shape == (N_SIM,)
    assert lik.event_shape == (OBS_DIM[name],)
    # at the simulated points, and at points that did not come from the same θ
    for x_eval in (x, jnp.roll(x, 1, axis=0)):
        got = np.asarray(loglik(task)(theta, x_eval))
        for j in range(6):
            want = published_log_likelihood(name, theta[j], x_eval[j])
            assert got[j] == pytest.approx(want, rel=1e-4, abs=1e-3)


@pytest.mark.parametrize("name", WITH_LIKELIHOOD)
def test_simulator_and_likelihood_agree(name, keys):
    """Draws of the simulator and of the likelihood have the same log-density distribution."""
    task = tasks.get(name)
    theta = tile(task.true_parameters_of(2))
    x_sim = task.run_simulator(next(keys), theta)
    x_lik = jax.jit(lambda k, t: task.likelihood(t).sample(k))(next(keys), theta)
    assert x_lik.shape == x_sim.shape
    a = np.asarray(loglik(task)(theta, x_sim), np.float64)
    b = np.asarray(loglik(task)(theta, x_lik), np.float64)
    assert stats.ks_2samp(a, b).pvalue > 1e-3


def likelihood_percentile(task, theta, x_obs, key):
    """Fraction of simulations at θ whose likelihood is below that of x_obs."""
    theta = tile(theta)
    x = task.run_simulator(key, theta)
    ll = loglik(task)
    return float(jnp.mean(ll(theta, x) <= ll(theta, tile(x_obs))))


@pytest.mark.parametrize("name", WITH_LIKELIHOOD)
def test_published_observations_are_plausible(name, keys):
    task = tasks.get(name)
    for i in range(1, 11):
        theta = task.true_parameters_of(i)
        q = likelihood_percentile(task, theta, task.observation(i), next(keys))
        assert q > 1e-3, f"observation {i} is in the {q:.2%} likelihood tail"
    # negative control: pairing each observation with another observation's θ fails
    misfits = sum(
        likelihood_percentile(
            task, task.true_parameters_of(i % 10 + 1), task.observation(i), next(keys)
        )
        <= 1e-3
        for i in range(1, 11)
    )
    assert misfits >= 5


@pytest.mark.parametrize("name", ["gaussian_linear", "gaussian_linear_uniform"])
def test_gaussian_linear_observations_chi_square(name):
    """||x - θ||² / 0.1 ~ χ²₁₀ for the published pairs; their p-values look uniform."""
    task = tasks.get(name)
    pvalues = []
    for i in range(1, 11):
        r = np.asarray(task.observation(i) - task.true_parameters_of(i), np.float64)
        chi2 = r @ np.linalg.solve(GL_NOISE_COV, r)
        pvalues.append(stats.chi2(10).sf(chi2))
    assert min(pvalues) > 1e-3
    assert max(pvalues) < 1 - 1e-3
    assert stats.kstest(pvalues, "uniform").pvalue > 1e-3


def test_two_moons_observations_lie_on_the_ring():
    task = tasks.get("two_moons")
    z = []
    for i in range(1, 11):
        u, v = two_moons_invert(task.true_parameters_of(i), task.observation(i))
        assert u > 0
        z.append((math.hypot(u, v) - TM_R_LOC) / TM_R_SCALE)
    assert max(abs(v) for v in z) < 4
    # negative control: another observation's θ puts x far off the ring
    off = []
    for i in range(1, 11):
        u, v = two_moons_invert(task.true_parameters_of(i % 10 + 1), task.observation(i))
        off.append(abs(math.hypot(u, v) - TM_R_LOC) / TM_R_SCALE > 4 or u <= 0)
    assert sum(off) >= 8


def test_jitted_likelihood_log_prob(keys):
    """The likelihood works under jit and grad (as MCMC for reference posteriors needs)."""
    task = tasks.get("slcp")
    x = task.observation(1)

    @jax.jit
    def log_joint(theta):
        return task.prior.log_prob(theta) + task.likelihood(theta).log_prob(x)

    theta = task.true_parameters_of(1)
    value, grad = jax.value_and_grad(log_joint)(theta)
    assert np.isfinite(float(value))
    assert bool(jnp.all(jnp.isfinite(grad)))
