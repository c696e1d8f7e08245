"""Monotone rational-quadratic splines with identity tails, as pure functions.

Durkan, Bekasov, Murray & Papamakarios (2019), "Neural Spline Flows",
https://arxiv.org/abs/1906.04032 (Section 3.1 and Appendix A).

A spline with ``K`` bins maps ``[-B, B]`` onto itself through ``K + 1`` monotone
knots; outside ``[-B, B]`` it is the identity, and the derivatives at ``±B`` are
fixed to 1 so that the map and its first derivative are continuous.

All functions are elementwise in ``x`` and broadcast over leading dimensions:
``x`` has shape ``(*shape,)`` and the parameter arrays have shapes
``(*shape', K)`` (widths, heights) and ``(*shape', K - 1)`` (interior
derivatives), with one ``shape'`` that broadcasts against ``shape``. Unnormalised
parameters all equal to zero give the identity map.

Two entry points: `rq_knots` builds every knot (for inspection and tests) and
`rq_spline_forward` / `rq_spline_inverse` apply them; the flows call `rq_spline`
(and, when sampling coupling layers, `rq_spline_inverse_per_bin`, whose
parameters come as one array per bin instead of a trailing axis),
which goes from the network outputs straight to the one bin each value falls
in and turns only that bin's two derivatives into positive numbers (the softplus
of all ``K - 1`` interior derivatives was a third of the knots' cost). Both
paths give the same numbers (the tests compare them).

Implementation notes. A bin's values are picked with a one-hot mask rather
than a gather, so that the backward pass needs no scatter; with the small ``K``
used in practice (about 10) this is the fastest choice on CPU (stacking the six
per-bin quantities into one table to pick them at once measured slower). The
cumulative sums of the bin sizes are one small triangular matrix product, which
is faster than ``cumsum`` on CPU and kept at full float32 precision on every
backend. Tail points are evaluated at a safe interior value and then replaced,
so that no NaN or infinite intermediate reaches the gradients.

Sampling evaluates the inverse on many rows. Where each row has one spline
value (the inverse passes of autoregressive layers; `inverse` of coupling
layers on two-dimensional parameters), `rq_spline` unrolls the ``K`` bins into ``K``
arrays of the values' shape instead: the softmax, the cumulative sums (added in
bin order) and the choice of the bin (a chain of ``where`` over the interior
knots) become elementwise operations on one flat axis, which XLA vectorises,
where the reductions over a trailing axis of ``K`` were not. On the 2-core CPU
this draws two_moons posteriors about 3.5 times faster. With several values per
row, taking the bins apart from a trailing axis costs a strided read per bin,
and the trailing-axis form is faster; the coupling flows' sampler instead
produces its spline parameters with the draws on the trailing axes, one
contiguous array per bin, and calls `rq_spline_inverse_per_bin` (see
`astroprob.flows.nsf`). In `rq_spline` the unrolled form is differentiated
through the trailing-axis one (a custom JVP), whose backward pass compiles to
far fewer kernels; `rq_spline_inverse_per_bin` is differentiated as it is
(correct, but slower to compile), since samples are rarely differentiated.
"""

# jaxtyping shape strings ("batch dim") are not Python expressions.
# ruff: noqa: F722

from __future__ import annotations

import functools
import math
import operator
from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

__all__ = [
    "SplineKnots",
    "identity_derivative_offset",
    "num_spline_params",
    "rq_knots",
    "rq_spline",
    "rq_spline_forward",
    "rq_spline_inverse",
    "rq_spline_inverse_per_bin",
    "split_spline_params",
]


def num_spline_params(num_bins: int) -> int:
    """Number of unnormalised parameters of one spline: ``3 * num_bins - 1``."""
    return 3 * num_bins - 1


def identity_derivative_offset(min_derivative: float) -> float:
    """Offset ``c`` with ``min_derivative + softplus(0 + c) == 1`` (identity at zero)."""
    return math.log(math.expm1(1.0 - min_derivative))


