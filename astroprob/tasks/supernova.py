"""Multi-band supernova light curves: a `Task` for SN Ia, Ibc, II-P and II-L.

Each type is a parametric light curve with type-dependent priors: the Bazin et
al. (2009) form (rise and exponential decline; the default for Ia and Ibc) or
the Villar et al. (2019) form (rise, linear plateau, exponential decline; the
default for II-P and II-L). Colours are magnitude offsets between the bands'
maxima (Bazin) or amplitudes (Villar). With several bands of known wavelength
the decline time scales as a power of wavelength (``decline_index``), so redder
bands decline more slowly and, for Bazin, peak later. With a redshift range the
amplitude is an absolute magnitude placed at the Planck18 distance modulus and
all time scales are stretched by ``1 + z``.

Observations are taken on an irregular schedule (see `Survey`): per-band
epochs jittered inside fixed slots, a yearly observing season that may cut the
light curve, random missing epochs and missing bands, and per-epoch depth that
gives heteroscedastic flux errors. One light curve is a fixed-shape array
``(n_bands, max_points, 4)``; along the last axis the channels are

====  ===========  ==================================================
0     ``time``     days since the reference time ``t_ref``
1     ``flux``     flux, ``10**(-0.4 (m - zero_point))`` (FLUXCAL for 27.5)
2     ``flux_err`` 1-sigma flux error, same unit
3     ``mask``     1 for an observation, 0 for padding
====  ===========  ==================================================

Row ``b`` holds band ``bands[b]``; observations come first, in time order, and
the padded entries are all zero. Real light curves enter through
`SupernovaLightCurves.observe` (see `astroprob.io.lightcurves`).

The type is a model index M. A task built for one type infers that model's
parameters; a task built for several types has a mixture prior over one common
parameter vector (all types must then share a form), and
`SupernovaLightCurves.simulate_typed` returns the type of each draw for
classification.

References:
    Bazin et al. 2009, A&A 499, 653, https://arxiv.org/abs/0904.1066.
    Villar et al. 2019, ApJ 884, 83, https://arxiv.org/abs/1905.07422.
    Planck Collaboration 2020, A&A 641, A6 (the Planck18 cosmology).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import astropy.units as u
import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
from jax.typing import ArrayLike
from jaxtyping import Array, Float, Int, PRNGKeyArray
from numpyro.distributions import constraints

from astroprob.io.lightcurves import LightCurves
from astroprob.tasks._lightcurve_models import (
    bazin_log_shape,
    bazin_peak_offset,
    magnitude_to_flux,
    villar_log_shape,
)
from astroprob.tasks._task import Task, _check_count

__all__ = [
    "CHANNELS",
    "DEFAULT_FORM",
    "FORMS",
    "SN_TYPES",
    "SupernovaLightCurves",
    "Survey",
]

SN_TYPES = ("Ia", "Ibc", "II-P", "II-L")
"""The supernova types (model indices 0..3 in this order when all are used)."""
FORMS = ("bazin", "villar")
"""The parametric light-curve forms."""
DEFAULT_FORM = {"Ia": "bazin", "Ibc": "bazin", "II-P": "villar", "II-L": "villar"}
"""The form used for a single type when ``form`` is not given."""
CHANNELS = ("time", "flux", "flux_err", "mask")
"""Names of the channels on the last axis of one observation."""

# Accepted inputs (checked and converted to floats by the constructors).
_Number = int | float | np.integer | np.floating
_Scalar = _Number | u.Quantity
_Pair = Sequence[_Scalar] | u.Quantity

_DAYS_PER_YEAR = 365.25
_LN10_04 = 0.4 * math.log(10.0)

# Rest-frame shape priors (uniform bounds) per form and type. Bazin needs tau_fall > tau_rise;
# Villar needs plateau_slope <= 0 and 1 + plateau_slope * plateau_duration > 0 over the whole box.
_SHAPE_BOUNDS: dict[str, dict[str, dict[str, tuple[float, float]]]] = {
    "bazin": {
        "Ia": {"tau_rise": (1.5, 6.0), "tau_fall": (10.0, 45.0)},
        "Ibc": {"tau_rise": (1.0, 5.0), "tau_fall": (7.0, 30.0)},
    },
    "villar": {
        "Ia": {
            "tau_rise": (1.5, 6.0),
            "tau_fall": (10.0, 45.0),
            "plateau_duration": (0.0, 10.0),
            "plateau_slope": (-0.009, 0.0),
        },
        "Ibc": {
            "tau_rise": (1.0, 5.0),
            "tau_fall": (7.0, 30.0),
            "plateau_duration": (0.0, 10.0),
            "plateau_slope": (-0.009, 0.0),
        },
        "II-P": {
            "tau_rise": (1.0, 8.0),
            "tau_fall": (5.0, 30.0),
            "plateau_duration": (50.0, 110.0),
            "plateau_slope": (-0.005, 0.0),
        },
        "II-L": {
            "tau_rise": (1.0, 8.0),
            "tau_fall": (20.0, 80.0),
            "plateau_duration": (0.0, 30.0),
            "plateau_slope": (-0.009, -0.002),
        },
    },
}
# Chromatic decline: tau_fall in band X scales as (lambda_X / lambda_ref) ** decline_index (its
# excess over tau_rise for Bazin); positive values make redder bands decline more slowly, as
# all these types redden after maximum (for SNe Ia, tau_fall(g) / tau_fall(r) ~ 0.65).
_DECLINE_INDEX = {"Ia": (0.0, 3.0), "Ibc": (0.0, 2.5), "II-P": (0.0, 2.5), "II-L": (0.0, 2.5)}
# Peak absolute magnitudes (used with a redshift range), roughly after Richardson et al. 2014.
_ABS_MAG = {
    "Ia": (-19.8, -18.8),
    "Ibc": (-18.5, -16.5),
    "II-P": (-17.5, -15.0),
    "II-L": (-18.5, -16.0),
}
# Colour priors: m_band - m_ref ~ U(slope * (lambda_band - lambda_ref) / 1000 A -+ width).
_COLOUR_SLOPE = {"Ia": 0.15, "Ibc": -0.2, "II-P": -0.25, "II-L": -0.15}
_COLOUR_HALF_WIDTH = 0.6
# Effective wavelengths in Angstrom of common bands (SDSS/PS1/LSST ugrizy, Johnson-Cousins, 2MASS).
_WAVELENGTH = {
    "u": 3560.0, "g": 4810.0, "r": 6170.0, "i": 7520.0, "z": 8660.0, "y": 9620.0,
    "U": 3600.0, "B": 4380.0, "V": 5450.0, "R": 6410.0, "I": 7980.0,
    "J": 12350.0, "H": 16620.0, "K": 21590.0,
}  # fmt: skip
_DEFAULT_TIME_WINDOW = (-20.0, 20.0)
_DEFAULT_APPARENT_MAG = (18.0, 23.5)


def _scalar(value: Any, name: str, unit: u.UnitBase | None = None) -> float:
    """A finite float from a number or an astropy Quantity convertible to ``unit``."""
    if isinstance(value, u.Quantity):
        if unit is None:
            raise ValueError(f"{name}: expected a plain number; got a Quantity in {value.unit}")
        try:
            value = value.to_value(unit)
        except u.UnitConversionError as err:
            raise ValueError(
                f"{name}: expected a quantity in {unit} (or a plain number in {unit}); "
                f"got unit {value.unit}"
            ) from err
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise ValueError(f"{name}: expected a number; got {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name}: expected a finite number; got {value}")
    return value


def _interval(value: Any, name: str, unit: u.UnitBase | None = None) -> tuple[float, float]:
    """``(low, high)`` with ``low < high`` from a pair of numbers or Quantities."""
    if isinstance(value, u.Quantity) and not value.isscalar:
        value = tuple(value)
    if isinstance(value, str) or not isinstance(value, Sequence) or len(value) != 2:
        raise ValueError(f"{name}: expected a pair (low, high); got {value!r}")
    low, high = (_scalar(v, name, unit) for v in value)
    if not low < high:
        raise ValueError(f"{name}: expected low < high; got ({low}, {high})")
    return low, high


def _range(value: Any, name: str, unit: u.UnitBase | None = None) -> tuple[float, float]:
    """``(low, high)`` with ``low <= high`` from one number or a pair (numbers or Quantities)."""
    if isinstance(value, u.Quantity) and not value.isscalar:
        value = tuple(value)
    if isinstance(value, Sequence) and not isinstance(value, str):
        if len(value) != 2:
            raise ValueError(f"{name}: expected a number or a pair (low, high); got {value!r}")
        low, high = (_scalar(v, name, unit) for v in value)
        if low > high:
            raise ValueError(f"{name}: expected low <= high; got ({low}, {high})")
        return low, high
    value = _scalar(value, name, unit)
    return value, value


def _probability(value: Any, name: str, *, allow_one: bool) -> float:
    value = _scalar(value, name)
    if not (0.0 <= value < 1.0 or (allow_one and value == 1.0)):
        upper = "1]" if allow_one else "1)"
        raise ValueError(f"{name}: expected a probability in [0, {upper}; got {value}")
    return value


@dataclass(frozen=True)
class Survey:
    """Observing conditions: bands, cadence, seasons, depth and flux units.

    Each band has ``max_points`` slots that tile ``time_range``; an epoch falls
    at a uniform random time inside its slot (so epochs are irregular and
    differ between bands), and it is observed if it lies inside the object's
    yearly season, is not lost (probability ``1 - observe_probability``), and its
    band is not missing altogether (probability ``band_missing_probability`` per
    band). The season is a window of ``season_length`` days that repeats every
    365.25 days; its phase is uniform among those for which it overlaps
    ``time_range`` (an object never in season would not be in a catalogue).
    ``season_length`` and ``observe_probability`` may be ``(low, high)`` ranges,
    drawn uniformly for each light curve, so that training sets span campaigns
    of different length and density.
    Every epoch has its own 5-sigma limiting magnitude, uniform in
    ``limiting_mag``, which sets the sky noise; a fractional calibration error
    is added in quadrature. If a draw leaves no observation at all, the epoch
    of the reference band nearest to the light curve's time parameter is kept.

    Attributes:
        bands: band names, e.g. ``("g", "r", "i", "z")``; row order of the observation.
        max_points: slots per band (the padded length), positive.
        time_range: ``(start, end)`` of the schedule in days relative to ``t_ref``
            (numbers or astropy time Quantities).
        season_length: days per year that the object is observable, a number or
            a ``(low, high)`` range; stored as ``(low, high)``. ``>= 365.25`` means
            no seasonal gaps.
        observe_probability: probability that an in-season epoch is observed, a
            number in (0, 1] or a ``(low, high)`` range; stored as ``(low, high)``.
        band_missing_probability: probability that a band has no data at all.
        limiting_mag: ``(bright, faint)`` range of the per-epoch 5-sigma depth, mag.
        calibration_error: fractional flux error added in quadrature, ``>= 0``.
        zero_point: flux zero point, mag: ``flux = 10**(-0.4 (m - zero_point))``;
            27.5 is SNANA's FLUXCAL. Choose it so that typical fluxes are O(1-100)
            when training with NPE, which z-scores the data with one global scale.

    Raises:
        ValueError: for an empty or repeated band list, a non-positive
            ``max_points``, values with the wrong unit, or out-of-range numbers;
            the message names the argument.
    """

    bands: Sequence[str] = ("g", "r", "i", "z")
    max_points: int = 32
    time_range: _Pair = (-50.0, 150.0)
    season_length: _Scalar | _Pair = 180.0
    observe_probability: _Number | Sequence[_Number] = 0.7
    band_missing_probability: _Number = 0.05
    limiting_mag: _Pair = (22.5, 24.0)
    calibration_error: _Number = 0.01
    zero_point: _Scalar = 27.5

    def __post_init__(self) -> None:
        bands = self.bands
        if isinstance(bands, str) or not isinstance(bands, Sequence) or len(bands) == 0:
            raise ValueError(f"bands: expected a non-empty sequence of band names; got {bands!r}")
        if not all(isinstance(b, str) and b for b in bands) or len(set(bands)) != len(bands):
            raise ValueError(f"bands: expected distinct non-empty strings; got {bands!r}")
        object.__setattr__(self, "bands", tuple(bands))
        if isinstance(self.max_points, bool) or not isinstance(self.max_points, int | np.integer):
            raise ValueError(f"max_points: expected a positive integer; got {self.max_points!r}")
        if self.max_points < 1:
            raise ValueError(f"max_points: expected a positive integer; got {self.max_points}")
        object.__setattr__(self, "max_points", int(self.max_points))
        object.__setattr__(self, "time_range", _interval(self.time_range, "time_range", u.day))
        season = _range(self.season_length, "season_length", u.day)
        if season[0] <= 0:
            raise ValueError(f"season_length: expected positive numbers of days; got {season}")
        object.__setattr__(self, "season_length", season)
        observe = _range(self.observe_probability, "observe_probability")
        if not 0.0 < observe[0] <= observe[1] <= 1.0:
            raise ValueError(
                "observe_probability: expected probabilities in (0, 1]; "
                f"got {self.observe_probability}"
            )
        object.__setattr__(self, "observe_probability", observe)
        object.__setattr__(
            self,
            "band_missing_probability",
            _probability(
                self.band_missing_probability, "band_missing_probability", allow_one=False
            ),
        )
        object.__setattr__(
            self, "limiting_mag", _interval(self.limiting_mag, "limiting_mag", u.mag)
        )
        calib = _scalar(self.calibration_error, "calibration_error")
        if calib < 0:
            raise ValueError(f"calibration_error: expected a number >= 0; got {calib}")
        object.__setattr__(self, "calibration_error", calib)
        object.__setattr__(self, "zero_point", _scalar(self.zero_point, "zero_point", u.mag))

    @property
    def num_bands(self) -> int:
        """Number of bands."""
        return len(self.bands)


class _TypeMixturePrior(dist.Distribution):
    """Mixture over supernova types of uniform boxes in one common parameter space.

    Args:
        low, high: bounds of each type's box, ``(num_types, dim)``.
        probs: type probabilities, ``(num_types,)``.
    """

    arg_constraints: dict[str, Any] = {}
    pytree_data_fields = ("low", "high", "log_weights")

    def __init__(self, low: ArrayLike, high: ArrayLike, probs: ArrayLike):
        self.low = jnp.asarray(low)
        self.high = jnp.asarray(high)
        self.log_weights = jnp.log(jnp.asarray(probs))
        super().__init__(batch_shape=(), event_shape=(self.low.shape[1],))

    @constraints.dependent_property(is_discrete=False, event_dim=1)
    def support(self) -> constraints.Constraint:
        return constraints.independent(constraints.interval(self.low.min(0), self.high.max(0)), 1)

    def sample_with_type(
        self, key: PRNGKeyArray, sample_shape: tuple[int, ...] = ()
    ) -> tuple[Array, Array]:
        """Draw ``(type index, θ)`` with shapes ``sample_shape`` and ``sample_shape + (dim,)``."""
        # One uniform draw: the first number picks the type by inverse CDF, the rest place
        # the point in that type's box.
        dim = self.event_shape[0]
        unit = jax.random.uniform(key, (*sample_shape, dim + 1))
        cdf = jnp.cumsum(jnp.exp(self.log_weights))
        types = jnp.minimum(jnp.searchsorted(cdf, unit[..., 0], side="right"), len(cdf) - 1)
        low, high = self.low[types], self.high[types]
        return types, low + unit[..., 1:] * (high - low)

    def sample(self, key: PRNGKeyArray, sample_shape: tuple[int, ...] = ()) -> Array:
        return self.sample_with_type(key, sample_shape)[1]

    def joint_log_prob(self, value: Array) -> Array:
        """``log p(M, θ)`` for every type M, shape ``value.shape[:-1] + (num_types,)``."""
        value = value[..., None, :]
        inside = jnp.all((value >= self.low) & (value <= self.high), axis=-1)
        log_box = -jnp.sum(jnp.log(self.high - self.low), axis=-1)
        return jnp.where(inside, log_box + self.log_weights, -jnp.inf)

    def log_prob(self, value: Array) -> Array:
        return jax.nn.logsumexp(self.joint_log_prob(value), axis=-1)


class SupernovaLightCurves(Task):
    """Simulated multi-band supernova light curves for one type or a mixture of types.

    Parameters (θ, in this order; ``X`` stands for each non-reference band):

    - ``form="bazin"``: ``t_peak`` [d, time of maximum in the reference band],
      ``peak_mag`` [mag, reference band at maximum], ``tau_rise`` [d], ``tau_fall``
      [d, reference band], ``decline_index``, ``X-ref`` colours [mag, difference of
      the bands' peak magnitudes].
    - ``form="villar"``: ``t0`` [d, midpoint of the rise], ``amplitude_mag`` [mag,
      the Villar amplitude A in the reference band], ``tau_rise``, ``tau_fall``,
      ``decline_index``, ``plateau_duration`` [d], ``plateau_slope`` [1/d], colours.

    ``decline_index`` k sets the decline time in band X: ``tau_fall (λ_X/λ_ref)**k``
    (Villar) or ``tau_rise + (tau_fall - tau_rise) (λ_X/λ_ref)**k`` (Bazin, so that
    every band keeps a maximum). It is present only with two or more bands whose
    effective wavelengths are known (ugrizy, UBVRI, JHK).

    With ``redshift=(z_min, z_max)`` the magnitude becomes an absolute magnitude
    (``peak_abs_mag`` / ``amplitude_abs_mag``) followed by ``redshift``; the
    apparent magnitude is ``M + mu(z)`` for Planck18 (no K-correction) and
    ``tau_rise``, ``tau_fall``, ``plateau_duration`` are rest-frame values,
    observed ``(1 + z)`` times longer. All priors are uniform boxes; ``prior_bounds``
    overrides any of them, for every type.

    Args:
        sn_type: one type (``"Ia"``, ``"Ibc"``, ``"II-P"``, ``"II-L"``) or a sequence
            of distinct types for a mixture.
        survey: observing conditions; see `Survey`.
        form: ``"bazin"`` or ``"villar"``; defaults to the type's form
            (`DEFAULT_FORM`) for one type and ``"villar"`` for a mixture.
        type_probabilities: mixture weights, one per type (default: equal).
        redshift: optional ``(z_min, z_max)`` with ``0 < z_min < z_max``.
        reference_band: band of the magnitude parameter; default ``"r"`` if
            observed, else the first band.
        prior_bounds: ``{parameter name: (low, high)}`` overriding the defaults,
            e.g. ``{"t_peak": (-10, 10), "peak_mag": (15, 19.5)}``; times in days,
            magnitudes in mag (Quantities accepted).

    Raises:
        ValueError: for an unknown type or form, a form without a plateau for
            II-P/II-L, bands without a default colour prior and no override,
            prior bounds that allow an ill-defined light curve, or wrong units;
            the message names the argument.

    Examples:
        >>> import jax, astroprob as ap
        >>> task = ap.tasks.SupernovaLightCurves("Ia")
        >>> task.parameter_names[:4]
        ('t_peak', 'peak_mag', 'tau_rise', 'tau_fall')
        >>> theta, x = task.simulate(jax.random.key(0), 3)
        >>> x.shape
        (3, 4, 32, 4)
    """

    def __init__(
        self,
        sn_type: str | Sequence[str] = "Ia",
        *,
        survey: Survey | None = None,
        form: str | None = None,
        type_probabilities: Sequence[_Number] | None = None,
        redshift: _Pair | None = None,
        reference_band: str | None = None,
        prior_bounds: Mapping[str, _Pair] | None = None,
    ):
        types = (sn_type,) if isinstance(sn_type, str) else tuple(sn_type)
        if not types or any(t not in SN_TYPES for t in types) or len(set(types)) != len(types):
            raise ValueError(
                f"sn_type: expected one of {SN_TYPES} or a sequence of distinct ones; "
                f"got {sn_type!r}"
            )
        survey = Survey() if survey is None else survey
        if not isinstance(survey, Survey):
            raise TypeError(f"survey: expected a Survey; got {type(survey).__name__}")
        if form is None:
            form = DEFAULT_FORM[types[0]] if len(types) == 1 else "villar"
        if form not in FORMS:
            raise ValueError(f"form: expected one of {FORMS}; got {form!r}")
        if form == "bazin" and any(t.startswith("II") for t in types):
            raise ValueError(
                "form: 'bazin' has no plateau; the types II-P and II-L need form='villar'"
            )
        probs = _type_probabilities(type_probabilities, len(types))
        z_range = None if redshift is None else _interval(redshift, "redshift")
        if z_range is not None and z_range[0] <= 0:
            raise ValueError(f"redshift: expected 0 < z_min < z_max; got {z_range}")
        if reference_band is None:
            reference_band = "r" if "r" in survey.bands else survey.bands[0]
        if reference_band not in survey.bands:
            raise ValueError(
                f"reference_band: expected one of the survey bands {survey.bands}; "
                f"got {reference_band!r}"
            )
        chromatic = len(survey.bands) > 1 and all(b in _WAVELENGTH for b in survey.bands)
        names, units = _parameter_names(
            form,
            survey.bands,
            reference_band,
            with_redshift=z_range is not None,
            chromatic=chromatic,
        )
        overrides = _check_overrides(prior_bounds, names, units)
        low, high = _type_boxes(types, form, names, survey.bands, reference_band, z_range)
        for j, name in enumerate(names):
            if name in overrides:
                low[:, j], high[:, j] = overrides[name]
        _check_shape_validity(form, names, low, high)

        if len(types) == 1:
            prior = dist.Uniform(jnp.asarray(low[0]), jnp.asarray(high[0])).to_event(1)
        else:
            prior = _TypeMixturePrior(low, high, probs)
        config = _SimulatorConfig(
            form=form,
            names=names,
            survey=survey,
            reference_index=survey.bands.index(reference_band),
            z_range=z_range,
            wavelength_ratio=(
                tuple(_WAVELENGTH[b] / _WAVELENGTH[reference_band] for b in survey.bands)
                if chromatic
                else None
            ),
        )
        label = "+".join(types)
        super().__init__(
            name=f"supernova_{label}",
            prior=prior,
            simulator=functools.partial(_simulate_one, config),
            parameter_names=names,
            observation_shape=(survey.num_bands, survey.max_points, len(CHANNELS)),
            parameter_units=units,
            description=(
                f"{label} supernova light curves ({form} form) in {''.join(survey.bands)}, "
                f"{survey.max_points} points per band"
            ),
            metadata={
                "types": types,
                "type_probabilities": tuple(float(p) for p in probs),
                "form": form,
                "reference_band": reference_band,
                "channels": CHANNELS,
                "zero_point": survey.zero_point,
                "redshift": z_range,
            },
        )
        object.__setattr__(self, "types", types)
        object.__setattr__(self, "survey", survey)
        object.__setattr__(self, "form", form)
        object.__setattr__(self, "reference_band", reference_band)
        object.__setattr__(self, "_config", config)
        object.__setattr__(self, "_low", low)
        object.__setattr__(self, "_high", high)

    # ----------------------------------------------------------------- properties
    @property
    def bands(self) -> tuple[str, ...]:
        """Band names, in row order of an observation."""
        return self.survey.bands

    @property
    def max_points(self) -> int:
        """Padded number of points per band."""
        return self.survey.max_points

    @property
    def type_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """Prior box of each type: ``(low, high)``, each ``(num_types, dim)``."""
        return self._low.copy(), self._high.copy()

    def __repr__(self) -> str:
        return (
            f"SupernovaLightCurves(types={self.types}, form={self.form!r}, "
            f"bands={self.bands}, max_points={self.max_points})"
        )

    # ----------------------------------------------------------------- simulation
    def check_theta(self, theta: ArrayLike) -> np.ndarray:
        """Validate parameters ``(n, dim)`` in numpy; returns them as float32.

        Raises:
            ValueError: for a wrong shape, NaN or inf, or rows outside the prior's
                support (the message names the first offending parameter).
        """
        theta = np.asarray(theta, dtype=np.float32)
        if theta.ndim != 2 or theta.shape[1] != self.dim:
            raise ValueError(f"theta: expected shape (n, {self.dim}); got {theta.shape}")
        bad = ~np.isfinite(theta)
        if bad.any():
            row, col = np.argwhere(bad)[0]
            raise ValueError(
                f"theta: expected finite values; row {row} has {self.parameter_names[col]}="
                f"{theta[row, col]}"
            )
        low, high = self._low.min(0), self._high.max(0)
        outside = (theta < low) | (theta > high)
        if outside.any():
            row, col = np.argwhere(outside)[0]
            raise ValueError(
                f"theta: expected every row inside the prior's support; row {row} has "
                f"{self.parameter_names[col]}={theta[row, col]} outside "
                f"[{low[col]}, {high[col]}]"
            )
        return theta

    def run_simulator(self, key: PRNGKeyArray, theta: ArrayLike) -> Array:
        """Simulate one light curve per row of ``theta`` ``(n, dim)``.

        Returns:
            ``(n, n_bands, max_points, 4)`` observations; see the module docstring.

        Raises:
            ValueError: if ``theta`` has the wrong shape, NaN, or values outside
                the prior's support.
        """
        return super().run_simulator(key, self.check_theta(theta))

    def simulate_typed(
        self, key: PRNGKeyArray, n: int
    ) -> tuple[Int[Array, " n"], Float[Array, "n dim"], Float[Array, "n bands points 4"]]:
        """Draw types, parameters and light curves: ``(type index (n,), θ (n, dim), x)``.

        The type index refers to `types`; for a single type it is always 0.
        """
        n = _check_count(n, "n")
        key_prior, key_sim = jax.random.split(key)
        types, theta = self._sample_typed(key_prior, n)
        return types, theta, self._simulate_batch(key_sim, theta)

    @functools.cached_property
    def _sample_typed(self):
        prior = self.prior

        def sample(key, n):
            if isinstance(prior, _TypeMixturePrior):
                return prior.sample_with_type(key, (n,))
            return jnp.zeros(n, dtype=jnp.int32), prior.sample(key, (n,))

        return jax.jit(sample, static_argnums=1)

    def type_log_prob(self, theta: ArrayLike) -> Float[Array, "n types"]:
        """``log p(M, θ)`` for each row of ``theta`` ``(n, dim)`` and each type M.

        ``softmax`` over the last axis gives ``p(M | θ)``; ``-inf`` where θ lies
        outside type M's prior box.
        """
        theta = jnp.asarray(self.check_theta(theta))
        if isinstance(self.prior, _TypeMixturePrior):
            return self.prior.joint_log_prob(theta)
        return self.prior.log_prob(theta)[:, None]

    def light_curve(self, theta: ArrayLike, time: ArrayLike) -> Float[Array, "n bands n_time"]:
        """Noise-free model flux of each row of ``theta`` ``(n, dim)``.

        Args:
            theta: parameters inside the prior's support.
            time: days relative to ``t_ref`` (numbers or a time Quantity):
                ``(n_time,)`` for all bands, ``(n_bands, n_time)`` per band, or
                ``(n, n_bands, n_time)`` per row of ``theta``.

        Returns:
            Flux in the survey's flux unit, ``(n, n_bands, n_time)``.

        Raises:
            ValueError: for invalid ``theta`` (see `check_theta`), a time that is
                not in days, not finite, or of the wrong shape.
        """
        theta = jnp.asarray(self.check_theta(theta))
        if isinstance(time, u.Quantity):
            try:
                time = time.to_value(u.day)
            except u.UnitConversionError as err:
                raise ValueError(f"time: expected days; got unit {time.unit}") from err
        time = np.asarray(time, dtype=np.float32)
        n, num_bands = theta.shape[0], self.survey.num_bands
        if time.ndim in (1, 2) and time.shape[:-1] in ((), (num_bands,)):
            time = np.broadcast_to(time, (n, num_bands, time.shape[-1]))
        if time.ndim != 3 or time.shape[:2] != (n, num_bands) or not np.all(np.isfinite(time)):
            raise ValueError(
                f"time: expected finite days of shape (n_time,), ({num_bands}, n_time) or "
                f"({n}, {num_bands}, n_time); got shape {time.shape}"
            )
        return self._model_flux(theta, jnp.asarray(time))

    @functools.cached_property
    def _model_flux(self):
        config = self._config
        return jax.jit(jax.vmap(lambda th, t: _model_flux(config, th, t)))

    # ----------------------------------------------------------------- real data
    def observe(
        self,
        lightcurves: LightCurves,
        t_ref: ArrayLike | str = "brightest",
        *,
        drop_outside: bool = False,
    ) -> np.ndarray:
        """Encode real light curves as observations of this task.

        Args:
            lightcurves: loaded light curves (FLUXCAL, MJD) with all of `bands`.
            t_ref: reference MJD per object ``(n,)`` or one number, or
                ``"brightest"`` for the epoch of highest flux in the task's bands.
            drop_outside: drop points outside ``survey.time_range`` (relative to
                ``t_ref``); if False such points raise.

        Returns:
            float32 array ``(n, n_bands, max_points, 4)``, fluxes converted to the
            survey's zero point.

        Raises:
            ValueError: if a band is missing, a band has more points than
                ``max_points``, or points fall outside the time range while
                ``drop_outside`` is False.
        """
        if not isinstance(lightcurves, LightCurves):
            raise TypeError(
                f"lightcurves: expected astroprob.io.lightcurves.LightCurves; "
                f"got {type(lightcurves).__name__}"
            )
        if isinstance(t_ref, str):
            if t_ref != "brightest":
                raise ValueError(f"t_ref: expected MJD values or 'brightest'; got {t_ref!r}")
            t_ref = lightcurves.brightest_time(self.bands)
        return lightcurves.to_observation(
            self.bands,
            self.max_points,
            t_ref,
            zero_point=self.survey.zero_point,
            time_window=self.survey.time_range,
            drop_outside=drop_outside,
        )


# --------------------------------------------------------------------- the pure core
@dataclass(frozen=True, eq=False)
class _SimulatorConfig:
    form: str
    names: tuple[str, ...]
    survey: Survey
    reference_index: int
    z_range: tuple[float, float] | None
    wavelength_ratio: tuple[float, ...] | None

    @functools.cached_property
    def distmod_table(self) -> tuple[np.ndarray, np.ndarray]:
        """Planck18 distance modulus on a grid over the redshift range."""
        from astropy.cosmology import Planck18

        z = np.linspace(*self.z_range, 512)
        return z.astype(np.float32), Planck18.distmod(z).to_value(u.mag).astype(np.float32)


def _unpack(config: _SimulatorConfig, theta: Array) -> dict[str, Array]:
    values = {name: theta[i] for i, name in enumerate(config.names)}
    bands = config.survey.bands
    ref = bands[config.reference_index]
    colours = [jnp.zeros((), theta.dtype) if b == ref else values[f"{b}-{ref}"] for b in bands]
    values["colours"] = jnp.stack(colours)
    stretch, distmod = jnp.ones((), theta.dtype), jnp.zeros((), theta.dtype)
    if config.z_range is not None:
        z_grid, mu_grid = config.distmod_table
        stretch = 1.0 + values["redshift"]
        distmod = jnp.interp(values["redshift"], z_grid, mu_grid)
    values["stretch"], values["distmod"] = stretch, distmod
    return values


def _time_parameter(config: _SimulatorConfig, values: dict[str, Array]) -> Array:
    return values["t_peak" if config.form == "bazin" else "t0"]


def _model_flux(config: _SimulatorConfig, theta: Array, time: Array) -> Array:
    """Noise-free flux of one parameter vector at ``time (n_bands, n_time)``; same shape."""
    v = _unpack(config, theta)
    stretch = v["stretch"]
    tau_rise, tau_fall = v["tau_rise"] * stretch, v["tau_fall"] * stretch
    # Chromatic decline: (lambda_band / lambda_ref) ** decline_index, per band.
    chroma = jnp.ones(config.survey.num_bands, theta.dtype)
    if config.wavelength_ratio is not None:
        chroma = jnp.asarray(config.wavelength_ratio, theta.dtype) ** v["decline_index"]
    if config.form == "bazin":
        mag = v["peak_abs_mag"] + v["distmod"] if config.z_range else v["peak_mag"]
        # The excess of tau_fall over tau_rise scales, so every band keeps a maximum.
        tau_fall_band = tau_rise + (tau_fall - tau_rise) * chroma
        t0 = v["t_peak"] - bazin_peak_offset(tau_rise, tau_fall)
        t_peak_band = t0 + bazin_peak_offset(tau_rise, tau_fall_band)
        log_shape = bazin_log_shape(time, t_peak_band[:, None], tau_rise, tau_fall_band[:, None])
    else:
        mag = v["amplitude_abs_mag"] + v["distmod"] if config.z_range else v["amplitude_mag"]
        log_shape = villar_log_shape(
            time,
            v["t0"],
            tau_rise,
            (tau_fall * chroma)[:, None],
            v["plateau_duration"] * stretch,
            v["plateau_slope"] / stretch,
        )
    log_amplitude = jnp.log(magnitude_to_flux(mag, config.survey.zero_point))
    return jnp.exp(log_amplitude - _LN10_04 * v["colours"][:, None] + log_shape)


def _simulate_one(config: _SimulatorConfig, key: PRNGKeyArray, theta: Array) -> Array:
    """One observation ``(n_bands, max_points, 4)`` for one parameter vector."""
    survey = config.survey
    n_bands, n_points = survey.num_bands, survey.max_points
    start, end = survey.time_range
    width = (end - start) / n_points
    # One uniform draw for everything (a single threefry call compiles several times faster
    # than one per quantity); normal noise by the inverse CDF, so uniforms avoid exact 0.
    size = n_bands * n_points
    uniform = jax.random.uniform(
        key, (4 * size + n_bands + 3,), minval=jnp.finfo(jnp.float32).tiny, maxval=1.0
    )
    jitter, keep_u, depth_u, noise_u = uniform[: 4 * size].reshape(4, n_bands, n_points)
    band_u = uniform[4 * size : 4 * size + n_bands]
    season_u, phase_u, observe_u = uniform[-3], uniform[-2], uniform[-1]

    slots = jnp.arange(n_points, dtype=theta.dtype)
    time = start + (slots + jitter) * width
    season_length = _between(survey.season_length, season_u)
    # Season start, uniform among the phases whose season overlaps the time range.
    season_start = start - season_length + phase_u * (end - start + season_length)
    in_season = jnp.mod(time - season_start, _DAYS_PER_YEAR) < season_length
    kept = keep_u < _between(survey.observe_probability, observe_u)
    band_present = (band_u >= survey.band_missing_probability)[:, None]
    mask = in_season & kept & band_present
    # Never return an empty light curve: fall back to the reference-band epoch nearest t_peak/t0.
    t_param = _time_parameter(config, _unpack(config, theta))
    nearest = jnp.argmin(jnp.abs(time[config.reference_index] - t_param))
    fallback = jnp.zeros((n_bands, n_points), bool).at[config.reference_index, nearest].set(True)
    mask = jnp.where(mask.any(), mask, fallback)

    flux_true = _model_flux(config, theta, time)
    low_depth, high_depth = survey.limiting_mag
    depth = low_depth + depth_u * (high_depth - low_depth)
    sky = magnitude_to_flux(depth, survey.zero_point) / 5.0
    flux_err = jnp.sqrt(sky**2 + (survey.calibration_error * flux_true) ** 2)
    flux = flux_true + flux_err * jax.scipy.special.ndtri(noise_u)

    # Observed epochs first, in time order; padding is all zeros.
    order = jnp.argsort(jnp.where(mask, time, end + 1.0), axis=1)
    channels = jnp.stack([time, flux, flux_err, mask.astype(theta.dtype)], axis=-1)
    channels = jnp.take_along_axis(channels, order[..., None], axis=1)
    mask_sorted = jnp.take_along_axis(mask, order, axis=1)
    return jnp.where(mask_sorted[..., None], channels, 0.0)


def _between(bounds: tuple[float, float], unit: Array) -> Array:
    return bounds[0] + unit * (bounds[1] - bounds[0])


# --------------------------------------------------------------------- prior helpers
def _type_probabilities(value: Sequence[_Number] | None, num_types: int) -> np.ndarray:
    if value is None:
        return np.full(num_types, 1.0 / num_types)
    probs = np.asarray(value, dtype=np.float64)
    if (
        probs.shape != (num_types,)
        or not np.all(np.isfinite(probs))
        or np.any(probs <= 0)
        or not np.isclose(probs.sum(), 1.0)
    ):
        raise ValueError(
            f"type_probabilities: expected {num_types} positive numbers summing to 1; got {value!r}"
        )
    return probs


def _parameter_names(
    form: str,
    bands: tuple[str, ...],
    reference_band: str,
    *,
    with_redshift: bool,
    chromatic: bool,
) -> tuple[tuple[str, ...], tuple[u.UnitBase | None, ...]]:
    time_name, mag_name = ("t_peak", "peak_mag") if form == "bazin" else ("t0", "amplitude_mag")
    names: list[str] = [time_name]
    units: list[u.UnitBase | None] = [u.day]
    if with_redshift:
        names += [mag_name.replace("_mag", "_abs_mag"), "redshift"]
        units += [u.mag, None]
    else:
        names.append(mag_name)
        units.append(u.mag)
    names += ["tau_rise", "tau_fall"]
    units += [u.day, u.day]
    if chromatic:
        names.append("decline_index")
        units.append(None)
    if form == "villar":
        names += ["plateau_duration", "plateau_slope"]
        units += [u.day, u.day**-1]
    for band in bands:
        if band != reference_band:
            names.append(f"{band}-{reference_band}")
            units.append(u.mag)
    return tuple(names), tuple(units)


def _check_overrides(
    prior_bounds: Mapping[str, _Pair] | None,
    names: tuple[str, ...],
    units: tuple[u.UnitBase | None, ...],
) -> dict[str, tuple[float, float]]:
    if prior_bounds is None:
        return {}
    if not isinstance(prior_bounds, Mapping):
        raise ValueError(
            f"prior_bounds: expected a mapping of parameter name to (low, high); "
            f"got {type(prior_bounds).__name__}"
        )
    out = {}
    for name, bounds in prior_bounds.items():
        if name not in names:
            raise ValueError(f"prior_bounds: unknown parameter {name!r}; expected one of {names}")
        unit = units[names.index(name)]
        out[name] = _interval(bounds, f"prior_bounds[{name!r}]", unit)
    return out


def _type_boxes(
    types: tuple[str, ...],
    form: str,
    names: tuple[str, ...],
    bands: tuple[str, ...],
    reference_band: str,
    z_range: tuple[float, float] | None,
) -> tuple[np.ndarray, np.ndarray]:
    low = np.zeros((len(types), len(names)))
    high = np.zeros((len(types), len(names)))
    for k, sn_type in enumerate(types):
        bounds: dict[str, tuple[float, float]] = dict(_SHAPE_BOUNDS[form][sn_type])
        bounds["decline_index"] = _DECLINE_INDEX[sn_type]
        bounds[names[0]] = _DEFAULT_TIME_WINDOW
        if z_range is None:
            bounds[names[1]] = _DEFAULT_APPARENT_MAG
        else:
            bounds[names[1]] = _ABS_MAG[sn_type]
            bounds["redshift"] = z_range
        for band in bands:
            if band == reference_band:
                continue
            name = f"{band}-{reference_band}"
            if band in _WAVELENGTH and reference_band in _WAVELENGTH:
                centre = _COLOUR_SLOPE[sn_type] * (_WAVELENGTH[band] - _WAVELENGTH[reference_band])
                centre /= 1000.0
                bounds[name] = (centre - _COLOUR_HALF_WIDTH, centre + _COLOUR_HALF_WIDTH)
            else:
                bounds[name] = (math.nan, math.nan)
        for j, name in enumerate(names):
            low[k, j], high[k, j] = bounds[name]
    return low, high


def _check_shape_validity(
    form: str, names: tuple[str, ...], low: np.ndarray, high: np.ndarray
) -> None:
    missing = [n for j, n in enumerate(names) if np.isnan(low[:, j]).any()]
    if missing:
        raise ValueError(
            f"prior_bounds: no default colour prior for {missing} (unknown band wavelength); "
            "pass prior_bounds={name: (low, high)} for each"
        )
    # The support of the prior is the union box; every point in it must give a valid curve.
    lo, hi = low.min(0), high.max(0)
    col = {n: j for j, n in enumerate(names)}
    if lo[col["tau_rise"]] <= 0:
        raise ValueError(f"prior_bounds: expected tau_rise > 0; got low {lo[col['tau_rise']]}")
    if form == "bazin" and lo[col["tau_fall"]] <= hi[col["tau_rise"]]:
        raise ValueError(
            "prior_bounds: the Bazin form has a maximum only for tau_fall > tau_rise; expected "
            f"tau_fall low ({lo[col['tau_fall']]}) > tau_rise high ({hi[col['tau_rise']]})"
        )
    if form == "villar":
        if lo[col["tau_fall"]] <= 0 or lo[col["plateau_duration"]] < 0:
            raise ValueError("prior_bounds: expected tau_fall > 0 and plateau_duration >= 0")
        slope_low, slope_high = lo[col["plateau_slope"]], hi[col["plateau_slope"]]
        if slope_high > 0 or 1.0 + slope_low * hi[col["plateau_duration"]] <= 0:
            raise ValueError(
                "prior_bounds: the Villar form needs plateau_slope <= 0 and "
                "1 + plateau_slope * plateau_duration > 0 everywhere in the prior; got "
                f"plateau_slope in [{slope_low}, {slope_high}], plateau_duration up to "
                f"{hi[col['plateau_duration']]}"
            )
