"""Posterior z-scores and contraction."""

import jax
import numpy as np
import pytest
from _oracles import POSTERIOR_STD, gaussian_linear, prior_as_posterior

from astroprob.diagnostics import z_score_contraction

N, L = 400, 200


def test_exact_posterior_has_unit_z_and_known_contraction():
    case = gaussian_linear(jax.random.key(20), N, L)
    result = z_score_contraction(case.samples, case.theta, prior_variance=np.full(10, 0.1))
    assert result.verdict == ("calibrated",) * 10
    np.testing.assert_allclose(result.rms_z, 1.0, atol=0.1)
    np.testing.assert_allclose(result.mean_z, 0.0, atol=4 / np.sqrt(N))
    # Posterior variance 0.05 against prior variance 0.1: contraction 1/2.
    np.testing.assert_allclose(result.mean_contraction, 0.5, atol=0.03)
    np.testing.assert_allclose(result.posterior_std, POSTERIOR_STD, rtol=0.25)
    np.testing.assert_allclose(
        result.z, (result.posterior_mean - case.theta) / result.posterior_std, rtol=1e-6
    )


def test_prior_as_posterior_does_not_contract():
    theta, samples = prior_as_posterior(jax.random.key(11), N, L)
    result = z_score_contraction(samples, theta)  # prior variance estimated from theta
    np.testing.assert_allclose(result.mean_contraction, 0.0, atol=0.12)
    assert result.verdict == ("calibrated",) * 3


@pytest.mark.parametrize(
    ("scale", "shift", "verdict"),
    [(0.6, 0.0, "overconfident"), (1.6, 0.0, "underconfident"), (1.0, 0.5, "biased")],
)
def test_miscalibration_shows_in_the_z_scores(scale, shift, verdict):
    case = gaussian_linear(jax.random.key(12), N, L, scale=scale, shift=shift)
    result = z_score_contraction(case.samples, case.theta)
    assert result.verdict == (verdict,) * 10
    if verdict == "biased":
        np.testing.assert_allclose(result.mean_z, 0.5, atol=0.15)  # shift in posterior stds


def test_zero_spread_and_bad_prior_variance_are_reported():
    samples = np.zeros((5, 10, 2))
    with pytest.raises(ValueError, match="zero standard deviation"):
        z_score_contraction(samples, np.arange(10.0).reshape(5, 2))
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="prior_variance: expected finite positive"):
        z_score_contraction(
            rng.normal(size=(5, 10, 2)), np.ones((5, 2)), prior_variance=np.array([1.0, 0.0])
        )
