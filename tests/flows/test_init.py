"""Initial weights, data split and z-score statistics: reproducible, exact, and uncompiled."""

import jax
import numpy as np
import pytest
from flax import nnx

from astroprob.flows._layers import ConditionalMLP, lecun_normal
from astroprob.inference._loop import split_train_validation
from astroprob.inference._network import data_statistics

_COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"


def test_lecun_normal_is_a_function_of_the_key():
    a = lecun_normal(jax.random.key(0), (30, 20), fan_in=30)
    b = lecun_normal(jax.random.key(0), (30, 20), fan_in=30)
    c = lecun_normal(jax.random.key(1), (30, 20), fan_in=30)
    assert a.shape == (30, 20)
    assert a.dtype == np.float32
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


def test_lecun_normal_refuses_a_traced_key():
    with pytest.raises(TypeError, match="key: expected a concrete PRNG key"):
        jax.jit(lambda k: lecun_normal(k, (2, 3), fan_in=2))(jax.random.key(0))


def test_lecun_normal_has_the_lecun_variance_and_is_truncated_at_two_sigma():
    fan_in, scale = 100, 2.0
    w = np.asarray(lecun_normal(jax.random.key(3), (400, 500), fan_in=fan_in, scale=scale))
    target_std = np.sqrt(scale / fan_in)
    assert abs(w.mean()) < 0.01 * target_std
    assert w.std() == pytest.approx(target_std, rel=0.01)
    # Truncation at ±2σ of the untruncated normal (σ = target / 0.8796), and it bites.
    bound = 2.0 * target_std / 0.87962566103423978
    assert np.abs(w).max() <= bound * (1 + 1e-6)
    assert np.abs(w).max() > 0.99 * bound


def test_a_conditioner_of_a_new_shape_compiles_nothing():
    compiles = []

    def listener(event, duration, **kwargs):
        if event == _COMPILE_EVENT:
            compiles.append(duration)

    def build(key, width):
        return ConditionalMLP(
            3, 5, 7, hidden_features=width, num_hidden_layers=2, activation="relu",
            rngs=nnx.Rngs(key), final_init_scale=1.0,
        )  # fmt: skip

    build(jax.random.key(0), 11)  # warms the key-splitting functions
    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        net = build(jax.random.key(1), 13)
    finally:
        jax.monitoring.unregister_event_duration_listener(listener)
    assert compiles == []
    # Negative control: the listener does see a compilation of a new shape.
    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        jax.random.normal(jax.random.key(2), (17, 19)).block_until_ready()
    finally:
        jax.monitoring.unregister_event_duration_listener(listener)
    assert len(compiles) > 0
    assert net.context_kernel[...].shape == (5, 13)


def test_split_is_a_reproducible_partition():
    train, val = split_train_validation(jax.random.key(4), 103, 0.2)
    assert len(val) == 21
    assert len(train) == 82
    np.testing.assert_array_equal(np.sort(np.concatenate([train, val])), np.arange(103))
    again = split_train_validation(jax.random.key(4), 103, 0.2)
    other = split_train_validation(jax.random.key(5), 103, 0.2)
    np.testing.assert_array_equal(val, again[1])
    assert not np.array_equal(val, other[1])
    with pytest.raises(ValueError, match="at least one training and one validation"):
        split_train_validation(jax.random.key(4), 3, 0.1)


def test_z_score_statistics_stay_exact_for_a_million_offset_simulations():
    rng = np.random.default_rng(0)
    x = (1000.0 + rng.standard_normal((1_000_000, 2))).astype(np.float32)
    mean, scale = data_statistics(x, per_feature=True)
    exact = x.astype(np.float64)
    np.testing.assert_allclose(mean, exact.mean(axis=0), rtol=1e-6)
    np.testing.assert_allclose(scale, exact.std(axis=0), rtol=1e-5)
    # Global statistics of images, and scale 1 for a constant feature.
    images = (2.0 + 3.0 * rng.standard_normal((40, 6, 6))).astype(np.float32)
    mean, scale = data_statistics(images, per_feature=False)
    assert mean.shape == scale.shape == ()
    np.testing.assert_allclose(scale, images.astype(np.float64).std(), rtol=1e-6)
    _, scale = data_statistics(np.full((10, 2), 7.0, np.float32), per_feature=True)
    np.testing.assert_array_equal(scale, 1.0)
