"""Galaxy images: `SersicGalaxy`, a PSF-convolved Sérsic profile on a pixel stamp with noise.

A galaxy is a Sérsic profile ``I(r) ∝ exp(-b_n (r / r_e)^(1/n))``, sheared to
an ellipse, shifted, convolved with a PSF, integrated over square pixels, and
observed with sky background, Poisson noise and Gaussian read noise.

Parameters ``θ``, in the order of `PARAMETER_NAMES`:

============================  ========  ==================================================
name                          unit      meaning
============================  ========  ==================================================
``flux``                      ct        total counts of the galaxy (all of the profile)
``half_light_radius``         arcsec    circularised, ``sqrt(a b)`` of the half-light ellipse
``sersic_n``                  --        Sérsic index, ``0.5 <= n <= 6``
``e1``, ``e2``                --        ellipticity ``|e| = (1 - q)/(1 + q)``, ``e1 + i e2 =
                                        |e| exp(2iβ)``, ``β`` the position angle of the
                                        major axis from ``+x`` towards ``+y``
``x0``, ``y0``                arcsec    centre of the profile relative to the stamp centre
============================  ========  ==================================================

``(e1, e2)`` is GalSim's reduced shear ``(g1, g2)``: the ellipse has axis ratio
``q = (1 - |e|)/(1 + |e|)`` and the same area as the circle of radius ``r_e``.

Image convention (the same as `astroprob.io.read_fits_image`): an image is an
array ``(height, width)``; row ``i`` lies at ``y = (i - (height - 1)/2) Δ`` and
column ``j`` at ``x = (j - (width - 1)/2) Δ``, ``Δ`` the pixel scale. This is
the FITS convention read by astropy (``NAXIS1`` = x = columns), shown
unflipped by ``imshow(image, origin="lower")``, in which ``+x`` points right,
``+y`` up and the position angle runs counter-clockwise. Rotating a centred
galaxy by +90° (``β → β + 90°``, i.e. ``(e1, e2) → (-e1, -e2)``) turns the image
by +90° counter-clockwise in that display, which is
``numpy.rot90(image, k=-1)`` (numpy's own ``rot90`` turns counter-clockwise in
the matrix display, row 0 at the top).

Rendering is in Fourier space, with exact pixel integration at every Sérsic
index (see `astroprob.tasks._sersic_render`), so `SersicGalaxy.render` is
pure JAX: it jits, vmaps and differentiates with respect to every parameter.

The default prior is fitted to real HST COSMOS galaxies (see
``data/sersic_cosmos_prior.json`` and `default_prior`).

References:
    Sérsic (1963), Boletín de la Asociación Argentina de Astronomía 6, 41.
    Rowe et al. (2015), "GalSim: The modular galaxy image simulation toolkit",
    Astronomy and Computing 10, 121, https://arxiv.org/abs/1407.7676
    Mandelbaum et al. (2012), MNRAS 420, 1518 (the COSMOS galaxy sample).
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Callable
from importlib import resources
from typing import Any

import astropy.units as u
import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from jax.typing import ArrayLike
from jaxtyping import Array, Float, PRNGKeyArray
from numpyro.distributions import constraints

from astroprob.io.units import (
    angle_to_arcsec,
    magnitude_to_counts,
    quantity_to_float,
    sky_counts_per_pixel,
)
from astroprob.tasks._priors import (
    EllipticityPrior,
    JointPrior,
    TruncatedLogNormal,
    TruncatedPowerLaw,
    _Blocks,
    unit_disk,
)
from astroprob.tasks._psf import PSF, GaussianPSF, ImagePSF, MoffatPSF
from astroprob.tasks._sersic_profile import N_MAX, N_MIN, load_table
from astroprob.tasks._sersic_render import FourierLayout, make_layout, render_one
from astroprob.tasks._task import Task

__all__ = [
    "NOISE_MODELS",
    "PARAMETER_NAMES",
    "PARAMETER_UNITS",
    "STAMP_SIZE_RANGE",
    "EllipticityPrior",
    "GaussianPSF",
    "ImagePSF",
    "MoffatPSF",
    "SersicGalaxy",
    "TruncatedLogNormal",
    "TruncatedPowerLaw",
    "check_theta",
    "cosmos_prior_constants",
    "default_prior",
]

PARAMETER_NAMES = ("flux", "half_light_radius", "sersic_n", "e1", "e2", "x0", "y0")
"""Names of the parameters, in the order of ``θ``."""
PARAMETER_UNITS = (u.ct, u.arcsec, None, None, None, u.arcsec, u.arcsec)
"""Units of the parameters (``None``: dimensionless)."""
STAMP_SIZE_RANGE = (32, 128)
"""Smallest and largest supported stamp side, in pixels."""
NOISE_MODELS = ("poisson", "gaussian")
"""``"poisson"``: Poisson(image + sky) - sky + read noise; ``"gaussian"``: stationary
Gaussian noise of variance sky + read noise² (the likelihood is then exact)."""

_Theta = Float[Array, " 7"]
_ThetaBatch = Float[ArrayLike, "*batch 7"]
_Images = Float[Array, "*batch height width"]

PRIOR_FILE = "sersic_cosmos_prior.json"
CHUNK = 128
"""Images rendered or simulated together (``vmap``) in one step of a ``lax.map``."""


@functools.cache
def cosmos_prior_constants() -> dict[str, Any]:
    """The fitted COSMOS constants shipped in ``data/sersic_cosmos_prior.json``.

    Made once by ``benchmarks/derive_sersic_prior.py`` from GalSim's example COSMOS
    data (sources, checksums and fit quality are in the file).
    """
    text = resources.files("astroprob.tasks").joinpath("data", PRIOR_FILE).read_text()
    return json.loads(text)


def default_prior(zero_point: Any = 30 * u.mag, pixel_scale: Any = 0.1 * u.arcsec) -> JointPrior:
    """The default `SersicGalaxy` prior: real COSMOS galaxies, independent parameters.

    * ``flux``: the F814W number counts of the 100 COSMOS galaxies of GalSim's
      example catalogue, ``p(m) ∝ 10^(0.37 m)`` on 16.5 to 22.5 mag, turned into
      counts with ``zero_point``: a power law ``p(F) ∝ F^-1.93``.
    * ``half_light_radius``: log-normal, truncated to 0.05 to 2.5 arcsec.
    * ``sersic_n``: log-normal, truncated to 0.5 to 6.
    * ``(e1, e2)``: ``|e|² ~ Beta(0.66, 4.54)``, uniform orientation.
    * ``(x0, y0)``: independent normals of standard deviation half a pixel
      (not from COSMOS: a centring error).

    The structural fits use the 276 galaxies of ``cosmos_sersics_sample_N300_cleaned``.

    Args:
        zero_point: magnitude of a source giving one count (``u.mag``).
        pixel_scale: pixel side (an angle), for the centring prior.

    Returns:
        A `JointPrior` with event shape ``(7,)``.
    """
    c = cosmos_prior_constants()
    mag, radius, index, ellipticity = (
        c["magnitude"],
        c["half_light_radius"],
        c["sersic_n"],
        c["ellipticity"],
    )
    scale = angle_to_arcsec(pixel_scale, "pixel_scale", per_pixel=True)
    faint = magnitude_to_counts(mag["high"] * u.mag, zero_point)
    bright = magnitude_to_counts(mag["low"] * u.mag, zero_point)
    return JointPrior(
        [
            TruncatedPowerLaw(mag["flux_power_law_index"], faint, bright),
            TruncatedLogNormal(
                radius["log_mean"], radius["log_std"], radius["low"], radius["high"]
            ),
            TruncatedLogNormal(index["log_mean"], index["log_std"], index["low"], index["high"]),
            EllipticityPrior(ellipticity["a"], ellipticity["b"]),
            dist.Normal(jnp.zeros(2), 0.5 * scale).to_event(1),
        ]
    )


class SersicGalaxy(Task):
    """Images of one Sérsic galaxy, with its PSF, pixels and noise, as a `Task`.

    All arguments are keyword-only; physical quantities are astropy Quantities.

    Args:
        stamp_size: side of the square stamp in pixels, or ``(height, width)``,
            each from 32 to 128.
        pixel_scale: pixel side, e.g. ``0.1 * u.arcsec`` (or ``u.arcsec / u.pix``).
        psf: `GaussianPSF`, `MoffatPSF` or `ImagePSF`; default
            ``MoffatPSF(0.2 * u.arcsec, beta=3)``.
        zero_point: magnitude of a source that gives one count (``u.mag``); used
            for magnitudes in `make_theta`, the sky and the default flux prior.
        sky_level: sky background, in ``u.ct`` (per pixel), ``u.ct / u.arcsec**2``
            or ``u.mag / u.arcsec**2``; it is subtracted from the images.
        read_noise: standard deviation of the Gaussian read noise (``u.ct``).
        noise: ``"poisson"`` (default) or ``"gaussian"``, see `NOISE_MODELS`.
        prior: a numpyro distribution over ``θ`` with event shape ``(7,)``;
            default `default_prior`. Cannot be combined with the block priors.
        flux_prior, size_prior, sersic_prior: scalar numpyro distributions
            replacing one block of the default prior (counts, arcsec, index).
        ellipticity_prior, offset_prior: numpyro distributions with event shape
            ``(2,)`` for ``(e1, e2)`` (support inside the unit disk, e.g.
            `EllipticityPrior`) and ``(x0, y0)`` in arcsec.
        padding: side of the periodic Fourier box over the stamp side (>= 1.5);
            larger values keep the wings of large galaxies from wrapping around.
        name: task name.

    Raises:
        TypeError, ValueError: for a bad argument; the message names it.

    Examples:
        >>> import jax, astropy.units as u
        >>> from astroprob.tasks import SersicGalaxy
        >>> task = SersicGalaxy(stamp_size=32, pixel_scale=0.15 * u.arcsec)
        >>> theta, x = task.simulate(jax.random.key(0), 4)
        >>> theta.shape, x.shape
        ((4, 7), (4, 32, 32))
        >>> task.render(theta[0]).shape
        (32, 32)
    """

    def __init__(
        self,
        *,
        stamp_size: Any = 48,
        pixel_scale: Any = 0.1 * u.arcsec,
        psf: Any = None,
        zero_point: Any = 30.0 * u.mag,
        sky_level: Any = 21.5 * u.mag / u.arcsec**2,
        read_noise: Any = 5.0 * u.ct,
        noise: Any = "poisson",
        prior: Any = None,
        flux_prior: Any = None,
        size_prior: Any = None,
        sersic_prior: Any = None,
        ellipticity_prior: Any = None,
        offset_prior: Any = None,
        padding: Any = 2.0,
        name: str = "sersic_galaxy",
    ):
        shape = _check_stamp_size(stamp_size)
        scale = angle_to_arcsec(pixel_scale, "pixel_scale", per_pixel=True)
        if psf is None:
            psf = MoffatPSF(0.2 * u.arcsec, beta=3.0)
        if not isinstance(psf, PSF):
            raise TypeError(
                "psf: expected GaussianPSF, MoffatPSF or ImagePSF from astroprob.tasks.sersic; "
                f"got {type(psf).__name__}"
            )
        quantity_to_float(zero_point, u.mag, "zero_point", example="30 * u.mag")
        sky = sky_counts_per_pixel(sky_level, scale, zero_point)
        read = quantity_to_float(
            read_noise, u.ct, "read_noise", example="5 * u.ct", nonnegative=True
        )
        if noise not in NOISE_MODELS:
            raise ValueError(f"noise: expected one of {NOISE_MODELS}; got {noise!r}")
        if noise == "gaussian" and sky + read**2 <= 0:
            raise ValueError(
                "read_noise, sky_level: Gaussian noise needs a positive variance "
                "sky + read_noise²; got 0"
            )
        if isinstance(padding, bool) or not isinstance(padding, int | float) or not padding >= 1.5:
            raise ValueError(f"padding: expected a number >= 1.5; got {padding!r}")
        user_prior = prior is not None or any(
            p is not None
            for p in (flux_prior, size_prior, sersic_prior, ellipticity_prior, offset_prior)
        )
        prior = _build_prior(
            prior,
            {
                "flux_prior": flux_prior,
                "size_prior": size_prior,
                "sersic_prior": sersic_prior,
                "ellipticity_prior": ellipticity_prior,
                "offset_prior": offset_prior,
            },
            zero_point,
            pixel_scale,
        )
        layout = make_layout(shape, scale, psf, padding=float(padding))
        table = load_table()
        simulator = _make_simulator(layout, table, sky, read, noise)
        object.__setattr__(self, "_layout", layout)
        object.__setattr__(self, "_table", table)
        object.__setattr__(self, "_sky", sky)
        object.__setattr__(self, "_read_noise", read)
        object.__setattr__(self, "_noise", noise)
        object.__setattr__(self, "psf", psf)
        object.__setattr__(self, "pixel_scale", scale * u.arcsec)
        object.__setattr__(self, "zero_point", zero_point.to(u.mag))
        metadata = {
            "pixel_scale_arcsec": scale,
            "stamp_shape": shape,
            "psf": repr(psf),
            "zero_point_mag": float(zero_point.to_value(u.mag)),
            "sky_counts_per_pixel": sky,
            "read_noise_counts": read,
            "noise": noise,
            "oversampling": layout.oversampling,
            "fourier_box": layout.padded_shape,
        }
        super().__init__(
            name=name,
            prior=prior,
            simulator=simulator,
            parameter_names=PARAMETER_NAMES,
            observation_shape=shape,
            parameter_units=PARAMETER_UNITS,
            likelihood=self._likelihood,
            description=(
                f"Sérsic galaxy, {shape[0]}x{shape[1]} pixels of {scale:g} arcsec, {psf!r}, "
                f"{noise} noise"
            ),
            metadata=metadata,
            # Turning the image turns (e1, e2) as spin 2 and the centre (x0, y0) as a
            # vector; flux, size and index do not change. The likelihood is invariant
            # only if the PSF is (the noise is the same in every pixel).
            parameter_symmetry=(
                ("trivial", "trivial", "trivial", "spin2", "spin1")
                if _psf_has_square_symmetry(psf)
                else None
            ),
        )
        if user_prior:
            _check_prior_support(self.prior)

    # ---------------------------------------------------------------- instrument
    @property
    def layout(self) -> FourierLayout:
        """The Fourier grid (box, oversampling, PSF × pixel transfer function)."""
        return self._layout

    @property
    def sky_counts(self) -> float:
        """Sky background in counts per pixel (subtracted from the images)."""
        return self._sky

    @property
    def read_noise_counts(self) -> float:
        """Read-noise standard deviation in counts."""
        return self._read_noise

    @property
    def noise(self) -> str:
        """The noise model, one of `NOISE_MODELS`."""
        return self._noise

    def __repr__(self) -> str:
        return f"SersicGalaxy({self.description})"

    # ----------------------------------------------------------------- rendering
    @functools.cached_property
    def _render_batch(self) -> Callable[[Array], Array]:
        layout, table = self._layout, self._table

        def one(t: Array) -> Array:
            return render_one(layout, table, t)

        # Chunks of CHUNK images bound the memory (a single vmap over 4096 stamps of
        # 48x48 needs about 4 GB) and run no slower.
        return jax.jit(lambda theta: jax.lax.map(one, theta, batch_size=CHUNK))

    @functools.cached_property
    def _simulate_batch(self) -> Callable[[PRNGKeyArray, Array], Array]:
        simulator = self.simulator

        @jax.jit
        def run(key: PRNGKeyArray, theta: Array) -> Array:
            keys = jax.random.split(key, theta.shape[0])
            return jax.lax.map(lambda a: simulator(*a), (keys, theta), batch_size=CHUNK)

        return run

    def render(self, theta: ArrayLike) -> _Images:
        """The noiseless, PSF-convolved, pixel-integrated image(s), in counts per pixel.

        Rendered in Fourier space, where the Sérsic profile, the shear, the shift,
        the PSF and the square pixel are all exact products, so the pixel
        integration stays exact at the cusp of high-``n`` profiles (where sampling
        pixels in real space converges slowly) and the cost is one spectrum and
        one FFT per image; see `astroprob.tasks._sersic_render`.

        Args:
            theta: parameters ``(7,)`` or ``(*batch, 7)`` in the order of
                `PARAMETER_NAMES`. Concrete input is checked; under ``jit``,
                ``vmap`` or ``grad`` the call is pure JAX and unchecked.

        Returns:
            Images of shape ``(*batch, height, width)``.

        Raises:
            ValueError: for a wrong shape or values outside the parameter space
                (NaN, ``flux < 0``, ``half_light_radius <= 0``, ``sersic_n`` outside
                [0.5, 6], ``e1² + e2² >= 1``).
        """
        if isinstance(theta, jax.core.Tracer):
            batch = theta.shape[:-1]
            images = jax.vmap(lambda t: render_one(self._layout, self._table, t))(
                theta.reshape(-1, len(PARAMETER_NAMES))
            )
            return images.reshape(*batch, *self.observation_shape)
        checked = check_theta(theta)
        batch = checked.shape[:-1]
        flat = checked.reshape(-1, len(PARAMETER_NAMES))
        # Pad the batch to a power of two (small) or whole chunks (large), so that few
        # batch sizes are ever compiled.
        size = 1 << max(len(flat) - 1, 0).bit_length()
        if size > CHUNK:
            size = -(-len(flat) // CHUNK) * CHUNK
        padded = np.concatenate([flat, np.repeat(flat[:1], size - len(flat), axis=0)])
        images = self._render_batch(jnp.asarray(padded))[: len(flat)]
        return images.reshape(*batch, *self.observation_shape)

    def noise_variance(self, image: Float[ArrayLike, "*batch height width"]) -> Array:
        """Per-pixel noise variance of an observation of the noiseless ``image`` (counts²)."""
        base = self._read_noise**2 + self._sky
        image = jnp.asarray(image)
        if self._noise == "poisson":
            return base + jnp.maximum(image, 0.0)
        return jnp.full_like(image, base)

    # --------------------------------------------------------------- likelihood
    def _likelihood(self, theta: ArrayLike) -> dist.Distribution:
        """``p(x | θ)`` for ``θ`` ``(*batch, 7)``: batch shape ``batch``, event ``(h, w)``."""
        images = self.render(theta)
        return dist.Normal(images, jnp.sqrt(self.noise_variance(images))).to_event(2)

    def model(self, x: Float[ArrayLike, "height width"] | None = None) -> None:
        """The numpyro model ``θ ~ prior``, ``x ~ Normal(render(θ), σ²)``, for MCMC.

        The likelihood is Gaussian with variance ``sky + read_noise² (+ image for
        Poisson noise)``: exact for ``noise="gaussian"``, the usual Gaussian
        approximation of Poisson noise otherwise.

        Args:
            x: the observed image ``(height, width)`` in counts, sky subtracted.
        """
        theta = numpyro.sample("theta", self.prior)
        numpyro.sample("x", self._likelihood(theta), obs=x)

    def sample_reference_posterior(
        self,
        key: PRNGKeyArray,
        x: Float[ArrayLike, "height width"],
        *,
        num_samples: int = 1000,
        num_warmup: int = 500,
        num_chains: int = 1,
        init_theta: Float[ArrayLike, " 7"] | None = None,
        progress_bar: bool = False,
    ) -> Float[Array, "num_draws 7"]:
        """Reference posterior of one image by NUTS on `model` (the gold standard for C2ST).

        Args:
            key: PRNG key.
            x: the observed image ``(height, width)``, counts, sky subtracted.
            num_samples: draws kept per chain.
            num_warmup: adaptation steps per chain.
            num_chains: chains, run vectorized on one device.
            init_theta: starting point ``(7,)``; default the prior median.
            progress_bar: show numpyro's progress bar.

        Returns:
            Posterior draws ``(num_chains * num_samples, 7)``.

        Raises:
            ValueError: for an image of the wrong shape or with NaN or inf.
        """
        x = np.asarray(x, dtype=np.float32)
        if x.shape != self.observation_shape:
            raise ValueError(f"x: expected shape {self.observation_shape}; got {x.shape}")
        if not np.all(np.isfinite(x)):
            raise ValueError(
                f"x: expected finite values; {int((~np.isfinite(x)).sum())} are NaN or inf"
            )
        if init_theta is None:
            init = numpyro.infer.init_to_median()
        else:
            init = numpyro.infer.init_to_value(
                values={"theta": jnp.asarray(check_theta(init_theta).reshape(7))}
            )
        kernel = numpyro.infer.NUTS(self.model, init_strategy=init)
        mcmc = numpyro.infer.MCMC(
            kernel,
            num_warmup=num_warmup,
            num_samples=num_samples,
            num_chains=num_chains,
            chain_method="vectorized" if num_chains > 1 else "sequential",
            progress_bar=progress_bar,
        )
        mcmc.run(key, jnp.asarray(x))
        return mcmc.get_samples()["theta"]

    # --------------------------------------------------------- units at the edge
    def make_theta(
        self,
        *,
        flux: Any,
        half_light_radius: Any,
        sersic_n: Any,
        e1: Any = None,
        e2: Any = None,
        axis_ratio: Any = None,
        position_angle: Any = None,
        x0: Any = 0.0 * u.arcsec,
        y0: Any = 0.0 * u.arcsec,
    ) -> np.ndarray:
        """``θ`` ``(7,)`` from physical quantities.

        Args:
            flux: counts (``u.ct``) or a magnitude (``u.mag``, on `zero_point`).
            half_light_radius: an angle, or pixels (``u.pix``).
            sersic_n: a number in [0.5, 6].
            e1: first ellipticity component (a number); give ``e1`` and ``e2``, or
                ``axis_ratio`` and ``position_angle``.
            e2: second ellipticity component.
            axis_ratio: ``q = b/a`` in (0, 1].
            position_angle: ``β``, an angle from +x towards +y.
            x0: centre offset along x, an angle or pixels.
            y0: centre offset along y, an angle or pixels.

        Raises:
            TypeError, ValueError: for a missing, mixed or out-of-range argument.
        """
        if isinstance(flux, u.Quantity) and flux.unit.is_equivalent(u.mag):
            counts = magnitude_to_counts(flux, self.zero_point, "flux")
        else:
            counts = quantity_to_float(
                flux, u.ct, "flux", example="1e4 * u.ct or 21 * u.mag", nonnegative=True
            )
        radius = self._angle(half_light_radius, "half_light_radius")
        if isinstance(sersic_n, bool) or not isinstance(sersic_n, int | float | np.number):
            raise TypeError(f"sersic_n: expected a number; got {type(sersic_n).__name__}")
        if (e1 is None) != (e2 is None) or (axis_ratio is None) != (position_angle is None):
            raise ValueError("e1, e2 / axis_ratio, position_angle: give both of a pair")
        if (e1 is None) == (axis_ratio is None):
            raise ValueError("e1, e2 / axis_ratio, position_angle: give exactly one of the pairs")
        if axis_ratio is not None:
            if not isinstance(axis_ratio, int | float | np.number) or not 0 < axis_ratio <= 1:
                raise ValueError(f"axis_ratio: expected a number in (0, 1]; got {axis_ratio!r}")
            beta = quantity_to_float(position_angle, u.rad, "position_angle", example="30 * u.deg")
            modulus = (1 - axis_ratio) / (1 + axis_ratio)
            e1, e2 = modulus * math.cos(2 * beta), modulus * math.sin(2 * beta)
        for label, value in (("e1", e1), ("e2", e2)):
            if isinstance(value, bool) or not isinstance(value, int | float | np.number):
                raise TypeError(f"{label}: expected a number; got {type(value).__name__}")
        theta = np.array(
            [
                counts,
                radius,
                float(sersic_n),
                float(e1),
                float(e2),
                self._angle(x0, "x0", signed=True),
                self._angle(y0, "y0", signed=True),
            ],
            dtype=np.float32,
        )
        return check_theta(theta)

    def _angle(self, value: Any, name: str, *, signed: bool = False) -> float:
        if isinstance(value, u.Quantity) and value.unit.is_equivalent(u.pix):
            out = quantity_to_float(value, u.pix, name, example="3 * u.pix") * float(
                self.pixel_scale.to_value(u.arcsec)
            )
        else:
            out = quantity_to_float(value, u.arcsec, name, example="0.3 * u.arcsec")
        if not signed and not out > 0:
            raise ValueError(f"{name}: expected a positive size; got {value}")
        return out


def check_theta(theta: Any) -> np.ndarray:
    """Check parameters in numpy (before any NaN reaches JAX); returns float32 ``(*batch, 7)``.

    Raises:
        ValueError: naming the first offending parameter and row.
    """
    try:
        array = np.asarray(theta, dtype=np.float32)
    except (TypeError, ValueError) as err:
        raise ValueError(
            f"theta: expected a float array (..., 7) ordered as {PARAMETER_NAMES}; got {theta!r}"
        ) from err
    if array.ndim < 1 or array.shape[-1] != len(PARAMETER_NAMES):
        raise ValueError(
            f"theta: expected shape (..., 7) ordered as {PARAMETER_NAMES}; got {array.shape}"
        )
    flat = array.reshape(-1, len(PARAMETER_NAMES))
    bad = ~np.isfinite(flat)
    if bad.any():
        row, col = np.argwhere(bad)[0]
        raise ValueError(
            f"theta: expected finite values; {PARAMETER_NAMES[col]} is {flat[row, col]} "
            f"in row {row} ({int(bad.any(axis=1).sum())} rows hold NaN or inf)"
        )
    checks = (
        (flat[:, 0] < 0, "flux", "expected >= 0 counts", flat[:, 0]),
        (flat[:, 1] <= 0, "half_light_radius", "expected a positive size (arcsec)", flat[:, 1]),
        (
            (flat[:, 2] < N_MIN) | (flat[:, 2] > N_MAX),
            "sersic_n",
            f"expected a value in [{N_MIN}, {N_MAX}]",
            flat[:, 2],
        ),
        (
            flat[:, 3] ** 2 + flat[:, 4] ** 2 >= 1,
            "e1, e2",
            "expected e1² + e2² < 1; got |e| =",
            np.hypot(flat[:, 3], flat[:, 4]),
        ),
    )
    for mask, name, expected, values in checks:
        if mask.any():
            row = int(np.flatnonzero(mask)[0])
            raise ValueError(
                f"theta: {name} {expected.rstrip(' =')}; got {values[row]:g} in row {row} "
                f"({int(mask.sum())} rows out of range)"
            )
    return array


def _psf_has_square_symmetry(psf: PSF) -> bool:
    """Whether turning by 90° and mirroring leave the PSF unchanged (all of D4)."""
    if isinstance(psf, GaussianPSF | MoffatPSF):
        return True
    image = np.asarray(getattr(psf, "image", None))
    if image.ndim != 2 or image.shape[0] != image.shape[1]:
        return False
    tolerance = 1e-6 * float(np.abs(image).max())
    turned = (np.rot90(image, k) for k in range(4))
    return all(
        np.allclose(t, image, rtol=0, atol=tolerance)
        and np.allclose(t[:, ::-1], image, rtol=0, atol=tolerance)
        for t in turned
    )


def _check_stamp_size(stamp_size: Any) -> tuple[int, int]:
    lo, hi = STAMP_SIZE_RANGE
    sizes = stamp_size if isinstance(stamp_size, tuple | list) else (stamp_size, stamp_size)
    if len(sizes) != 2 or not all(
        isinstance(s, int | np.integer) and not isinstance(s, bool) and lo <= s <= hi for s in sizes
    ):
        raise ValueError(
            f"stamp_size: expected an integer or (height, width) of integers from {lo} to {hi}; "
            f"got {stamp_size!r}"
        )
    return int(sizes[0]), int(sizes[1])


def _build_prior(
    prior: Any, blocks: dict[str, Any], zero_point: Any, pixel_scale: Any
) -> dist.Distribution:
    given = {name: value for name, value in blocks.items() if value is not None}
    if prior is not None:
        if given:
            raise ValueError(
                f"prior: give either a full prior or block priors ({', '.join(given)}), not both"
            )
        if not isinstance(prior, dist.Distribution):
            raise TypeError(f"prior: expected a numpyro Distribution; got {type(prior).__name__}")
        return prior
    default = default_prior(zero_point, pixel_scale)
    if not given:
        return default
    marginals = list(default.marginals)
    expected = {
        "flux_prior": (0, ()),
        "size_prior": (1, ()),
        "sersic_prior": (2, ()),
        "ellipticity_prior": (3, (2,)),
        "offset_prior": (4, (2,)),
    }
    for name, value in given.items():
        index, event_shape = expected[name]
        if not isinstance(value, dist.Distribution):
            raise TypeError(f"{name}: expected a numpyro Distribution; got {type(value).__name__}")
        if value.batch_shape != () or value.event_shape != event_shape:
            raise ValueError(
                f"{name}: expected batch_shape () and event_shape {event_shape}; got "
                f"{value.batch_shape} and {value.event_shape}"
            )
        marginals[index] = value
    return JointPrior(marginals)


def _support_bounds(constraint: Any, length: int) -> tuple[np.ndarray, np.ndarray] | None:
    """Per-component ``(low, high)`` of a support, or ``None`` for an unknown kind.

    The unit disk is marked by NaN bounds on its two components.
    """
    if isinstance(constraint, _Blocks):
        parts = [
            _support_bounds(c, n) for c, n in zip(constraint.cseq, constraint.lengths, strict=True)
        ]
        if any(p is None for p in parts):
            return None
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
    if isinstance(constraint, constraints.independent):
        return _support_bounds(constraint.base_constraint, length)
    if constraint is unit_disk:
        return np.full(length, np.nan), np.full(length, np.nan)
    if constraint in (constraints.real, constraints.real_vector):
        return np.full(length, -np.inf), np.full(length, np.inf)
    low = getattr(constraint, "lower_bound", None)
    high = getattr(constraint, "upper_bound", None)
    if low is None and high is None:
        return None
    low = np.broadcast_to(np.asarray(-np.inf if low is None else low, np.float64), (length,))
    high = np.broadcast_to(np.asarray(np.inf if high is None else high, np.float64), (length,))
    return low, high


def _check_prior_support(prior: dist.Distribution) -> None:
    """The prior's support must lie in the parameter space; unknown supports are sampled."""
    bounds = _support_bounds(prior.support, len(PARAMETER_NAMES))
    if bounds is None:
        _check_prior_draws(prior)
        return
    low, high = bounds
    problems = []
    if low[0] < 0:
        problems.append(f"flux down to {low[0]:g} (expected >= 0)")
    if low[1] < 0:
        problems.append(f"half_light_radius down to {low[1]:g} (expected > 0)")
    if low[2] < N_MIN or high[2] > N_MAX:
        problems.append(
            f"sersic_n in [{low[2]:g}, {high[2]:g}] (expected within [{N_MIN}, {N_MAX}])"
        )
    disk = np.isnan(low[3]) and np.isnan(low[4])
    if not disk:
        corner = max(abs(low[3]), abs(high[3])) ** 2 + max(abs(low[4]), abs(high[4])) ** 2
        if not corner < 1:
            problems.append(
                f"e1 in [{low[3]:g}, {high[3]:g}], e2 in [{low[4]:g}, {high[4]:g}] "
                "(expected inside the unit disk)"
            )
    if problems:
        raise ValueError(f"prior: its support allows {'; '.join(problems)}")


def _check_prior_draws(prior: dist.Distribution, num: int = 1024) -> None:
    """Every draw of the prior must be a valid ``θ``; for supports of unknown kind."""
    draws = np.asarray(prior.sample(jax.random.key(0), (num,)))
    try:
        check_theta(draws)
    except ValueError as err:
        raise ValueError(
            f"prior: expected every draw to be valid parameters; {num} test draws gave: {err}"
        ) from None


def _make_simulator(
    layout: FourierLayout, table: Any, sky: float, read: float, noise: str
) -> Callable[[PRNGKeyArray, Array], Array]:
    def simulator(key: PRNGKeyArray, theta: _Theta) -> Float[Array, "height width"]:
        image = render_one(layout, table, theta)
        if noise == "gaussian":
            sigma = math.sqrt(sky + read**2)
            return image + sigma * jax.random.normal(key, image.shape, image.dtype)
        key_poisson, key_read = jax.random.split(key)
        counts = jax.random.poisson(key_poisson, jnp.maximum(image + sky, 0.0), image.shape)
        observed = counts.astype(image.dtype) - sky
        if read > 0:
            observed = observed + read * jax.random.normal(key_read, image.shape, image.dtype)
        return observed

    return simulator
