"""Classic blocks: activations, MLP, ConvEmbedding options and residual blocks."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from astroprob.inference._network import context_size
from astroprob.nn import MLP, ConvEmbedding, ResidualBlock
from astroprob.nn.activations import ACTIVATIONS, get_activation, maxout, width_factor


def _apply(module, x):
    """One compiled call (eager calls compile every operation separately)."""
    graphdef, state = nnx.split(module)
    return jax.jit(lambda s, x: nnx.merge(graphdef, s)(x))(state, x)


def test_activations_match_their_definitions():
    x = jnp.linspace(-3.0, 3.0, 12)
    expected = {
        "relu": np.maximum(x, 0),
        "leaky_relu": np.where(x > 0, x, 0.01 * x),
        "elu": np.where(x > 0, x, np.expm1(np.minimum(x, 0))),
        "tanh": np.tanh(x),
        "sigmoid": 1 / (1 + np.exp(-x)),
        "silu": x / (1 + np.exp(-x)),
        "maxout": np.max(np.reshape(x, (6, 2)), axis=1),
    }
    for name, value in expected.items():
        np.testing.assert_allclose(get_activation(name)(x), value, rtol=1e-5, atol=1e-6)
    assert set(expected) | {"gelu"} == set(ACTIVATIONS)
    assert width_factor("maxout") == 2
    assert width_factor("relu") == 1
    with pytest.raises(ValueError, match="activation: expected one of"):
        get_activation("swish")
    with pytest.raises(ValueError, match="divisible by 2"):
        maxout(jnp.ones((3, 5)))


@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
def test_mlp_shapes_for_every_activation(activation):
    net = MLP((3, 4), features=5, hidden=(8, 8), activation=activation, rngs=nnx.Rngs(0))
    out = _apply(net, jax.random.normal(jax.random.key(0), (6, 3, 4)))
    assert out.shape == (6, 5)
    assert np.all(np.isfinite(np.asarray(out)))
    assert context_size(net, (3, 4)) == 5


def test_mlp_fits_a_nonlinear_function():
    net = MLP(2, features=1, hidden=(32, 32), activation="elu", layer_norm=True, rngs=nnx.Rngs(0))
    x = jax.random.uniform(jax.random.key(1), (256, 2), minval=-2, maxval=2)
    y = jnp.sin(2 * x[:, :1]) * x[:, 1:]
    graphdef, params = nnx.split(net, nnx.Param)
    opt = optax.adam(1e-2)
    state = opt.init(params)

    def loss(p):
        return jnp.mean((nnx.merge(graphdef, p)(x) - y) ** 2)

    @jax.jit
    def step(p, s):
        value, grads = jax.value_and_grad(loss)(p)
        updates, s = opt.update(grads, s, p)
        return optax.apply_updates(p, updates), s

    first = float(loss(params))
    for _ in range(400):
        params, state = step(params, state)
    assert float(loss(params)) < 0.1 * first


def test_mlp_bad_input_raises():
    with pytest.raises(ValueError, match="hidden: expected positive integers"):
        MLP(3, hidden=(4, 0), rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="input_shape: expected positive integers"):
        MLP((3, -1), rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match=r"x: expected \(batch, 3\)"):
        MLP(3, rngs=nnx.Rngs(0))(jnp.ones((2, 4)))


@pytest.mark.parametrize(
    "options",
    [
        {"activation": "relu", "pooling": "max"},
        {"activation": "maxout", "residual_blocks": 1},
        {"activation": "leaky_relu", "residual_blocks": 2, "convs_per_stage": 2},
    ],
    ids=["relu-max", "maxout-residual", "leaky-2res"],
)
def test_conv_embedding_options(options):
    net = ConvEmbedding(
        (16, 16), features=3, channels=(4, 6), hidden=8, rngs=nnx.Rngs(0), **options
    )
    out = _apply(net, jax.random.normal(jax.random.key(2), (2, 16, 16)))
    assert out.shape == (2, 3)
    assert np.all(np.isfinite(np.asarray(out)))
    assert len(net.blocks) == 2 * options.get("residual_blocks", 0)


def test_max_pooling_differs_from_average_pooling():
    kwargs = {"features": 3, "channels": (4,), "hidden": 8}
    avg = ConvEmbedding((8, 8), **kwargs, rngs=nnx.Rngs(0))
    mx = ConvEmbedding((8, 8), **kwargs, pooling="max", rngs=nnx.Rngs(0))
    x = jax.random.normal(jax.random.key(3), (2, 8, 8))
    assert not np.allclose(_apply(avg, x), _apply(mx, x))


def test_residual_block_is_the_skip_path_when_the_branch_is_zero():
    block = ResidualBlock(3, activation="relu", rngs=nnx.Rngs(0))
    x = jax.random.normal(jax.random.key(4), (2, 5, 5, 3))
    branch = block.conv_b(jax.nn.relu(block.conv_a(x)))
    np.testing.assert_allclose(block(x), jax.nn.relu(x + branch), rtol=1e-6)
    block.conv_b.kernel[...] = jnp.zeros_like(block.conv_b.kernel[...])
    block.conv_b.bias[...] = jnp.zeros_like(block.conv_b.bias[...])
    np.testing.assert_allclose(block(x), jax.nn.relu(x), rtol=1e-6)


def test_conv_embedding_bad_options_raise():
    with pytest.raises(ValueError, match="pooling: expected one of"):
        ConvEmbedding((16, 16), pooling="min", rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="residual_blocks: expected a non-negative integer"):
        ConvEmbedding((16, 16), residual_blocks=-1, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="activation: expected one of"):
        ConvEmbedding((16, 16), activation="swish", rngs=nnx.Rngs(0))