class SplineKnots(NamedTuple):
    """Knots of rational-quadratic splines on ``[-B, B]``.

    Attributes:
        x_left: left knot of each bin, ``(*shape, K)``.
        widths: bin widths, ``(*shape, K)``, summing to ``2B``.
        y_left: bottom knot of each bin, ``(*shape, K)``.
        heights: bin heights, ``(*shape, K)``, summing to ``2B``.
        d_left: derivative at the left knot of each bin, ``(*shape, K)``.
        d_right: derivative at the right knot of each bin, ``(*shape, K)``.
    """

    x_left: Array
    widths: Array
    y_left: Array
    heights: Array
    d_left: Array
    d_right: Array


def split_spline_params(
    params: Float[Array, "*shape p"], num_bins: int
) -> tuple[Array, Array, Array]:
    """Split a trailing axis of ``3K - 1`` numbers into widths, heights, derivatives.

    Args:
        params: unnormalised spline parameters, ``(*shape, 3 * num_bins - 1)``.
        num_bins: number of bins ``K``.

    Returns:
        ``(widths (*shape, K), heights (*shape, K), derivatives (*shape, K - 1))``.
    """
    k = num_bins
    return params[..., :k], params[..., k : 2 * k], params[..., 2 * k :]


def _knot_positions(unnormalised: Array, min_size: float, tail_bound: float) -> tuple[Array, Array]:
    """Left knots and sizes of ``K`` bins tiling ``[-B, B]`` exactly."""
    num_bins = unnormalised.shape[-1]
    fractions = min_size + (1.0 - min_size * num_bins) * jax.nn.softmax(unnormalised, axis=-1)
    # Cumulative sums of the first K - 1 fractions: fractions @ U with U upper triangular.
    upper = np.triu(np.ones((num_bins - 1, num_bins - 1), np.float32))
    cumulative = jnp.matmul(fractions[..., :-1], upper, precision=jax.lax.Precision.HIGHEST)
    inner = (2.0 * tail_bound) * cumulative - tail_bound
    edge_shape = inner.shape[:-1] + (1,)
    left = jnp.concatenate([jnp.full(edge_shape, -tail_bound, inner.dtype), inner], axis=-1)
    right = jnp.concatenate([inner, jnp.full(edge_shape, tail_bound, inner.dtype)], axis=-1)
    return left, right - left


def rq_knots(
    unnormalised_widths: Float[Array, "*shape K"],
    unnormalised_heights: Float[Array, "*shape K"],
    unnormalised_derivatives: Float[Array, "*shape Km1"],
    *,
    tail_bound: float,
    min_bin_width: float,
    min_bin_height: float,
    min_derivative: float,
) -> SplineKnots:
    """Turn unconstrained network outputs into valid spline knots.

    Widths and heights are a softmax with floors ``min_bin_width`` and
    ``min_bin_height`` (fractions of ``2B``); the knots are their cumulative sums
    with the outer knots pinned to exactly ``±B`` (sizes are then recomputed as
    knot differences, so ``x = B`` is exactly the end of the last bin). Interior
    derivatives are ``min_derivative + softplus(u + c)`` with ``c`` chosen so
    that ``u = 0`` gives derivative 1; the boundary derivatives are exactly 1.

    Args:
        unnormalised_widths: ``(*shape, K)``.
        unnormalised_heights: ``(*shape, K)``.
        unnormalised_derivatives: ``(*shape, K - 1)``.
        tail_bound: ``B``; the spline lives on ``[-B, B]``.
        min_bin_width: smallest bin width as a fraction of ``2B``.
        min_bin_height: smallest bin height as a fraction of ``2B``.
        min_derivative: smallest interior derivative.

    Returns:
        The knots, each field of shape ``(*shape, K)``.
    """
    x_left, widths = _knot_positions(unnormalised_widths, min_bin_width, tail_bound)
    y_left, heights = _knot_positions(unnormalised_heights, min_bin_height, tail_bound)
    inner = _interior_derivative(unnormalised_derivatives, min_derivative)
    ones = jnp.ones(inner.shape[:-1] + (1,), inner.dtype)
    d_left = jnp.concatenate([ones, inner], axis=-1)
    d_right = jnp.concatenate([inner, ones], axis=-1)
    return SplineKnots(x_left, widths, y_left, heights, d_left, d_right)


