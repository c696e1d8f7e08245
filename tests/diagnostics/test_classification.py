"""Reliability diagram and expected calibration error of class probabilities."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from astroprob.diagnostics import classification_calibration

N = 3000


def _calibrated(key, n=N, n_classes=3):
    """Probabilities from a Dirichlet, labels drawn from them: calibrated by construction."""
    k1, k2 = jax.random.split(key)
    probs = jax.random.dirichlet(k1, jnp.full(n_classes, 0.7), (n,))
    labels = jax.random.categorical(k2, jnp.log(probs), axis=-1)
    return np.asarray(probs, np.float64), np.asarray(labels)


def _sharpen(probs, power):
    p = probs**power
    return p / p.sum(axis=1, keepdims=True)


def test_calibrated_probabilities_pass():
    probs, labels = _calibrated(jax.random.key(0))
    result = classification_calibration(jax.random.key(1), probs, labels, num_resamples=400)
    assert result.verdict == "calibrated"
    assert result.ece < 0.03
    assert result.bin_count.sum() == N
    filled = result.bin_count > 50
    np.testing.assert_allclose(
        result.bin_accuracy[filled], result.bin_confidence[filled], atol=0.06
    )


@pytest.mark.parametrize(("power", "verdict"), [(2.5, "overconfident"), (0.4, "underconfident")])
def test_sharpened_and_flattened_probabilities_fail(power, verdict):
    probs, labels = _calibrated(jax.random.key(0))
    result = classification_calibration(
        jax.random.key(1), _sharpen(probs, power), labels, num_resamples=400
    )
    assert result.verdict == verdict
    assert result.p_value < 0.01
    assert result.ece > 0.05


def test_ece_brier_and_nll_by_hand():
    probs = np.array([[0.9, 0.1], [0.6, 0.4], [0.3, 0.7], [0.2, 0.8]])
    labels = np.array([0, 1, 1, 1])
    result = classification_calibration(
        jax.random.key(0), probs, labels, num_bins=5, num_resamples=10
    )
    # bins of width 0.2: confidences 0.9 (right), 0.6 (wrong), 0.7 (right), 0.8 (right)
    expected_ece = (abs(1 - 0.9) + abs(0 - 0.6) + abs(1 - 0.7) + abs(1 - 0.8)) / 4
    assert result.ece == pytest.approx(expected_ece)
    assert result.mce == pytest.approx(0.6)
    brier = np.mean(np.sum((probs - np.eye(2)[labels]) ** 2, axis=1))
    assert result.brier == pytest.approx(brier)
    assert result.nll == pytest.approx(-np.mean(np.log([0.9, 0.4, 0.7, 0.8])))
    assert result.accuracy == pytest.approx(0.75)


def test_bad_input_is_reported():
    probs = np.array([[0.5, 0.5], [0.2, 0.8]])
    with pytest.raises(ValueError, match=r"labels: expected shape \(2,\)"):
        classification_calibration(jax.random.key(0), probs, np.array([0, 1, 1]))
    with pytest.raises(ValueError, match="labels: expected integers in 0..1"):
        classification_calibration(jax.random.key(0), probs, np.array([0, 2]))
    with pytest.raises(ValueError, match="probs: expected rows summing to 1"):
        classification_calibration(jax.random.key(0), probs * 0.5, np.array([0, 1]))
    with pytest.raises(TypeError, match="labels: expected integer class indices"):
        classification_calibration(jax.random.key(0), probs, np.array([0.0, 1.0]))
