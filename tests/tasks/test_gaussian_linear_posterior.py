"""The analytic posterior of gaussian_linear against sbibm's formula, sbibm's reference
samples, and a numerical posterior (importance sampling with the task's prior and likelihood)."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import pytest
from _sbibm_spec import GL_NOISE_COV, GL_PRIOR_COV, shared_reference_root

import astroprob.tasks as tasks
from astroprob.tasks.gaussian_linear import analytic_posterior

_ROOT = shared_reference_root()


def sbibm_posterior(x):
    """sbibm ``_get_reference_posterior``: Σ = (Λ_prior + Λ_sim)⁻¹, μ = Σ Λ_sim x (prior mean 0)."""
    lam_prior, lam_sim = np.linalg.inv(GL_PRIOR_COV), np.linalg.inv(GL_NOISE_COV)
    cov = np.linalg.inv(lam_prior + lam_sim)
    return cov @ lam_sim @ np.asarray(x, np.float64), cov


@pytest.mark.parametrize("i", [1, 4, 9])
def test_matches_sbibm_closed_form(i):
    x = tasks.get("gaussian_linear").observation(i)
    post = analytic_posterior(x)
    assert isinstance(post, dist.MultivariateNormal)
    assert post.event_shape == (10,)
    assert post.batch_shape == ()
    mean, cov = sbibm_posterior(x)
    np.testing.assert_allclose(post.mean, mean, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(post.covariance_matrix, cov, rtol=1e-6)


def test_batch_of_observations():
    task = tasks.get("gaussian_linear")
    xs = jnp.stack([task.observation(i) for i in range(1, 4)])
    post = analytic_posterior(xs)
    assert post.batch_shape == (3,)
    for j in range(3):
        np.testing.assert_allclose(post.mean[j], sbibm_posterior(xs[j])[0], rtol=1e-6)


@pytest.mark.parametrize("bad_shape", [(), (9,), (3, 11)])
def test_rejects_wrong_shape(bad_shape):
    with pytest.raises(ValueError, match=r"x: expected shape \(\.\.\., 10\)"):
        analytic_posterior(jnp.zeros(bad_shape))


def _check_samples(post, samples):
    """Mean, covariance and mean log-density of ``samples`` agree with ``post``."""
    n, d = samples.shape
    mean = np.asarray(post.mean, np.float64)
    cov = np.asarray(post.covariance_matrix, np.float64)
    np.testing.assert_array_less(np.abs(samples.mean(0) - mean), 5 * np.sqrt(np.diag(cov) / n))
    se_cov = np.sqrt((np.outer(np.diag(cov), np.diag(cov)) + cov**2) / n)
    np.testing.assert_array_less(np.abs(np.cov(samples.T) - cov), 5 * se_cov)
    # E[log q(θ)] = -entropy, with standard error sqrt(d / 2 / n)
    logq = np.asarray(post.log_prob(jnp.asarray(samples, jnp.float32)), np.float64)
    assert abs(logq.mean() + float(post.entropy())) < 5 * math.sqrt(d / 2 / n)


@pytest.mark.parametrize("i", [1, 2, 3, 4, 5])
def test_matches_sbibm_reference_samples(i):
    task = tasks.get("gaussian_linear")
    samples = tasks.reference_posterior_samples("gaussian_linear", i).astype(np.float64)
    assert samples.shape == (10_000, 10)
    _check_samples(analytic_posterior(task.observation(i)), samples)


def test_reference_samples_of_another_observation_do_not_match():
    """Negative control: the check above has the power to reject a wrong posterior."""
    task = tasks.get("gaussian_linear")
    samples = tasks.reference_posterior_samples("gaussian_linear", 1).astype(np.float64)
    with pytest.raises(AssertionError):
        _check_samples(analytic_posterior(task.observation(2)), samples)
    # and a posterior with the prior's variance instead of the posterior's is rejected too
    post = analytic_posterior(task.observation(1))
    wide = dist.MultivariateNormal(post.mean, covariance_matrix=jnp.asarray(GL_PRIOR_COV))
    with pytest.raises(AssertionError):
        _check_samples(wide, samples)


@pytest.mark.parametrize("i", [5, 6])
def test_matches_importance_sampling_from_the_prior(i):
    """A numerical posterior (prior draws weighted by the task's likelihood) agrees."""
    task = tasks.get("gaussian_linear")
    x_obs = task.observation(i)
    theta = task.sample_prior(jax.random.key(7), 200_000)
    log_w = jax.jit(lambda t, x: task.likelihood(t).log_prob(x))(theta, x_obs)
    w = np.exp(np.asarray(log_w, np.float64) - float(jnp.max(log_w)))
    w /= w.sum()
    ess = 1.0 / np.sum(w**2)
    assert ess > 2_000
    theta = np.asarray(theta, np.float64)
    mean_is = w @ theta
    var_is = w @ (theta - mean_is) ** 2
    post = analytic_posterior(x_obs)
    mean = np.asarray(post.mean, np.float64)
    var = np.diag(np.asarray(post.covariance_matrix, np.float64))
    np.testing.assert_array_less(np.abs(mean_is - mean), 5 * np.sqrt(var / ess))
    np.testing.assert_allclose(var_is, var, rtol=5 * math.sqrt(2 / ess))
