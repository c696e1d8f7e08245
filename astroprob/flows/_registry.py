"""Build a density estimator from its name: `make_density` and `DENSITY_NAMES`."""

from __future__ import annotations

from typing import Any

from flax import nnx

from astroprob.flows.maf import MaskedAutoregressiveFlow
from astroprob.flows.mdn import MixtureDensityNetwork
from astroprob.flows.nsf import NeuralSplineFlow

__all__ = ["DENSITY_NAMES", "DensityEstimator", "make_density"]

DensityEstimator = NeuralSplineFlow | MaskedAutoregressiveFlow | MixtureDensityNetwork
"""Any of the conditional density estimators."""

DENSITY_NAMES: tuple[str, ...] = ("nsf", "nsf_autoregressive", "maf", "mdn")
"""Names accepted by `make_density`."""


def make_density(
    name: str, dim: int, context_dim: int, *, rngs: nnx.Rngs, **kwargs: Any
) -> DensityEstimator:
    """Build a conditional density estimator ``q(theta | context)`` by name.

    ``make_density(name, dim, context_dim, rngs=rngs, **estimator.config)``
    rebuilds an architecture with the same parameter tree as ``estimator``, so
    that its weights can be copied over with ``nnx.update(new, nnx.state(old))``.

    Args:
        name: ``"nsf"`` (coupling spline flow), ``"nsf_autoregressive"``
            (autoregressive spline flow), ``"maf"`` or ``"mdn"``.
        dim: dimension of ``theta``.
        context_dim: dimension of the context.
        rngs: random streams for the initial weights.
        **kwargs: hyperparameters of the estimator's class.

    Returns:
        A `NeuralSplineFlow`, `MaskedAutoregressiveFlow` or `MixtureDensityNetwork`.

    Raises:
        ValueError: unknown ``name``, or ``autoregressive=False`` with
            ``"nsf_autoregressive"``.
        TypeError: an unknown hyperparameter.

    Examples:
        >>> from flax import nnx
        >>> flow = make_density("nsf", 2, 3, rngs=nnx.Rngs(0), num_transforms=2)
        >>> clone = make_density("nsf", 2, 3, rngs=nnx.Rngs(1), **flow.config)
        >>> nnx.update(clone, nnx.state(flow))
    """
    if name == "nsf":
        return NeuralSplineFlow(dim, context_dim, rngs=rngs, **kwargs)
    if name == "nsf_autoregressive":
        if not kwargs.pop("autoregressive", True):
            raise ValueError(
                "autoregressive: expected True (or absent) for 'nsf_autoregressive'; got False"
            )
        return NeuralSplineFlow(dim, context_dim, rngs=rngs, autoregressive=True, **kwargs)
    if name == "maf":
        return MaskedAutoregressiveFlow(dim, context_dim, rngs=rngs, **kwargs)
    if name == "mdn":
        return MixtureDensityNetwork(dim, context_dim, rngs=rngs, **kwargs)
    raise ValueError(f"name: expected one of {list(DENSITY_NAMES)}; got {name!r}")
