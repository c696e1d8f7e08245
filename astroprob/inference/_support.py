"""The bijection between R^dim and the prior's support.

Flows are trained on ``u = T⁻¹(θ)``, so every sample ``θ = T(u)`` lies inside
the prior's support and no posterior mass leaks outside it (no rejection step is
needed, unlike box-prior leakage in sbi). Densities carry the change of
variables: ``log q(θ) = log q_u(u) - log|det dT/du|``.

``T`` is numpyro's ``biject_to(prior.support)``, except on bounded intervals
(box priors, alone or as blocks of a `JointPrior`), where it is a
`SoftIntervalTransform`: the identity on all but a thin margin at each end, with
exponential tails in the margins. numpyro's sigmoid bends the whole interval,
so the flow has to learn every posterior through that curvature; on two_moons
at 10³ simulations this cost 0.3 nats of held-out log density (2.11 against
2.37 nats per simulation; the "NPE ablation" section of docs/benchmarks.md).
"""

from __future__ import annotations

import jax.numpy as jnp
import numpyro.distributions as dist
from jax.typing import ArrayLike
from jaxtyping import Array, Bool, Float
from numpyro.distributions import constraints
from numpyro.distributions.transforms import (
    CatTransform,
    IndependentTransform,
    Transform,
    biject_to,
)

from astroprob.tasks._priors import _Blocks

INTERVAL_MARGIN = 0.01
"""Width of each curved margin of a `SoftIntervalTransform`, as a fraction of the interval."""


class SoftIntervalTransform(Transform):
    """``R -> (low, high)``: the identity inside, exponential tails in thin margins.

    With ``d = margin * (high - low)``, ``lo = low + d`` and ``hi = high - d``::

        T(u) = u                               lo <= u <= hi
        T(u) = high - d * exp(-(u - hi) / d)   u > hi
        T(u) = low + d * exp((u - lo) / d)     u < lo

    ``T`` is continuous with a continuous derivative (1 at both seams),
    strictly increasing, and maps ``R`` onto the open interval. Float32 cannot
    resolve ``T(u)`` from the bound about 12 margins into a tail; values are
    clamped to the largest and smallest floats strictly inside, so that a sample
    never lands on a bound (where a Beta prior's density is 0 or infinite).

    Args:
        low: lower bounds, any shape broadcasting against the values.
        high: upper bounds, ``> low``.
        margin: fraction of the interval taken by each curved margin, in (0, 0.5).
    """

    domain = constraints.real
    sign = 1

    def __init__(self, low: ArrayLike, high: ArrayLike, margin: float = INTERVAL_MARGIN):
        if not 0.0 < margin < 0.5:
            raise ValueError(f"margin: expected a fraction in (0, 0.5); got {margin!r}")
        self.low = jnp.asarray(low, jnp.float32)
        self.high = jnp.asarray(high, jnp.float32)
        self.margin = float(margin)

    @property
    def codomain(self) -> constraints.Constraint:  # noqa: D102
        return constraints.interval(self.low, self.high)

    def _seams(self) -> tuple[Array, Array, Array]:
        # Derived here, not stored: numpyro's tree_unflatten restores only low, high, margin.
        d = self.margin * (self.high - self.low)
        return self.low + d, self.high - d, d

    def __call__(self, u: Array) -> Array:
        lo, hi, d = self._seams()
        # Arguments are clamped so that the branch not taken stays finite.
        upper = self.high - d * jnp.exp(-(jnp.maximum(u, hi) - hi) / d)
        lower = self.low + d * jnp.exp((jnp.minimum(u, lo) - lo) / d)
        theta = jnp.where(u > hi, upper, jnp.where(u < lo, lower, u))
        inside_low = jnp.nextafter(self.low, self.high)
        inside_high = jnp.nextafter(self.high, self.low)
        return jnp.clip(theta, inside_low.astype(theta.dtype), inside_high.astype(theta.dtype))

    def _inverse(self, theta: Array) -> Array:
        lo, hi, d = self._seams()
        tiny = jnp.finfo(jnp.result_type(theta, jnp.float32)).tiny
        # On a bound itself the inverse is the largest finite tail value, not inf.
        upper = hi - d * jnp.log(jnp.clip((self.high - theta) / d, tiny, 1.0))
        lower = lo + d * jnp.log(jnp.clip((theta - self.low) / d, tiny, 1.0))
        return jnp.where(theta > hi, upper, jnp.where(theta < lo, lower, theta))

    def log_abs_det_jacobian(self, u: Array, theta: Array, intermediates: None = None) -> Array:
        """``log dT/du`` elementwise: 0 inside, ``-|u - seam| / d`` in the margins."""
        lo, hi, d = self._seams()
        return jnp.where(u > hi, -(u - hi) / d, jnp.where(u < lo, (u - lo) / d, 0.0))

    def tree_flatten(self):  # noqa: D102
        return (self.low, self.high), (("low", "high"), {"margin": self.margin})