def _interior_derivative(unnormalised: Array, min_derivative: float) -> Array:
    """``min_derivative + softplus(u + c)``, equal to 1 at ``u = 0``."""
    return min_derivative + jax.nn.softplus(
        unnormalised + identity_derivative_offset(min_derivative)
    )


def _bin_onehot(value: Array, left_knots: Array) -> tuple[Array, Array]:
    """Index ``(*shape,)`` and one-hot mask ``(*shape, K)`` of the bin holding ``value``.

    The bin index is the number of interior knots at or below the value, so
    exactly one bin is selected even when rounding puts a value on a knot.
    """
    num_bins = left_knots.shape[-1]
    index = jnp.sum(value[..., None] >= left_knots[..., 1:], axis=-1)
    return index, (index[..., None] == jnp.arange(num_bins)).astype(value.dtype)


def _bin_values(value: Array, knots: SplineKnots, left_knots: Array) -> tuple[Array, ...]:
    """The six knot quantities of the bin holding ``value`` (each of ``value``'s shape)."""
    _, onehot = _bin_onehot(value, left_knots)
    return tuple(jnp.sum(onehot * field, axis=-1) for field in knots)


def _bin_values_from_params(
    value: Array,
    unnormalised_widths: Array,
    unnormalised_heights: Array,
    unnormalised_derivatives: Array,
    *,
    by_height: bool,
    tail_bound: float,
    min_bin_width: float,
    min_bin_height: float,
    min_derivative: float,
) -> tuple[Array, ...]:
    """`_bin_values` of `rq_knots`' knots, with the softplus on two derivatives only.

    The bin is found among the left knots of ``x`` (``by_height=False``) or of
    ``y`` (``by_height=True``). Bin ``k`` has left derivative ``u[k - 1]`` and
    right derivative ``u[k]`` of the interior ones, and exactly 1 at ``±B``.
    """
    x_left, widths = _knot_positions(unnormalised_widths, min_bin_width, tail_bound)
    y_left, heights = _knot_positions(unnormalised_heights, min_bin_height, tail_bound)
    index, onehot = _bin_onehot(value, y_left if by_height else x_left)
    last = onehot.shape[-1] - 1
    raw_lo = jnp.sum(onehot[..., 1:] * unnormalised_derivatives, axis=-1)
    raw_hi = jnp.sum(onehot[..., :-1] * unnormalised_derivatives, axis=-1)
    d_lo = jnp.where(index == 0, 1.0, _interior_derivative(raw_lo, min_derivative))
    d_hi = jnp.where(index == last, 1.0, _interior_derivative(raw_hi, min_derivative))
    picked = (jnp.sum(onehot * field, axis=-1) for field in (x_left, widths, y_left, heights))
    return (*picked, d_lo, d_hi)


