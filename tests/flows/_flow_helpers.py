"""Helpers shared by the flow tests: perturbed weights and modules called as one program."""

import functools

import jax
from flax import nnx


def perturb(module, key, scale):
    """Add ``scale * N(0, 1)`` to every parameter, in place (zero-initialised layers too)."""
    state = nnx.state(module, nnx.Param)
    leaves, treedef = jax.tree.flatten(state)
    keys = jax.random.split(key, len(leaves))
    noisy = [
        leaf + scale * jax.random.normal(k, leaf.shape)
        for leaf, k in zip(leaves, keys, strict=True)
    ]
    nnx.update(module, jax.tree.unflatten(treedef, noisy))
    return module


@functools.partial(jax.jit, static_argnums=(0, 1))
def _run(fn, graphdef, state, *args):
    return fn(nnx.merge(graphdef, state), *args)


def run(fn, module, *args):
    """``fn(module, *args)`` compiled as one program via nnx.split/merge (the default
    tier compiles cheaply, see `tests/conftest.py`).

    Compiled code is shared by modules with equal graph definitions when ``fn``
    is the same (module-level) function.
    """
    graphdef, state = nnx.split(module)
    return _run(fn, graphdef, state, *args)
