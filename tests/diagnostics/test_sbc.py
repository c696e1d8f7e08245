"""Simulation-based calibration: controls that must pass, controls that must fail.

Shapes are shared (400 simulations x 200 samples of the 10-D gaussian_linear
posterior) so the rank kernel compiles once. Keys are fixed.
"""

import jax
import numpy as np
import pytest
from _oracles import gaussian_linear, prior_as_posterior

from astroprob.diagnostics import sbc
from astroprob.diagnostics.sbc import _marginal_ranks

N, L = 400, 200


@pytest.fixture(scope="module")
def exact():
    return gaussian_linear(jax.random.key(10), N, L)


# -- positive controls -------------------------------------------------------------------


def test_exact_posterior_is_calibrated(exact):
    result = sbc(exact.samples, exact.theta, functions={"log_prob": exact.log_prob})
    assert result.calibrated, result.verdict
    assert result.names[-1] == "log_prob"
    assert len(result.names) == 11
    assert result.ranks.shape == (N, 11)
    assert result.ranks.min() >= 0
    assert result.ranks.max() <= L
    # Ranks of an exact posterior are uniform: their mean is L/2 within a few errors.
    se = np.sqrt((L + 1) ** 2 / 12 / N)
    assert np.all(np.abs(result.ranks.mean(axis=0) - L / 2) < 4 * se)
    assert np.all(result.test.chi2_p_value > 0.001)


def test_prior_as_posterior_is_calibrated():
    theta, samples = prior_as_posterior(jax.random.key(11), N, L)
    result = sbc(samples, theta)
    assert result.verdict == ("calibrated",) * 3
    assert np.all(result.p_value > 0.05 / 3)


# -- negative controls ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("scale", "shift", "verdict"),
    [
        pytest.param(0.6, 0.0, "overconfident", id="under-dispersed"),
        pytest.param(1.6, 0.0, "underconfident", id="over-dispersed"),
        pytest.param(1.0, 0.5, "biased", id="biased"),
    ],
)
def test_miscalibrated_posteriors_are_detected_and_named(scale, shift, verdict):
    case = gaussian_linear(jax.random.key(12), N, L, scale=scale, shift=shift)
    result = sbc(case.samples, case.theta)
    assert result.verdict == (verdict,) * 10
    assert np.all(result.p_value < 1e-4)
    assert not result.calibrated


def test_bias_sign_follows_the_shift():
    # The posterior is shifted up, so the truth lies below its mass: low ranks, bias_z < 0.
    case = gaussian_linear(jax.random.key(13), N, L, shift=0.5)
    assert np.all(sbc(case.samples, case.theta).test.bias_z < -5)


def test_log_density_rank_detects_a_wrong_correlation_that_marginals_miss():
    """Marginals right, joint wrong: only a function of the whole θ can see it."""
    key_theta, key_samples = jax.random.split(jax.random.key(14))
    theta = np.asarray(jax.random.normal(key_theta, (N, 2)))
    u = np.asarray(jax.random.normal(key_samples, (N, L, 2)))
    samples = np.stack([u[..., 0], u[..., 0]], axis=-1)  # perfectly correlated, same marginals

    def difference(t):
        return np.asarray(t[..., 0] - t[..., 1])  # samples: exactly 0; truth: N(0, 2)

    result = sbc(samples, theta, functions={"difference": difference})
    assert result.verdict[:2] == ("calibrated", "calibrated")
    assert result.verdict[2] != "calibrated"


# -- the ranks themselves ----------------------------------------------------------------------


def test_ranks_count_the_samples_below_the_truth():
    samples = np.array([[[0.1], [0.5], [0.9], [0.3]], [[2.0], [1.0], [3.0], [4.0]]], np.float32)
    theta = np.array([[0.4], [0.5]], np.float32)
    ranks = np.asarray(_marginal_ranks(samples, theta))
    np.testing.assert_array_equal(ranks, [[2], [0]])


def test_ties_are_split_between_below_and_above():
    samples = np.zeros((4, 5, 1), np.float32)
    theta = np.zeros((4, 1), np.float32)
    ranks = np.asarray(_marginal_ranks(samples, theta))[:, 0]
    np.testing.assert_array_equal(ranks, [2, 3, 2, 3])  # 5 ties: 2 or 3 by parity


def test_second_call_with_the_same_shapes_does_not_recompile(exact):
    sbc(exact.samples, exact.theta)
    size = _marginal_ranks._cache_size()
    sbc(exact.samples[:, ::-1], exact.theta + 0.0)
    assert _marginal_ranks._cache_size() == size


# -- input checking ----------------------------------------------------------------------------


def test_result_to_dict_is_json_ready(exact):
    import json

    out = sbc(exact.samples, exact.theta, names=[f"p{j}" for j in range(10)]).to_dict()
    text = json.dumps(out, allow_nan=False)
    assert '"p3"' in text
    assert out["verdict"]["p0"] == "calibrated"
    assert len(out["ranks"]) == N


@pytest.mark.parametrize(
    ("samples_shape", "theta_shape", "match"),
    [
        ((N, L), (N, 10), r"samples: expected shape \(n_sims, n_samples, dim\)"),
        ((N, L, 10), (N, 9), r"theta: expected shape \(n_sims, dim\) = \(400, 10\)"),
        ((N, L, 10), (N - 1, 10), r"theta: expected shape"),
    ],
)
def test_bad_shapes_raise_with_the_expected_shape(samples_shape, theta_shape, match):
    with pytest.raises(ValueError, match=match):
        sbc(np.zeros(samples_shape), np.zeros(theta_shape))


def test_nan_is_reported_not_propagated(exact):
    samples = exact.samples.copy()
    samples[3, 4, 5] = np.nan
    with pytest.raises(ValueError, match="samples: expected finite values; got NaN or inf in 1"):
        sbc(samples, exact.theta)


def test_bad_function_output_is_reported(exact):
    with pytest.raises(ValueError, match=r"functions\['f'\]: expected the function to return"):
        sbc(exact.samples, exact.theta, functions={"f": lambda t: t[..., 0:2]})
    with pytest.raises(ValueError, match="names: expected 10 parameter names"):
        sbc(exact.samples, exact.theta, names=["a"])
    with pytest.raises(ValueError, match="alpha"):
        sbc(exact.samples, exact.theta, alpha=1.5)


def test_warns_when_the_test_is_weak():
    theta, samples = prior_as_posterior(jax.random.key(15), 50, 20)
    with pytest.warns(UserWarning, match="sbc: 50 simulations and 20 posterior samples"):
        sbc(samples, theta)
