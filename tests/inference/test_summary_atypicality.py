"""The VAE atypicality flag travels with the posterior summary."""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import pytest

from astroprob.inference import NPE
from astroprob.nn.vae import Atypicality
from astroprob.tasks import Task


@pytest.fixture(scope="module")
def posterior():
    task = Task(
        name="shift",
        prior=dist.Normal(jnp.zeros(2), 1.0).to_event(1),
        simulator=lambda key, theta: theta + 0.3 * jax.random.normal(key, (2,)),
        parameter_names=("a", "b"),
        observation_shape=(2,),
    )
    theta, x = task.simulate(jax.random.key(0), 400)
    npe = NPE(task, "mdn").fit(jax.random.key(1), theta, x, max_epochs=2, progress_bar=False)
    return npe.posterior(jnp.zeros((3, 2)))


def test_summary_carries_score_and_flag_per_observation(posterior):
    atypicality = Atypicality(
        statistic=np.array([1.0, 50.0, 3.0]),
        score=np.array([0.2, 1.0, 0.5]),
        flagged=np.array([False, True, False]),
        threshold=0.99,
    )
    table = posterior.summary(jax.random.key(2), num_samples=200, atypicality=atypicality)
    np.testing.assert_array_equal(table["atypicality"], [0.2, 1.0, 0.5])
    np.testing.assert_array_equal(table["atypicality_flag"], [False, True, False])
    assert table.meta["atypicality_threshold"] == 0.99
    assert "atypicality" not in posterior.summary(jax.random.key(2), num_samples=200).colnames


def test_summary_rejects_atypicality_of_other_observations(posterior):
    two = Atypicality(np.zeros(2), np.zeros(2), np.zeros(2, bool), 0.99)
    with pytest.raises(ValueError, match="expected 3 observations"):
        posterior.summary(jax.random.key(2), num_samples=200, atypicality=two)
