"""An invertible linear layer with an LU-parameterised matrix: ``z = W x + b``.

``W = L U`` with ``L`` unit lower-triangular and ``U`` upper-triangular with a
positive diagonal ``softplus(u) + eps``, so that ``W`` is invertible by
construction and ``log|det W| = sum(log diag U)`` costs ``O(dim)``. Placed
between spline couplings, it mixes all dimensions with learned directions
instead of fixed permutations only, which lets a few couplings bend
distributions whose structure is not aligned with the coordinate axes (e.g. the
crescent posteriors of two_moons). Kingma & Dhariwal (2018), "Glow",
https://arxiv.org/abs/1807.03039, Section 3.2.

The layer starts at the identity (``L = U = I``, ``b = 0``). It does not depend
on the context.
"""

# jaxtyping shape strings ("batch dim") are not Python expressions.
# ruff: noqa: F722

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jaxtyping import Array, Float

from astroprob.flows._layers import as_column, linear_columns, zeros

__all__ = ["LULinear"]


class LULinear(nnx.Module):
    """Invertible ``z = W x + b`` on the last axis, ``W = L U``.

    Args:
        dim: size of the last axis (at least 1).
        min_diagonal: floor added to the softplus of the diagonal of ``U``.
    """

    def __init__(self, dim: int, *, min_diagonal: float = 1e-3):
        self.dim = dim
        self.min_diagonal = min_diagonal
        # softplus(offset) + min_diagonal == 1: the layer starts at the identity.
        self.diagonal_offset = math.log(math.expm1(1.0 - min_diagonal))
        self.lower = nnx.Param(zeros((dim, dim)))
        self.upper = nnx.Param(zeros((dim, dim)))
        self.raw_diagonal = nnx.Param(zeros((dim,)))
        self.bias = nnx.Param(zeros((dim,)))

    def _factors(self) -> tuple[Array, Array, Array]:
        """``(L, U, diag U)`` from the free parameters."""
        eye = np.eye(self.dim, dtype=np.float32)
        strict_lower = np.tril(np.ones((self.dim, self.dim), np.float32), -1)
        diagonal = jax.nn.softplus(self.raw_diagonal[...] + self.diagonal_offset)
        diagonal = diagonal + self.min_diagonal
        lower = self.lower[...] * strict_lower + eye
        upper = self.upper[...] * strict_lower.T + jnp.diag(diagonal)
        return lower, upper, diagonal

    def matrix(self) -> Float[Array, "dim dim"]:
        """The matrix ``W = L U``."""
        lower, upper, _ = self._factors()
        return lower @ upper

    def log_abs_det(self) -> Float[Array, ""]:
        """``log|det W|``."""
        return jnp.sum(jnp.log(self._factors()[2]))

    def __call__(
        self, x: Float[Array, "*batch dim"], context: Array | None, *, inverse: bool
    ) -> tuple[Float[Array, "*batch dim"], Float[Array, ""]]:
        """Apply the layer (``inverse=False``: ``x -> W x + b``).

        Args:
            x: ``(*batch, dim)``.
            context: ignored (the layer is unconditional).
            inverse: apply ``W^{-1}(x - b)`` instead.

        Returns:
            ``(y, log_det)``: ``y`` of ``x``'s shape and the scalar
            ``log|det dy/dx|``, the same for every row.
        """
        del context
        lower, upper, diagonal = self._factors()
        log_det = jnp.sum(jnp.log(diagonal))
        if not inverse:
            return x @ (lower @ upper).T + self.bias[...], log_det
        return (x - self.bias[...]) @ self._inverse_matrix(lower, upper, x.dtype).T, -log_det

    def inverse_columns(
        self, x: Float[Array, "dim ..."], context: Array | None
    ) -> tuple[Float[Array, "dim ..."], Float[Array, ""]]:
        """The inverse, ``W^{-1}(x - b)``, with the features on the leading axis.

        Returns:
            ``(y, log_det)``: ``y`` of ``x``'s shape and the scalar ``log|det dy/dx|``.
        """
        del context
        lower, upper, diagonal = self._factors()
        log_det = jnp.sum(jnp.log(diagonal))
        inverse_matrix = self._inverse_matrix(lower, upper, x.dtype)
        return linear_columns(inverse_matrix.T, x - as_column(self.bias[...], x.ndim)), -log_det

    def _inverse_matrix(self, lower: Array, upper: Array, dtype: jnp.dtype) -> Array:
        """``W^{-1} = U^{-1} L^{-1}``, by two triangular solves against the identity.

        For the small dimensions of posteriors this is cheaper than solving per row.
        """
        eye = jnp.eye(self.dim, dtype=dtype)
        lower_inv = jax.scipy.linalg.solve_triangular(lower, eye, lower=True, unit_diagonal=True)
        return jax.scipy.linalg.solve_triangular(upper, lower_inv, lower=False)