def _bin_columns(
    unnormalised: Sequence[Array], min_size: float, tail_bound: float
) -> tuple[list[Array], list[Array]]:
    """Left knots and sizes of ``K`` bins tiling ``[-B, B]`` exactly, one array per bin.

    Args:
        unnormalised: ``K`` network outputs, one array per bin, all of one shape.
        min_size: floor of a bin's size, as a fraction of ``2B``.
        tail_bound: ``B``.

    Returns:
        ``(left, sizes)``: two lists of ``K`` arrays of that shape. The outer
        knots are exactly ``±B`` and every size is the difference of
        neighbouring knots, so the bins tile ``[-B, B]`` without gaps.
    """
    columns = list(unnormalised)
    num_bins = len(columns)
    top = functools.reduce(jnp.maximum, columns)
    exps = [jnp.exp(c - top) for c in columns]
    scale = (1.0 - min_size * num_bins) / functools.reduce(operator.add, exps)
    fractions = [min_size + e * scale for e in exps]
    edge = jnp.full(top.shape, tail_bound, top.dtype)
    left, cumulative = [-edge], None
    for fraction in fractions[:-1]:
        cumulative = fraction if cumulative is None else cumulative + fraction
        left.append((2.0 * tail_bound) * cumulative - tail_bound)
    right = left[1:] + [edge]
    return left, [r - lo for r, lo in zip(right, left, strict=True)]


def _bin_values_unrolled(
    value: Array,
    unnormalised_widths: Sequence[Array],
    unnormalised_heights: Sequence[Array],
    unnormalised_derivatives: Sequence[Array],
    *,
    by_height: bool,
    tail_bound: float,
    min_bin_width: float,
    min_bin_height: float,
    min_derivative: float,
) -> tuple[Array, ...]:
    """`_bin_values_from_params` with the ``K`` bins unrolled (module notes).

    The parameters come as one array per bin (``K``, ``K`` and ``K - 1``
    arrays broadcastable against ``value``).
    The bin is found among the left knots of ``x`` (``by_height=False``) or of
    ``y`` (``by_height=True``): walking up the interior knots, every knot at or
    below the value moves the choice one bin up, so rounding onto a knot still
    selects exactly one bin. Bin ``k`` has left derivative ``u[k - 1]`` and
    right derivative ``u[k]`` of the interior ones, and exactly 1 at ``±B``;
    the softplus is applied to the two chosen derivatives only.
    """
    x_left, widths = _bin_columns(unnormalised_widths, min_bin_width, tail_bound)
    y_left, heights = _bin_columns(unnormalised_heights, min_bin_height, tail_bound)
    knots = y_left if by_height else x_left
    num_bins = len(knots)
    fields = (x_left, widths, y_left, heights)
    picked = [field[0] for field in fields]
    raw = list(unnormalised_derivatives)
    if not raw:  # one bin: both derivatives are the boundary ones
        ones = jnp.ones(jnp.broadcast_shapes(value.shape, picked[0].shape), value.dtype)
        return (*picked, ones, ones)
    raw_lo, raw_hi = raw[0], raw[0]
    above = [value >= knot for knot in knots[1:]]
    for k in range(1, num_bins):
        picked = [
            jnp.where(above[k - 1], field[k], p) for field, p in zip(fields, picked, strict=True)
        ]
        raw_lo = jnp.where(above[k - 1], raw[k - 1], raw_lo)
        if k < num_bins - 1:
            raw_hi = jnp.where(above[k - 1], raw[k], raw_hi)
    d_lo = jnp.where(above[0], _interior_derivative(raw_lo, min_derivative), 1.0)
    d_hi = jnp.where(above[-1], 1.0, _interior_derivative(raw_hi, min_derivative))
    return (*picked, d_lo, d_hi)


def _clamp_unit(v: Array) -> Array:
    """Clamp a relative position to ``[0, 1]`` with derivative exactly 1.

    Inside its bin the relative position lies in ``[0, 1]`` up to rounding; the
    clamp only removes rounding overshoot, so its derivative is taken to be that
    of the identity (``jnp.clip`` would give 0, or 1/2 at ties, on the knots and
    at ``±B``, corrupting ``dy/dx`` there).
    """
    return v + jax.lax.stop_gradient(jnp.clip(v, 0.0, 1.0) - v)