def support_transform(support: constraints.Constraint) -> Transform:
    """``T: R^k -> support``: `SoftIntervalTransform` on intervals, else numpyro's ``biject_to``.

    Intervals are recognised alone, as an ``independent`` product (a box prior)
    and as blocks of a `JointPrior`.
    """
    # numpyro exposes no public interval class; _Interval covers interval,
    # unit_interval and open_interval (the clamp keeps samples off the bounds).
    if isinstance(support, constraints._Interval):
        return SoftIntervalTransform(support.lower_bound, support.upper_bound)
    if isinstance(support, constraints.independent) and isinstance(
        support.base_constraint, constraints._Interval
    ):
        base = support_transform(support.base_constraint)
        return IndependentTransform(base, support.reinterpreted_batch_ndims)
    if isinstance(support, _Blocks):
        return CatTransform([support_transform(c) for c in support.cseq], -1, support.lengths)
    return biject_to(support)


SUPPORT_TRANSFORMS = ("soft_interval", "numpyro")
"""Kinds of `SupportBijection`: ``"soft_interval"`` (`support_transform`, the
default) or ``"numpyro"`` (``biject_to`` everywhere, as runs saved before the
soft interval existed were trained)."""


class SupportBijection:
    """``T: R^dim -> support(prior)`` and its inverse, acting on the last axis.

    Args:
        prior: numpyro distribution with event shape ``(dim,)``.
        kind: one of `SUPPORT_TRANSFORMS`.
    """

    def __init__(self, prior: dist.Distribution, kind: str = "soft_interval"):
        if kind not in SUPPORT_TRANSFORMS:
            raise ValueError(f"kind: expected one of {SUPPORT_TRANSFORMS}; got {kind!r}")
        self.kind = kind
        self.support = prior.support
        if kind == "soft_interval":
            self.transform = support_transform(prior.support)
        else:
            self.transform = biject_to(prior.support)
        # A point inside the support, used to keep masked-out lanes finite.
        try:
            self._inside = jnp.asarray(prior.support.feasible_like(jnp.zeros(prior.event_shape)))
        except NotImplementedError:  # a user constraint without feasible_like
            self._inside = self.transform(jnp.zeros(prior.event_shape))

    @property
    def has_box_edges(self) -> bool:
        """Whether the flow's space keeps the prior's interval bounds as edges.

        True when a `SoftIntervalTransform` maps some parameter: it is the
        identity inside the interval, so simulations fill ``u`` up to the bound
        and the density the flow learns drops there. numpyro's sigmoid spreads
        an interval over the whole real line instead.
        """

        def any_soft(transform: Transform) -> bool:
            if isinstance(transform, SoftIntervalTransform):
                return True
            if isinstance(transform, IndependentTransform):
                return any_soft(transform.base_transform)
            if isinstance(transform, CatTransform):
                return any(any_soft(t) for t in transform.transforms)
            return False

        return any_soft(self.transform)

    def to_constrained(self, u: Float[Array, "... dim"]) -> Float[Array, "... dim"]:
        """θ = T(u)."""
        return self.transform(u)

    def to_unconstrained(self, theta: Float[Array, "... dim"]) -> Float[Array, "... dim"]:
        """U = T⁻¹(θ); only meaningful for θ inside the support."""
        return self.transform.inv(theta)

    def log_abs_det_jacobian(self, u: Float[Array, "... dim"]) -> Float[Array, ...]:
        """log|det dT/du| per vector, shape ``u.shape[:-1]``."""
        out = self.transform.log_abs_det_jacobian(u, self.transform(u))
        return out.sum(-1) if out.ndim == u.ndim else out

    def contains(self, theta: Float[Array, "... dim"]) -> Bool[Array, ...]:
        """Whether each vector lies in the support, shape ``theta.shape[:-1]``."""
        inside = jnp.asarray(self.support(theta))
        return inside.all(-1) if inside.ndim == theta.ndim else inside

    def safe(self, theta: Float[Array, "... dim"]) -> tuple[Float[Array, "... dim"], Array]:
        """``(θ with outside vectors replaced by an inside point, inside mask)``."""
        inside = self.contains(theta)
        return jnp.where(inside[..., None], theta, self._inside), inside
