"""The bijection between R^dim and the prior's support.

Flows are trained on ``u = T⁻¹(θ)`` where ``T = numpyro.distributions.transforms.biject_to(
prior.support)``, so every sample ``θ = T(u)`` lies inside the prior's support
and no posterior mass leaks outside it (no rejection step is needed, unlike
box-prior leakage in sbi). Densities carry the change of variables:
``log q(θ) = log q_u(u) - log|det dT/du|``.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpyro.distributions as dist
from jaxtyping import Array, Bool, Float
from numpyro.distributions.transforms import biject_to


class SupportBijection:
    """``T: R^dim -> support(prior)`` and its inverse, acting on the last axis.

    Args:
        prior: numpyro distribution with event shape ``(dim,)``.
    """

    def __init__(self, prior: dist.Distribution):
        self.support = prior.support
        self.transform = biject_to(prior.support)
        # A point inside the support, used to keep masked-out lanes finite.
        self._inside = self.transform(jnp.zeros(prior.event_shape))

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