def _log_derivative(xi: Array, s: Array, d_lo: Array, d_hi: Array) -> Array:
    """``log dy/dx`` inside a bin at relative position ``xi`` (Durkan et al. eq. 5)."""
    one_minus = 1.0 - xi
    xi_1mxi = xi * one_minus
    denominator = s + (d_hi + d_lo - 2.0 * s) * xi_1mxi
    numerator = jnp.square(s) * (
        d_hi * jnp.square(xi) + 2.0 * s * xi_1mxi + d_lo * jnp.square(one_minus)
    )
    return jnp.log(numerator) - 2.0 * jnp.log(denominator)


def _forward_in_bin(x: Array, bin_values: tuple[Array, ...]) -> tuple[Array, Array]:
    """``y`` and ``log dy/dx`` of an interior ``x`` inside its bin."""
    x_k, w_k, y_k, h_k, d_lo, d_hi = bin_values
    s = h_k / w_k
    xi = _clamp_unit((x - x_k) / w_k)
    xi_1mxi = xi * (1.0 - xi)
    denominator = s + (d_hi + d_lo - 2.0 * s) * xi_1mxi
    y = y_k + h_k * (s * jnp.square(xi) + d_lo * xi_1mxi) / denominator
    return y, _log_derivative(xi, s, d_lo, d_hi)


def _inverse_in_bin(y: Array, bin_values: tuple[Array, ...]) -> tuple[Array, Array]:
    """``x`` and ``log dx/dy`` of an interior ``y`` inside its bin (a quadratic's root)."""
    x_k, w_k, y_k, h_k, d_lo, d_hi = bin_values
    s = h_k / w_k
    dy = y - y_k
    curvature = d_hi + d_lo - 2.0 * s
    a = h_k * (s - d_lo) + dy * curvature
    b = h_k * d_lo - dy * curvature
    c = -s * dy
    discriminant = jnp.maximum(jnp.square(b) - 4.0 * a * c, 0.0)
    xi = _clamp_unit(2.0 * c / (-b - jnp.sqrt(discriminant)))
    return x_k + xi * w_k, -_log_derivative(xi, s, d_lo, d_hi)


def rq_spline_forward(
    x: Float[Array, "*shape"],
    knots: SplineKnots,
    *,
    tail_bound: float,
) -> tuple[Array, Array]:
    """Apply the spline: ``y = g(x)`` and ``log|dy/dx|``, elementwise.

    Args:
        x: inputs, ``(*shape,)``; values outside ``[-B, B]`` pass through.
        knots: from `rq_knots`, fields broadcastable to ``(*shape, K)``.
        tail_bound: ``B``.

    Returns:
        ``(y, log_abs_det)``, both ``(*shape,)`` (after broadcasting).
    """
    inside = (x >= -tail_bound) & (x <= tail_bound)
    x_safe = jnp.where(inside, x, 0.0)
    y, log_det = _forward_in_bin(x_safe, _bin_values(x_safe, knots, knots.x_left))
    return jnp.where(inside, y, x), jnp.where(inside, log_det, 0.0)


def rq_spline_inverse(
    y: Float[Array, "*shape"],
    knots: SplineKnots,
    *,
    tail_bound: float,
) -> tuple[Array, Array]:
    """Invert the spline: ``x = g^{-1}(y)`` and ``log|dx/dy|``, elementwise.

    Inside a bin the inverse is the root in ``[0, 1]`` of a quadratic, taken in
    the cancellation-free form ``xi = 2c / (-b - sqrt(b^2 - 4ac))``. Its accuracy
    is limited only by float32 itself: about ``ulp(y) / g'(x)``.

    Args:
        y: inputs, ``(*shape,)``; values outside ``[-B, B]`` pass through.
        knots: from `rq_knots`, fields broadcastable to ``(*shape, K)``.
        tail_bound: ``B``.

    Returns:
        ``(x, log_abs_det)``, both ``(*shape,)``, with ``log_abs_det = log|dx/dy|``.
    """
    inside = (y >= -tail_bound) & (y <= tail_bound)
    y_safe = jnp.where(inside, y, 0.0)
    x, log_det = _inverse_in_bin(y_safe, _bin_values(y_safe, knots, knots.y_left))
    return jnp.where(inside, x, y), jnp.where(inside, log_det, 0.0)


