"""Prior building blocks: a vector prior from independent blocks, and its bijection.

`JointPrior` concatenates independent marginals, scalar or vector valued, into
one distribution with event shape ``(dim,)``, as a `Task` needs. Its support is
the product of the marginals' supports, and numpyro's ``biject_to`` maps
``R^dim`` onto it block by block, so NPE's flows and NUTS both work in an
unconstrained space and never leave the support.

`EllipticityPrior` is a distribution on the open unit disk for the two
components of a reduced shear ``(g1, g2)``: ``|g|²`` is Beta distributed and
the orientation uniform. Its bijection from ``R²`` is the smooth radial map
``g = u / sqrt(1 + |u|²)``.

`TruncatedLogNormal` is a log-normal restricted to ``[low, high]``, and
`TruncatedPowerLaw` is ``p(x) ∝ x^α`` on ``[low, high]`` (galaxy number counts).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpyro.distributions as dist
from jax.typing import ArrayLike
from jaxtyping import Array, PRNGKeyArray
from numpyro.distributions import constraints
from numpyro.distributions.transforms import CatTransform, Transform, biject_to

__all__ = [
    "EllipticityPrior",
    "JointPrior",
    "TruncatedLogNormal",
    "TruncatedPowerLaw",
    "unit_disk",
]


class _UnitDisk(constraints.Constraint):
    """Vectors ``(x, y)`` with ``x² + y² < 1``."""

    event_dim = 1

    def __call__(self, x: ArrayLike) -> ArrayLike:
        x = jnp.asarray(x)
        return jnp.sum(x**2, axis=-1) < 1.0

    def feasible_like(self, prototype: ArrayLike) -> Array:
        return jnp.zeros_like(prototype)

    def tree_flatten(self):
        return (), ((), {})

    def __repr__(self) -> str:
        return "UnitDisk()"

    def eq(self, other: object, static: bool = False) -> bool:  # noqa: FBT001, FBT002
        return isinstance(other, _UnitDisk)


unit_disk = _UnitDisk()
"""The open unit disk in the plane (event dimension 1)."""


class _DiskTransform(Transform):
    """``R² -> unit disk``: ``y = u / sqrt(1 + |u|²)``, smooth everywhere."""

    domain = constraints.real_vector
    codomain = unit_disk

    def __call__(self, x: ArrayLike) -> Array:
        x = jnp.asarray(x)
        return x * jax.lax.rsqrt(1.0 + jnp.sum(x**2, axis=-1, keepdims=True))

    def _inverse(self, y: ArrayLike) -> Array:
        y = jnp.asarray(y)
        return y * jax.lax.rsqrt(1.0 - jnp.sum(y**2, axis=-1, keepdims=True))

    def log_abs_det_jacobian(self, x: ArrayLike, y: ArrayLike, intermediates=None) -> Array:
        return -2.0 * jnp.log1p(jnp.sum(jnp.asarray(x) ** 2, axis=-1))

    def tree_flatten(self):
        return (), ((), {})

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _DiskTransform)

    def __hash__(self) -> int:
        return hash(_DiskTransform)


@biject_to.register(_UnitDisk)
def _biject_to_unit_disk(constraint: _UnitDisk) -> Transform:
    return _DiskTransform()


class _Blocks(constraints.Constraint):
    """Product of the supports of consecutive blocks of a vector (event dimension 1)."""

    event_dim = 1

    def __init__(self, cseq: Sequence[constraints.Constraint], lengths: Sequence[int]):
        self.cseq = tuple(cseq)
        self.lengths = tuple(int(n) for n in lengths)

    def _slices(self, x: Array) -> list[Array]:
        out, start = [], 0
        for length in self.lengths:
            out.append(x[..., start : start + length])
            start += length
        return out

    def __call__(self, x: ArrayLike) -> Array:
        x = jnp.asarray(x)
        inside = jnp.ones(x.shape[:-1], dtype=bool)
        for constraint, part in zip(self.cseq, self._slices(x), strict=True):
            check = jnp.asarray(constraint(part if constraint.event_dim else part[..., 0]))
            inside = inside & check
        return inside

    def feasible_like(self, prototype: ArrayLike) -> Array:
        prototype = jnp.asarray(prototype)
        parts = []
        for constraint, part in zip(self.cseq, self._slices(prototype), strict=True):
            if constraint.event_dim:
                parts.append(jnp.asarray(constraint.feasible_like(part)))
            else:
                parts.append(jnp.asarray(constraint.feasible_like(part[..., 0]))[..., None])
        return jnp.concatenate(parts, axis=-1)

    def tree_flatten(self):
        return (self.cseq,), (("cseq",), {"lengths": self.lengths})

    def __repr__(self) -> str:
        return f"Blocks({list(self.cseq)}, lengths={list(self.lengths)})"

    def eq(self, other: object, static: bool = False) -> bool:  # noqa: FBT001, FBT002
        return (
            isinstance(other, _Blocks)
            and self.lengths == other.lengths
            and all(a.eq(b, static=True) for a, b in zip(self.cseq, other.cseq, strict=True))
        )


@biject_to.register(_Blocks)
def _biject_to_blocks(constraint: _Blocks) -> Transform:
    return CatTransform([biject_to(c) for c in constraint.cseq], -1, constraint.lengths)


class JointPrior(dist.Distribution):
    """Independent marginals concatenated into one vector distribution.

    Args:
        marginals: numpyro distributions with empty batch shape and event
            shape ``()`` (one entry) or ``(k,)`` (``k`` entries), in order.

    Raises:
        TypeError: if an entry is not a numpyro Distribution.
        ValueError: if an entry has a batch shape, an event shape of more than
            one dimension, or a support numpyro cannot map from ``R^k``.
    """

    arg_constraints: dict = {}
    pytree_data_fields = ("marginals",)
    pytree_aux_fields = ("lengths",)

    def __init__(
        self, marginals: Sequence[dist.Distribution], *, validate_args: bool | None = None
    ):
        marginals = tuple(marginals)
        if not marginals:
            raise ValueError("marginals: expected at least one distribution; got none")
        lengths = []
        for i, marginal in enumerate(marginals):
            if not isinstance(marginal, dist.Distribution):
                kind = type(marginal).__name__
                raise TypeError(f"marginals[{i}]: expected a numpyro Distribution; got {kind}")
            if marginal.batch_shape != () or len(marginal.event_shape) > 1:
                raise ValueError(
                    f"marginals[{i}]: expected batch_shape () and event_shape () or (k,); got "
                    f"batch_shape {marginal.batch_shape}, event_shape {marginal.event_shape}"
                )
            try:
                biject_to(marginal.support)
            except NotImplementedError as err:
                raise ValueError(
                    f"marginals[{i}]: numpyro has no bijection onto its support {marginal.support}"
                ) from err
            lengths.append(int(marginal.event_shape[0]) if marginal.event_shape else 1)
        self.marginals = marginals
        self.lengths = tuple(lengths)
        super().__init__(batch_shape=(), event_shape=(sum(lengths),), validate_args=validate_args)

    @property
    def support(self) -> constraints.Constraint:  # noqa: D102
        return _Blocks([m.support for m in self.marginals], self.lengths)

    def _split(self, value: Array) -> list[Array]:
        out, start = [], 0
        for marginal, length in zip(self.marginals, self.lengths, strict=True):
            part = value[..., start : start + length]
            out.append(part if marginal.event_shape else part[..., 0])
            start += length
        return out

    def sample(self, key: PRNGKeyArray, sample_shape: tuple[int, ...] = ()) -> Array:  # noqa: D102
        keys = jax.random.split(key, len(self.marginals))
        parts = []
        for marginal, k in zip(self.marginals, keys, strict=True):
            draw = jnp.asarray(marginal.sample(k, sample_shape))
            parts.append(draw if marginal.event_shape else draw[..., None])
        return jnp.concatenate(parts, axis=-1)

    def log_prob(self, value: ArrayLike) -> Array:  # noqa: D102
        value = jnp.asarray(value)
        parts = self._split(value)
        return sum(m.log_prob(p) for m, p in zip(self.marginals, parts, strict=True))


class EllipticityPrior(dist.Distribution):
    """Isotropic prior on a reduced shear ``(g1, g2)`` in the unit disk.

    ``|g|² ~ Beta(a, b)`` and the orientation ``2β = atan2(g2, g1)`` is uniform,
    so the density is ``Beta(|g|²; a, b) / π``.

    Args:
        a: first Beta parameter (> 0).
        b: second Beta parameter (> 0).
    """

    arg_constraints = {"a": constraints.positive, "b": constraints.positive}
    pytree_data_fields = ("a", "b")

    def __init__(self, a: float, b: float, *, validate_args: bool | None = None):
        for name, value in (("a", a), ("b", b)):
            if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
                raise ValueError(f"{name}: expected a finite number > 0; got {value!r}")
        self.a = float(a)
        self.b = float(b)
        super().__init__(batch_shape=(), event_shape=(2,), validate_args=validate_args)

    @property
    def support(self) -> constraints.Constraint:  # noqa: D102
        return unit_disk

    def sample(self, key: PRNGKeyArray, sample_shape: tuple[int, ...] = ()) -> Array:  # noqa: D102
        key_r, key_phi = jax.random.split(key)
        t = dist.Beta(self.a, self.b).sample(key_r, sample_shape)
        # Keep |g| strictly inside the disk even where float32 rounds t to 1.
        t = jnp.minimum(t, 1.0 - 1e-6)
        phi = jax.random.uniform(key_phi, sample_shape, minval=0.0, maxval=2.0 * math.pi)
        radius = jnp.sqrt(t)
        return jnp.stack([radius * jnp.cos(phi), radius * jnp.sin(phi)], axis=-1)

    def log_prob(self, value: ArrayLike) -> Array:  # noqa: D102
        t = jnp.sum(jnp.asarray(value) ** 2, axis=-1)
        return dist.Beta(self.a, self.b).log_prob(t) - math.log(math.pi)


class TruncatedLogNormal(dist.Distribution):
    """``x = exp(z)`` with ``z ~ Normal(loc, scale)`` truncated to ``[log low, log high]``.

    Args:
        loc: mean of ``log x``.
        scale: standard deviation of ``log x`` before truncation (> 0).
        low: lower bound of ``x`` (> 0).
        high: upper bound of ``x`` (> low).
    """

    arg_constraints = {"loc": constraints.real, "scale": constraints.positive}
    pytree_data_fields = ("loc", "scale", "low", "high")

    def __init__(
        self,
        loc: float,
        scale: float,
        low: float,
        high: float,
        *,
        validate_args: bool | None = None,
    ):
        values = {"loc": loc, "scale": scale, "low": low, "high": high}
        for name, value in values.items():
            if not (isinstance(value, int | float) and math.isfinite(value)):
                raise ValueError(f"{name}: expected a finite number; got {value!r}")
        if not scale > 0:
            raise ValueError(f"scale: expected a number > 0; got {scale!r}")
        if not 0 < low < high:
            raise ValueError(f"low, high: expected 0 < low < high; got {low!r}, {high!r}")
        self.loc, self.scale = float(loc), float(scale)
        self.low, self.high = float(low), float(high)
        super().__init__(batch_shape=(), event_shape=(), validate_args=validate_args)

    def _base(self) -> dist.Distribution:
        return dist.TruncatedNormal(
            self.loc, self.scale, low=math.log(self.low), high=math.log(self.high)
        )

    @property
    def support(self) -> constraints.Constraint:  # noqa: D102
        return constraints.interval(self.low, self.high)

    def sample(self, key: PRNGKeyArray, sample_shape: tuple[int, ...] = ()) -> Array:  # noqa: D102
        x = jnp.exp(self._base().sample(key, sample_shape))
        # exp(log(high)) can round just past high in float32.
        return jnp.clip(x, self.low, self.high)

    def log_prob(self, value: ArrayLike) -> Array:  # noqa: D102
        log_x = jnp.log(jnp.asarray(value))
        return self._base().log_prob(log_x) - log_x


class TruncatedPowerLaw(dist.Distribution):
    """``p(x) ∝ x^alpha`` on ``[low, high]``, computed in ``log x`` for float32 stability.

    Galaxy number counts ``p(m) ∝ 10^(γ m)`` in magnitude are this law in flux,
    with ``alpha = -1 - 2.5 γ``.

    Args:
        alpha: the power (any finite number).
        low: lower bound (> 0).
        high: upper bound (> low).
    """

    arg_constraints = {"alpha": constraints.real}
    pytree_data_fields = ("alpha", "low", "high")

    def __init__(self, alpha: float, low: float, high: float, *, validate_args: bool | None = None):
        for name, value in (("alpha", alpha), ("low", low), ("high", high)):
            if not (isinstance(value, int | float) and math.isfinite(value)):
                raise ValueError(f"{name}: expected a finite number; got {value!r}")
        if not 0 < low < high:
            raise ValueError(f"low, high: expected 0 < low < high; got {low!r}, {high!r}")
        self.alpha, self.low, self.high = float(alpha), float(low), float(high)
        super().__init__(batch_shape=(), event_shape=(), validate_args=validate_args)

    def _log_normaliser(self) -> float:
        """``log ∫ x^alpha dx`` over ``[low, high]``, i.e. in ``y = log x`` of ``e^(c y)``."""
        c = self.alpha + 1.0
        u, v = math.log(self.low), math.log(self.high)
        if abs(c) < 1e-12:
            return math.log(v - u)
        return max(c * u, c * v) + math.log(-math.expm1(-abs(c) * (v - u))) - math.log(abs(c))

    @property
    def support(self) -> constraints.Constraint:  # noqa: D102
        return constraints.interval(self.low, self.high)

    def sample(self, key: PRNGKeyArray, sample_shape: tuple[int, ...] = ()) -> Array:  # noqa: D102
        q = jax.random.uniform(key, sample_shape)
        c = self.alpha + 1.0
        u, v = math.log(self.low), math.log(self.high)
        if abs(c) < 1e-12:
            y = u + q * (v - u)
        else:
            # Inverse CDF in y = log x, written around whichever end carries the mass.
            if c < 0:
                y = u + jnp.log1p(q * math.expm1(c * (v - u))) / c
            else:
                y = v + jnp.log1p((1.0 - q) * math.expm1(-c * (v - u))) / c
        return jnp.clip(jnp.exp(y), self.low, self.high)

    def log_prob(self, value: ArrayLike) -> Array:  # noqa: D102
        log_x = jnp.log(jnp.asarray(value))
        return self.alpha * log_x - self._log_normaliser()
