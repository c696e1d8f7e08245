"""The sampler's column layout (features first) gives the numbers of the row layout."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _flow_helpers import perturb, run
from flax import nnx

import astroprob.flows.nsf as nsf_module
from astroprob.flows import NeuralSplineFlow
from astroprob.flows._affine import ConditionalAffine
from astroprob.flows._layers import ConditionalMLP
from astroprob.flows._linear import LULinear
from astroprob.flows._made import MADE
from astroprob.flows._residual import ResidualConditioner
from astroprob.flows.nsf import COLUMN_MIN_DRAWS

SMALL = {"hidden_features": 16, "activation": "tanh"}


def _conditioner_both_ways(net, x, context):
    return net(x, context), net.columns(jnp.moveaxis(x, -1, 0), context)


def _inverse_both_ways(layer, x, context):
    return layer(x, context, inverse=True), layer.inverse_columns(jnp.moveaxis(x, -1, 0), context)


CONDITIONERS = {
    "mlp": lambda r: ConditionalMLP(3, 2, 5, num_hidden_layers=2, rngs=r, **SMALL),
    "mlp-context-only": lambda r: ConditionalMLP(0, 2, 5, num_hidden_layers=1, rngs=r, **SMALL),
    "residual": lambda r: ResidualConditioner(3, 2, 5, num_blocks=2, rngs=r, **SMALL),
    "residual-context-only": lambda r: ResidualConditioner(0, 2, 5, num_blocks=1, rngs=r, **SMALL),
    "made": lambda r: MADE(3, 2, 4, num_hidden_layers=2, rngs=r, **SMALL),
}


@pytest.mark.parametrize("name", list(CONDITIONERS))
def test_conditioner_columns_equal_rows(name):
    net = perturb(CONDITIONERS[name](nnx.Rngs(0)), jax.random.key(1), 0.3)
    in_features = 0 if "context-only" in name else 3
    x = jax.random.normal(jax.random.key(2), (4, 6, in_features))
    context = jax.random.normal(jax.random.key(3), (4, 1, 2))
    rows, columns = run(_conditioner_both_ways, net, x, context)
    rows, columns = np.asarray(rows), np.moveaxis(np.asarray(columns), 0, -1)
    assert columns.shape == (rows.shape if in_features else (4, 1, rows.shape[-1]))
    np.testing.assert_allclose(np.broadcast_to(columns, rows.shape), rows, rtol=1e-5, atol=1e-5)


def test_columns_take_contexts_with_fewer_batch_axes_as_rows_do():
    """A context of fewer axes broadcasts on the right, as in the row layout."""
    net = perturb(CONDITIONERS["residual"](nnx.Rngs(0)), jax.random.key(1), 0.3)
    affine = perturb(
        ConditionalAffine(
            5, 2, hidden_features=8, num_hidden_layers=1, activation="tanh", rngs=nnx.Rngs(0)
        ),
        jax.random.key(2),
        0.5,
    )
    x = jax.random.normal(jax.random.key(2), (5, 3))  # 5 rows: as many as the outputs
    context = jax.random.normal(jax.random.key(3), (2,))
    rows, columns = run(_conditioner_both_ways, net, x[:, :3], context)
    np.testing.assert_allclose(np.asarray(columns).T, rows, rtol=1e-5, atol=1e-5)
    (y, log_det), (y_columns, log_det_columns) = run(_inverse_both_ways, affine, x.T, context)
    np.testing.assert_allclose(np.asarray(y_columns).T, y, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(log_det_columns, log_det, rtol=1e-5)
    with pytest.raises(ValueError, match=r"context: expected at most 1 batch axes"):
        net.columns(x[:, :3].T, jnp.zeros((5, 1, 2)))


def test_lu_and_affine_inverses_in_columns_equal_rows():
    x = jax.random.normal(jax.random.key(0), (4, 6, 3))
    context = jax.random.normal(jax.random.key(1), (4, 1, 2))
    lu = perturb(LULinear(3), jax.random.key(2), 0.5)
    affine = perturb(
        ConditionalAffine(
            3, 2, hidden_features=8, num_hidden_layers=1, activation="tanh", rngs=nnx.Rngs(0)
        ),
        jax.random.key(3),
        0.5,
    )
    for layer in (lu, affine):
        (y, log_det), (y_columns, log_det_columns) = run(_inverse_both_ways, layer, x, context)
        np.testing.assert_allclose(jnp.moveaxis(y_columns, 0, -1), y, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(log_det_columns, log_det, rtol=1e-5, atol=1e-5)


FLOWS = {
    "d1": lambda r: NeuralSplineFlow(1, 2, rngs=r, num_transforms=2, **SMALL),
    "d2": lambda r: NeuralSplineFlow(2, 2, rngs=r, num_transforms=2, **SMALL),
    "d3-residual-random": lambda r: NeuralSplineFlow(
        3, 2, rngs=r, num_transforms=3, conditioner="residual", permutation="random", **SMALL
    ),
    "d5-plain": lambda r: NeuralSplineFlow(
        5,
        2,
        rngs=r,
        num_transforms=2,
        num_bins=6,
        linear_mixing=False,
        conditional_affine=False,
        **SMALL,
    ),
}


def _both_layouts(flow, z, context):
    return flow._inverse(z, context), flow._inverse_draws(z, context)


@pytest.mark.parametrize("name", ["d1", "d3-residual-random", "d5-plain"])
def test_column_sampler_equals_the_row_inverse(name, monkeypatch):
    """Base -> data for a block of draws, in both layouts, through every layer kind."""
    calls = _per_bin_calls(monkeypatch)
    flow = perturb(FLOWS[name](nnx.Rngs(0)), jax.random.key(4), 0.1)
    num_draws = -(-COLUMN_MIN_DRAWS // 2)
    # Wide noise, so that draws reach the splines' identity tails too.
    z = 2.5 * jax.random.normal(jax.random.key(5), (2, num_draws, flow.dim))
    context = jax.random.normal(jax.random.key(6), (2, 1, 2))
    (theta, log_det), (theta_c, log_det_c) = run(_both_layouts, flow, z, context)
    assert len(calls) == len(flow.layers)  # the column layout did run
    assert theta_c.shape == theta.shape
    assert log_det_c.shape == log_det.shape
    # float32 rounding (the matrix products sum in another order), amplified by
    # steep spline bins for a few draws; in float64 both agree to 1e-11.
    error = np.abs(np.asarray(theta_c) - theta) / (1.0 + np.abs(np.asarray(theta)))
    assert np.max(error) < 1e-3
    assert np.median(error) < 1e-6
    error = np.abs(np.asarray(log_det_c) - log_det) / (1.0 + np.abs(np.asarray(log_det)))
    assert np.max(error) < 1e-3
    assert np.median(error) < 1e-5
    # The layers are not the identity: a wrong permutation or layer order would show.
    assert np.max(np.abs(np.asarray(theta) - np.asarray(z))) > 0.1


def _per_bin_calls(monkeypatch):
    calls = []
    original = nsf_module.rq_spline_inverse_per_bin

    def spy(*args, **kwargs):
        calls.append(args[0].shape)
        return original(*args, **kwargs)

    monkeypatch.setattr(nsf_module, "rq_spline_inverse_per_bin", spy)
    return calls


def test_large_blocks_of_coupling_draws_take_the_column_layout(monkeypatch):
    calls = _per_bin_calls(monkeypatch)
    flow = FLOWS["d2"](nnx.Rngs(0))
    context = jnp.zeros((2, 2))
    jax.eval_shape(lambda c: flow.sample(jax.random.key(0), c, COLUMN_MIN_DRAWS // 2), context)
    # One spline per layer, on (transformed dims, observations, draws).
    assert calls == [(1, 2, COLUMN_MIN_DRAWS // 2)] * 2
    calls.clear()
    # Negative controls: a small block, and an autoregressive flow, keep the row layout.
    jax.eval_shape(lambda c: flow.sample(jax.random.key(0), c, 100), context)
    autoregressive = NeuralSplineFlow(2, 2, rngs=nnx.Rngs(0), autoregressive=True, **SMALL)
    jax.eval_shape(lambda c: autoregressive.sample(jax.random.key(0), c, COLUMN_MIN_DRAWS), context)
    assert calls == []
