"""ConvEmbedding: shapes, the patch-matrix convolution against lax.conv, and that it trains."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from astroprob.inference._network import context_size
from astroprob.nn import ConvEmbedding
from astroprob.nn.cnn import _Conv3x3


def test_output_shape_and_channel_axis():
    net = ConvEmbedding((32, 24), features=5, channels=(4, 8), hidden=16, rngs=nnx.Rngs(0))
    x = jax.random.normal(jax.random.key(0), (3, 32, 24))
    out = net(x)
    assert out.shape == (3, 5)
    assert np.all(np.isfinite(np.asarray(out)))
    np.testing.assert_allclose(np.asarray(net(x[..., None])), np.asarray(out), rtol=1e-6)
    assert context_size(net, (32, 24)) == 5  # what NPE asks of an embedding
    with pytest.raises(ValueError, match=r"x: expected \(batch, 32, 24\)"):
        net(jnp.zeros((3, 24, 32)))


def test_bad_configuration_raises():
    with pytest.raises(ValueError, match="image_shape: .* too small for 3 halvings"):
        ConvEmbedding((6, 6), rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="features: expected a positive integer"):
        ConvEmbedding((32, 32), features=0, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="channels: expected positive integers"):
        ConvEmbedding((32, 32), channels=(), rngs=nnx.Rngs(0))


def test_patch_convolution_equals_lax_conv():
    conv = _Conv3x3(3, 5, rngs=nnx.Rngs(1))
    x = jax.random.normal(jax.random.key(2), (2, 9, 7, 3))
    # The same kernel as (3, 3, in, out) for lax.conv; patches are ordered (row, column, channel).
    kernel = conv.kernel[...].reshape(3, 3, 3, 5)
    expected = (
        jax.lax.conv_general_dilated(
            x, kernel, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
        )
        + conv.bias[...]
    )
    np.testing.assert_allclose(np.asarray(conv(x)), np.asarray(expected), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("path", ["patches", "shifted"])
@pytest.mark.parametrize("size", [3, 5])
def test_group_convolution_paths_equal_lax_conv(path, size, monkeypatch):
    """`conv2d_same` (the equivariant layers' convolution), both ways it can run."""
    from astroprob.nn import _conv

    if path == "shifted":  # the way for inputs whose patch matrix would be too large
        monkeypatch.setattr(_conv, "PATCH_MATRIX_MAX_BYTES", 0)
    x = jax.random.normal(jax.random.key(4), (2, 9, 8, 3))
    kernel = jax.random.normal(jax.random.key(5), (size, size, 3, 4))

    def reference(x, kernel):
        dims = ("NHWC", "HWIO", "NHWC")
        return jax.lax.conv_general_dilated(x, kernel, (1, 1), "SAME", dimension_numbers=dims)

    np.testing.assert_allclose(
        _conv.conv2d_same(x, kernel), reference(x, kernel), rtol=1e-5, atol=1e-5
    )
    weights = jax.random.normal(jax.random.key(6), (2, 9, 8, 4))
    grads = [
        jax.grad(lambda x, k, f=f: jnp.sum(weights * f(x, k)), argnums=(0, 1))(x, kernel)
        for f in (_conv.conv2d_same, reference)
    ]
    for ours, theirs in zip(*grads, strict=True):
        np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-4)


@pytest.mark.slow  # 10-40 s on 2 cores; kept out of the default tier's 10 minutes
def test_training_changes_weights_and_lowers_the_loss():
    net = ConvEmbedding((16, 16), features=2, channels=(4, 8), hidden=16, rngs=nnx.Rngs(0))
    # Target: the centroid of a blob, which needs the position information the CNN keeps.
    centres = jax.random.uniform(jax.random.key(3), (64, 2), minval=4, maxval=12)
    yy, xx = jnp.mgrid[:16, :16]
    images = jnp.exp(
        -((xx[None] - centres[:, 0, None, None]) ** 2 + (yy[None] - centres[:, 1, None, None]) ** 2)
        / 4.0
    )
    target = (centres - 8.0) / 4.0
    graphdef, params = nnx.split(net, nnx.Param)
    before = jax.tree.map(lambda a: a.copy(), params)
    optimizer = optax.adam(1e-2)
    opt_state = optimizer.init(params)

    def loss_fn(p):
        return jnp.mean((nnx.merge(graphdef, p)(images) - target) ** 2)

    @jax.jit
    def step(p, s):
        loss, grads = jax.value_and_grad(loss_fn)(p)
        updates, s = optimizer.update(grads, s, p)
        return optax.apply_updates(p, updates), s, loss

    first = float(loss_fn(params))
    for _ in range(40):
        params, opt_state, _ = step(params, opt_state)
    assert float(loss_fn(params)) < 0.3 * first
    changed = jax.tree.map(lambda a, b: bool(jnp.any(a != b)), before, params)
    assert all(jax.tree.leaves(changed))
