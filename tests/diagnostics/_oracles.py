"""Posterior samples with known calibration, for positive and negative controls.

``gaussian_linear`` has the exact posterior N(x / 2, 0.05 I). Its samples are
bent on purpose: ``scale < 1`` gives an under-dispersed (overconfident)
posterior, ``scale > 1`` an over-dispersed one, ``shift`` a biased one (shift in
posterior standard deviations). ``log_prob`` is the density of the bent
distribution, so that samples and density always agree.
"""

import functools
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist

import astroprob as ap
from astroprob.tasks.gaussian_linear import analytic_posterior

POSTERIOR_STD = float(np.sqrt(0.05))


@dataclass
class Case:
    theta: np.ndarray  # (n, dim)
    x: np.ndarray  # (n, dim)
    samples: np.ndarray  # (n, L, dim)
    loc: jnp.ndarray  # (n, dim) centre of the (bent) posterior
    scale: float
    shift: float

    def log_prob(self, theta):
        """(n, m, dim) -> (n, m): log-density of the distribution the samples came from."""
        std = jnp.full(self.loc.shape, self.scale * POSTERIOR_STD)
        return np.asarray(_normal_log_prob(self.loc, std, jnp.asarray(theta)))


def gaussian_linear(key, n, num_samples, *, scale=1.0, shift=0.0, dim=None):
    """Simulations of gaussian_linear and posterior samples of a (possibly bent) posterior."""
    _task()  # build (and cache) the task before tracing _draw
    theta, x, samples, loc = _draw(key, n, num_samples, scale, shift)
    if dim is not None:
        theta, x, samples, loc = theta[:, :dim], x[:, :dim], samples[..., :dim], loc[:, :dim]
    return Case(np.asarray(theta), np.asarray(x), np.asarray(samples), loc, scale, shift)


@functools.cache
def _task():
    # Built outside any jit trace: the registry caches the task it returns.
    return ap.tasks.get("gaussian_linear")


@functools.partial(jax.jit, static_argnums=(1, 2))
def _draw(key, n, num_samples, scale, shift):
    """One compiled draw: the task's prior and simulator, then the analytic posterior."""
    task = _task()
    key_prior, key_sim, key_post = jax.random.split(key, 3)
    theta = task.prior.sample(key_prior, (n,))
    x = jax.vmap(task.simulator)(jax.random.split(key_sim, n), theta)
    exact = analytic_posterior(x)
    std = jnp.sqrt(jnp.diagonal(exact.covariance_matrix, axis1=-2, axis2=-1))
    eps = jax.random.normal(key_post, (n, num_samples, theta.shape[1]))
    loc = exact.mean + shift * POSTERIOR_STD
    samples = loc[:, None, :] + scale * std[:, None, :] * eps
    return theta, x, samples, loc


def prior_as_posterior(key, n, num_samples, dim=3):
    """theta ~ N(0, 1) and 'posterior' samples from the same prior, ignoring the data."""
    key_theta, key_samples = jax.random.split(key)
    theta = jax.random.normal(key_theta, (n, dim))
    samples = jax.random.normal(key_samples, (n, num_samples, dim))
    return np.asarray(theta), np.asarray(samples)


class ExactGaussianLinear:
    """An 'estimator' whose posterior is the exact gaussian_linear posterior (optionally bent)."""

    def __init__(self, scale=1.0, shift=0.0):
        self.scale, self.shift = scale, shift

    def posterior(self, x):
        return _ExactPosterior(np.asarray(x), self.scale, self.shift)

    def __repr__(self):
        return f"ExactGaussianLinear(scale={self.scale}, shift={self.shift})"


class _ExactPosterior:
    def __init__(self, x, scale, shift):
        self._loc, self._std = _loc_std(jnp.asarray(x), scale, shift)

    def sample(self, key, n):
        return _sample(key, self._loc, self._std, n)

    def log_prob(self, theta):
        return _normal_log_prob(self._loc, self._std, jnp.asarray(theta))


@jax.jit
def _loc_std(x, scale, shift):
    exact = analytic_posterior(x)
    std = jnp.sqrt(jnp.diagonal(exact.covariance_matrix, axis1=-2, axis2=-1))
    return exact.mean + shift * POSTERIOR_STD, scale * std


@functools.partial(jax.jit, static_argnums=3)
def _sample(key, loc, std, n):
    eps = jax.random.normal(key, (loc.shape[0], n, loc.shape[1]))
    return loc[:, None, :] + std[:, None, :] * eps


@jax.jit
def _normal_log_prob(loc, std, theta):
    return dist.Normal(loc[:, None, :], std[:, None, :]).to_event(1).log_prob(theta)
