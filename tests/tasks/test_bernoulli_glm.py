"""Bernoulli GLM: the shipped fixed inputs, the summary statistics, and the observations."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _sbibm_spec import (
    N_SIM,
    bernoulli_glm_design_matrix,
    bernoulli_glm_summary,
    tile,
)

import astroprob.tasks as tasks
from astroprob.tasks import bernoulli_glm


@pytest.fixture(scope="module")
def raw_spikes():
    return np.asarray(tasks.get("bernoulli_glm").metadata["observations_raw"], np.float64)


def test_design_matrix_is_built_from_the_stimulus():
    stimulus = bernoulli_glm.stimulus()
    assert stimulus.shape == (100,)
    assert bernoulli_glm.design_matrix().shape == (100, 10)
    np.testing.assert_array_equal(
        bernoulli_glm.design_matrix(), bernoulli_glm_design_matrix(stimulus).astype(np.float32)
    )
    # sbibm's stimulus is standard white noise
    assert abs(stimulus.mean()) < 0.3
    assert 0.7 < stimulus.std() < 1.3


def test_shipped_inputs_cannot_be_modified():
    with pytest.raises(ValueError, match="read-only"):
        bernoulli_glm.design_matrix()[0, 0] = 2.0


def test_summary_statistics_are_sbibm_conv1d(raw_spikes):
    """Vᵀy equals sbibm's [sum(y), conv1d(y, I, padding=8)[-9:]] and the published x."""
    task = tasks.get("bernoulli_glm")
    stimulus = bernoulli_glm.stimulus().astype(np.float64)
    assert set(np.unique(raw_spikes)) <= {0.0, 1.0}
    ours = np.asarray(bernoulli_glm.summary_statistics(raw_spikes))
    assert ours.shape == (10, 10)
    as_bool = np.asarray(bernoulli_glm.summary_statistics(raw_spikes.astype(bool)))
    np.testing.assert_array_equal(as_bool, ours)
    for i in range(1, 11):
        spikes = raw_spikes[i - 1]
        published = np.asarray(task.observation(i), np.float64)
        reference = bernoulli_glm_summary(spikes, stimulus)
        np.testing.assert_allclose(reference, published, rtol=1e-5, atol=1e-4)
        np.testing.assert_allclose(ours[i - 1], published, rtol=1e-5, atol=1e-4)


def _raw_log_likelihood(theta, spikes, design):
    """log p(y | θ) of spike trains y (..., 100) under Bernoulli(σ(Vθ))."""
    psi = design @ theta
    return spikes @ -np.logaddexp(0, -psi) + (1 - spikes) @ -np.logaddexp(0, psi)


def test_raw_spike_trains_are_plausible_at_true_parameters(raw_spikes, keys):
    """Each published spike train is a typical Bernoulli(σ(Vθ)) draw at its true θ."""
    task = tasks.get("bernoulli_glm")
    design = bernoulli_glm_design_matrix(bernoulli_glm.stimulus().astype(np.float64))

    def percentile(theta, spikes, key):
        p = 1 / (1 + np.exp(-design @ theta))
        sims = np.asarray(jax.random.uniform(key, (4000, 100)), np.float64) < p
        ll_sims = _raw_log_likelihood(theta, sims.astype(np.float64), design)
        return np.mean(ll_sims <= _raw_log_likelihood(theta, spikes, design))

    for i in range(1, 11):
        theta = np.asarray(task.true_parameters_of(i), np.float64)
        assert percentile(theta, raw_spikes[i - 1], next(keys)) > 1e-3
    misfits = sum(
        percentile(
            np.asarray(task.true_parameters_of(i % 10 + 1), np.float64),
            raw_spikes[i - 1],
            next(keys),
        )
        <= 1e-3
        for i in range(1, 11)
    )
    assert misfits >= 8


def test_published_observation_reproduced_in_distribution(keys):
    """x_obs has a typical Mahalanobis distance among simulations at its true θ."""
    task = tasks.get("bernoulli_glm")

    def tail(theta, x_obs, key):
        x = np.asarray(task.run_simulator(key, tile(theta)), np.float64)
        mean, prec = x.mean(0), np.linalg.inv(np.cov(x.T))
        d_sim = np.einsum("ni,ij,nj->n", x - mean, prec, x - mean)
        d_obs = (x_obs - mean) @ prec @ (x_obs - mean)
        return np.mean(d_sim >= d_obs)

    for i in range(1, 11):
        q = tail(
            task.true_parameters_of(i), np.asarray(task.observation(i), np.float64), next(keys)
        )
        assert q > 1e-3, f"observation {i}: only {q:.3%} of simulations are as extreme"
    misfits = sum(
        tail(
            task.true_parameters_of(i % 10 + 1),
            np.asarray(task.observation(i), np.float64),
            next(keys),
        )
        <= 1e-3
        for i in range(1, 11)
    )
    assert misfits >= 8


def test_spike_probabilities_batch(keys):
    theta = tasks.get("bernoulli_glm").sample_prior(next(keys), N_SIM)[:3]
    p = bernoulli_glm.spike_probabilities(theta)
    assert p.shape == (3, 100)
    design = bernoulli_glm_design_matrix(bernoulli_glm.stimulus().astype(np.float64))
    want = 1 / (1 + np.exp(-np.asarray(theta, np.float64) @ design.T))
    np.testing.assert_allclose(p, want, rtol=1e-4, atol=1e-6)
    assert bool(jnp.all((p >= 0) & (p <= 1)))
