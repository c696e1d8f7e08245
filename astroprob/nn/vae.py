"""A convolutional variational autoencoder (VAE) for galaxy stamps.

`ConvVAE` learns a compact latent description ``z`` of single- or multi-band
images (32 to 128 pixels a side): an encoder ``q(z | x) = N(μ(x), diag σ(x)²)``
(by default a `ConvEmbedding`; any ``nnx.Module`` mapping images to
``(batch, features)`` can be injected, e.g. an equivariant CNN), a
convolutional decoder ``m(z)``, and a Gaussian likelihood
``p(x | z) = N(x | m(z), diag v)`` with the *known* per-pixel noise variance
``v`` of each observation. With ``psf=`` the decoder draws the galaxy before
the PSF and its output is convolved with the known PSF, so the latent space
describes the intrinsic galaxy (Lanusse et al. 2021). With ``orientation=True``
and a rotation-equivariant encoder, the latent is rotation-invariant and the
galaxy's orientation is a separate output that rotates the decoded image.

Around it, pure functions of ``(key, model, arrays)``:

* `fit_vae`: train through the package's one training loop
  (`astroprob.inference._loop.train`: train/validation split, early stopping),
  with β weighting and free bits;
* `elbo`, `importance_weighted_bound`, `bits_per_dim`: held-out bounds on
  ``log p(x)`` in nats and bits per dimension;
* `reconstruct`, `encode`, `generate`, `latent_traversal`;
* `LatentPrior`, `fit_latent_prior`: a flow fitted to the aggregate posterior
  after training, to generate from instead of ``N(0, I)``;
* `VAEEmbedding`: the trained encoder as an NPE embedding, frozen or fine-tuned;
* `fit_atypicality`, `score_atypicality`, `add_atypicality_columns`: a
  per-observation atypicality score relative to reference data, with a flag;
* `save_vae`, `load_vae`: JSON config and msgpack weights, no pickle;
* morphology statistics and KS distances (`astroprob.nn._vae_morphology`) and
  figures (`astroprob.nn._vae_figures`), re-exported here.

References:
    Kingma & Welling (2014), "Auto-Encoding Variational Bayes", https://arxiv.org/abs/1312.6114
    Higgins et al. (2017), "β-VAE", ICLR.
    Burda, Grosse & Salakhutdinov (2016), "Importance Weighted Autoencoders",
    https://arxiv.org/abs/1509.00519
    Lanusse et al. (2021), "Deep generative models for galaxy image simulations",
    MNRAS 504, 5543, https://arxiv.org/abs/2008.03833
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.typing import ArrayLike
from jaxtyping import Array, Float, PRNGKeyArray

from astroprob._version import __version__
from astroprob.inference import _checkpoint
from astroprob.inference._loop import (
    TrainingConfig,
    TrainingHistory,
    split_train_validation,
    train,
)
from astroprob.nn._vae_figures import (
    plot_latent_projection,
    plot_latent_traversal,
    plot_reconstructions,
)
from astroprob.nn._vae_layers import ConvDecoder, FixedArray, psf_convolve, rotate_images
from astroprob.nn._vae_morphology import morphology_ks_distances, morphology_statistics
from astroprob.nn._vae_objective import (
    diagonal_normal_log_prob,
    free_bits_penalty,
    gaussian_log_likelihood,
    gaussian_log_normaliser,
    kl_to_standard_normal,
)
from astroprob.nn._vae_prior import LatentPrior
from astroprob.nn.cnn import ConvEmbedding

__all__ = [
    "Atypicality",
    "AtypicalityReference",
    "ConvVAE",
    "LatentPrior",
    "SavedVAE",
    "VAEEmbedding",
    "add_atypicality_columns",
    "atypicality_statistic",
    "bits_per_dim",
    "elbo",
    "encode",
    "fit_atypicality",
    "fit_latent_prior",
    "fit_vae",
    "generate",
    "importance_weighted_bound",
    "latent_traversal",
    "load_vae",
    "morphology_ks_distances",
    "morphology_statistics",
    "plot_latent_projection",
    "plot_latent_traversal",
    "plot_reconstructions",
    "reconstruct",
    "save_vae",
    "score_atypicality",
]

FORMAT = "astroprob-vae"
FORMAT_VERSION = 2  # 2 added the optional latent prior and orientation
CONFIG_FILE = "vae.json"
WEIGHTS_FILE = "vae_weights.msgpack"
PRIOR_WEIGHTS_FILE = "latent_prior_weights.msgpack"


# --------------------------------------------------------------------------- model
class ConvVAE(nnx.Module):
    """Convolutional VAE for images ``(height, width)`` or ``(height, width, bands)``.

    Images are in data units (e.g. counts); the network sees them divided by a
    fixed ``data_scale`` (set by `fit_vae` to the standard deviation of the
    training pixels) and the decoder's output is multiplied back, so every
    density is in data units.

    Args:
        image_shape: ``(height, width)``; each divisible by ``2 ** len(channels)``.
        in_channels: bands; observations are ``(h, w)`` for 1, else ``(h, w, bands)``.
        latent_dim: size of the latent vector ``z``.
        channels: channels of the encoder stages (and, reversed, the decoder's).
        hidden: width of the dense layers (and the default encoder's features).
        encoder: an ``nnx.Module`` mapping ``(batch, *observation_shape)`` (already
            divided by ``data_scale``) to ``(batch, features)``; default a
            `ConvEmbedding` with ``hidden`` features.
        psf: the known PSF, ``(ph, pw)`` (all bands) or ``(ph, pw, bands)``; the
            decoder output is convolved with it (linear convolution, "same" size).
        orientation: split the encoder's output into a rotation-invariant latent
            and an orientation. Needs an ``encoder`` whose ``output_slices`` are
            ``"invariant"`` and ``"spin2"``, e.g.
            ``EquivariantCNN("C4", equivariant_outputs=("spin2",))``. ``q(z | x)``
            is computed from the invariant features; the angle
            ``φ = atan2(v2, v1) / 2`` of the spin-2 output ``v`` (defined modulo
            π, like a position angle) rotates the decoder's image
            counterclockwise about the stamp centre (bilinear) before the PSF.
            With a C4 encoder, rotating an image by 90° leaves ``q(z | x)``
            unchanged and rotates its reconstruction by 90° (to float
            round-off). A D_N encoder also makes ``z`` mirror-invariant, so the
            decoder cannot draw handedness (e.g. the winding of spiral arms).
        rngs: random-number streams for the initial weights.

    Raises:
        ValueError, TypeError: for a bad argument; the message names it.

    Examples:
        >>> import jax.numpy as jnp
        >>> from flax import nnx
        >>> vae = ConvVAE((32, 32), latent_dim=4, channels=(4, 8), hidden=16, rngs=nnx.Rngs(0))
        >>> mean, log_std = vae.encode(jnp.zeros((2, 32, 32)))
        >>> mean.shape, vae.decode(mean).shape
        ((2, 4), (2, 32, 32))
    """

    def __init__(
        self,
        image_shape: tuple[int, int],
        *,
        in_channels: int = 1,
        latent_dim: int = 16,
        channels: Sequence[int] = (16, 32, 64),
        hidden: int = 128,
        encoder: Any = None,
        psf: ArrayLike | None = None,
        orientation: bool = False,
        rngs: nnx.Rngs,
    ):
        image_shape = tuple(image_shape)
        channels = tuple(channels)
        for name, value in (("in_channels", in_channels), ("latent_dim", latent_dim)):
            _check_positive_int(name, value)
        _check_positive_int("hidden", hidden)
        if not channels or not all(
            isinstance(c, int) and not isinstance(c, bool) and c >= 1 for c in channels
        ):
            raise ValueError(f"channels: expected positive integers; got {channels!r}")
        factor = 2 ** len(channels)
        if (
            len(image_shape) != 2
            or not all(isinstance(s, int) and s >= factor for s in image_shape)
            or any(s % factor for s in image_shape)
        ):
            raise ValueError(
                f"image_shape: expected (height, width), each a multiple of {factor} "
                f"(2 ** len(channels)); got {image_shape!r}"
            )
        if encoder is not None and not isinstance(encoder, nnx.Module):
            raise TypeError(
                f"encoder: expected a flax.nnx.Module or None; got {type(encoder).__name__}"
            )
        self.image_shape = image_shape
        self.in_channels = in_channels
        self.latent_dim = latent_dim
        self.channels = channels
        self.hidden = hidden
        self.observation_shape = image_shape if in_channels == 1 else (*image_shape, in_channels)
        self.custom_encoder = None if encoder is None else _qualified_name(encoder)
        if encoder is None:
            encoder = ConvEmbedding(
                image_shape,
                features=hidden,
                channels=channels,
                hidden=hidden,
                in_channels=in_channels,
                rngs=rngs,
            )
        features = _encoder_features(encoder, self.observation_shape)
        self.has_orientation = bool(orientation)
        self.invariant_columns, self.spin2_columns = None, None
        if self.has_orientation:
            self.invariant_columns, self.spin2_columns = _orientation_columns(encoder, features)
            features = self.invariant_columns[1] - self.invariant_columns[0]
        self.encoder = encoder
        self.head = nnx.Linear(features, 2 * latent_dim, rngs=rngs)
        self.decoder = ConvDecoder(
            image_shape, in_channels, latent_dim, channels, hidden, rngs=rngs
        )
        self.data_scale = FixedArray(jnp.ones((), jnp.float32))
        if psf is None:
            self.psf = None
            self.psf_shape = None
        else:
            kernel = _check_psf(psf, in_channels)
            self.psf = FixedArray(kernel)
            self.psf_shape = tuple(kernel.shape)

    @property
    def config(self) -> dict[str, Any]:
        """The constructor arguments as a JSON-serialisable dict (the PSF by shape only)."""
        return {
            "image_shape": list(self.image_shape),
            "in_channels": self.in_channels,
            "latent_dim": self.latent_dim,
            "channels": list(self.channels),
            "hidden": self.hidden,
            "psf_shape": None if self.psf_shape is None else list(self.psf_shape),
            "encoder": self.custom_encoder,
            "orientation": self.has_orientation,
        }

    def check_images(self, x: Any, name: str = "x") -> None:
        """Raise ``ValueError`` unless ``x`` is ``(batch, *observation_shape)``."""
        if tuple(x.shape[1:]) != self.observation_shape or x.ndim != 1 + len(
            self.observation_shape
        ):
            raise ValueError(
                f"{name}: expected shape (batch, {', '.join(map(str, self.observation_shape))}); "
                f"got {tuple(x.shape)}"
            )

    def encode(
        self, x: Float[Array, "batch ..."]
    ) -> tuple[Float[Array, "batch latent"], Float[Array, "batch latent"]]:
        """Mean and log standard deviation of ``q(z | x)``, each ``(batch, latent_dim)``."""
        mean, log_std, _ = self.encode_with_orientation(x)
        return mean, log_std

    def encode_with_orientation(
        self, x: Float[Array, "batch ..."]
    ) -> tuple[Float[Array, "batch latent"], Float[Array, "batch latent"], Array | None]:
        """``(mean, log_std, angle)``: `encode` and the orientation ``(batch,)`` in radians.

        ``angle`` is ``None`` for a VAE built without ``orientation``.
        """
        self.check_images(x)
        features, angle = _split_orientation(
            self.encoder(x / self.data_scale[...]), self.invariant_columns, self.spin2_columns
        )
        out = self.head(features)
        return out[:, : self.latent_dim], out[:, self.latent_dim :], angle

    def decode_intrinsic(
        self, z: Float[Array, "batch latent"], angle: ArrayLike | None = None
    ) -> Float[Array, "batch ..."]:
        """The decoder's image before the PSF, in data units, ``(batch, *observation_shape)``."""
        return self._from_channels_last(self._rotated(self._intrinsic(z), angle))

    def decode(
        self, z: Float[Array, "batch latent"], angle: ArrayLike | None = None
    ) -> Float[Array, "batch ..."]:
        """Mean image ``m(z)``, PSF-convolved when a PSF is set, ``(batch, *observation_shape)``.

        ``angle`` (radians, broadcastable to ``(batch,)``; only with
        ``orientation``) rotates the image counterclockwise before the PSF;
        ``None`` draws it in the canonical orientation.
        """
        image = self._rotated(self._intrinsic(z), angle)
        if self.psf is not None:
            image = psf_convolve(image, self.psf[...])
        return self._from_channels_last(image)

    def _rotated(self, image: Array, angle: ArrayLike | None) -> Array:
        if angle is None:
            return image
        if not self.has_orientation:
            raise ValueError("angle: this VAE was built without orientation; expected None")
        return rotate_images(image, jnp.broadcast_to(jnp.asarray(angle), image.shape[:1]))

    def _intrinsic(self, z: Array) -> Array:
        if z.ndim != 2 or z.shape[1] != self.latent_dim:
            raise ValueError(f"z: expected shape (batch, {self.latent_dim}); got {z.shape}")
        return self.decoder(z) * self.data_scale[...]

    def _from_channels_last(self, image: Array) -> Array:
        return image[..., 0] if self.in_channels == 1 else image


# ------------------------------------------------------------------------ training
def fit_vae(
    key: PRNGKeyArray,
    model: ConvVAE,
    x: ArrayLike,
    noise_variance: ArrayLike,
    *,
    beta: float = 1.0,
    free_bits: float = 0.0,
    checkpoint_path: str | Path | None = None,
    **training_options: Any,
) -> TrainingHistory:
    """Train ``model`` in place by maximising the (β-weighted) ELBO; keep the best weights.

    The loss of an example is ``-log p(x | z) + β Σ_j max(KL_j, free_bits)`` with
    one reparameterised draw ``z ~ q(z | x)`` (the free-bits floor applies to
    each latent dimension's KL averaged over the minibatch). With ``β = 1`` and
    ``free_bits = 0`` the validation loss is the negative ELBO in nats per image.
    ``data_scale`` is set to the standard deviation of the training pixels.

    The training loop's loss takes no key, so the draw's noise is a hash of the
    example's index and of the composition of its minibatch, which the loop
    reshuffles every epoch: fresh noise each epoch, fixed noise (common random
    numbers) for the validation loss.

    Args:
        key: PRNG key for the split, the reparameterisation noise and the batch order.
        model: the VAE, trained in place.
        x: images ``(n, *model.observation_shape)`` in data units.
        noise_variance: per-pixel noise variance, broadcastable to ``x`` (> 0).
        beta: weight of the KL term (β-VAE; > 0).
        free_bits: KL floor per latent dimension in nats (>= 0).
        checkpoint_path: a file the loop's state (weights, optimiser, best
            weights, history) is written to after every epoch, atomically and
            without pickle. If it exists when training starts, training resumes
            from it: call again with the same model architecture, data, key
            and options after an interruption. A checkpoint written under
            other settings is refused.
        **training_options: fields of `TrainingConfig` (``learning_rate``,
            ``batch_size``, ``max_epochs``, ``patience``, ``validation_fraction``, ...).

    Returns:
        The training history (losses in nats per image).

    Raises:
        ValueError: for bad shapes, non-finite data, non-positive variances or options.
    """
    if not isinstance(model, ConvVAE):
        raise TypeError(f"model: expected a ConvVAE; got {type(model).__name__}")
    if not (isinstance(beta, int | float) and beta > 0):
        raise ValueError(f"beta: expected a positive number; got {beta!r}")
    if not (isinstance(free_bits, int | float) and free_bits >= 0):
        raise ValueError(f"free_bits: expected a number >= 0; got {free_bits!r}")
    try:
        config = TrainingConfig(**training_options)
    except TypeError as err:
        valid = [f.name for f in dataclasses.fields(TrainingConfig)]
        raise TypeError(f"unknown training option; expected some of {valid}: {err}") from err
    x, variance = _check_data(model, x, noise_variance)
    n = x.shape[0]
    key_split, key_noise, key_train = jax.random.split(key, 3)
    train_idx, val_idx = split_train_validation(key_split, n, config.validation_fraction)
    scale = float(np.std(x[train_idx]))
    model.data_scale[...] = jnp.asarray(scale if scale > 0 else 1.0, jnp.float32)
    index = np.arange(n, dtype=np.uint32)
    beta, free_bits = float(beta), float(free_bits)

    def loss_fn(vae: ConvVAE, batch: tuple[Array, Array, Array]) -> Array:
        xb, vb, ib = batch
        keys = _minibatch_keys(key_noise, ib)
        mean, log_std, angle = vae.encode_with_orientation(xb)
        eps = jax.vmap(lambda k: jax.random.normal(k, (vae.latent_dim,)))(keys)
        z = mean + jnp.exp(log_std) * eps
        log_lik = gaussian_log_likelihood(xb, vae.decode(z, angle), vb)
        kl = kl_to_standard_normal(mean, log_std)
        return -log_lik + beta * free_bits_penalty(kl, free_bits)

    def subset(idx: np.ndarray) -> tuple[Array, Array, Array]:
        return jnp.asarray(x[idx]), jnp.asarray(variance[idx]), jnp.asarray(index[idx])

    checkpoint = resume = None
    if checkpoint_path is not None:
        path = Path(checkpoint_path)
        # What a resumed run must share with the interrupted one, beyond the shapes.
        settings = {
            "training": {k: v for k, v in config.to_dict().items() if k != "progress_bar"},
            "beta": beta,
            "free_bits": free_bits,
            "model": model.config,
            "num_images": n,
        }

        def checkpoint(state: Any) -> None:
            _checkpoint.save_loop_state(path, state, settings)

        def resume(template: Any) -> Any:
            return _checkpoint.load_loop_state(path, template, settings) if path.is_file() else None

    return train(
        key_train,
        model,
        loss_fn,
        subset(train_idx),
        subset(val_idx),
        config,
        description="VAE",
        checkpoint=checkpoint,
        resume=resume,
    )


def _minibatch_keys(key: PRNGKeyArray, index: Array) -> Array:
    """One key per example from its index and a hash of the whole minibatch's indices."""
    weights = (2 * jnp.arange(index.shape[0], dtype=jnp.uint32) + 1) * jnp.uint32(2654435761)
    batch_key = jax.random.fold_in(key, jnp.sum(index * weights, dtype=jnp.uint32))
    return jax.vmap(lambda i: jax.random.fold_in(batch_key, i))(index)


# ---------------------------------------------------------------------- evaluation
def elbo(
    key: PRNGKeyArray,
    model: ConvVAE,
    x: ArrayLike,
    noise_variance: ArrayLike,
    *,
    num_samples: int = 1,
    batch_size: int = 256,
) -> Float[Array, " n"]:
    """Per-example ELBO in nats: ``mean_s log p(x | z_s) - KL(q(z | x) || p(z))``.

    The KL is exact (closed form); the expected log-likelihood is averaged over
    ``num_samples`` draws ``z_s ~ q(z | x)``.

    Args:
        key: PRNG key for the draws.
        model: a trained `ConvVAE`.
        x: images ``(n, *model.observation_shape)``.
        noise_variance: per-pixel noise variance, broadcastable to ``x``.
        num_samples: draws per example.
        batch_size: examples evaluated together (memory ∝ batch_size × num_samples).

    Returns:
        ``(n,)`` lower bounds on ``log p(x)``.
    """
    _check_positive_int("num_samples", num_samples)
    _check_positive_int("batch_size", batch_size)
    x, variance = _check_data(model, x, noise_variance)
    keys = jax.random.split(key, x.shape[0])
    return _map_examples(model, _elbo_one, (num_samples,), (keys, x, variance), batch_size)


def _elbo_one(model: ConvVAE, options: tuple[int], key: Array, x: Array, v: Array) -> Array:
    (num_samples,) = options
    mean, log_std, angle = model.encode_with_orientation(x[None])
    eps = jax.random.normal(key, (num_samples, model.latent_dim))
    z = mean + jnp.exp(log_std) * eps
    xs = jnp.broadcast_to(x, (num_samples, *x.shape))
    log_lik = gaussian_log_likelihood(xs, model.decode(z, angle), v[None]).mean()
    return log_lik - kl_to_standard_normal(mean, log_std).sum()


def importance_weighted_bound(
    key: PRNGKeyArray,
    model: ConvVAE,
    x: ArrayLike,
    noise_variance: ArrayLike,
    *,
    num_samples: int = 1000,
    chunk_size: int = 100,
    batch_size: int = 4,
) -> Float[Array, " n"]:
    """Per-example importance-weighted bound ``L_K`` on ``log p(x)`` in nats (Burda et al. 2016).

    ``L_K = log (1/K) Σ_k p(x | z_k) p(z_k) / q(z_k | x)`` with ``z_k ~ q(z | x)``;
    ``ELBO <= E[L_K] <= E[L_{K+1}] <= log p(x)``. The K draws are made in chunks
    with a running log-sum-exp, so memory grows with ``batch_size × chunk_size``
    decoded images, not with K. Draw ``k`` of an example uses
    ``fold_in(key_example, k)``, so the result does not depend on ``chunk_size``.

    Args:
        key: PRNG key.
        model: a trained `ConvVAE`.
        x: images ``(n, *model.observation_shape)``.
        noise_variance: per-pixel noise variance, broadcastable to ``x``.
        num_samples: K, a multiple of ``chunk_size`` (or smaller than it).
        chunk_size: draws decoded together.
        batch_size: examples evaluated together.

    Returns:
        ``(n,)`` bounds on ``log p(x)``.
    """
    for name, value in (
        ("num_samples", num_samples),
        ("chunk_size", chunk_size),
        ("batch_size", batch_size),
    ):
        _check_positive_int(name, value)
    chunk = min(chunk_size, num_samples)
    if num_samples % chunk:
        raise ValueError(
            f"num_samples: expected a multiple of chunk_size={chunk}; got {num_samples}"
        )
    x, variance = _check_data(model, x, noise_variance)
    keys = jax.random.split(key, x.shape[0])
    # K is traced (a loop bound), so one compilation serves every K with the same chunk.
    counts = jnp.full(x.shape[0], num_samples // chunk, dtype=jnp.int32)
    bounds = _map_examples(model, _iw_one, (chunk,), (keys, x, variance, counts), batch_size)
    return bounds - math.log(num_samples)


def _iw_one(
    model: ConvVAE, options: tuple[int], key: Array, x: Array, v: Array, num_chunks: Array
) -> Array:
    """``log sum_k w_k`` over ``num_chunks * chunk`` draws (the caller subtracts ``log K``)."""
    (chunk,) = options
    mean, log_std, angle = model.encode_with_orientation(x[None])
    xs = jnp.broadcast_to(x, (chunk, *x.shape))

    def body(i: Array, total: Array) -> Array:
        ks = i * chunk + jnp.arange(chunk)
        eps = jax.vmap(lambda k: jax.random.normal(jax.random.fold_in(key, k), mean.shape[1:]))(ks)
        z = mean + jnp.exp(log_std) * eps
        log_w = (
            gaussian_log_likelihood(xs, model.decode(z, angle), v[None])
            + diagonal_normal_log_prob(z, 0.0, 0.0)
            - diagonal_normal_log_prob(z, mean, log_std)
        )
        return jnp.logaddexp(total, jax.nn.logsumexp(log_w))

    return jax.lax.fori_loop(0, num_chunks, body, jnp.asarray(-jnp.inf))


def bits_per_dim(log_likelihood: ArrayLike, num_dims: int) -> Array:
    """Convert a log-likelihood (bound) in nats per image to bits per dimension.

    ``-log p(x) / (num_dims ln 2)``; for continuous data it depends on the data
    units (a density per count here), so compare it only between models of the
    same data.
    """
    _check_positive_int("num_dims", num_dims)
    return -jnp.asarray(log_likelihood) / (num_dims * math.log(2.0))


def encode(
    model: ConvVAE, x: ArrayLike, *, batch_size: int = 256
) -> tuple[Float[Array, "n latent"], Float[Array, "n latent"]]:
    """Mean and log standard deviation of ``q(z | x)`` for many images, ``(n, latent_dim)`` each."""
    x = _as_images(model, x)
    out = _map_examples(model, _encode_one, (), (x,), batch_size)
    return out[0], out[1]


def _encode_one(model: ConvVAE, options: tuple, x: Array) -> tuple[Array, Array]:
    mean, log_std = model.encode(x[None])
    return mean[0], log_std[0]


def reconstruct(model: ConvVAE, x: ArrayLike, *, batch_size: int = 256) -> Float[Array, "n ..."]:
    """Decoder mean at the encoder mean, ``m(μ(x))`` (at ``x``'s orientation), shape of ``x``."""
    x = _as_images(model, x)
    return _map_examples(model, _reconstruct_one, (), (x,), batch_size)


def _reconstruct_one(model: ConvVAE, options: tuple, x: Array) -> Array:
    mean, _, angle = model.encode_with_orientation(x[None])
    return model.decode(mean, angle)[0]


def generate(
    key: PRNGKeyArray,
    model: ConvVAE,
    num_images: int,
    *,
    noise_variance: ArrayLike | None = None,
    prior: LatentPrior | None = None,
    batch_size: int = 256,
) -> Float[Array, "num_images ..."]:
    """New images ``m(z)``; with ``noise_variance``, plus Gaussian noise of it.

    Args:
        key: PRNG key.
        model: a trained `ConvVAE`.
        num_images: how many.
        noise_variance: per-pixel variance broadcastable to ``(num_images, *obs)``,
            or ``None`` for noiseless means.
        prior: draw ``z`` from this `LatentPrior` (see `fit_latent_prior`);
            ``None`` draws ``z ~ N(0, I)``, the prior the VAE was trained with.
        batch_size: images decoded together.

    A VAE with ``orientation`` draws each image at an angle uniform in
    ``[-π/2, π/2)``: the sky has no preferred orientation.

    Raises:
        ValueError: for a ``prior`` of another latent size, or bad arguments.
    """
    _check_positive_int("num_images", num_images)
    key_z, key_noise = jax.random.split(key)
    if prior is None:
        z = jax.random.normal(key_z, (num_images, model.latent_dim))
    else:
        _check_prior(prior, model)
        z = _sample_prior(prior, key_z, num_images)
    if model.has_orientation:
        angle = jax.random.uniform(
            jax.random.fold_in(key, 2), (num_images,), minval=-math.pi / 2, maxval=math.pi / 2
        )
        images = _map_examples(model, _decode_rotated_one, (), (z, angle), batch_size)
    else:
        images = _map_examples(model, _decode_one, (), (z,), batch_size)
    if noise_variance is None:
        return images
    variance = _broadcast_variance(noise_variance, images.shape)
    return images + jnp.sqrt(variance) * jax.random.normal(key_noise, images.shape)


@functools.partial(jax.jit, static_argnums=(0, 3))
def _sample_prior_impl(graphdef, state, key, num_samples):
    return nnx.merge(graphdef, state).sample(key, num_samples)


def _sample_prior(prior: LatentPrior, key: PRNGKeyArray, num_samples: int) -> Array:
    graphdef, state = nnx.split(prior)
    return _sample_prior_impl(graphdef, state, key, num_samples)


def _check_prior(prior: Any, model: ConvVAE) -> None:
    if not isinstance(prior, LatentPrior):
        raise TypeError(f"prior: expected a LatentPrior; got {type(prior).__name__}")
    if prior.latent_dim != model.latent_dim:
        raise ValueError(
            f"prior: expected latent_dim {model.latent_dim} (the model's); got {prior.latent_dim}"
        )


def fit_latent_prior(
    key: PRNGKeyArray,
    prior: LatentPrior,
    model: ConvVAE,
    x: ArrayLike,
    *,
    draws_per_image: int = 4,
    **training_options: Any,
) -> TrainingHistory:
    """Fit ``prior`` in place to the aggregate posterior ``E_x q(z | x)`` of ``model`` on ``x``.

    Every image gives ``draws_per_image`` draws ``z ~ q(z | x)``. The images,
    not the draws, are split into training and validation sets, so the
    validation loss (mean ``-log p(z)`` of the held-out images' draws, in nats)
    says how well the prior generalises to new galaxies. ``prior.shift`` and
    ``prior.scale`` are set to the training draws' mean and standard deviation.
    Fit it to the images the VAE was trained on (or more of the same kind),
    then pass it to `generate`.

    Args:
        key: PRNG key for the draws, the split and the batch order.
        prior: a `LatentPrior` with the model's ``latent_dim``, trained in place.
        model: a trained `ConvVAE` (not changed).
        x: images ``(n, *model.observation_shape)`` in data units.
        draws_per_image: latent draws per image (positive int).
        **training_options: fields of `TrainingConfig`; defaults here are
            ``learning_rate=1e-3``, ``batch_size=256``, ``weight_decay=0``.

    Returns:
        The training history (losses in nats per latent vector).

    Raises:
        ValueError, TypeError: for a bad argument; the message names it.
    """
    if not isinstance(model, ConvVAE):
        raise TypeError(f"model: expected a ConvVAE; got {type(model).__name__}")
    _check_prior(prior, model)
    _check_positive_int("draws_per_image", draws_per_image)
    options = {"learning_rate": 1e-3, "batch_size": 256, **training_options}
    try:
        config = TrainingConfig(**options)
    except TypeError as err:
        valid = [f.name for f in dataclasses.fields(TrainingConfig)]
        raise TypeError(f"unknown training option; expected some of {valid}: {err}") from err
    x = _as_images(model, x)
    key_draw, key_split, key_train = jax.random.split(key, 3)
    mean, log_std = (np.asarray(a, np.float32) for a in encode(model, x))
    eps = np.asarray(jax.random.normal(key_draw, (draws_per_image, *mean.shape)), np.float32)
    draws = mean + np.exp(log_std) * eps  # (draws, n, latent)
    train_idx, val_idx = split_train_validation(key_split, x.shape[0], config.validation_fraction)
    z_train = draws[:, train_idx].reshape(-1, model.latent_dim)
    z_val = draws[:, val_idx].reshape(-1, model.latent_dim)
    shift = z_train.mean(axis=0, dtype=np.float64)
    scale = z_train.std(axis=0, dtype=np.float64)
    prior.shift[...] = jnp.asarray(shift, jnp.float32)
    prior.scale[...] = jnp.asarray(np.where(scale > 0, scale, 1.0), jnp.float32)

    def loss_fn(p: LatentPrior, batch: tuple[Array]) -> Array:
        return -p.log_prob(batch[0])

    return train(
        key_train,
        prior,
        loss_fn,
        (jnp.asarray(z_train),),
        (jnp.asarray(z_val),),
        config,
        description="latent prior",
    )


def _decode_one(model: ConvVAE, options: tuple, z: Array) -> Array:
    return model.decode(z[None])[0]


def _decode_rotated_one(model: ConvVAE, options: tuple, z: Array, angle: Array) -> Array:
    return model.decode(z[None], angle[None])[0]


def latent_traversal(
    model: ConvVAE,
    *,
    values: Any = (-2.0, -1.0, 0.0, 1.0, 2.0),
    dims: Any = None,
    z: ArrayLike | None = None,
) -> Float[Array, "dims values ..."]:
    """Decoded images when one latent coordinate at a time runs over ``values``.

    Args:
        model: a trained `ConvVAE`.
        values: values given to the traversed coordinate (prior standard deviations).
        dims: the latent dimensions to traverse; default all.
        z: the base point ``(latent_dim,)``; default the prior mean (zeros).

    Returns:
        Images ``(len(dims), len(values), *observation_shape)``.
    """
    dims = list(range(model.latent_dim)) if dims is None else [int(d) for d in dims]
    if not dims or not all(0 <= d < model.latent_dim for d in dims):
        raise ValueError(f"dims: expected indices in [0, {model.latent_dim}); got {dims}")
    values = jnp.asarray(values, jnp.float32)
    if values.ndim != 1 or values.size == 0:
        raise ValueError(f"values: expected a non-empty 1-D sequence; got shape {values.shape}")
    base = jnp.zeros(model.latent_dim) if z is None else jnp.asarray(z, jnp.float32)
    if base.shape != (model.latent_dim,):
        raise ValueError(f"z: expected shape ({model.latent_dim},); got {base.shape}")
    grid = jnp.broadcast_to(base, (len(dims), values.size, model.latent_dim))
    grid = grid.at[jnp.arange(len(dims)), :, jnp.asarray(dims)].set(values)
    images = _map_examples(model, _decode_one, (), (grid.reshape(-1, model.latent_dim),), 256)
    return images.reshape(len(dims), values.size, *model.observation_shape)


# ------------------------------------------------------------------- atypicality
@dataclass(frozen=True)
class AtypicalityReference:
    """Distribution of the atypicality statistic on reference data (see `fit_atypicality`).

    Attributes:
        statistics: sorted reference statistics ``(n_ref,)`` (nats).
        threshold: score above which an observation is flagged, in (0, 1).
        num_samples: posterior draws per image used by the statistic.
    """

    statistics: np.ndarray
    threshold: float
    num_samples: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form."""
        return {
            "statistics": [float(s) for s in self.statistics],
            "threshold": self.threshold,
            "num_samples": self.num_samples,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AtypicalityReference:
        """Inverse of `to_dict`."""
        return cls(
            np.sort(np.asarray(data["statistics"], dtype=np.float64)),
            float(data["threshold"]),
            int(data["num_samples"]),
        )


@dataclass(frozen=True)
class Atypicality:
    """Atypicality of observations relative to an `AtypicalityReference`.

    Attributes:
        statistic: ``(n,)`` excess negative ELBO (nats), see `atypicality_statistic`.
        score: ``(n,)`` fraction of the reference with a smaller statistic, in [0, 1];
            uniform for data like the reference, near 1 for unusual data.
        flagged: ``(n,)`` ``score > threshold``.
        threshold: the flagging threshold.
    """

    statistic: np.ndarray
    score: np.ndarray
    flagged: np.ndarray
    threshold: float


def atypicality_statistic(
    key: PRNGKeyArray,
    model: ConvVAE,
    x: ArrayLike,
    noise_variance: ArrayLike,
    *,
    num_samples: int = 16,
    batch_size: int = 256,
) -> Float[Array, " n"]:
    """Excess negative ELBO: ``-ELBO(x) + Σ_pixels log N(0 | 0, v)`` (nats), ``(n,)``.

    This is ``E_q[χ²(x, m(z))]/2 + KL(q || p)``: the negative ELBO without the
    data-independent normalisation ``-½ Σ log 2πv`` of the Gaussian likelihood,
    so that an image is not called unusual only because its noise is large or
    small. Large values mean the VAE cannot explain the image with a typical
    latent code.
    """
    x, variance = _check_data(model, x, noise_variance)
    bound = elbo(key, model, x, variance, num_samples=num_samples, batch_size=batch_size)
    return -bound + gaussian_log_normaliser(jnp.asarray(variance))


def fit_atypicality(
    key: PRNGKeyArray,
    model: ConvVAE,
    x: ArrayLike,
    noise_variance: ArrayLike,
    *,
    threshold: float = 0.99,
    num_samples: int = 16,
) -> AtypicalityReference:
    """The reference distribution of `atypicality_statistic` on ``x``.

    Use data the VAE was *not* trained on (its validation split or a held-out
    set): training images have optimistic ELBOs, which would flag too many new
    observations.

    Args:
        key: PRNG key.
        model: a trained `ConvVAE`.
        x: reference images ``(n_ref, *obs)``, like the training data.
        noise_variance: their per-pixel noise variance.
        threshold: flag observations whose score exceeds this, in (0, 1).
        num_samples: posterior draws per image.
    """
    if not (isinstance(threshold, int | float) and 0.0 < threshold < 1.0):
        raise ValueError(f"threshold: expected a number in (0, 1); got {threshold!r}")
    stats = atypicality_statistic(key, model, x, noise_variance, num_samples=num_samples)
    statistics = np.sort(np.asarray(stats, np.float64))
    return AtypicalityReference(statistics, float(threshold), num_samples)


def score_atypicality(
    key: PRNGKeyArray,
    model: ConvVAE,
    reference: AtypicalityReference,
    x: ArrayLike,
    noise_variance: ArrayLike,
) -> Atypicality:
    """Score and flag observations against the reference distribution.

    Args:
        key: PRNG key.
        model: the `ConvVAE` the reference was made with.
        reference: from `fit_atypicality`.
        x: observations ``(n, *obs)``.
        noise_variance: their per-pixel noise variance.
    """
    stats = np.asarray(
        atypicality_statistic(key, model, x, noise_variance, num_samples=reference.num_samples),
        np.float64,
    )
    score = np.searchsorted(reference.statistics, stats, side="left") / len(reference.statistics)
    return Atypicality(stats, score, score > reference.threshold, reference.threshold)


def add_atypicality_columns(table: Any, atypicality: Atypicality, *, name: str = "atypicality"):
    """Add columns ``name`` (the score) and ``name + "_flag"`` to an astropy table, in place.

    Works with the one-row-per-observation table of ``posterior.summary()``.

    Args:
        table: an astropy ``Table`` or ``QTable`` with one row per observation.
        atypicality: from `score_atypicality`, for the same observations in order.
        name: column name of the score.

    Returns:
        The same table.

    Raises:
        ValueError: if the number of rows differs from the number of observations,
            or the columns exist already.
    """
    if len(table) != len(atypicality.score):
        raise ValueError(
            f"atypicality: expected {len(table)} observations (the table's rows); "
            f"got {len(atypicality.score)}"
        )
    flag = f"{name}_flag"
    for column in (name, flag):
        if column in table.colnames:
            raise ValueError(f"name: the table already has a column {column!r}")
    table[name] = np.asarray(atypicality.score)
    table[name].description = "fraction of the VAE reference set that is more typical"
    table[flag] = np.asarray(atypicality.flagged, dtype=bool)
    table[flag].description = f"atypicality score above {atypicality.threshold}"
    table.meta[f"{name}_threshold"] = atypicality.threshold
    return table


# --------------------------------------------------------------------- embedding
class VAEEmbedding(nnx.Module):
    """The trained encoder of a `ConvVAE` as an NPE embedding: images to ``μ(x)``.

    It divides its input by the VAE's ``data_scale`` itself, so give NPE raw
    images: ``ap.NPE(task, embedding=VAEEmbedding(vae), x_scaling="none")``.

    Args:
        vae: a trained `ConvVAE` (copied; the VAE itself is not changed).
        trainable: fine-tune the encoder with the density estimator (``True``)
            or keep it frozen (``False``: its weights are not ``nnx.Param``, so
            the training loop leaves them alone).
        include_log_std: also output ``log σ(x)``, giving ``2 × latent_dim`` features.

    For a VAE with ``orientation``, two more features follow:
    ``(cos 2φ, sin 2φ)`` of the orientation angle, which rotate as spin 2 (like
    ``(e1, e2)``), so that NPE can also infer orientation parameters.
    """

    def __init__(self, vae: ConvVAE, *, trainable: bool = False, include_log_std: bool = False):
        if not isinstance(vae, ConvVAE):
            raise TypeError(f"vae: expected a ConvVAE; got {type(vae).__name__}")
        encoder, head = nnx.clone(vae.encoder), nnx.clone(vae.head)
        if not trainable:
            encoder, head = _freeze(encoder), _freeze(head)
        self.encoder = encoder
        self.head = head
        self.data_scale = FixedArray(jnp.asarray(vae.data_scale[...]))
        self.latent_dim = vae.latent_dim
        self.observation_shape = vae.observation_shape
        self.invariant_columns, self.spin2_columns = vae.invariant_columns, vae.spin2_columns
        self.trainable = trainable
        self.include_log_std = include_log_std

    def __call__(self, x: Float[Array, "batch ..."]) -> Float[Array, "batch features"]:
        """Features ``(batch, latent_dim)``, doubled with ``log σ``, + 2 with orientation."""
        if tuple(x.shape[1:]) != self.observation_shape:
            raise ValueError(
                f"x: expected shape (batch, {', '.join(map(str, self.observation_shape))}); "
                f"got {tuple(x.shape)}"
            )
        features, angle = _split_orientation(
            self.encoder(x / self.data_scale[...]), self.invariant_columns, self.spin2_columns
        )
        extra = [] if angle is None else [jnp.stack([jnp.cos(2 * angle), jnp.sin(2 * angle)], 1)]
        out = self.head(features)
        out = out if self.include_log_std else out[:, : self.latent_dim]
        return jnp.concatenate([out, *extra], axis=1) if extra else out


def _freeze(module: nnx.Module) -> nnx.Module:
    """A copy of ``module`` whose ``nnx.Param`` variables are `FixedArray` (not trained)."""
    graphdef, state = nnx.split(module)
    state = jax.tree.map(
        lambda v: FixedArray(v.get_value()) if isinstance(v, nnx.Param) else v,
        state,
        is_leaf=lambda v: isinstance(v, nnx.Variable),
    )
    return nnx.merge(graphdef, state)


# ------------------------------------------------------------------- persistence
@dataclass(frozen=True)
class SavedVAE:
    """What `load_vae` returns.

    Attributes:
        model: the `ConvVAE` with its trained weights.
        history: its training history, if it was saved.
        atypicality: its atypicality reference, if it was saved.
        metadata: the free-form ``metadata`` dict given to `save_vae`.
        latent_prior: its `LatentPrior`, if it was saved.
    """

    model: ConvVAE
    history: TrainingHistory | None
    atypicality: AtypicalityReference | None
    metadata: dict[str, Any]
    latent_prior: LatentPrior | None = None


def save_vae(
    model: ConvVAE,
    path: str | Path,
    *,
    history: TrainingHistory | None = None,
    atypicality: AtypicalityReference | None = None,
    metadata: dict[str, Any] | None = None,
    latent_prior: LatentPrior | None = None,
) -> Path:
    """Save config (JSON) and weights (msgpack of raw arrays, no pickle) into directory ``path``.

    Every file is written atomically; the config, written last, records the
    weights' checksums. A ``latent_prior`` (see `fit_latent_prior`) is saved
    alongside in its own weights file.

    Returns:
        The directory.
    """
    if not isinstance(model, ConvVAE):
        raise TypeError(f"model: expected a ConvVAE; got {type(model).__name__}")
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    if latent_prior is not None:
        _check_prior(latent_prior, model)
    blob = _weights_blob(model)
    prior_blob = None if latent_prior is None else _weights_blob(latent_prior)
    config = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "astroprob_version": __version__,
        "model": model.config,
        "history": None if history is None else history.to_dict(),
        "atypicality": None if atypicality is None else atypicality.to_dict(),
        "metadata": metadata or {},
        "weights_sha256": _checkpoint.sha256(blob),
        "latent_prior": None
        if latent_prior is None
        else {"config": latent_prior.config, "weights_sha256": _checkpoint.sha256(prior_blob)},
    }
    _checkpoint.write_atomic(path / WEIGHTS_FILE, blob)
    if prior_blob is not None:
        _checkpoint.write_atomic(path / PRIOR_WEIGHTS_FILE, prior_blob)
    _checkpoint.write_json_atomic(path / CONFIG_FILE, config)
    return path


def load_vae(path: str | Path, *, encoder: nnx.Module | None = None) -> SavedVAE:
    """Load a VAE written by `save_vae`.

    Args:
        path: the directory.
        encoder: a module of the same architecture as the custom encoder the
            VAE was built with; must be ``None`` for the default encoder.

    Raises:
        FileNotFoundError: if a file is missing.
        ValueError: for another format, a mismatched encoder or corrupted weights.
    """
    path = Path(path)
    config_path, weights_path = path / CONFIG_FILE, path / WEIGHTS_FILE
    for p in (config_path, weights_path):
        if not p.is_file():
            raise FileNotFoundError(f"{p}: no such file; expected a directory from save_vae")
    config = json.loads(config_path.read_text())
    if config.get("format") != FORMAT or config.get("format_version", 0) > FORMAT_VERSION:
        raise ValueError(
            f"{config_path}: expected {FORMAT} version <= {FORMAT_VERSION}; got "
            f"{config.get('format')!r} version {config.get('format_version')!r}"
        )
    arch = config["model"]
    if arch["encoder"] is not None and encoder is None:
        raise ValueError(
            f"encoder: this VAE was built with a custom encoder ({arch['encoder']}); pass a "
            "module of the same architecture"
        )
    if arch["encoder"] is None and encoder is not None:
        raise ValueError("encoder: this VAE was built with the default encoder; got one")
    blob = _read_checked(weights_path, config["weights_sha256"], config_path)
    psf_shape = arch["psf_shape"]
    model = ConvVAE(
        tuple(arch["image_shape"]),
        in_channels=arch["in_channels"],
        latent_dim=arch["latent_dim"],
        channels=tuple(arch["channels"]),
        hidden=arch["hidden"],
        encoder=None if encoder is None else nnx.clone(encoder),
        psf=None if psf_shape is None else np.zeros(psf_shape, np.float32),
        orientation=arch.get("orientation", False),
        rngs=nnx.Rngs(0),
    )
    _load_weights(model, blob, weights_path)
    latent_prior = None
    if config.get("latent_prior") is not None:
        prior_path = path / PRIOR_WEIGHTS_FILE
        if not prior_path.is_file():
            raise FileNotFoundError(f"{prior_path}: no such file; {config_path} records a prior")
        prior_blob = _read_checked(
            prior_path, config["latent_prior"]["weights_sha256"], config_path
        )
        latent_prior = LatentPrior(**config["latent_prior"]["config"], rngs=nnx.Rngs(0))
        _load_weights(latent_prior, prior_blob, prior_path)
    history = config.get("history")
    history = None if history is None else TrainingHistory.from_dict(history)
    reference = (
        None
        if config.get("atypicality") is None
        else AtypicalityReference.from_dict(config["atypicality"])
    )
    return SavedVAE(model, history, reference, dict(config.get("metadata") or {}), latent_prior)


def _weights_blob(module: nnx.Module) -> bytes:
    state = nnx.state(module, nnx.Not(nnx.RngState))
    return _checkpoint.encode_arrays(_checkpoint.flatten_state(nnx.to_pure_dict(state)))


def _read_checked(weights_path: Path, sha256: str, config_path: Path) -> bytes:
    blob = weights_path.read_bytes()
    if _checkpoint.sha256(blob) != sha256:
        raise ValueError(
            f"{weights_path}: checksum does not match {config_path}; the directory mixes files "
            "from different runs or the weights are corrupted"
        )
    return blob


def _load_weights(module: nnx.Module, blob: bytes, source: Path) -> None:
    state = nnx.state(module, nnx.Not(nnx.RngState))
    arrays = _checkpoint.decode_arrays(blob, source=str(source))
    pure = _checkpoint.unflatten_like(nnx.to_pure_dict(state), arrays, source=str(source))
    nnx.replace_by_pure_dict(state, jax.tree.map(jnp.asarray, pure))
    nnx.update(module, state)


# ----------------------------------------------------------------------- helpers
@functools.partial(jax.jit, static_argnums=(0, 1, 2, 5))
def _map_impl(graphdef, fn, options, state, arrays, batch_size):
    model = nnx.merge(graphdef, state)
    return jax.lax.map(lambda a: fn(model, options, *a), arrays, batch_size=batch_size)


def _map_examples(model: ConvVAE, fn, options: tuple, arrays: tuple, batch_size: int):
    """``fn(model, options, *example)`` over the leading axis, jitted, in vmapped batches."""
    _check_positive_int("batch_size", batch_size)
    graphdef, state = nnx.split(model)
    n = arrays[0].shape[0]
    batch_size = min(batch_size, n)
    # Pad to whole batches (repeating row 0) so that lax.map compiles one batch shape only.
    pad = -n % batch_size
    arrays = tuple(
        jnp.concatenate([jnp.asarray(a), jnp.repeat(jnp.asarray(a)[:1], pad, axis=0)])
        for a in arrays
    )
    out = _map_impl(graphdef, fn, options, state, arrays, batch_size)
    return jax.tree.map(lambda o: o[:n], out)


def _as_images(model: ConvVAE, x: ArrayLike) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    model.check_images(x)
    if not np.all(np.isfinite(x)):
        bad = int((~np.isfinite(x)).sum())
        raise ValueError(f"x: expected finite values; {bad} are NaN or inf")
    return x


def _broadcast_variance(noise_variance: ArrayLike, shape: tuple[int, ...]) -> np.ndarray:
    variance = np.asarray(noise_variance, dtype=np.float32)
    try:
        variance = np.broadcast_to(variance, shape)
    except ValueError as err:
        raise ValueError(
            f"noise_variance: expected an array broadcastable to {tuple(shape)}; got "
            f"{variance.shape}"
        ) from err
    if not np.all(np.isfinite(variance)) or not np.all(variance > 0):
        raise ValueError("noise_variance: expected finite values > 0")
    return variance


def _check_data(model: ConvVAE, x: ArrayLike, noise_variance: ArrayLike):
    if not isinstance(model, ConvVAE):
        raise TypeError(f"model: expected a ConvVAE; got {type(model).__name__}")
    x = _as_images(model, x)
    return x, np.ascontiguousarray(_broadcast_variance(noise_variance, x.shape))


def _check_psf(psf: ArrayLike, in_channels: int) -> Array:
    kernel = np.asarray(psf, dtype=np.float32)
    if kernel.ndim == 2:
        kernel = np.repeat(kernel[..., None], in_channels, axis=-1)
    if kernel.ndim != 3 or kernel.shape[-1] != in_channels:
        raise ValueError(
            f"psf: expected shape (ph, pw) or (ph, pw, {in_channels}); got {np.shape(psf)}"
        )
    if not np.all(np.isfinite(kernel)):
        raise ValueError("psf: expected finite values")
    return jnp.asarray(kernel)


def _split_orientation(
    features: Array, invariant_columns: tuple | None, spin2_columns: tuple | None
) -> tuple[Array, Array | None]:
    """Invariant encoder features and the angle ``atan2(v2, v1) / 2`` of the spin-2 output.

    Without orientation (``None`` columns) the features pass unchanged and the angle is None.
    """
    if spin2_columns is None:
        return features, None
    a = spin2_columns[0]
    v1, v2 = features[:, a], features[:, a + 1]
    # atan2's gradient is 0/0 at v = 0 (an empty stamp): use angle 0 there.
    flat = v1**2 + v2**2 < 1e-30
    angle = 0.5 * jnp.arctan2(jnp.where(flat, 0.0, v2), jnp.where(flat, 1.0, v1))
    start, stop = invariant_columns
    return features[:, start:stop], angle


def _orientation_columns(encoder: Any, features: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """Columns ``(start, stop)`` of the invariant and the spin-2 outputs of ``encoder``."""
    layout = dict(getattr(encoder, "output_slices", ()) or ())
    if set(layout) != {"invariant", "spin2"} or layout["spin2"].stop - layout["spin2"].start != 2:
        raise ValueError(
            "orientation: expected an encoder whose output_slices are 'invariant' and one "
            "'spin2', e.g. EquivariantCNN('C4', equivariant_outputs=('spin2',)); got "
            f"{sorted(layout) or 'an encoder without output_slices'}"
        )
    if max(s.stop for s in layout.values()) != features:
        raise ValueError(f"orientation: output_slices do not cover the {features} features")
    inv, spin = layout["invariant"], layout["spin2"]
    return (inv.start, inv.stop), (spin.start, spin.stop)


def _encoder_features(encoder: nnx.Module, observation_shape: tuple[int, ...]) -> int:
    out = nnx.eval_shape(lambda m: m(jnp.zeros((1, *observation_shape))), encoder)
    if len(out.shape) != 2 or out.shape[0] != 1:
        raise ValueError(
            "encoder: expected an output of shape (batch, features) for an input "
            f"(1, {', '.join(map(str, observation_shape))}); got {tuple(out.shape)}"
        )
    return int(out.shape[1])


def _check_positive_int(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ValueError(f"{name}: expected a positive integer; got {value!r}")


def _qualified_name(obj: Any) -> str:
    cls = type(obj)
    return f"{cls.__module__}.{cls.__qualname__}"
