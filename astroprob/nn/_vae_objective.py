"""The VAE's probability terms as pure functions of arrays.

A VAE with a standard-normal prior ``p(z)``, a diagonal Gaussian encoder
``q(z | x) = N(μ(x), diag σ(x)²)`` and a Gaussian likelihood with known
per-pixel noise variance ``p(x | z) = N(x | m(z), diag v)`` has the evidence
lower bound (Kingma & Welling 2014)

    ELBO(x) = E_q[log p(x | z)] - KL(q(z | x) || p(z)) <= log p(x),

and the importance-weighted bound (Burda et al. 2016)

    L_K(x) = E[log (1/K) sum_k p(x | z_k) p(z_k) / q(z_k | x)],   z_k ~ q(z | x),

with ``ELBO = L_1 <= L_K <= L_{K+1} <= log p(x)``.

References:
    Kingma & Welling (2014), "Auto-Encoding Variational Bayes", https://arxiv.org/abs/1312.6114
    Burda, Grosse & Salakhutdinov (2016), "Importance Weighted Autoencoders",
    https://arxiv.org/abs/1509.00519
    Kingma et al. (2016), "Improved variational inference with inverse autoregressive
    flow" (free bits), https://arxiv.org/abs/1606.04934
"""

from __future__ import annotations

import math

import jax.numpy as jnp
from jax.typing import ArrayLike
from jaxtyping import Array, Float

LOG_2PI = math.log(2.0 * math.pi)


def gaussian_log_likelihood(
    x: Float[Array, "batch ..."], mean: Float[Array, "batch ..."], variance: ArrayLike
) -> Float[Array, " batch"]:
    """``log N(x | mean, diag variance)`` summed over all but the leading axis (nats)."""
    terms = -0.5 * (LOG_2PI + jnp.log(variance) + (x - mean) ** 2 / variance)
    return terms.reshape(terms.shape[0], -1).sum(axis=1)


def gaussian_log_normaliser(variance: Float[Array, "batch ..."]) -> Float[Array, " batch"]:
    """``sum -0.5 log(2π v)``: the log-likelihood of a perfect reconstruction (nats)."""
    terms = -0.5 * (LOG_2PI + jnp.log(variance))
    return terms.reshape(terms.shape[0], -1).sum(axis=1)


def kl_to_standard_normal(
    mean: Float[Array, "batch latent"], log_std: Float[Array, "batch latent"]
) -> Float[Array, "batch latent"]:
    """``KL(N(mean, exp(log_std)²) || N(0, 1))`` for each latent dimension (nats)."""
    return 0.5 * (mean**2 + jnp.exp(2.0 * log_std) - 1.0) - log_std


def diagonal_normal_log_prob(
    z: Float[Array, "... latent"], mean: ArrayLike, log_std: ArrayLike
) -> Array:
    """``log N(z | mean, diag exp(log_std)²)`` summed over the last axis (nats)."""
    u = (z - mean) * jnp.exp(-log_std)
    return jnp.sum(-0.5 * (LOG_2PI + u**2) - log_std, axis=-1)


def free_bits_penalty(kl: Float[Array, "batch latent"], free_bits: float) -> Float[Array, " batch"]:
    """Per-example KL penalty whose batch mean is ``sum_j max(mean_batch KL_j, free_bits)``.

    Latent dimensions whose KL, averaged over the minibatch, is below
    ``free_bits`` nats cost a constant ``free_bits`` (no gradient), so the
    encoder is not pushed to switch them off (Kingma et al. 2016). With
    ``free_bits = 0`` this is the plain KL.
    """
    if free_bits == 0.0:
        return kl.sum(axis=1)
    active = jnp.mean(kl, axis=0) > free_bits
    return jnp.sum(jnp.where(active, kl, free_bits), axis=1)
