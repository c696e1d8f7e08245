"""A small user-defined task with an exact posterior, and an 'estimator' that knows it.

Prior N(0, I) in 2-D, likelihood N(theta, 0.25 I): the posterior is
N(0.8 x, 0.2 I). ``scale`` bends the posterior's width to make it miscalibrated.
"""

import functools
import math

import jax
import jax.numpy as jnp
import numpyro.distributions as dist

from astroprob.tasks import Task

NOISE_VAR = 0.25
SHRINK = 1.0 / (1.0 + NOISE_VAR)  # posterior mean = SHRINK * x
POST_STD = math.sqrt(NOISE_VAR / (1.0 + NOISE_VAR))


def simulator(key, theta):
    return theta + math.sqrt(NOISE_VAR) * jax.random.normal(key, theta.shape)


def make_task(name="toy_gaussian", parameter_names=("a", "b")):
    return Task(
        name=name,
        prior=dist.Normal(jnp.zeros(2), 1.0).to_event(1),
        simulator=simulator,
        parameter_names=parameter_names,
        observation_shape=(2,),
    )


class ExactEstimator:
    def __init__(self, scale=1.0, label="ExactEstimator"):
        self.scale, self.label = scale, label

    def posterior(self, x):
        return _Posterior(jnp.asarray(x), self.scale)

    def __repr__(self):
        return self.label


class _Posterior:
    def __init__(self, x, scale):
        self._loc, self._std = SHRINK * x, scale * POST_STD

    def sample(self, key, n):
        return _sample(key, self._loc, self._std, n)

    def log_prob(self, theta):
        return _log_prob(self._loc, self._std, jnp.asarray(theta))


@functools.partial(jax.jit, static_argnums=3)
def _sample(key, loc, std, n):
    return loc[:, None, :] + std * jax.random.normal(key, (loc.shape[0], n, loc.shape[1]))


@jax.jit
def _log_prob(loc, std, theta):
    return dist.Normal(loc[:, None, :], std).to_event(1).log_prob(theta)
