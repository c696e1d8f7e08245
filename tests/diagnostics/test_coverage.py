"""Expected coverage of HPD regions, from a given log-density and from samples alone."""

import jax
import numpy as np
import pytest
from _oracles import gaussian_linear, prior_as_posterior

from astroprob.diagnostics import expected_coverage
from astroprob.diagnostics.coverage import _kde_log_density

N, L = 400, 200


@pytest.fixture(scope="module")
def exact():
    return gaussian_linear(jax.random.key(10), N, L)


@pytest.mark.parametrize("with_log_prob", [True, False], ids=["log_prob", "kde"])
def test_exact_posterior_has_nominal_coverage(exact, with_log_prob):
    log_prob = exact.log_prob if with_log_prob else None
    result = expected_coverage(exact.samples, exact.theta, log_prob=log_prob)
    assert result.verdict == "calibrated"
    assert result.method == ("log_prob" if with_log_prob else "kde")
    assert result.num_ranked == (L if with_log_prob else L - min(256, L // 2))
    assert result.levels.shape == result.coverage.shape
    assert np.all(np.diff(result.levels) > 0)
    assert np.all(np.diff(result.coverage) >= 0)
    # The Monte Carlo error bars and the band hold the diagonal.
    inside = (result.coverage_lower <= result.levels) & (result.levels <= result.coverage_upper)
    assert inside.mean() > 0.8
    assert np.all(result.band_lower <= result.coverage)
    assert np.all(result.coverage <= result.band_upper)
    assert abs(result.area) < 0.05
    assert not result.overconfident
    assert not result.underconfident


def test_credibility_levels_are_uniform_for_an_exact_posterior(exact):
    result = expected_coverage(exact.samples, exact.theta, log_prob=exact.log_prob)
    c = result.credibility
    assert c.min() >= 0
    assert c.max() <= 1
    assert c.mean() == pytest.approx(0.5, abs=4 * np.sqrt(1 / 12 / N))


@pytest.mark.parametrize("with_log_prob", [True, False], ids=["log_prob", "kde"])
@pytest.mark.parametrize(
    ("scale", "shift", "verdict"),
    [
        pytest.param(0.7, 0.0, "overconfident", id="under-dispersed"),
        pytest.param(1.5, 0.0, "underconfident", id="over-dispersed"),
        # HPD regions cannot tell a shift from a too-narrow posterior: both miss the truth.
        pytest.param(1.0, 0.5, "overconfident", id="biased"),
    ],
)
def test_miscalibration_is_flagged(scale, shift, verdict, with_log_prob):
    case = gaussian_linear(jax.random.key(12), N, L, scale=scale, shift=shift)
    log_prob = case.log_prob if with_log_prob else None
    result = expected_coverage(case.samples, case.theta, log_prob=log_prob)
    assert result.verdict == verdict
    assert result.p_value < 1e-3
    assert result.overconfident == (verdict == "overconfident")
    assert result.underconfident == (verdict == "underconfident")
    assert (result.area < 0) == (verdict == "overconfident")


def test_kde_ranks_keep_their_level_even_with_a_poor_kernel():
    """The truth and the ranked samples are exchangeable, so even one kernel centre works."""
    theta, samples = prior_as_posterior(jax.random.key(16), N, L, dim=3)
    result = expected_coverage(samples, theta, num_kernel_points=1, alpha=0.01)
    assert result.verdict == "calibrated"
    assert result.num_ranked == L - 1


def test_kde_density_is_highest_at_the_centre():
    rng = np.random.default_rng(0)
    draws = rng.normal(size=(1, 300, 2)).astype(np.float32)
    truth = np.array([[0.0, 0.0]], np.float32)
    on_samples, on_truth = _kde_log_density(draws, truth, 150)
    assert on_samples.shape == (1, 150)
    assert on_truth.shape == (1, 1)
    assert float(on_truth[0, 0]) > float(np.quantile(np.asarray(on_samples), 0.9))


def test_bad_log_prob_is_reported(exact):
    with pytest.raises(ValueError, match=r"log_prob: expected the function to return shape"):
        expected_coverage(exact.samples, exact.theta, log_prob=lambda t: t.sum(-1)[:, :1])
    with pytest.raises(TypeError, match="log_prob"):
        expected_coverage(exact.samples, exact.theta, log_prob=3.0)


def test_to_dict_is_json_ready(exact):
    import json

    out = expected_coverage(exact.samples, exact.theta, log_prob=exact.log_prob).to_dict()
    json.dumps(out, allow_nan=False)
    assert len(out["levels"]) == len(out["coverage"]) == len(out["band_lower"])


def test_second_call_with_the_same_shapes_does_not_recompile(exact):
    expected_coverage(exact.samples, exact.theta)
    size = _kde_log_density._cache_size()
    expected_coverage(exact.samples[:, ::-1], exact.theta)
    assert _kde_log_density._cache_size() == size
