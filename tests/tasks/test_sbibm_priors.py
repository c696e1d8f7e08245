import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _sbibm_spec import DIM, N_SIM, NAMES, UNIFORM_BOUND, prior_cov
from scipy import stats

import astroprob.tasks as tasks

N = N_SIM


@pytest.fixture(scope="module")
def prior_draws():
    key = jax.random.key(123)
    out = {}
    for name in NAMES:
        key, sub = jax.random.split(key)
        out[name] = np.asarray(tasks.get(name).sample_prior(sub, N), dtype=np.float64)
    return out


@pytest.mark.parametrize("name", NAMES)
def test_prior_moments_match_published_prior(name, prior_draws):
    theta = prior_draws[name]
    cov = prior_cov(name)
    assert theta.shape == (N, DIM[name])
    se_mean = np.sqrt(np.diag(cov) / N)
    np.testing.assert_array_less(np.abs(theta.mean(0)), 5 * se_mean)
    # standard error of a sample covariance entry (Gaussian approximation, conservative
    # for the uniform priors whose kurtosis is lower)
    se_cov = np.sqrt((np.outer(np.diag(cov), np.diag(cov)) + cov**2) / N)
    np.testing.assert_array_less(np.abs(np.cov(theta.T) - cov), 5 * se_cov)


@pytest.mark.parametrize("name", sorted(UNIFORM_BOUND))
def test_uniform_prior_support_and_marginals(name, prior_draws):
    bound = UNIFORM_BOUND[name]
    theta = prior_draws[name]
    assert theta.min() >= -bound
    assert theta.max() <= bound
    # fills the whole box: each coordinate reaches both ends
    np.testing.assert_array_less(bound - 0.01 * bound, theta.max(0))
    np.testing.assert_array_less(theta.min(0), -bound + 0.01 * bound)
    for j in range(DIM[name]):
        assert stats.kstest(theta[:, j], stats.uniform(-bound, 2 * bound).cdf).pvalue > 1e-3


@pytest.mark.parametrize("name", ["gaussian_linear", "bernoulli_glm"])
def test_gaussian_prior_marginals_are_normal(name, prior_draws):
    theta = prior_draws[name]
    sd = np.sqrt(np.diag(prior_cov(name)))
    for j in range(DIM[name]):
        assert stats.kstest(theta[:, j], stats.norm(0, sd[j]).cdf).pvalue > 1e-3


@pytest.mark.parametrize("name", NAMES)
def test_prior_log_prob_matches_published_density(name, prior_draws):
    task = tasks.get(name)
    dim = DIM[name]
    log_prob = jax.jit(task.prior.log_prob)
    theta = prior_draws[name]
    got = np.asarray(log_prob(jnp.asarray(theta, jnp.float32)))
    if name in UNIFORM_BOUND:
        bound = UNIFORM_BOUND[name]
        np.testing.assert_allclose(got, -dim * np.log(2 * bound), rtol=1e-6)
        outside = theta.copy()
        outside[::2, 0] = 1.01 * bound
        outside[1::2, -1] = -1.01 * bound
        assert np.all(np.isneginf(np.asarray(log_prob(jnp.asarray(outside, jnp.float32)))))
    else:
        expected = stats.multivariate_normal(np.zeros(dim), prior_cov(name)).logpdf(theta)
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_bernoulli_glm_prior_precision_is_published():
    from _sbibm_spec import bernoulli_glm_precision

    np.testing.assert_allclose(tasks.bernoulli_glm.prior_precision(), bernoulli_glm_precision())
    cov = np.asarray(tasks.get("bernoulli_glm").prior.covariance_matrix, np.float64)
    np.testing.assert_allclose(cov @ bernoulli_glm_precision(), np.eye(10), atol=1e-4)