def rq_spline(
    value: Float[Array, "*shape"],
    unnormalised_widths: Float[Array, "*pshape K"],
    unnormalised_heights: Float[Array, "*pshape K"],
    unnormalised_derivatives: Float[Array, "*pshape Km1"],
    *,
    inverse: bool,
    tail_bound: float,
    min_bin_width: float,
    min_bin_height: float,
    min_derivative: float,
) -> tuple[Array, Array]:
    """`rq_spline_forward` (or, with ``inverse``, `rq_spline_inverse`) of `rq_knots`' knots.

    The same numbers, computed without building every knot: see the module notes.

    Args:
        value: ``x`` (forward) or ``y`` (inverse), ``(*shape,)``; values outside
            ``[-B, B]`` pass through.
        unnormalised_widths: ``(*shape', K)``, as for `rq_knots`, with ``shape'``
            broadcastable against ``shape``.
        unnormalised_heights: ``(*shape', K)``, as for `rq_knots`.
        unnormalised_derivatives: ``(*shape', K - 1)``, as for `rq_knots`.
        inverse: apply ``g^{-1}`` instead of ``g``.
        tail_bound: ``B``.
        min_bin_width: as for `rq_knots`.
        min_bin_height: as for `rq_knots`.
        min_derivative: as for `rq_knots`.

    Returns:
        ``(output, log_abs_det)``, both ``(*shape,)``: ``log|dy/dx|`` forward,
        ``log|dx/dy|`` inverse.
    """
    settings = {
        "tail_bound": tail_bound,
        "min_bin_width": min_bin_width,
        "min_bin_height": min_bin_height,
        "min_derivative": min_derivative,
    }
    params = (unnormalised_widths, unnormalised_heights, unnormalised_derivatives)
    if inverse and value.shape[-1:] == (1,) and math.prod(value.shape) >= UNROLLED_MIN_VALUES:
        return _unrolled_inverse(value, *params, **settings)
    return _spline(value, *params, inverse=inverse, unrolled=False, **settings)


def rq_spline_inverse_per_bin(
    value: Float[Array, "*shape"],
    unnormalised_widths: Sequence[Array],
    unnormalised_heights: Sequence[Array],
    unnormalised_derivatives: Sequence[Array],
    *,
    tail_bound: float,
    min_bin_width: float,
    min_bin_height: float,
    min_derivative: float,
) -> tuple[Array, Array]:
    """`rq_spline` inverse with the parameters given as one array per bin.

    The unrolled form of the module notes, for callers that already hold the
    network outputs with the values on the trailing axes (the flows' sampler
    works with the features on the leading axis and the draws on the trailing
    ones), so that every operation is elementwise over contiguous arrays.

    Args:
        value: ``y``, ``(*shape,)``; values outside ``[-B, B]`` pass through.
        unnormalised_widths: ``K`` arrays of ``value``'s shape (or
            broadcastable to it), the ``k``-th one holding bin ``k``'s output.
        unnormalised_heights: ``K`` such arrays.
        unnormalised_derivatives: ``K - 1`` such arrays.
        tail_bound: ``B``.
        min_bin_width: as for `rq_knots`.
        min_bin_height: as for `rq_knots`.
        min_derivative: as for `rq_knots`.

    Returns:
        ``(x, log|dx/dy|)``, both of ``value``'s shape.

    Raises:
        ValueError: if there are not ``K`` heights and ``K - 1`` derivatives.
    """
    num_bins = len(unnormalised_widths)
    if len(unnormalised_heights) != num_bins:
        raise ValueError(
            f"unnormalised_heights: expected K = {num_bins} arrays, one per bin of "
            f"unnormalised_widths; got {len(unnormalised_heights)}"
        )
    if len(unnormalised_derivatives) != num_bins - 1:
        raise ValueError(
            f"unnormalised_derivatives: expected K - 1 = {num_bins - 1} arrays; "
            f"got {len(unnormalised_derivatives)}"
        )
    inside = (value >= -tail_bound) & (value <= tail_bound)
    safe = jnp.where(inside, value, 0.0)
    bin_values = _bin_values_unrolled(
        safe,
        unnormalised_widths,
        unnormalised_heights,
        unnormalised_derivatives,
        by_height=True,
        tail_bound=tail_bound,
        min_bin_width=min_bin_width,
        min_bin_height=min_bin_height,
        min_derivative=min_derivative,
    )
    out, log_det = _inverse_in_bin(safe, bin_values)
    return jnp.where(inside, out, value), jnp.where(inside, log_det, 0.0)


