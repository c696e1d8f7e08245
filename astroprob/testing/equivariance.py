"""`assert_equivariant`: check that a function commutes with a group acting on images."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike
from jaxtyping import Array, PRNGKeyArray

from astroprob.nn.groups import Group, as_group

__all__ = ["assert_equivariant"]

_OutputSpec = str | Sequence[tuple[str, slice]]


def _output_action(group: Group, output: _OutputSpec) -> Callable[[Array, int], Array]:
    if isinstance(output, str):
        if output in ("invariant", "trivial"):
            return lambda y, g: y
        if output == "regular":
            return group.act_on_regular
        if output == "image":
            return group.act_on_images
        if output == "sign" or re.fullmatch(r"spin\d+", output):
            rho = group.representation(output)
            return lambda y, g: y @ rho[g].T
        raise ValueError(
            "output: expected 'invariant', 'regular', 'image', 'sign', 'spin<s>' or a sequence of "
            f"(representation, slice); got {output!r}"
        )
    blocks = [(name, sl, _output_action(group, name)) for name, sl in output]

    def act(y: Array, g: int) -> Array:
        return jnp.concatenate([a(y[..., sl], g) for _, sl, a in blocks], axis=-1)

    return act


def assert_equivariant(
    fn: Callable[[Array], Array],
    key: PRNGKeyArray,
    x: ArrayLike | tuple[int, ...],
    *,
    group: Group | str,
    atol: float = 1e-6,
    rtol: float = 1e-5,
    output: _OutputSpec = "invariant",
    elements: Sequence[int] | None = None,
    input_action: Callable[[Array, int], Array] | None = None,
    output_action: Callable[[Array, int], Array] | None = None,
) -> dict[int, float]:
    """Assert ``fn(g x) == rho(g) fn(x)`` for the elements ``g`` of a group.

    Args:
        fn: function of a batch of images ``(batch, height, width[, channels])``.
        key: PRNG key; draws standard-normal inputs when ``x`` is a shape.
        x: the inputs, or their shape.
        group: ``"C4"``, ``"D4"``, ... or a `astroprob.nn.groups.Group`.
        atol: absolute tolerance: element ``g`` passes if
            ``max |fn(g x) - rho(g) fn(x)| <= atol + rtol * max |fn(x)|``.
        rtol: tolerance relative to the largest output.
        output: how the output transforms: ``"invariant"`` (default);
            ``"regular"`` (feature maps ``(batch, h, w, |G|, channels)``);
            ``"image"`` (images or plain feature maps, moved like the input); a
            representation name for the last axis (``"sign"``, ``"spin2"``, ...);
            or ``(name, slice)`` blocks of the last axis, e.g.
            ``EquivariantCNN.output_slices``.
        elements: indices of the elements to check (default: all).
        input_action: ``(x, g) -> g x``; default `Group.act_on_images`, an exact
            pixel permutation, which exists only for rotations by multiples of
            90 degrees. Pass one (e.g. re-rendering a model image) for other angles.
        output_action: ``(y, g) -> rho(g) y``, overriding ``output``.

    Returns:
        The error ``max |fn(g x) - rho(g) fn(x)|`` of each element checked.

    Raises:
        AssertionError: naming each element that fails, with its error and the bound.
        ValueError: for an element with no exact pixel action and no ``input_action``.

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> errors = assert_equivariant(lambda x: jnp.sum(x, axis=(1, 2))[:, None],
        ...                             jax.random.key(0), (2, 8, 8), group="D4")
        >>> len(errors)
        8
    """
    group = as_group(group)
    if isinstance(x, tuple):
        x = jax.random.normal(key, x)
    x = jnp.asarray(x)
    elements = range(group.order) if elements is None else elements
    act_in = group.act_on_images if input_action is None else input_action
    act_out = _output_action(group, output) if output_action is None else output_action
    reference = fn(x)
    bound = atol + rtol * float(jnp.max(jnp.abs(reference)))
    errors, failures = {}, []
    for g in elements:
        error = float(jnp.max(jnp.abs(fn(act_in(x, g)) - act_out(reference, g))))
        errors[g] = error
        if not error <= bound:
            k, s = group.element(g)
            failures.append(f"element {g} (r^{k}{' m' if s else ''}): error {error:.3g}")
    if failures:
        raise AssertionError(
            f"not equivariant under {group.name} (bound {bound:.3g} = atol {atol:g} + rtol "
            f"{rtol:g} * max|fn(x)| {float(jnp.max(jnp.abs(reference))):.3g}): "
            + "; ".join(failures)
        )
    return errors
