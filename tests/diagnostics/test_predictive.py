"""Posterior predictive checks flag observations unlike anything the simulator makes."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from astroprob.diagnostics import predictive_check


def _predictive(key, n_obs=4, n_pred=300, dim=5):
    return np.array(jax.random.normal(key, (n_obs, n_pred, dim)))


def test_typical_observations_pass_and_outliers_are_flagged():
    x_pred = _predictive(jax.random.key(0))
    x_obs = np.array(jax.random.normal(jax.random.key(1), (4, 5)))
    x_obs[2] = 6.0  # far from everything simulated
    x_obs[3] = np.array([3.0, -3.0, 3.0, -3.0, 3.0])  # normal mean, but huge spread
    result = predictive_check(x_obs, x_pred)
    assert result.verdict == ("consistent", "consistent", "atypical", "atypical")
    assert result.names == ("mean", "std", "min", "max", "distance")
    assert result.p_value[2].min() == pytest.approx(1 / 301)  # nothing as extreme
    assert result.p_value[3, result.names.index("std")] < 0.01
    assert result.p_value[3, result.names.index("mean")] > 0.05


def test_p_values_of_replicates_are_uniform():
    """An observation drawn like the replicates gets a uniform p-value."""
    keys = jax.random.split(jax.random.key(2), 2)
    x_pred = _predictive(keys[0], n_obs=500, n_pred=200, dim=3)
    x_obs = np.asarray(jax.random.normal(keys[1], (500, 3)))
    result = predictive_check(x_obs, x_pred)
    for j in range(len(result.names)):
        assert (result.p_value[:, j] <= 0.1).mean() == pytest.approx(0.1, abs=0.045)
    assert result.flagged.mean() < 0.1


def test_user_statistics_and_invalid_simulations():
    x_pred = _predictive(jax.random.key(3), n_obs=2, n_pred=100, dim=4)
    x_pred[0, :10] = np.nan  # a simulator failure: dropped and counted
    x_obs = np.zeros((2, 4))
    result = predictive_check(x_obs, x_pred, statistics={"first": lambda x: x[0]})
    assert result.names == ("first", "distance")
    assert result.num_invalid.tolist() == [10, 0]
    assert result.num_valid.tolist() == [90, 100]
    out = result.to_dict()
    assert out["observations"][0]["num_invalid"] == 10


def test_bad_input_is_reported():
    x_pred = np.zeros((2, 10, 3))
    match = r"x_pred: expected shape \(2, n_pred, 4\) to match x_obs \(2, 4\)"
    with pytest.raises(ValueError, match=match):
        predictive_check(np.zeros((2, 4)), np.zeros((2, 10, 3)))
    with pytest.raises(ValueError, match="x_obs: expected finite values"):
        predictive_check(np.full((2, 3), np.nan), x_pred)
    with pytest.raises(ValueError, match="'distance' is reserved"):
        predictive_check(np.zeros((2, 3)), x_pred, statistics={"distance": jnp.sum})