UNROLLED_MIN_VALUES = 4096
"""Inverse splines of one value per row, and at least this many rows, are unrolled."""


def _spline(
    value: Array,
    unnormalised_widths: Array,
    unnormalised_heights: Array,
    unnormalised_derivatives: Array,
    *,
    inverse: bool,
    unrolled: bool,
    tail_bound: float,
    min_bin_width: float,
    min_bin_height: float,
    min_derivative: float,
) -> tuple[Array, Array]:
    """`rq_spline` with the bins as trailing axes or unrolled (module notes)."""
    inside = (value >= -tail_bound) & (value <= tail_bound)
    safe = jnp.where(inside, value, 0.0)
    params = (unnormalised_widths, unnormalised_heights, unnormalised_derivatives)
    shape = jnp.broadcast_shapes(value.shape, *(p.shape[:-1] for p in params))
    if unrolled:
        # One flat axis: XLA vectorises the innermost axis of a loop only.
        safe = jnp.broadcast_to(safe, shape).reshape(-1)
        params = tuple(
            jnp.broadcast_to(p, shape + p.shape[-1:]).reshape(-1, p.shape[-1]) for p in params
        )
        params = tuple([p[:, k] for k in range(p.shape[-1])] for p in params)
        pick = _bin_values_unrolled
    else:
        pick = _bin_values_from_params
    bin_values = pick(
        safe,
        *params,
        by_height=inverse,
        tail_bound=tail_bound,
        min_bin_width=min_bin_width,
        min_bin_height=min_bin_height,
        min_derivative=min_derivative,
    )
    out, log_det = (_inverse_in_bin if inverse else _forward_in_bin)(safe, bin_values)
    out, log_det = out.reshape(shape), log_det.reshape(shape)
    return jnp.where(inside, out, value), jnp.where(inside, log_det, 0.0)


def _unrolled_inverse(
    value: Array,
    unnormalised_widths: Array,
    unnormalised_heights: Array,
    unnormalised_derivatives: Array,
    **settings: float,
) -> tuple[Array, Array]:
    """The inverse spline, evaluated unrolled and differentiated through `_spline`.

    The unrolled form is the fast one to evaluate on many values, but its
    backward pass compiles to many small kernels that run slowly; derivatives
    (rarely needed for the inverse) therefore come from the form with the bins
    on a trailing axis, which gives the same numbers up to float32 rounding.
    """

    @jax.custom_jvp
    def unrolled_inverse(*args: Array) -> tuple[Array, Array]:
        return _spline(*args, inverse=True, unrolled=True, **settings)

    @unrolled_inverse.defjvp
    def unrolled_inverse_jvp(primals, tangents):
        reference = functools.partial(_spline, inverse=True, unrolled=False, **settings)
        return jax.jvp(reference, primals, tangents)

    return unrolled_inverse(
        value, unnormalised_widths, unnormalised_heights, unnormalised_derivatives
    )
