"""Input checks shared by the diagnostics: shapes, dtypes, finiteness, options.

Arrays are checked in numpy, before they reach JAX, so that a NaN is reported
with a clear message rather than tripping ``jax_debug_nans`` on conversion.
"""

from __future__ import annotations

import numbers
import warnings

import numpy as np
from jax.typing import ArrayLike

MIN_RELIABLE = 100
"""Fewer simulations or posterior samples than this give weak tests (a warning says so)."""


def as_real_array(name: str, value: ArrayLike) -> np.ndarray:
    """``value`` as a numpy array of a real dtype, or a TypeError naming ``name``."""
    array = np.asarray(value)
    if not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)):
        raise TypeError(f"{name}: expected a real-valued numeric array; got dtype {array.dtype}")
    return array


def check_finite(name: str, array: np.ndarray, what: str = "entries") -> None:
    """Raise a ValueError naming ``name`` if ``array`` holds NaN or inf."""
    finite = np.isfinite(array)
    if not finite.all():
        raise ValueError(
            f"{name}: expected finite values; got NaN or inf in {int((~finite).sum())} {what}"
        )


def check_samples_theta(
    samples: ArrayLike, theta: ArrayLike, *, min_samples: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """Validate the common pair ``samples (n_sims, n_samples, dim)``, ``theta (n_sims, dim)``.

    Returns:
        Both as float32 numpy arrays.

    Raises:
        TypeError: if either is not numeric.
        ValueError: on wrong shapes, too few samples, or non-finite values.
    """
    samples = as_real_array("samples", samples)
    theta = as_real_array("theta", theta)
    if samples.ndim != 3 or min(samples.shape) < 1:
        raise ValueError(
            f"samples: expected shape (n_sims, n_samples, dim) with every size >= 1; "
            f"got {samples.shape}"
        )
    n_sims, n_samples, dim = samples.shape
    if theta.shape != (n_sims, dim):
        raise ValueError(
            f"theta: expected shape (n_sims, dim) = ({n_sims}, {dim}) to match samples "
            f"{samples.shape}; got {theta.shape}"
        )
    if n_samples < min_samples:
        raise ValueError(
            f"samples: expected at least {min_samples} posterior samples per simulation; "
            f"got {n_samples}"
        )
    check_finite("samples", samples)
    check_finite("theta", theta)
    return samples.astype(np.float32, copy=False), theta.astype(np.float32, copy=False)


def warn_if_few(n_sims: int, n_samples: int, *, diagnostic: str) -> None:
    """Warn (``stacklevel=3``: the caller's caller) when the test will be weak."""
    if n_sims < MIN_RELIABLE or n_samples < MIN_RELIABLE:
        warnings.warn(
            f"{diagnostic}: {n_sims} simulations and {n_samples} posterior samples each; "
            f"use at least {MIN_RELIABLE} of both for a reliable test",
            UserWarning,
            stacklevel=3,
        )


def check_int(name: str, value: object, *, minimum: int | None = None) -> int:
    """``value`` as an int, or TypeError / ValueError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name}: expected an integer; got {value!r}")
    value = int(value)
    if minimum is not None and value < minimum:
        raise ValueError(f"{name}: expected an integer >= {minimum}; got {value}")
    return value


def check_alpha(alpha: object) -> float:
    """A significance level in (0, 1)."""
    if isinstance(alpha, bool) or not isinstance(alpha, numbers.Real):
        raise TypeError(f"alpha: expected a number in (0, 1); got {alpha!r}")
    alpha = float(alpha)
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha: expected a number in (0, 1); got {alpha}")
    return alpha


def check_statistic_values(
    name: str, values: ArrayLike, expected_shape: tuple[int, ...]
) -> np.ndarray:
    """Values returned by a user function: the expected shape, finite, as float64."""
    array = as_real_array(name, values)
    if array.shape != expected_shape:
        raise ValueError(f"{name}: expected shape {expected_shape}; got {array.shape}")
    return array.astype(np.float64, copy=False)
