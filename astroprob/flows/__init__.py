"""Conditional density estimators ``q(theta | context)`` in Flax NNX.

Every estimator is built as ``Cls(dim, context_dim, *, rngs, **hyperparameters)``
and offers ``log_prob(theta, context)``, ``sample(key, context, num_samples)``
and ``config``; the bijective flows add ``transform``, ``inverse`` and
``sample_and_log_prob``. ``theta`` is expected unconstrained and z-scored.

- `NeuralSplineFlow`: rational-quadratic spline flow, coupling (default) or
  autoregressive (``autoregressive=True``); by default a conditional affine
  layer comes first and learned LU-linear layers mix the dimensions.
- `MaskedAutoregressiveFlow`: affine MADE flow.
- `MixtureDensityNetwork`: mixture of full-covariance Gaussians.
- `make_density` builds any of them from a name in `DENSITY_NAMES`.
"""

from astroprob.flows._registry import DENSITY_NAMES, DensityEstimator, make_density
from astroprob.flows.maf import MaskedAutoregressiveFlow
from astroprob.flows.mdn import MixtureDensityNetwork
from astroprob.flows.nsf import NeuralSplineFlow

__all__ = [
    "DENSITY_NAMES",
    "DensityEstimator",
    "MaskedAutoregressiveFlow",
    "MixtureDensityNetwork",
    "NeuralSplineFlow",
    "make_density",
]
