"""Balanced neural posterior estimation: a penalty that makes NPE more conservative.

A posterior estimate q(θ | x) defines a classifier between joint pairs
(θ, x) ~ p(θ, x) and marginal pairs (θ, x) ~ p(θ) p(x),
``d(θ, x) = σ(log q(θ | x) - log p(θ))``. The Bayes-optimal classifier is
*balanced*: ``E_p(θ,x)[d] + E_p(θ)p(x)[d] = 1``. Balanced NPE (BNPE) adds the
squared violation of this condition to the NPE loss,

    L = E_p(θ,x)[-log q(θ | x)] + λ (E_p(θ,x)[d(θ, x)] + E_p(θ)p(x)[d(θ, x)] - 1)²,

estimated on each minibatch with the marginal pairs ``(θ_{i-1}, x_i)`` (θ
rolled by one place). The exact posterior still minimises L, while on small
simulation budgets the penalty trades a little sharpness for coverage. The ratio
q/p is the same in the unconstrained space the flows work in (the Jacobians of
θ = T(u) cancel), so ``log q_u(u | x) - log p_u(u)`` is used, with
``log p_u(u) = log p(T(u)) + log|det dT/du|``.

References:
    A. Delaunoy, J. Hermans, F. Rozet, A. Wehenkel and G. Louppe, "Towards
    Reliable Simulation-Based Inference with Balanced Neural Ratio Estimation",
    NeurIPS 2022, https://arxiv.org/abs/2208.13624.

    A. Delaunoy, B. K. Miller, P. Forré, C. Weniger and G. Louppe, "Balancing
    Simulation-based Inference for Conservative Posteriors", AABI 2023,
    https://arxiv.org/abs/2304.10978.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

DEFAULT_BALANCE = 100.0
"""The λ used in the papers' experiments."""


def balancing_violation(
    log_ratio_joint: Float[Array, " batch"], log_ratio_marginal: Float[Array, " batch"]
) -> Float[Array, ""]:
    """``mean σ(log r_joint) + mean σ(log r_marginal) - 1``: zero for a balanced classifier.

    Args:
        log_ratio_joint: ``log q(θ_i | x_i) - log p(θ_i)`` on joint pairs, ``(batch,)``.
        log_ratio_marginal: the same on marginal pairs, ``(batch,)``.
    """
    return (
        jnp.mean(jax.nn.sigmoid(log_ratio_joint))
        + jnp.mean(jax.nn.sigmoid(log_ratio_marginal))
        - 1.0
    )


def balanced_npe_losses(
    log_q: Float[Array, " batch"],
    log_q_marginal: Float[Array, " batch"],
    log_prior: Float[Array, " batch"],
    log_prior_marginal: Float[Array, " batch"],
    balance: float,
) -> Float[Array, " batch"]:
    """Per-example losses whose mean is the balanced NPE loss of the minibatch.

    The penalty belongs to the whole minibatch, so it is added to every
    example: ``mean(losses) = mean(-log_q) + balance * violation²``.

    Args:
        log_q: ``log q(θ_i | x_i)``, ``(batch,)``.
        log_q_marginal: ``log q(θ_{i-1} | x_i)``, ``(batch,)``.
        log_prior: ``log p(θ_i)``, ``(batch,)``.
        log_prior_marginal: ``log p(θ_{i-1})``, ``(batch,)``.
        balance: the penalty weight λ ≥ 0.

    Returns:
        ``(batch,)`` losses.
    """
    violation = balancing_violation(log_q - log_prior, log_q_marginal - log_prior_marginal)
    return -log_q + balance * violation**2


def marginal_pairs(a: Array) -> Array:
    """Roll the batch axis by one: pairs ``(θ_{i-1}, x_i)`` are drawn from p(θ) p(x)."""
    return jnp.roll(a, 1, axis=0)
