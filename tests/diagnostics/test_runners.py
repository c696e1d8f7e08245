"""The estimator-level wrappers: fresh test sets, batching, and the diagnostics on top.

All calls share one shape (200 simulations x 150 samples, batches of 100) so
that the fake estimator's sampler and the simulator compile once.
"""

import jax
import numpy as np
import pytest
from _oracles import ExactGaussianLinear

import astroprob as ap
from astroprob.diagnostics import runners

SIZES = {"n": 200, "num_samples": 150, "batch_size": 100}


@pytest.fixture(scope="module")
def task():
    return ap.tasks.get("gaussian_linear")


def test_test_set_shapes_and_batching_are_consistent(task):
    estimator = ExactGaussianLinear()
    test = runners.simulate_test_set(jax.random.key(0), estimator, task, **SIZES)
    assert test.theta.shape == (200, 10)
    assert test.x.shape == (200, 10)
    assert test.samples.shape == (200, 150, 10)
    assert test.num_invalid == 0
    # Each observation's samples are centred on x / 2 (its own posterior, not a neighbour's).
    np.testing.assert_allclose(test.samples.mean(axis=1), test.x / 2, atol=0.12)
    # batched_log_prob evaluates row i under the posterior of x[i].
    log_prob = runners.batched_log_prob(estimator, test.x, batch_size=100)
    at_mode = log_prob(test.x[:, None, :] / 2)
    away = log_prob(test.x[:, None, :] / 2 + 0.5)
    assert at_mode.shape == (200, 1)
    assert np.all(at_mode > away)
    # Same key, same test set; another key, another one.
    again = runners.simulate_test_set(jax.random.key(0), estimator, task, **SIZES)
    np.testing.assert_array_equal(again.samples, test.samples)
    other = runners.simulate_test_set(jax.random.key(1), estimator, task, **SIZES)
    assert not np.allclose(other.theta, test.theta)


def test_short_batches_are_padded_to_reuse_the_compiled_sampler(task):
    calls = []

    class Recording(ExactGaussianLinear):
        def posterior(self, x):
            calls.append(np.shape(x))
            return super().posterior(x)

    draws = runners.sample_posteriors(jax.random.key(0), Recording(), np.zeros((7, 10)), 150)
    assert draws.shape == (7, 150, 10)
    assert calls == [(100, 10)]


def test_run_wrappers_pass_an_exact_estimator_and_fail_a_narrow_one(task):
    exact, narrow = ExactGaussianLinear(), ExactGaussianLinear(scale=0.6)
    assert runners.run_sbc(jax.random.key(3), exact, task, **SIZES).calibrated
    result = runners.run_sbc(jax.random.key(3), narrow, task, **SIZES)
    assert result.names[-1] == "log_prob"
    assert set(result.verdict) == {"overconfident"}
    assert runners.run_expected_coverage(jax.random.key(3), exact, task, **SIZES).calibrated
    coverage = runners.run_expected_coverage(jax.random.key(3), narrow, task, **SIZES)
    assert coverage.verdict == "overconfident"
    assert runners.run_tarp(jax.random.key(3), narrow, task, **SIZES).verdict == "overconfident"
    z = runners.run_z_score_contraction(jax.random.key(3), exact, task, **SIZES)
    assert z.names == task.parameter_names


def test_predictive_check_flags_an_observation_the_simulator_cannot_make(task):
    x_obs = np.stack([np.asarray(task.observation(1)), np.full(10, 25.0)])
    result = runners.run_predictive_check(
        jax.random.key(4), ExactGaussianLinear(), task, x_obs, num_samples=150
    )
    assert result.verdict == ("consistent", "atypical")


def test_bad_estimator_and_task_are_reported(task):
    with pytest.raises(TypeError, match="estimator: expected a trained estimator"):
        runners.simulate_test_set(jax.random.key(0), object(), task, 10)
    with pytest.raises(TypeError, match="task"):
        runners.simulate_test_set(jax.random.key(0), ExactGaussianLinear(), "gaussian_linear", 10)
