"""Conditional mixture density network with full-covariance Gaussian components.

Bishop (1994), "Mixture Density Networks", Aston University technical report
NCRG/94/004, https://publications.aston.ac.uk/id/eprint/373/.

An MLP maps the context to the weights, means and *precision* Cholesky factors
of ``K`` Gaussians: component ``k`` has precision ``A_k^T A_k`` with ``A_k``
upper-triangular and ``diag(A_k) = exp(l_k)``. Working with the precision factor
makes ``log_prob`` free of triangular solves:
``log N(theta | mu, (A^T A)^{-1}) = sum(l) - |A (theta - mu)|^2 / 2 - dim log(2 pi) / 2``.
Sampling draws ``theta = mu + A^{-1} eps``. The log-diagonal is softly bounded,
``l = L tanh(u / L)`` with ``L = 15``, so that component scales stay within
``exp(±15)`` of unit scale and never overflow.
"""

# jaxtyping shape strings ("batch dim") are not Python expressions.
# ruff: noqa: F722

from __future__ import annotations

import functools
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.typing import ArrayLike
from jaxtyping import Array, Float, PRNGKeyArray

from astroprob.flows._checks import (
    check_batch_pair,
    check_constructor,
    check_context,
    check_num_samples,
)
from astroprob.flows._chunks import map_rows_in_chunks
from astroprob.flows._flow import check_positive_int
from astroprob.flows._layers import ConditionalMLP

__all__ = ["MixtureDensityNetwork"]

_LOG_DIAG_BOUND = 15.0


