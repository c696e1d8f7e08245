"""The exact ECDF uniformity test and its simultaneous bands (Säilynoja et al. 2022).

The recursion is checked against brute-force enumeration of every rank tuple
for tiny cases, against Monte Carlo for realistic ones, and for the defining
properties: p-values of uniform ranks are uniform, the band holds a uniform
ECDF with probability 1 - alpha, and leaving the band is the same as rejecting.
"""

import itertools

import numpy as np
import pytest

from astroprob.diagnostics import _ecdf
from astroprob.diagnostics._uniformity import rank_uniformity


@pytest.mark.parametrize(("n", "num_values"), [(3, 4), (4, 3), (5, 6)])
def test_p_values_equal_brute_force_enumeration(n, num_values):
    lattice = _ecdf.rank_lattice(n, num_values)
    tuples = np.array(list(itertools.product(range(num_values), repeat=n)))  # equally likely
    counts = lattice.counts(tuples.T)
    gamma = lattice.statistic(counts).min(axis=1)
    p, _ = _ecdf.p_values(lattice, counts)
    exact = np.array([(gamma <= g).mean() for g in gamma])
    np.testing.assert_allclose(p, exact, atol=1e-12)


def test_statistic_is_the_two_sided_binomial_tail():
    from scipy import stats

    lattice = _ecdf.rank_lattice(50, 21)
    counts = np.array([[0, 3, 10, 25, 40, 50] + [25] * (lattice.num_points - 6)])
    s = lattice.statistic(counts)[0, :6]
    z = lattice.z[:6]
    c = counts[0, :6]
    expected = np.minimum(
        1, 2 * np.minimum(stats.binom.cdf(c, 50, z), stats.binom.sf(c - 1, 50, z))
    )
    np.testing.assert_allclose(s, expected, rtol=1e-9, atol=1e-300)


@pytest.mark.parametrize(("n", "num_values"), [(200, 101), (100, 1001)])
def test_rejection_probability_matches_monte_carlo(n, num_values):
    rng = np.random.default_rng(0)
    lattice = _ecdf.rank_lattice(n, num_values)
    ranks = rng.integers(0, num_values, size=(n, 20_000))
    gamma = lattice.statistic(lattice.counts(ranks)).min(axis=1)
    for level in (0.001, 0.01, 0.05):
        exact = 1 - _ecdf.interior_probability(lattice, np.array([level]))[0]
        monte_carlo = (gamma <= level).mean()
        se = np.sqrt(exact * (1 - exact) / gamma.size)
        assert abs(exact - monte_carlo) < 4 * se + 1e-4


def test_p_values_of_uniform_ranks_are_uniform_and_band_has_its_level():
    rng = np.random.default_rng(1)
    n, num_values, alpha = 100, 51, 0.1
    lattice = _ecdf.rank_lattice(n, num_values)
    counts = lattice.counts(rng.integers(0, num_values, size=(n, 4_000)))
    p, _ = _ecdf.p_values(lattice, counts)
    for level in (0.05, 0.1, 0.5):
        # valid p-values: P(p <= level) <= level, and nearly equal (fine lattice)
        assert (p <= level).mean() == pytest.approx(level, abs=4 * np.sqrt(level / 4_000) + 0.01)
    lower, upper = _ecdf.band(lattice, alpha)
    outside = ((counts / n < lower) | (counts / n > upper)).any(axis=1)
    assert outside.mean() == pytest.approx(alpha, abs=0.02)
    # Leaving the band is rejecting at alpha, curve by curve.
    np.testing.assert_array_equal(outside, p <= alpha)


def test_band_is_wider_than_pointwise_and_narrower_than_bonferroni():
    from scipy import stats

    n, alpha = 500, 0.05
    lattice = _ecdf.rank_lattice(n, 501)
    gamma = _ecdf.adjusted_gamma(lattice, alpha)
    assert alpha / lattice.num_points < gamma < alpha
    lower, _ = _ecdf.band(lattice, alpha)
    pointwise = stats.binom.ppf(alpha / 2, n, lattice.z) / n
    assert np.all(lower <= pointwise + 1e-12)
    assert np.any(lower < pointwise)


def test_departures_are_detected_and_named():
    rng = np.random.default_rng(2)
    n, num_values = 400, 201
    uniform = rng.integers(0, num_values, size=n)
    extreme = np.where(rng.random(n) < 0.3, rng.choice([0, num_values - 1], size=n), uniform)
    middle = np.clip(
        np.round(rng.normal(num_values / 2, num_values / 6, size=n)), 0, num_values - 1
    )
    high = np.clip(uniform + 40, 0, num_values - 1)
    ranks = np.stack([uniform, extreme, middle, high], axis=1).astype(int)
    test = rank_uniformity(ranks, num_values, alpha=0.01)
    assert test.verdicts() == ("calibrated", "overconfident", "underconfident", "biased")
    assert test.bias_z[3] > 5  # ranks too high: truth above the posterior mass
    assert test.chi2_p_value[0] > 0.01
    assert test.chi2_p_value[1:].max() < 1e-4
    assert test.ks_p_value[3] < 1e-4


def test_tiny_p_values_are_bounded_not_zero():
    lattice = _ecdf.rank_lattice(1000, 1001)
    counts = np.full((1, lattice.num_points), 1000)  # every rank at 0: absurdly non-uniform
    p, log_gamma = _ecdf.p_values(lattice, counts)
    assert 0 <= p[0] < 1e-10
    assert log_gamma[0] < -100
