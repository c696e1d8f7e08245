"""TARP: controls, and a differential test against the ``tarp`` package on identical samples."""

import jax
import numpy as np
import pytest
from _oracles import gaussian_linear

from astroprob.diagnostics import tarp

N, L = 400, 200


@pytest.fixture(scope="module")
def exact():
    return gaussian_linear(jax.random.key(10), N, L)


def test_exact_posterior_is_calibrated(exact):
    result = tarp(jax.random.key(1), exact.samples, exact.theta)
    assert result.verdict == "calibrated"
    assert result.levels[0] == 0
    assert result.levels[-1] == 1
    assert result.ecp.shape == result.levels.shape == (N // 10 + 1,)
    assert np.all(result.ecp_lower <= result.ecp + 1e-12)
    assert np.all(result.ecp <= result.ecp_upper + 1e-12)
    assert abs(result.atc) < 0.02
    assert result.area < 0.05
    # The bootstrap band holds the diagonal almost everywhere.
    holds = (result.ecp_lower <= result.levels + 0.01) & (result.levels - 0.01 <= result.ecp_upper)
    assert holds.mean() > 0.9


@pytest.mark.parametrize(
    ("scale", "shift", "verdict"),
    [
        pytest.param(0.6, 0.0, "overconfident", id="under-dispersed"),
        pytest.param(1.6, 0.0, "underconfident", id="over-dispersed"),
        pytest.param(1.0, 1.0, None, id="biased"),
    ],
)
def test_miscalibration_is_detected(scale, shift, verdict):
    case = gaussian_linear(jax.random.key(12), N, L, scale=scale, shift=shift)
    result = tarp(jax.random.key(1), case.samples, case.theta)
    assert not result.calibrated
    assert result.p_value < 1e-3
    if verdict is not None:
        assert result.verdict == verdict
        assert (result.atc < 0) == (verdict == "overconfident")


def test_references_are_used_and_checked(exact):
    refs = np.zeros((N, 10), np.float32)
    result = tarp(jax.random.key(1), exact.samples, exact.theta, references=refs)
    np.testing.assert_array_equal(result.references, refs)
    with pytest.raises(
        ValueError, match=r"references: expected shape \(n_sims, dim\) = \(400, 10\)"
    ):
        tarp(jax.random.key(1), exact.samples, exact.theta, references=refs[:, :3])
    with pytest.raises(ValueError, match="metric: expected one of"):
        tarp(jax.random.key(1), exact.samples, exact.theta, metric="cosine")


def test_f_counts_samples_closer_to_the_reference():
    samples = np.array([[[0.0], [1.0], [2.0], [3.0]]], np.float32)  # one simulation, 1-D
    theta = np.array([[2.5]], np.float32)
    refs = np.array([[0.0]], np.float32)
    with pytest.warns(UserWarning, match="tarp: 1 simulations"):
        result = tarp(
            jax.random.key(0), samples, theta, references=refs, normalize=False, num_bins=4
        )
    assert result.f[0] == pytest.approx(3 / 4)  # 0, 1, 2 are closer to 0 than 2.5


# -- differential tests against the tarp package (Lemos et al.'s own code) ---------------


def _their_references(refs, theta):
    """tarp normalises samples and truths but takes references in normalised units."""
    low, high = theta.min(axis=0), theta.max(axis=0)
    return ((refs - low) / (high - low + 1e-10)).astype(np.float64)


@pytest.mark.parametrize(("scale", "metric"), [(1.0, "euclidean"), (0.6, "manhattan")])
def test_agrees_with_the_tarp_package_on_identical_references(scale, metric):
    import tarp as tarp_package  # the `test` extra installs it

    case = gaussian_linear(jax.random.key(12), N, L, scale=scale)
    ours = tarp(jax.random.key(3), case.samples, case.theta, metric=metric)
    ecp, alpha = tarp_package.get_tarp_coverage(
        np.swapaxes(case.samples, 0, 1).astype(np.float64),
        case.theta.astype(np.float64),
        references=_their_references(ours.references, case.theta),
        metric=metric,
        num_alpha_bins=40,
        norm=True,
    )
    # Their histogram spans [min f, max f]: ecp[b] = #(f < alpha[b]) / n, and 1 at the end.
    difference = np.abs(ours.ecp_at(alpha[:-1]) - ecp[:-1])
    assert difference.max() <= 3 / N  # float32 against float64 distances: a rare near-tie
    assert ecp[-1] == pytest.approx(1.0)


def test_agrees_with_the_tarp_package_within_monte_carlo_error_with_own_references():
    import tarp as tarp_package  # the `test` extra installs it

    case = gaussian_linear(jax.random.key(12), N, L, scale=0.8)
    ours = tarp(jax.random.key(4), case.samples, case.theta, num_bootstrap=200)
    rng = np.random.default_rng(4)
    their_refs = rng.uniform(size=case.theta.shape)  # their "random": the unit cube, normalised
    ecp, alpha = tarp_package.get_tarp_coverage(
        np.swapaxes(case.samples, 0, 1).astype(np.float64),
        case.theta.astype(np.float64),
        references=their_refs,
        num_alpha_bins=40,
        norm=True,
    )
    ours_there = ours.ecp_at(alpha[:-1])
    # Two independent sets of references: the curves differ by about sqrt(2) bootstrap errors.
    tolerance = 4 * np.sqrt(2) * ours.ecp_std.max()
    assert np.abs(ours_there - ecp[:-1]).max() < tolerance
    # And the summary: sbi's ATC on their curve against ours.
    mid = alpha.size // 2
    their_atc = float(np.sum((ecp[mid:] - alpha[mid:]) * (alpha[1] - alpha[0])))
    assert their_atc == pytest.approx(ours.atc, abs=0.03)
    assert ours.atc < 0
    assert their_atc < 0


def test_second_call_with_the_same_shapes_does_not_recompile(exact):
    from astroprob.diagnostics.tarp import _bootstrap_ecp, _tarp_ranks

    tarp(jax.random.key(5), exact.samples, exact.theta)
    sizes = _tarp_ranks._cache_size(), _bootstrap_ecp._cache_size()
    tarp(jax.random.key(6), exact.samples[:, ::-1], exact.theta)
    assert (_tarp_ranks._cache_size(), _bootstrap_ecp._cache_size()) == sizes
