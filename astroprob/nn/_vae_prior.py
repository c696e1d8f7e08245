"""A learned prior over a VAE's latent space: a normalizing flow fitted to the aggregate posterior.

A VAE's aggregate posterior ``q(z) = E_x q(z | x)`` rarely fills the standard
normal prior it was trained against: drawing ``z ~ N(0, I)`` lands in regions
no training image maps to ("holes"), and the decoded images look unlike the
data. Fitting a flow to draws from ``q(z)`` after training and sampling from
it instead (the two-stage approach of Lanusse et al. 2021, Sect. 3.3) fixes
this without retraining the VAE. `LatentPrior` is that flow; `fit_latent_prior`
in `astroprob.nn.vae` fits it.

References:
    Lanusse et al. (2021), "Deep generative models for galaxy image simulations",
    MNRAS 504, 5543, https://arxiv.org/abs/2008.03833
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
from flax import nnx
from jax.typing import ArrayLike
from jaxtyping import Array, Float, PRNGKeyArray

from astroprob.flows._checks import check_rows
from astroprob.flows.nsf import NeuralSplineFlow
from astroprob.nn._vae_layers import FixedArray


class LatentPrior(nnx.Module):
    """A density ``p(z)`` on ``latent_dim`` dimensions: an affine map then a neural spline flow.

    ``z = shift + scale * u`` with ``u`` from an unconditional neural spline
    flow. ``shift`` and ``scale`` are not trained: `fit_latent_prior` sets them
    to the mean and standard deviation of the latent draws it fits, so that
    the flow sees z-scored data.

    The flows of `astroprob.flows` are conditional; this one is given a
    constant one-element context, so its conditioners reduce to learned biases.

    Args:
        latent_dim: size of ``z``.
        num_transforms, hidden_features, num_bins, tail_bound: of the
            `NeuralSplineFlow` (tail_bound in z-scored units).
        rngs: random-number streams for the initial weights.

    Examples:
        >>> import jax
        >>> from flax import nnx
        >>> prior = LatentPrior(3, num_transforms=2, hidden_features=16, rngs=nnx.Rngs(0))
        >>> z = prior.sample(jax.random.key(1), 5)
        >>> z.shape, prior.log_prob(z).shape
        ((5, 3), (5,))
    """

    def __init__(
        self,
        latent_dim: int,
        *,
        num_transforms: int = 5,
        hidden_features: int = 64,
        num_bins: int = 8,
        tail_bound: float = 4.0,
        rngs: nnx.Rngs,
    ):
        if isinstance(latent_dim, bool) or not isinstance(latent_dim, int) or latent_dim < 1:
            raise ValueError(f"latent_dim: expected a positive int; got {latent_dim!r}")
        self.latent_dim = latent_dim
        self._config = (
            ("latent_dim", latent_dim),
            ("num_transforms", int(num_transforms)),
            ("hidden_features", int(hidden_features)),
            ("num_bins", int(num_bins)),
            ("tail_bound", float(tail_bound)),
        )
        self.flow = NeuralSplineFlow(
            latent_dim,
            1,
            num_transforms=num_transforms,
            hidden_features=hidden_features,
            num_bins=num_bins,
            tail_bound=tail_bound,
            rngs=rngs,
        )
        self.shift = FixedArray(jnp.zeros((latent_dim,), jnp.float32))
        self.scale = FixedArray(jnp.ones((latent_dim,), jnp.float32))

    @property
    def config(self) -> dict[str, Any]:
        """Constructor arguments (JSON-serialisable), for saving."""
        return dict(self._config)

    def log_prob(self, z: ArrayLike) -> Float[Array, " n"]:
        """Log density of latent vectors ``z`` ``(n, latent_dim)``, in nats.

        Raises:
            ValueError: if ``z`` is not ``(n, latent_dim)``.
        """
        z = check_rows(z, "z", self.latent_dim, "latent_dim")
        u = (z - self.shift[...]) / self.scale[...]
        context = jnp.zeros((z.shape[0], 1), z.dtype)
        return self.flow.log_prob(u, context) - jnp.sum(jnp.log(self.scale[...]))

    def sample(self, key: PRNGKeyArray, num_samples: int) -> Float[Array, "num_samples latent"]:
        """``num_samples`` independent draws, ``(num_samples, latent_dim)``."""
        u = self.flow.sample(key, jnp.zeros((1, 1), jnp.float32), num_samples)[0]
        return self.shift[...] + self.scale[...] * u
