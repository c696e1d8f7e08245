"""The combined verdict: Bonferroni over SBC, HPD coverage and TARP; its false-rejection rate."""

import jax
import numpy as np
import pytest
from _oracles import gaussian_linear

from astroprob.diagnostics import combine, expected_coverage, sbc, tarp

N, L = 400, 200


def _verdict(case, key, alpha=0.05):
    return combine(
        sbc=sbc(case.samples, case.theta),
        coverage=expected_coverage(case.samples, case.theta, log_prob=case.log_prob),
        tarp=tarp(key, case.samples, case.theta),
        alpha=alpha,
    )


def test_exact_posterior_is_calibrated_everywhere():
    verdict = _verdict(gaussian_linear(jax.random.key(10), N, L), jax.random.key(1))
    assert verdict.calibrated
    assert set(verdict.parameters.values()) == {"calibrated"}
    assert verdict.joint == {"coverage": "calibrated", "tarp": "calibrated"}
    assert verdict.alpha_per_test == pytest.approx(0.05 / 12)
    assert len(verdict.p_values) == 12


@pytest.mark.parametrize(
    ("scale", "shift", "overall"),
    [(0.6, 0.0, "overconfident"), (1.6, 0.0, "underconfident"), (1.0, 0.5, "biased")],
)
def test_bent_posteriors_get_the_right_overall_verdict(scale, shift, overall):
    case = gaussian_linear(jax.random.key(12), N, L, scale=scale, shift=shift)
    verdict = _verdict(case, jax.random.key(1))
    assert verdict.overall == overall
    assert set(verdict.parameters.values()) == {overall}


def test_one_bad_parameter_is_singled_out():
    case = gaussian_linear(jax.random.key(10), N, L)
    samples = case.samples.copy()
    samples[..., 3] += 0.5 * np.sqrt(0.05)  # only theta_4 is biased
    verdict = combine(sbc=sbc(samples, case.theta))
    assert verdict.parameters["theta_4"] == "biased"
    assert [k for k, v in verdict.parameters.items() if v != "calibrated"] == ["theta_4"]
    assert verdict.overall == "biased"


def test_needs_at_least_one_result():
    with pytest.raises(ValueError, match="at least one of"):
        combine()


@pytest.mark.slow
def test_false_rejection_rate_on_exact_posteriors_is_close_to_nominal():
    """400 independent exact-posterior test sets: 'not calibrated' about alpha of the time.

    Bonferroni over 12 partly dependent tests (10 marginals, coverage, TARP) keeps
    the family-wise rate at or below alpha; it should not be far below either.
    """
    alpha, repeats = 0.05, 400
    keys = jax.random.split(jax.random.key(2024), repeats)
    failures = 0
    for key in keys:
        key_case, key_tarp = jax.random.split(key)
        case = gaussian_linear(key_case, 200, 200)
        failures += not _verdict(case, key_tarp, alpha).calibrated
    rate = failures / repeats
    se = np.sqrt(alpha * (1 - alpha) / repeats)
    assert alpha / 3 < rate < alpha + 3 * se, rate
