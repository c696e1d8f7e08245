"""Amortized model comparison: a calibrated classifier for p(M | x) over discrete models.

Given data simulated from several models M (supernova types, galaxy classes,
competing physical models) with prior probabilities p(M), a network trained by
cross-entropy on pairs (M, x) converges to the posterior model probabilities
p(M | x). An embedding network (e.g. `astroprob.nn.LightCurveEncoder`,
`astroprob.nn.ConvEmbedding`) maps the data to features, an MLP trunk and a
softmax layer give the class probabilities. Neural networks trained this way
are often over-confident, so a single temperature T, fitted on the validation
split after training (the split that also decides early stopping), rescales the
logits: ``p(M | x) = softmax(z(x) / T)``. The calibration is checked with
`astroprob.diagnostics.classification_calibration` (reliability diagram, ECE).

The probabilities are posterior probabilities under the class frequencies of
the training set; `ModelClassifier.predict_proba` takes ``class_prior=`` to
move them to other prior model probabilities (Bayes' rule: the likelihood
ratios p(x | M) / p(x | M') do not depend on the prior), and
`ModelClassifier.log_bayes_factors` gives the prior-free comparison.

Combined with one posterior estimator per model, the model-averaged posterior
is ``p(θ | x) = Σ_M p(M | x) p(θ | x, M)``; `model_averaged_samples` draws
from it.

References:
    Guo et al. 2017, "On Calibration of Modern Neural Networks",
    https://arxiv.org/abs/1706.04599 (temperature scaling);
    Radev et al. 2021, "Amortized Bayesian model comparison with evidential
    deep learning", https://arxiv.org/abs/2004.10629;
    Jeffrey & Wandelt 2020, "Solving high-dimensional parameter inference:
    marginal posterior densities & Moment Networks" (classifiers as posterior
    model probabilities), https://arxiv.org/abs/2011.05991.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax.typing import ArrayLike
from jaxtyping import Array, Float, PRNGKeyArray

from astroprob.diagnostics.classification import (
    ClassificationCalibrationResult,
    classification_calibration,
)
from astroprob.inference import _supervised
from astroprob.inference._loop import TrainingConfig, TrainingHistory, split_train_validation, train
from astroprob.inference._network import Statistic

__all__ = [
    "ClassifierNetwork",
    "ModelClassifier",
    "fit_temperature",
    "model_averaged_samples",
]

_Values = ArrayLike | Sequence[Any]
"""An array or a (nested) list of numbers."""

FORMAT = "astroprob-classifier"
FORMAT_VERSION = 1
TEMPERATURE_BOUNDS = (0.02, 50.0)
"""Search interval of the fitted temperature."""


class ClassifierNetwork(nnx.Module):
    """Features φ(x) and a softmax layer: tempered logits ``(batch, num_classes)``.

    Args:
        features: the feature network (z-scoring, embedding, trunk).
        num_classes: number of classes (models).
        rngs: random state for the initial weights.
    """

    def __init__(self, features: _supervised.FeatureNetwork, num_classes: int, *, rngs: nnx.Rngs):
        self.features = features
        self.output = _supervised.linear(features.num_features, num_classes, rngs=rngs)
        self.temperature = Statistic(jnp.ones((), jnp.float32))

    def raw_logits(self, x: Float[Array, "batch ..."]) -> Float[Array, "batch classes"]:
        """Logits before temperature scaling."""
        return self.output(self.features(x))

    def log_probs(self, x: Float[Array, "batch ..."]) -> Float[Array, "batch classes"]:
        """Log predictive probabilities ``log softmax(z / T)``."""
        return jax.nn.log_softmax(self.raw_logits(x) / self.temperature[...], axis=-1)


class ModelClassifier:
    """Posterior model probabilities p(M | x) from labelled simulations (or labelled data).

    Args:
        classes: the number of classes or their names, e.g.
            ``("Ia", "Ibc", "II-P", "II-L")``.
        embedding: optional Flax NNX module mapping z-scored data
            ``(batch, *observation_shape)`` to ``(batch, features)``, trained
            jointly; ``None`` flattens the data.
        hidden: width of the MLP trunk between embedding and softmax layer.
        depth: number of trunk layers.
        x_scaling: z-scoring of the data, as for `astroprob.NPE`
            (``"auto"``, ``"per_feature"``, ``"global"``, ``"none"``).
        temperature_scaling: fit a temperature on the validation split after
            training (Guo et al. 2017).

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> k1, k2 = jax.random.split(jax.random.key(0))
        >>> labels = jax.random.bernoulli(k1, 0.5, (600,)).astype(int)
        >>> x = (2 * labels - 1)[:, None] + jax.random.normal(k2, (600, 1))
        >>> clf = ModelClassifier(("left", "right"), hidden=16, depth=1)
        >>> clf = clf.fit(jax.random.key(1), x, labels, max_epochs=5, progress_bar=False)
        >>> clf.predict_proba(jnp.zeros((3, 1))).shape
        (3, 2)
    """

    _format = FORMAT

    def __init__(
        self,
        classes: int | Sequence[str],
        *,
        embedding: nnx.Module | None = None,
        hidden: int = 64,
        depth: int = 2,
        x_scaling: str = "auto",
        temperature_scaling: bool = True,
    ):
        if isinstance(classes, int | np.integer) and not isinstance(classes, bool):
            names = tuple(str(i) for i in range(int(classes)))
        elif isinstance(classes, Sequence) and not isinstance(classes, str):
            names = tuple(classes)
        else:
            raise TypeError(
                f"classes: expected a number of classes or a sequence of names; got {classes!r}"
            )
        if (
            len(names) < 2
            or len(set(names)) != len(names)
            or not all(isinstance(n, str) for n in names)
        ):
            raise ValueError(
                f"classes: expected at least two distinct class names; got {classes!r}"
            )
        _supervised.check_architecture(hidden, depth, x_scaling, embedding)
        self.class_names = names
        self.hidden = hidden
        self.depth = depth
        self.x_scaling = x_scaling
        self.temperature_scaling = bool(temperature_scaling)
        self._embedding = None if embedding is None else nnx.clone(embedding)
        self._network: ClassifierNetwork | None = None
        self.observation_shape: tuple[int, ...] | None = None
        self.training_class_prior: np.ndarray | None = None
        self.history: TrainingHistory | None = None
        self.training_config: TrainingConfig | None = None

    @property
    def num_classes(self) -> int:
        """Number of classes (models)."""
        return len(self.class_names)

    # ------------------------------------------------------------------ training
    def fit(
        self,
        key: PRNGKeyArray,
        x: ArrayLike,
        labels: _Values,
        *,
        class_prior: _Values | None = None,
        validation: tuple[ArrayLike, _Values] | None = None,
        **training_options: Any,
    ) -> ModelClassifier:
        """Train on labelled examples with the package's training loop; returns ``self``.

        A random ``validation_fraction`` of the examples (or the explicit
        ``validation`` set) decides early stopping and, with
        ``temperature_scaling``, the temperature. Examples with NaN or inf are
        excluded with a warning (``history.num_invalid``).

        Args:
            key: PRNG key for the weights, the split and the minibatch order.
            x: observations ``(n, *observation_shape)``.
            labels: class indices ``(n,)`` in ``0..num_classes-1``.
            class_prior: the probabilities with which the classes were drawn,
                ``(num_classes,)`` (e.g. a task's ``type_probabilities``);
                default: the class fractions of ``labels``.
            validation: optional ``(x_val, labels_val)`` to use instead of a
                random split, e.g. when ``x`` holds augmented copies of one
                image that must not end up on both sides.
            **training_options: fields of `TrainingConfig`.

        Raises:
            ValueError: on wrong shapes, labels out of range, or a class
                without examples.
        """
        config = _training_config(training_options)
        x = _supervised.as_observations(x, None)
        labels = self._check_labels(labels, len(x))
        keep, num_invalid = _supervised.finite_rows(x)
        x, labels = x[keep], labels[keep]
        counts = np.bincount(labels, minlength=self.num_classes)
        if np.any(counts == 0):
            missing = [self.class_names[i] for i in np.flatnonzero(counts == 0)]
            raise ValueError(f"labels: expected examples of every class; none of {missing}")
        self.training_class_prior = (
            counts / counts.sum()
            if class_prior is None
            else _check_prior(class_prior, self.num_classes, "class_prior")
        )
        self.observation_shape = tuple(x.shape[1:])

        key_split, key_init, key_train, key_post = jax.random.split(key, 4)
        if validation is None:
            train_idx, val_idx = split_train_validation(
                key_split, len(x), config.validation_fraction
            )
            x_val, labels_val = x[val_idx], labels[val_idx]
            x, labels = x[train_idx], labels[train_idx]
        else:
            if not isinstance(validation, tuple) or len(validation) != 2:
                raise TypeError("validation: expected a pair (x_val, labels_val)")
            x_val = _supervised.as_observations(validation[0], self.observation_shape, "validation")
            labels_val = self._check_labels(validation[1], len(x_val), "validation labels")
            if len(x_val) < 1 or not np.isfinite(x_val).all():
                raise ValueError("validation: expected at least one example, all finite")
        train_idx = np.arange(len(x))
        x_shift, x_scale, self._fitted_x_scaling = _supervised.x_statistics(
            x[train_idx], self.x_scaling
        )
        network = self._build_network(x_shift, x_scale, nnx.Rngs(key_init))

        def loss_fn(model: ClassifierNetwork, batch: tuple[Array, Array]) -> Array:
            xb, yb = batch
            return optax.softmax_cross_entropy_with_integer_labels(model.raw_logits(xb), yb)

        train_data = (jnp.asarray(x[train_idx]), jnp.asarray(labels[train_idx]))
        val_data = (jnp.asarray(x_val), jnp.asarray(labels_val))
        history = train(
            key_train,
            network,
            loss_fn,
            train_data,
            val_data,
            config,
            description=f"{type(self).__name__}",
        )
        history.num_invalid = num_invalid
        self.history = history
        self.training_config = config
        self._install(network)
        self._after_training(key_post, train_data, val_data)
        return self

    def _build_network(self, x_shift: Array, x_scale: Array, rngs: nnx.Rngs) -> ClassifierNetwork:
        embedding = None if self._embedding is None else nnx.clone(self._embedding)
        features = _supervised.FeatureNetwork(
            embedding,
            self.observation_shape,
            hidden=self.hidden,
            depth=self.depth,
            x_shift=x_shift,
            x_scale=x_scale,
            rngs=rngs,
        )
        return ClassifierNetwork(features, self.num_classes, rngs=rngs)

    def _after_training(
        self, key: PRNGKeyArray, train_data: tuple[Array, Array], val_data: tuple[Array, Array]
    ) -> None:
        """Post-hoc steps after training: here, temperature scaling on the validation split."""
        del key, train_data
        if self.temperature_scaling:
            self.fit_temperature(*val_data)

    def _check_labels(self, labels: _Values, n: int, name: str = "labels") -> np.ndarray:
        labels = np.asarray(labels)
        if labels.shape != (n,):
            raise ValueError(f"{name}: expected shape ({n},) to match x; got {labels.shape}")
        if not np.issubdtype(labels.dtype, np.integer):
            raise TypeError(f"{name}: expected integer class indices; got dtype {labels.dtype}")
        if n and (labels.min() < 0 or labels.max() >= self.num_classes):
            raise ValueError(
                f"{name}: expected integers in 0..{self.num_classes - 1}; got values in "
                f"{labels.min()}..{labels.max()}"
            )
        return labels.astype(np.int32)

    # ----------------------------------------------------------- temperature
    @property
    def temperature(self) -> float:
        """The temperature T dividing the logits (1: no scaling)."""
        self._require_fitted()
        return float(self._network.temperature[...])

    def set_temperature(self, temperature: float) -> ModelClassifier:
        """Set the temperature by hand (e.g. to study miscalibration); returns ``self``."""
        self._require_fitted()
        if isinstance(temperature, bool) or not isinstance(temperature, int | float | np.floating):
            raise TypeError(f"temperature: expected a positive number; got {temperature!r}")
        if not (math.isfinite(temperature) and temperature > 0):
            raise ValueError(f"temperature: expected a positive number; got {temperature}")
        self._network.temperature[...] = jnp.asarray(temperature, jnp.float32)
        self._install(self._network)
        return self

    def fit_temperature(self, x: ArrayLike, labels: _Values) -> float:
        """Fit the temperature that minimises the NLL of ``labels`` on ``x``; returns it.

        Use held-out data (by default `fit` uses its validation split), never
        the test set.
        """
        self._require_fitted()
        x = _supervised.as_observations(x, self.observation_shape)
        labels = self._check_labels(labels, len(x))
        self._network.temperature[...] = jnp.ones((), jnp.float32)
        self._install(self._network)
        temperature = self._fit_temperature_on(x, labels)
        self._network.temperature[...] = jnp.asarray(temperature, jnp.float32)
        self._install(self._network)
        return temperature

    def _fit_temperature_on(self, x: np.ndarray, labels: np.ndarray) -> float:
        return fit_temperature(self._batched(self._raw_logits_fn, x), labels)

    # ----------------------------------------------------------------- inference
    def _install(self, network: ClassifierNetwork) -> None:
        """Adopt a network (or new weights of it) for prediction."""
        self._network = network
        self._log_probs_fn = _supervised.bind(network, "log_probs")
        self._raw_logits_fn = _supervised.bind(network, "raw_logits")

    def _batched(self, fn: Any, x: np.ndarray) -> np.ndarray:
        return _supervised.batched(fn, x)

    @property
    def is_fitted(self) -> bool:
        """Whether the classifier has been trained or loaded."""
        return self._network is not None

    @property
    def network(self) -> ClassifierNetwork:
        """The trained network."""
        self._require_fitted()
        return self._network

    def _require_fitted(self) -> None:
        if self._network is None:
            raise RuntimeError(
                f"this {type(self).__name__} is not trained yet: call fit() or load() first"
            )

    def log_probs(self, x: ArrayLike, *, class_prior: _Values | None = None) -> np.ndarray:
        """Log posterior model probabilities ``(n, num_classes)``; see `predict_proba`."""
        self._require_fitted()
        x = _supervised.as_observations(x, self.observation_shape)
        log_p = self._batched(self._log_probs_fn, x).astype(np.float64)
        if class_prior is not None:
            prior = _check_prior(class_prior, self.num_classes, "class_prior")
            log_p = log_p + np.log(prior) - np.log(self.training_class_prior)
        # Renormalise in float64, so that the probabilities sum to one and none exceeds one.
        return log_p - _logsumexp(log_p)

    def predict_proba(self, x: ArrayLike, *, class_prior: _Values | None = None) -> np.ndarray:
        """Posterior model probabilities p(M | x), ``(n, num_classes)``; rows sum to one.

        Args:
            x: one observation ``observation_shape`` or a batch ``(n, *observation_shape)``.
            class_prior: prior model probabilities ``(num_classes,)`` to use
                instead of the training ones (``training_class_prior``).
        """
        return np.exp(self.log_probs(x, class_prior=class_prior))

    def predict(self, x: ArrayLike) -> np.ndarray:
        """Most probable class index per observation, ``(n,)``."""
        return np.argmax(self.log_probs(x), axis=-1)

    def log_bayes_factors(self, x: ArrayLike, *, reference: int = 0) -> np.ndarray:
        """``log p(x | M) - log p(x | M_reference)`` per class, ``(n, num_classes)``.

        Posterior odds divided by the training prior odds; independent of any prior.
        """
        if not 0 <= reference < self.num_classes:
            raise ValueError(
                f"reference: expected a class index in 0..{self.num_classes - 1}; got {reference}"
            )
        log_ratio = self.log_probs(x) - np.log(self.training_class_prior)
        return log_ratio - log_ratio[:, reference : reference + 1]

    def calibration(
        self, key: PRNGKeyArray, x: ArrayLike, labels: _Values, **options: Any
    ) -> ClassificationCalibrationResult:
        """Reliability diagram, ECE and verdict on held-out labelled data.

        ``options`` go to `astroprob.diagnostics.classification_calibration`.
        """
        probs = self.predict_proba(x)
        labels = self._check_labels(labels, len(probs))
        return classification_calibration(key, probs, labels, **options)

    # ------------------------------------------------------------- persistence
    def _config(self) -> dict[str, Any]:
        embedding = self._network.features.embedding
        return {
            "format": self._format,
            "format_version": FORMAT_VERSION,
            "class_names": list(self.class_names),
            "observation_shape": list(self.observation_shape),
            "hidden": self.hidden,
            "depth": self.depth,
            "x_scaling": self._fitted_x_scaling,
            "temperature_scaling": self.temperature_scaling,
            "training_class_prior": [float(p) for p in self.training_class_prior],
            "embedding": None if embedding is None else _supervised.qualified_name(embedding),
            "training": None if self.training_config is None else self.training_config.to_dict(),
            "history": None if self.history is None else self.history.to_dict(),
        }

    def save(self, path: str | Path) -> Path:
        """Save config (JSON) and weights (msgpack, no pickle) into directory ``path``."""
        self._require_fitted()
        return _supervised.save_run(path, self._network, self._config())

    @classmethod
    def _from_config(cls, config: dict[str, Any], embedding: nnx.Module | None) -> ModelClassifier:
        return cls(
            tuple(config["class_names"]),
            embedding=embedding,
            hidden=config["hidden"],
            depth=config["depth"],
            x_scaling=config["x_scaling"],
            temperature_scaling=config["temperature_scaling"],
        )

    @classmethod
    def load(cls, path: str | Path, *, embedding: nnx.Module | None = None) -> ModelClassifier:
        """Load a classifier written by `save`.

        Args:
            path: the run directory.
            embedding: a module of the same architecture as the one trained,
                required when the run used an embedding network.

        Raises:
            FileNotFoundError: if the directory lacks the config or weights.
            ValueError: for another format, a mismatching embedding, or
                corrupted weights.
        """
        config, path = _supervised.read_config(path, cls._format, FORMAT_VERSION)
        _supervised.check_embedding_matches(config, embedding)
        clf = cls._from_config(config, embedding)
        clf.observation_shape = tuple(config["observation_shape"])
        clf._fitted_x_scaling = config["x_scaling"]
        clf.training_class_prior = np.asarray(config["training_class_prior"])
        shape = _supervised.statistic_shape(clf.observation_shape, config["x_scaling"])
        network = clf._build_network(jnp.zeros(shape), jnp.ones(shape), nnx.Rngs(0))
        _supervised.load_weights_into(path, network, config)
        if config.get("training"):
            clf.training_config = TrainingConfig(**config["training"])
        if config.get("history"):
            clf.history = TrainingHistory.from_dict(config["history"])
        clf._install(network)
        return clf

    def __repr__(self) -> str:
        state = "trained" if self.is_fitted else "untrained"
        return f"{type(self).__name__}(classes={self.class_names}, {state})"


# --------------------------------------------------------------------- pure functions
def fit_temperature(logits: ArrayLike, labels: _Values) -> float:
    """The temperature T minimising the mean NLL of ``softmax(logits / T)``.

    The NLL is convex in 1/T, hence unimodal in log T, and a golden-section
    search over log T in `TEMPERATURE_BOUNDS` finds its minimum. A warning is
    given when the minimum lies on a bound.

    Args:
        logits: ``(n, num_classes)`` unscaled logits.
        labels: ``(n,)`` true class indices.

    Returns:
        The fitted temperature (> 1 softens over-confident probabilities).

    Raises:
        ValueError: on wrong shapes or labels out of range.
    """
    logits = np.asarray(logits, dtype=np.float64)
    labels = np.asarray(labels)
    if logits.ndim != 2 or logits.shape[1] < 2 or len(logits) < 1:
        raise ValueError(f"logits: expected shape (n, num_classes >= 2); got {logits.shape}")
    if labels.shape != (len(logits),) or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(
            f"labels: expected integer class indices of shape ({len(logits)},); got "
            f"{labels.shape} {labels.dtype}"
        )
    if labels.min() < 0 or labels.max() >= logits.shape[1]:
        raise ValueError(f"labels: expected integers in 0..{logits.shape[1] - 1}")
    true_logit = logits[np.arange(len(labels)), labels]

    def nll(log_t: float) -> float:
        z = logits / math.exp(log_t)
        return float(np.mean(_logsumexp(z)[:, 0] - true_logit / math.exp(log_t)))

    return _golden_log_temperature(nll)


def _golden_log_temperature(nll: Any) -> float:
    """Minimise ``nll(log T)`` over `TEMPERATURE_BOUNDS` by golden-section search."""
    low, high = (math.log(b) for b in TEMPERATURE_BOUNDS)
    ratio = (math.sqrt(5.0) - 1.0) / 2.0
    a, b = low, high
    c, d = b - ratio * (b - a), a + ratio * (b - a)
    fc, fd = nll(c), nll(d)
    for _ in range(60):
        if fc < fd:
            b, d, fd = d, c, fc
            c = b - ratio * (b - a)
            fc = nll(c)
        else:
            a, c, fc = c, d, fd
            d = a + ratio * (b - a)
            fd = nll(d)
    log_t = 0.5 * (a + b)
    if log_t - low < 1e-3 or high - log_t < 1e-3:
        warnings.warn(
            f"the fitted temperature {math.exp(log_t):.3g} lies on the search bound "
            f"{TEMPERATURE_BOUNDS}; the validation data may be separable or too few",
            stacklevel=3,
        )
    return math.exp(log_t)


def model_averaged_samples(
    key: PRNGKeyArray,
    model_probs: _Values,
    samplers: Sequence[Any],
    num_samples: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Draws from ``p(θ | x) = Σ_M p(M | x) p(θ | x, M)`` for each observation.

    Each draw first picks a model from ``model_probs``, then θ from that
    model's posterior. All models must share one parameter vector (e.g. the
    supernova mixture task, whose types share the Villar form).

    Args:
        key: PRNG key.
        model_probs: ``(n_obs, num_models)`` posterior model probabilities,
            e.g. `ModelClassifier.predict_proba`.
        samplers: one per model: an `astroprob.Posterior` for the same
            ``n_obs`` observations, or any ``sample(key, num_samples) ->
            (n_obs, num_samples, dim)`` callable object.
        num_samples: draws per observation.

    Returns:
        ``(models (n_obs, num_samples), theta (n_obs, num_samples, dim))``.

    Raises:
        ValueError: if shapes or the number of samplers do not match.
    """
    probs = np.asarray(model_probs, dtype=np.float64)
    if probs.ndim != 2 or probs.shape[1] != len(samplers):
        raise ValueError(
            f"model_probs: expected shape (n_obs, {len(samplers)}) for {len(samplers)} samplers; "
            f"got {probs.shape}"
        )
    if np.any(probs < 0) or np.any(np.abs(probs.sum(axis=1) - 1.0) > 1e-3):
        raise ValueError("model_probs: expected non-negative rows summing to one")
    if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
        raise ValueError(f"num_samples: expected a positive integer; got {num_samples!r}")
    key_models, *keys = jax.random.split(key, 1 + len(samplers))
    draws = []
    for k, sampler in zip(keys, samplers, strict=True):
        s = np.asarray(sampler.sample(k, num_samples))
        if s.ndim == 2:
            s = s[None]
        if s.shape[:2] != (len(probs), num_samples):
            raise ValueError(
                f"samplers: expected samples of shape ({len(probs)}, {num_samples}, dim); "
                f"got {s.shape}"
            )
        draws.append(s)
    if len({d.shape for d in draws}) != 1:
        raise ValueError("samplers: expected every model to share one parameter dimension")
    models = np.asarray(
        jax.random.categorical(
            key_models, jnp.log(jnp.asarray(probs)), axis=-1, shape=(num_samples, len(probs))
        )
    ).T
    theta = np.take_along_axis(np.stack(draws, axis=0), models[None, :, :, None], axis=0)[0]
    return models, theta


def _training_config(options: dict[str, Any]) -> TrainingConfig:
    try:
        return TrainingConfig(**options)
    except TypeError as err:
        valid = [f.name for f in dataclasses.fields(TrainingConfig)]
        raise TypeError(f"unknown training option; expected some of {valid}: {err}") from err


def _check_prior(prior: _Values, num_classes: int, name: str) -> np.ndarray:
    prior = np.asarray(prior, dtype=np.float64)
    if (
        prior.shape != (num_classes,)
        or not np.all(np.isfinite(prior))
        or np.any(prior <= 0)
        or abs(prior.sum() - 1.0) > 1e-6
    ):
        raise ValueError(
            f"{name}: expected {num_classes} positive probabilities summing to one; got {prior}"
        )
    return prior


def _logsumexp(z: np.ndarray) -> np.ndarray:
    top = z.max(axis=-1, keepdims=True)
    return top + np.log(np.sum(np.exp(z - top), axis=-1, keepdims=True))