@functools.lru_cache(maxsize=32)
def _off_diagonal_maps(dim: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Static 0/1 matrices for the strictly upper-triangular entries ``(i < j)``.

    Returns:
        ``(gather (dim, n_off), rows (n_off, dim), to_matrix (n_off, dim * dim))``:
        ``r @ gather`` picks ``r_j`` for each entry, ``v @ rows`` sums entries
        into their row ``i``, ``v @ to_matrix`` scatters them into a flat matrix.
    """
    rows, cols = np.triu_indices(dim, k=1)
    n_off = rows.size
    gather = np.zeros((dim, n_off), np.float32)
    gather[cols, np.arange(n_off)] = 1.0
    to_rows = np.zeros((n_off, dim), np.float32)
    to_rows[np.arange(n_off), rows] = 1.0
    to_matrix = np.zeros((n_off, dim * dim), np.float32)
    to_matrix[np.arange(n_off), rows * dim + cols] = 1.0
    for m in (gather, to_rows, to_matrix):
        m.setflags(write=False)
    return gather, to_rows, to_matrix


class MixtureDensityNetwork(nnx.Module):
    """Mixture of ``num_components`` full-covariance Gaussians ``q(theta | context)``.

    Args:
        dim: dimension of ``theta`` (z-scored, unconstrained).
        context_dim: dimension of the context (at least 1).
        rngs: random streams for the initial weights.
        num_components: number of Gaussian components ``K``.
        hidden_features: width of the MLP's hidden layers.
        num_hidden_layers: number of hidden layers.
        activation: MLP activation (``"relu"``, ``"tanh"``, ``"gelu"``,
            ``"silu"``, ``"elu"``).

    Raises:
        ValueError: a hyperparameter out of range.

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> from flax import nnx
        >>> mdn = MixtureDensityNetwork(2, 3, rngs=nnx.Rngs(0), num_components=3)
        >>> mdn.log_prob(jnp.zeros((4, 2)), jnp.ones((4, 3))).shape
        (4,)

    References:
        Bishop (1994), https://publications.aston.ac.uk/id/eprint/373/.
    """

    def __init__(
        self,
        dim: int,
        context_dim: int,
        *,
        rngs: nnx.Rngs,
        num_components: int = 10,
        hidden_features: int = 50,
        num_hidden_layers: int = 2,
        activation: str = "relu",
    ):
        self.dim, self.context_dim = check_constructor(dim, context_dim)
        num_components = check_positive_int(num_components, "num_components")
        config = {
            "num_components": num_components,
            "hidden_features": int(hidden_features),
            "num_hidden_layers": int(num_hidden_layers),
            "activation": str(activation),
        }
        # Static module attributes must be hashable (nnx graph definitions are).
        self._config = tuple(config.items())
        self.num_components = num_components
        self.num_off = self.dim * (self.dim - 1) // 2
        per_component = 1 + 2 * self.dim + self.num_off
        self.network = ConditionalMLP(
            0,
            self.context_dim,
            num_components * per_component,
            hidden_features=hidden_features,
            num_hidden_layers=num_hidden_layers,
            activation=activation,
            rngs=rngs,
            final_init_scale=0.01,
        )
        # Distinct initial means break the symmetry between components.
        # Drawn on the host from the key's bits, like the weights (see `lecun_normal`).
        seed = np.asarray(jax.random.key_data(rngs.params())).ravel()
        bias = np.zeros((num_components, per_component), np.float32)
        bias[:, 1 : 1 + self.dim] = np.random.default_rng(seed).standard_normal(
            (num_components, self.dim)
        )
        self.network.output_bias[...] = jnp.asarray(bias.reshape(-1))

    @property
    def config(self) -> dict[str, Any]:
        """Hyperparameters that rebuild this architecture (JSON-serialisable)."""
        return dict(self._config)

    def _components(self, context: Array) -> tuple[Array, Array, Array, Array]:
        """Mixture parameters for each context row.

        Returns:
            ``(log_weights (..., K), means (..., K, dim), log_diag (..., K, dim),
            off_diag (..., K, n_off))``.
        """
        d = self.dim
        out = self.network(jnp.zeros(context.shape[:-1] + (0,), context.dtype), context)
        out = out.reshape(out.shape[:-1] + (self.num_components, -1))
        log_weights = jax.nn.log_softmax(out[..., 0], axis=-1)
        means = out[..., 1 : 1 + d]
        log_diag = _LOG_DIAG_BOUND * jnp.tanh(out[..., 1 + d : 1 + 2 * d] / _LOG_DIAG_BOUND)
        off_diag = out[..., 1 + 2 * d :]
        return log_weights, means, log_diag, off_diag

    def log_prob(self, theta: ArrayLike, context: ArrayLike) -> Float[Array, " batch"]:
        """Log density ``log q(theta | context)``.

        Args:
            theta: ``(batch, dim)``.
            context: ``(batch, context_dim)``.

        Returns:
            ``(batch,)``.

        Raises:
            ValueError: ``theta`` or ``context`` not 2-D, wrong trailing size, or
                different batch sizes.
        """
        theta, context = check_batch_pair(theta, "theta", self.dim, context, self.context_dim)
        log_weights, means, log_diag, off_diag = self._components(context)
        r = theta[:, None, :] - means  # (batch, K, dim)
        a_r = jnp.exp(log_diag) * r
        if self.num_off:
            gather, to_rows, _ = _off_diagonal_maps(self.dim)
            a_r = a_r + (off_diag * (r @ gather)) @ to_rows
        log_normal = (
            jnp.sum(log_diag, axis=-1)
            - 0.5 * jnp.sum(jnp.square(a_r), axis=-1)
            - 0.5 * self.dim * math.log(2.0 * math.pi)
        )
        return jax.nn.logsumexp(log_weights + log_normal, axis=-1)

    def sample(
        self, key: PRNGKeyArray, context: ArrayLike, num_samples: int
    ) -> Float[Array, "batch num_samples dim"]:
        """Draw ``num_samples`` independent samples for each context row.

        Args:
            key: PRNG key.
            context: ``(batch, context_dim)``.
            num_samples: draws per context row (static positive int).

        Returns:
            ``(batch, num_samples, dim)``.

        Raises:
            ValueError: wrong ``context`` shape or ``num_samples`` not a positive int.
        """
        context = check_context(context, self.context_dim)
        num_samples = check_num_samples(num_samples)
        d = self.dim
        batch = context.shape[0]
        log_weights, means, log_diag, off_diag = self._components(context)
        # Upper-triangular precision factors A (batch, K, d, d) and their inverses.
        a = jnp.exp(log_diag)[..., None] * jnp.eye(d, dtype=log_diag.dtype)
        if self.num_off:
            _, _, to_matrix = _off_diagonal_maps(d)
            a = a + (off_diag @ to_matrix).reshape(off_diag.shape[:-1] + (d, d))
        eye = jnp.broadcast_to(jnp.eye(d, dtype=a.dtype), a.shape)
        a_inv = jax.scipy.linalg.solve_triangular(a, eye, lower=False)
        key_component, key_noise = jax.random.split(key)
        component = jax.random.categorical(
            key_component, log_weights[:, None, :], axis=-1, shape=(batch, num_samples)
        )
        eps = jax.random.normal(key_noise, (batch * num_samples, d), context.dtype)
        rows = jnp.repeat(jnp.arange(batch), num_samples)

        def draw(eps_rows: Array, row_ids: Array, components: Array) -> Array:
            chosen_inv = a_inv[row_ids, components]  # (rows, d, d)
            return means[row_ids, components] + jnp.sum(chosen_inv * eps_rows[:, None, :], -1)

        theta = map_rows_in_chunks(draw, eps, rows, component.reshape(-1))
        return theta.reshape(batch, num_samples, d)
