"""Posterior z-scores and posterior contraction, per parameter and simulation.

The z-score ``z = (posterior mean - true value) / posterior std`` says how many
posterior standard deviations the truth lies from the posterior mean; the
contraction ``1 - posterior variance / prior variance`` says how much the data
taught (0: nothing, 1: everything). Plotted against each other they separate
the healthy case (high contraction, small ``|z|``) from overfitting (high
contraction, large ``|z|``) and from prior domination (low contraction).

For an exact posterior ``E[z] = 0`` and ``E[z^2] = 1`` whatever its shape, so
the mean and mean square of ``z`` over simulations give approximate tests of
bias and dispersion (normal approximation; the rank-based `sbc` is the exact
test). With ``L`` samples the expected ``z^2`` is corrected for the sampling
error of the mean and standard deviation, ``(1 + 1/L)(L - 1)/(L - 3)``, its
value for a Gaussian posterior.

References:
    M. Betancourt, "Calibrating Model-Based Inferences and Decisions" (2018),
    https://arxiv.org/abs/1803.08393.

    D. J. Schad, M. Betancourt and S. Vasishth, "Toward a principled Bayesian
    workflow in cognitive science", Psychological Methods 26, 103 (2021),
    https://arxiv.org/abs/1904.12765.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike
from jaxtyping import Array
from scipy import stats

from astroprob.diagnostics import _checks
from astroprob.diagnostics._uniformity import classify
from astroprob.diagnostics.sbc import parameter_names

__all__ = ["ContractionResult", "z_score_contraction"]


@dataclass(frozen=True, eq=False)
class ContractionResult:
    """Posterior means, standard deviations, z-scores and contractions.

    Attributes:
        names: (dim,) parameter names.
        theta: (n_sims, dim) the true values.
        posterior_mean: (n_sims, dim).
        posterior_std: (n_sims, dim).
        z: (n_sims, dim) z-scores ``(mean - theta) / std``.
        contraction: (n_sims, dim) ``1 - std**2 / prior_variance``.
        prior_variance: (dim,) prior variance used for the contraction.
        mean_z: (dim,) mean z-score (0 for a calibrated posterior).
        rms_z: (dim,) root mean square z-score (about 1 when calibrated).
        mean_contraction: (dim,) mean contraction.
        bias_t: (dim,) ``mean_z`` in standard errors.
        dispersion_t: (dim,) mean ``z**2`` against its expected value, in standard errors.
        p_value: (dim,) two-sided p-value of the larger of the two (normal approximation).
        alpha: family-wise level; each parameter is tested at ``alpha / dim``.
        verdict: (dim,) verdict per parameter.
    """

    names: tuple[str, ...]
    theta: np.ndarray
    posterior_mean: np.ndarray
    posterior_std: np.ndarray
    z: np.ndarray
    contraction: np.ndarray
    prior_variance: np.ndarray
    mean_z: np.ndarray
    rms_z: np.ndarray
    mean_contraction: np.ndarray
    bias_t: np.ndarray
    dispersion_t: np.ndarray
    p_value: np.ndarray
    alpha: float
    verdict: tuple[str, ...]

    def to_dict(self) -> dict:
        """JSON-ready per-parameter summaries."""
        return {
            "diagnostic": "z_score_contraction",
            "alpha": self.alpha,
            "num_simulations": int(self.z.shape[0]),
            "verdict": dict(zip(self.names, self.verdict, strict=True)),
            "parameters": {
                name: {
                    "mean_z": float(self.mean_z[j]),
                    "rms_z": float(self.rms_z[j]),
                    "mean_contraction": float(self.mean_contraction[j]),
                    "prior_variance": float(self.prior_variance[j]),
                    "bias_t": float(self.bias_t[j]),
                    "dispersion_t": float(self.dispersion_t[j]),
                    "p_value": float(self.p_value[j]),
                    "fraction_abs_z_above_3": float(np.mean(np.abs(self.z[:, j]) > 3)),
                }
                for j, name in enumerate(self.names)
            },
        }


@jax.jit
def _moments(samples: Array) -> tuple[Array, Array]:
    mean = samples.mean(axis=1)
    std = samples.std(axis=1, ddof=1)
    return mean, std


def z_score_contraction(
    samples: ArrayLike,
    theta: ArrayLike,
    *,
    prior_variance: ArrayLike | None = None,
    names: Sequence[str] | None = None,
    alpha: float = 0.05,
) -> ContractionResult:
    """Posterior z-scores and contraction for each simulation and parameter.

    Args:
        samples: (n_sims, n_samples, dim) posterior draws, ``n_samples >= 4``.
        theta: (n_sims, dim) the true parameters, drawn from the prior.
        prior_variance: (dim,) prior variance per parameter; default: the sample
            variance of ``theta`` (which are prior draws).
        names: parameter names (default ``theta_1 ... theta_<dim>``).
        alpha: family-wise level of the per-parameter verdicts.

    Returns:
        A `ContractionResult`.

    Raises:
        ValueError: on mismatched shapes, non-finite input, fewer than 4
            samples, or a non-positive prior variance.

    Examples:
        >>> import jax
        >>> k1, k2 = jax.random.split(jax.random.key(0))
        >>> theta = jax.random.normal(k1, (500, 1))
        >>> result = z_score_contraction(jax.random.normal(k2, (500, 100, 1)), theta)
        >>> float(abs(result.mean_contraction[0])) < 0.1  # the prior as posterior: no contraction
        True
    """
    samples, theta = _checks.check_samples_theta(samples, theta, min_samples=4)
    alpha = _checks.check_alpha(alpha)
    n_sims, n_samples, dim = samples.shape
    names = parameter_names(names, dim)
    if prior_variance is None:
        if n_sims < 2:
            raise ValueError("theta: need at least 2 simulations to estimate the prior variance")
        prior_variance = theta.astype(np.float64).var(axis=0, ddof=1)
    else:
        prior_variance = _checks.as_real_array("prior_variance", prior_variance)
        prior_variance = np.broadcast_to(prior_variance.astype(np.float64), (dim,)).copy()
    if not np.all(np.isfinite(prior_variance) & (prior_variance > 0)):
        raise ValueError(
            f"prior_variance: expected finite positive values; got {prior_variance.tolist()}"
        )
    mean, std = (np.asarray(a, np.float64) for a in _moments(jnp.asarray(samples)))
    if np.any(std <= 0):
        raise ValueError(
            "samples: expected a positive spread of the posterior samples in every "
            f"simulation and parameter; {int((std <= 0).sum())} have zero standard deviation"
        )
    z = (mean - theta) / std
    contraction = 1.0 - std**2 / prior_variance
    expected_z2 = (1.0 + 1.0 / n_samples) * (n_samples - 1.0) / max(n_samples - 3.0, 1.0)
    z2 = z**2
    mean_z = z.mean(axis=0)
    bias_t = mean_z / (z.std(axis=0, ddof=1) / np.sqrt(n_sims))
    dispersion_t = (z2.mean(axis=0) - expected_z2) / (z2.std(axis=0, ddof=1) / np.sqrt(n_sims))
    p_value = 2.0 * stats.norm.sf(np.maximum(np.abs(bias_t), np.abs(dispersion_t)))
    p_value = np.minimum(1.0, 2.0 * p_value)  # two statistics per parameter
    rejected = p_value <= alpha / dim
    verdict = tuple(
        classify(rejected=bool(r), bias_z=float(b), dispersion_z=float(d))
        for r, b, d in zip(rejected, bias_t, dispersion_t, strict=True)
    )
    return ContractionResult(
        names=names,
        theta=theta.astype(np.float64),
        posterior_mean=mean,
        posterior_std=std,
        z=z,
        contraction=contraction,
        prior_variance=prior_variance,
        mean_z=mean_z,
        rms_z=np.sqrt(z2.mean(axis=0)),
        mean_contraction=contraction.mean(axis=0),
        bias_t=bias_t,
        dispersion_t=dispersion_t,
        p_value=p_value,
        alpha=alpha,
        verdict=verdict,
    )
