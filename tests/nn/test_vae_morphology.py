"""Morphology statistics against analytic profiles, and the KS distances."""

import math

import numpy as np
import pytest

from astroprob.nn.vae import morphology_ks_distances, morphology_statistics

SIZE = 64
YY, XX = np.mgrid[:SIZE, :SIZE] - (SIZE - 1) / 2


def gaussian(sigma_x, sigma_y, flux=1000.0):
    image = np.exp(-0.5 * (XX**2 / sigma_x**2 + YY**2 / sigma_y**2))
    return flux * image / image.sum()


def test_radii_and_concentration_of_a_round_gaussian():
    sigma = 4.0
    stats = morphology_statistics(gaussian(sigma, sigma)[None])
    # Enclosed fraction of a circular Gaussian: 1 - exp(-r²/2σ²).
    radius = {f: sigma * math.sqrt(-2 * math.log(1 - f)) for f in (0.2, 0.5, 0.8)}
    np.testing.assert_allclose(stats["half_light_radius"], radius[0.5], rtol=0.03)
    np.testing.assert_allclose(stats["r20"], radius[0.2], rtol=0.08)
    np.testing.assert_allclose(stats["r80"], radius[0.8], rtol=0.03)
    expected_c = 5 * math.log10(radius[0.8] / radius[0.2])
    np.testing.assert_allclose(stats["concentration"], expected_c, rtol=0.08)
    np.testing.assert_allclose(stats["flux"], 1000.0, rtol=1e-6)
    assert float(stats["ellipticity"][0]) < 1e-6


def test_ellipticity_of_an_elliptical_gaussian_under_the_circular_weight():
    a, b = 6.0, 3.0
    stats = morphology_statistics(gaussian(a, b)[None])
    w = float(stats["half_light_radius"][0])
    # Weighted moments: variances 1/(1/a² + 1/w²) and 1/(1/b² + 1/w²).
    qa, qb = 1 / (1 / a**2 + 1 / w**2), 1 / (1 / b**2 + 1 / w**2)
    chi = (qa - qb) / (qa + qb)
    expected = chi / (1 + math.sqrt(1 - chi**2))
    np.testing.assert_allclose(stats["ellipticity"], expected, rtol=0.02)
    # Negative control: turning the ellipse by 90 degrees keeps |e|.
    turned = morphology_statistics(np.rot90(gaussian(a, b))[None].copy())
    np.testing.assert_allclose(turned["ellipticity"], stats["ellipticity"], rtol=1e-6)


def test_gini_of_flat_and_of_peaked_light():
    flat = np.ones((1, SIZE, SIZE))
    peaked = np.zeros((1, SIZE, SIZE))
    peaked[0, SIZE // 2, SIZE // 2] = 1.0
    peaked[0] += 1e-6
    assert float(morphology_statistics(flat)["gini"][0]) == pytest.approx(0.0, abs=1e-9)
    assert float(morphology_statistics(peaked)["gini"][0]) > 0.9


def test_multiband_stamps_are_summed_and_empty_ones_give_nan():
    image = gaussian(3.0, 3.0)
    bands = np.stack([0.25 * image, 0.75 * image], axis=-1)[None]
    np.testing.assert_allclose(
        morphology_statistics(bands)["half_light_radius"],
        morphology_statistics(image[None])["half_light_radius"],
    )
    empty = morphology_statistics(-np.ones((1, SIZE, SIZE)))
    assert np.isnan(empty["half_light_radius"][0])
    assert np.isnan(empty["gini"][0])
    with pytest.raises(ValueError, match="images: expected \\(n, height, width\\)"):
        morphology_statistics(np.ones((SIZE, SIZE)))


def test_ks_distance_zero_for_identical_samples_and_large_for_different_sizes():
    rng = np.random.default_rng(0)
    small = np.stack([gaussian(s, s) for s in rng.uniform(2, 3, 30)])
    large = np.stack([gaussian(s, s) for s in rng.uniform(5, 6, 30)])
    same = morphology_ks_distances(morphology_statistics(small), morphology_statistics(small))
    assert all(v["D"] == 0.0 for v in same.values())
    different = morphology_ks_distances(morphology_statistics(small), morphology_statistics(large))
    assert different["half_light_radius"]["D"] == 1.0
    nan_counted = morphology_ks_distances(
        morphology_statistics(np.concatenate([small, -small[:2]])), morphology_statistics(small)
    )
    assert nan_counted["half_light_radius"]["nan_a"] == 2
