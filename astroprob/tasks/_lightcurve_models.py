"""Parametric supernova light-curve shapes: Bazin et al. (2009) and Villar et al. (2019).

Both are evaluated in log space so that they stay finite in float32 far from the
peak (a plain ``exp(-(t - t0) / tau_fall)`` overflows long before the rise factor
underflows).

References:
    Bazin et al. 2009, A&A 499, 653, https://arxiv.org/abs/0904.1066 (eq. 1).
    Villar et al. 2019, ApJ 884, 83, https://arxiv.org/abs/1905.07422 (eq. 1).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float

__all__ = [
    "bazin_log_shape",
    "bazin_peak_offset",
    "magnitude_to_flux",
    "villar_log_shape",
]

# Arguments broadcast against each other, so each has its own (anonymous) shape.
_T = Float[ArrayLike, "..."]
_Out = Float[Array, "..."]


def magnitude_to_flux(mag: _T, zero_point: float) -> _Out:
    """Flux ``10**(-0.4 (mag - zero_point))``; ``zero_point=27.5`` gives SNANA FLUXCAL."""
    return jnp.power(10.0, -0.4 * (jnp.asarray(mag) - zero_point))


def bazin_peak_offset(tau_rise: _T, tau_fall: _T) -> _Out:
    """Time of maximum minus ``t0`` of the Bazin shape: ``tau_rise ln(tau_fall/tau_rise - 1)``.

    Setting the derivative of ``exp(-s/tau_fall) / (1 + exp(-s/tau_rise))`` to
    zero gives ``exp(-s/tau_rise) = tau_rise / (tau_fall - tau_rise)``; a maximum
    exists only for ``tau_fall > tau_rise`` (callers must ensure it).
    """
    tau_rise, tau_fall = jnp.asarray(tau_rise), jnp.asarray(tau_fall)
    return tau_rise * jnp.log(tau_fall / tau_rise - 1.0)


def bazin_log_shape(time: _T, t_peak: _T, tau_rise: _T, tau_fall: _T) -> _Out:
    """Log of the Bazin light curve normalised to 1 at its maximum ``t_peak``.

    ``F(t) = A exp(-(t - t0)/tau_fall) / (1 + exp(-(t - t0)/tau_rise))`` with
    ``t0 = t_peak - bazin_peak_offset(tau_rise, tau_fall)`` and ``A`` chosen so that
    ``F(t_peak) = 1``. All arguments broadcast; times in days.

    Returns:
        ``log F(time)``, the broadcast shape of the arguments; ``<= 0`` everywhere.
    """
    time = jnp.asarray(time)

    def log_g(s):
        return -s / tau_fall + jax.nn.log_sigmoid(s / tau_rise)

    s_peak = bazin_peak_offset(tau_rise, tau_fall)
    s = time - (t_peak - s_peak)
    return log_g(s) - log_g(s_peak)


def villar_log_shape(
    time: _T,
    t0: _T,
    tau_rise: _T,
    tau_fall: _T,
    plateau_duration: _T,
    plateau_slope: _T,
) -> _Out:
    """Log of the Villar et al. (2019) light curve with unit amplitude.

    With ``s = t - t0`` and the plateau end ``gamma = plateau_duration``::

        F(t) = (1 + beta s) / (1 + exp(-s / tau_rise))                      s < gamma
        F(t) = (1 + beta gamma) exp(-(s - gamma) / tau_fall) / (1 + exp(-s / tau_rise))
                                                                            s >= gamma

    where ``beta = plateau_slope`` (per day, ``<= 0``) and ``1 + beta gamma > 0``
    (callers must ensure both). ``t0`` is the midpoint of the rise, not the peak.

    Returns:
        ``log F(time)``, the broadcast shape of the arguments.
    """
    s = jnp.asarray(time) - t0
    rise = jax.nn.log_sigmoid(s / tau_rise)
    # Keep both branches finite: the plateau factor is only used for s < gamma.
    plateau = jnp.log1p(plateau_slope * jnp.minimum(s, plateau_duration))
    decline = jnp.log1p(plateau_slope * plateau_duration) - (s - plateau_duration) / tau_fall
    return rise + jnp.where(s < plateau_duration, plateau, decline)
