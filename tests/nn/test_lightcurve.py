"""LightCurveEncoder: padding is ignored, the mask survives affine rescaling, sets are unordered."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from astroprob.nn import LightCurveEncoder
from astroprob.nn.lightcurve import recover_mask

BANDS, POINTS = 3, 10


def _light_curves(seed=0, batch=5):
    """Random light curves (time, flux, flux_err, mask) with 1..POINTS observations per band."""
    rng = np.random.default_rng(seed)
    counts = rng.integers(1, POINTS, size=(batch, BANDS))
    counts[0] = POINTS  # one light curve without padding
    mask = np.arange(POINTS)[None, None, :] < counts[..., None]
    time = np.sort(rng.uniform(-30, 80, size=(batch, BANDS, POINTS)), axis=-1)
    flux = rng.lognormal(3, 1, size=(batch, BANDS, POINTS))
    err = rng.uniform(1, 5, size=(batch, BANDS, POINTS))
    x = np.stack([time, flux, err, mask], axis=-1) * mask[..., None]
    return x.astype(np.float32), mask


@pytest.fixture(scope="module")
def encoder():
    return LightCurveEncoder(BANDS, features=6, hidden=16, num_heads=2, rngs=nnx.Rngs(0))


@pytest.fixture(scope="module")
def encode(encoder):
    graphdef, state = nnx.split(encoder)
    return jax.jit(lambda x: nnx.merge(graphdef, state)(x))


def test_output_shape_and_finite(encode):
    x, _ = _light_curves()
    out = encode(jnp.asarray(x))
    assert out.shape == (5, 6)
    assert np.all(np.isfinite(np.asarray(out)))


def test_padded_entries_do_not_change_the_output(encode):
    x, mask = _light_curves()
    noisy = x.copy()
    junk = np.random.default_rng(1).normal(0, 1e3, size=x[..., :3].shape).astype(np.float32)
    noisy[..., :3] = np.where(mask[..., None], x[..., :3], junk)
    assert not np.array_equal(noisy, x)
    np.testing.assert_array_equal(np.asarray(encode(noisy)), np.asarray(encode(x)))


def test_observed_entries_do_change_the_output(encode):
    # Negative control for the test above: the same edit on an observed entry matters.
    x, _ = _light_curves()
    edited = x.copy()
    edited[1, 0, 0, 1] += 50.0
    out, ref = np.asarray(encode(edited)), np.asarray(encode(x))
    assert not np.allclose(out[1], ref[1])
    np.testing.assert_array_equal(np.delete(out, 1, 0), np.delete(ref, 1, 0))


def test_invariant_to_the_order_of_points(encode):
    x, mask = _light_curves()
    rng = np.random.default_rng(2)
    shuffled = x.copy()
    for i in range(x.shape[0]):
        for b in range(BANDS):
            n = int(mask[i, b].sum())
            shuffled[i, b, :n] = x[i, b, rng.permutation(n)]
    np.testing.assert_allclose(encode(shuffled), encode(x), rtol=1e-5, atol=1e-5)


def test_band_identity_matters(encode):
    x, _ = _light_curves()
    swapped = x[:, ::-1].copy()
    assert not np.allclose(encode(swapped), encode(x), atol=1e-4)


def test_mask_recovered_exactly_after_global_affine_map():
    x, mask = _light_curves()
    scaled = (x - 37.3) / 123.4  # what NPE's global z-scoring does
    np.testing.assert_array_equal(np.asarray(recover_mask(jnp.asarray(scaled[..., 3]))), mask)
    np.testing.assert_array_equal(np.asarray(recover_mask(jnp.asarray(x[..., 3]))), mask)


def test_range_scaled_inputs_are_affine_invariant(encoder):
    # With the absolute-value weights zeroed, only affine-invariant inputs remain.
    model = nnx.clone(encoder)
    kernel = model.point_in.kernel[...]
    model.point_in.kernel[...] = kernel.at[:3].set(0.0)
    model.head_in.kernel[...] = model.head_in.kernel[...].at[-7:-1].set(0.0)
    graphdef, state = nnx.split(model)
    apply = jax.jit(lambda x: nnx.merge(graphdef, state)(x))
    x, _ = _light_curves()
    scaled = (x - 5.0) / 40.0
    np.testing.assert_allclose(apply(scaled), apply(x), atol=2e-5)


def test_gradients_are_finite_with_padding(encoder):
    x, _ = _light_curves()
    graphdef, params, rest = nnx.split(encoder, nnx.Param, ...)

    def loss(p):
        return jnp.sum(nnx.merge(graphdef, p, rest)(jnp.asarray(x)) ** 2)

    grads = jax.jit(jax.grad(loss))(params)
    leaves = jax.tree.leaves(grads)
    assert all(np.all(np.isfinite(np.asarray(g))) for g in leaves)
    assert any(np.any(np.asarray(g) != 0) for g in leaves)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"num_bands": 0}, "num_bands"),
        ({"num_bands": 3, "features": -1}, "features"),
        ({"num_bands": 3, "num_channels": 1}, "num_channels"),
        ({"num_bands": 3, "mask_channel": 4}, "mask_channel"),
        ({"num_bands": 3, "num_heads": -2}, "num_heads"),
    ],
)
def test_bad_arguments_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        LightCurveEncoder(**kwargs, rngs=nnx.Rngs(0))


def test_wrong_input_shape_raises(encoder):
    with pytest.raises(ValueError, match=r"x: expected shape \(batch, 3, max_points, 4\)"):
        encoder(jnp.zeros((2, 4, POINTS, 4)))


def test_invariant_to_permuting_all_slots_padding_included(encode):
    # Observed points need not come first: any permutation of the slots of a band,
    # which scatters the padding among the observations, leaves the output unchanged.
    x, _ = _light_curves()
    rng = np.random.default_rng(3)
    shuffled = x.copy()
    for i in range(x.shape[0]):
        for b in range(BANDS):
            shuffled[i, b] = x[i, b, rng.permutation(POINTS)]
    assert not np.array_equal(shuffled, x)
    np.testing.assert_allclose(encode(shuffled), encode(x), rtol=1e-5, atol=1e-5)


def test_missing_band_is_ignored_whatever_its_padding(encode):
    # A band without any observation (all mask 0): its values never reach the output.
    x, _ = _light_curves()
    x[2, 1] = 0.0
    junk = x.copy()
    junk[2, 1, :, :3] = np.random.default_rng(4).normal(0, 1e3, size=(POINTS, 3))
    out, ref = np.asarray(encode(junk)), np.asarray(encode(x))
    np.testing.assert_array_equal(out, ref)
    assert np.all(np.isfinite(out))
