"""Bayesian neural networks by a last-layer Laplace approximation.

A network is trained as usual (maximum a posteriori, with the package's one
training loop). Its last layer is linear in the features φ(x) of the layers
below, so with those features held fixed a Gaussian prior N(0, λ⁻¹ I) on the
last-layer weights w gives a Gaussian (Laplace) posterior N(w*, (H + λ I)⁻¹),
where H is the generalised Gauss-Newton matrix of the training negative
log-likelihood (for a Gaussian likelihood H is the exact Hessian and the
posterior is exact). Predictions integrate over that posterior:

- `BayesianRegressor`: a heteroscedastic Gaussian regression head for point
  parameters. The mean is linear in w, so the predictive is Gaussian with
  variance σ²(x) (aleatoric, the noise the network learned) plus
  φ̃(x)ᵀ Σ φ̃(x) (epistemic, what the finite training set leaves open).
- `BayesianClassifier`: the softmax layer's weights are drawn from the Laplace
  posterior and the predictive probabilities are the average of the softmax
  over the draws; the mutual information between class and weights measures
  the epistemic part.

The prior precision λ is set by maximising the Laplace marginal likelihood
(MacKay's fixed point λ = γ / ‖w*‖², γ = Σᵢ hᵢ / (hᵢ + λ) over the eigenvalues
hᵢ of H), so nothing is tuned on validation or test data.

Why Laplace and not variational inference (numpyro SVI with a mean-field
Gaussian over all weights)? (1) Mean-field VI under-estimates posterior
variance and correlations, and needs many more epochs, KL annealing and
gradient-variance control to train; the last-layer Laplace posterior has a full
covariance and is computed in closed form in seconds after training. (2) It
adds nothing to training: the estimator trains with the same loop, the same
early stopping and the same embedding networks as every other astroprob
estimator, and the Bayesian step is post hoc. (3) For ReLU/GELU features the
last-layer Laplace predictive provably stops being over-confident far from the
data (its logit variance grows with ‖φ(x)‖², Kristiadi et al. 2020), which is
the failure a single network shows on out-of-distribution inputs; and
Daxberger et al. (2021) find last-layer Laplace competitive with deep ensembles
and better calibrated than mean-field VI at a fraction of the cost. The price
is that the layers below the last are point estimates: feature-space
uncertainty is not represented, which ensembles (`astroprob.NPE(ensemble=K)`)
capture instead. Weight draws use `numpyro.distributions`.

References:
    MacKay 1992, "A practical Bayesian framework for backpropagation networks",
    Neural Computation 4, 448;
    Kristiadi, Hein & Hennig 2020, "Being Bayesian, Even Just a Bit, Fixes
    Overconfidence in ReLU Networks", https://arxiv.org/abs/2002.10118;
    Daxberger et al. 2021, "Laplace Redux — Effortless Bayesian Deep
    Learning", https://arxiv.org/abs/2106.14806;
    Immer, Korzepa & Bauer 2021, "Improving predictions of Bayesian neural
    nets via local linearization", https://arxiv.org/abs/2008.08400.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
from flax import nnx
from jax.typing import ArrayLike
from jaxtyping import Array, Float, PRNGKeyArray

from astroprob.inference import _supervised
from astroprob.inference._loop import TrainingConfig, TrainingHistory, split_train_validation, train
from astroprob.inference._network import Statistic, data_statistics
from astroprob.inference.classifier import (
    ClassifierNetwork,
    ModelClassifier,
    _golden_log_temperature,
    _training_config,
)

__all__ = [
    "BayesianClassifier",
    "BayesianRegressor",
    "ClassifierUncertainty",
    "RegressionPrediction",
    "classification_ggn",
    "laplace_posterior",
    "mackay_prior_precision",
]

CLASSIFIER_FORMAT = "astroprob-bayesian-classifier"
REGRESSOR_FORMAT = "astroprob-bayesian-regressor"
FORMAT_VERSION = 1


# --------------------------------------------------------------------- pure functions
def with_bias(phi: Float[Array, "n features"]) -> Float[Array, "n features_plus_1"]:
    """Features with a trailing constant 1, so the bias is one more weight."""
    return jnp.concatenate([phi, jnp.ones((*phi.shape[:-1], 1), phi.dtype)], axis=-1)


def classification_ggn(
    phi: Float[Array, "n f"], probs: Float[Array, "n k"]
) -> Float[Array, "fk fk"]:
    """Gauss-Newton matrix of the softmax cross-entropy w.r.t. a linear layer ``W (f, k)``.

    ``H[(i, k), (j, l)] = Σ_n φ_ni φ_nj (diag(p_n) - p_n p_nᵀ)_kl``, with ``W``
    flattened in row-major order (index ``i * k + k'``).

    Args:
        phi: ``(n, f)`` features (include a column of ones for a bias).
        probs: ``(n, k)`` softmax probabilities at the trained weights.

    Returns:
        ``(f * k, f * k)`` symmetric positive semi-definite matrix.
    """
    f, k = phi.shape[1], probs.shape[1]
    curvature = jax.vmap(jnp.diag)(probs) - probs[:, :, None] * probs[:, None, :]  # (n, k, k)
    weighted = curvature[:, :, :, None] * phi[:, None, None, :]  # (n, k, l, j)
    h = jnp.einsum("ni,nklj->ikjl", phi, weighted)
    return h.reshape(f * k, f * k)


def mackay_prior_precision(
    eigenvalues: ArrayLike, weight_norm2: float, *, iterations: int = 200
) -> float:
    """Prior precision λ maximising the Laplace evidence for fixed MAP weights.

    Iterates MacKay's fixed point ``λ = γ / ‖w*‖²`` with the effective number
    of parameters ``γ = Σᵢ hᵢ / (hᵢ + λ)``.

    Args:
        eigenvalues: eigenvalues of the likelihood curvature H (>= 0).
        weight_norm2: squared norm of the MAP weights, > 0.
        iterations: fixed-point iterations (it converges in a few dozen).

    Returns:
        λ > 0.

    Raises:
        ValueError: for a non-positive weight norm.
    """
    h = np.clip(np.asarray(eigenvalues, dtype=np.float64), 0.0, None)
    if not weight_norm2 > 0:
        raise ValueError(f"weight_norm2: expected a positive number; got {weight_norm2}")
    lam = 1.0
    for _ in range(iterations):
        gamma = float(np.sum(h / (h + lam)))
        new = max(gamma, 1e-3) / weight_norm2
        if abs(new - lam) <= 1e-8 * lam:
            lam = new
            break
        lam = new
    return lam


def laplace_posterior(
    curvature: ArrayLike, weights: ArrayLike, prior_precision: float | None = None
) -> tuple[np.ndarray, float]:
    """Square root of the Laplace covariance ``(H + λ I)⁻¹`` and the prior precision λ.

    Args:
        curvature: ``(p, p)`` likelihood curvature H at the MAP weights.
        weights: ``(p,)`` MAP weights (for the evidence-optimal λ).
        prior_precision: λ; ``None`` chooses it by `mackay_prior_precision`.

    Returns:
        ``(scale (p, p), λ)`` with ``scale @ scale.T = (H + λ I)⁻¹``.
    """
    h = np.asarray(curvature, dtype=np.float64)
    h = 0.5 * (h + h.T)
    eigenvalues, vectors = np.linalg.eigh(h)
    eigenvalues = np.clip(eigenvalues, 0.0, None)
    if prior_precision is None:
        w = np.asarray(weights, dtype=np.float64)
        prior_precision = mackay_prior_precision(eigenvalues, float(w @ w))
    scale = vectors / np.sqrt(eigenvalues + prior_precision)[None, :]
    return scale, float(prior_precision)


def _check_prior_precision(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float | np.floating):
        raise TypeError(f"prior_precision: expected a positive number or None; got {value!r}")
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"prior_precision: expected a positive number or None; got {value}")
    return float(value)


# ------------------------------------------------------------------------ classifier
class BayesianClassifierNetwork(ClassifierNetwork):
    """A `ClassifierNetwork` whose softmax layer is averaged over Laplace weight draws.

    Args:
        features: the feature network.
        num_classes: number of classes.
        num_draws: number of last-layer weight draws kept.
        rngs: random state for the initial weights.
    """

    def __init__(
        self,
        features: _supervised.FeatureNetwork,
        num_classes: int,
        *,
        num_draws: int,
        rngs: nnx.Rngs,
    ):
        super().__init__(features, num_classes, rngs=rngs)
        shape = (num_draws, features.num_features + 1, num_classes)
        self.weight_draws = Statistic(jnp.zeros(shape, jnp.float32))

    def draw_logits(self, x: Float[Array, "batch ..."]) -> Float[Array, "draws batch classes"]:
        """Logits under every weight draw, before temperature scaling."""
        phi = with_bias(self.features(x))
        return jnp.einsum("nf,sfk->snk", phi, self.weight_draws[...])

    def draw_log_probs(self, x: Float[Array, "batch ..."]) -> Float[Array, "draws batch classes"]:
        """Log softmax probabilities under every weight draw."""
        return jax.nn.log_softmax(self.draw_logits(x) / self.temperature[...], axis=-1)

    def log_probs(self, x: Float[Array, "batch ..."]) -> Float[Array, "batch classes"]:
        """Log predictive probabilities: the log of the mean softmax over the draws."""
        draws = self.draw_log_probs(x)
        return jax.nn.logsumexp(draws, axis=0) - math.log(draws.shape[0])


class ClassifierUncertainty(NamedTuple):
    """Predictive uncertainty of a `BayesianClassifier`, each ``(n,)``, in nats.

    Attributes:
        total: entropy of the predictive (averaged) probabilities.
        aleatoric: mean entropy of the per-draw probabilities.
        epistemic: their difference, the mutual information between class and weights.
    """

    total: np.ndarray
    aleatoric: np.ndarray
    epistemic: np.ndarray


class BayesianClassifier(ModelClassifier):
    """`ModelClassifier` with a last-layer Laplace posterior over the softmax weights.

    Trained like `ModelClassifier`; afterwards the Gauss-Newton curvature of the
    training loss in the last layer's weights gives their Gaussian posterior,
    ``num_draws`` weight draws are kept, and `predict_proba` averages the
    softmax over them.

    Args:
        classes: the number of classes or their names.
        embedding: optional embedding network (see `ModelClassifier`).
        hidden: width of the MLP trunk.
        depth: number of trunk layers.
        x_scaling: z-scoring of the data.
        temperature_scaling: also fit a temperature on the validation split
            (off by default: the Laplace predictive is meant to be calibrated
            by itself).
        num_draws: last-layer weight draws averaged in each prediction.
        prior_precision: precision λ of the Gaussian weight prior; ``None``
            (default) maximises the Laplace marginal likelihood.
    """

    _format = CLASSIFIER_FORMAT

    def __init__(
        self,
        classes: int | Sequence[str],
        *,
        embedding: nnx.Module | None = None,
        hidden: int = 64,
        depth: int = 2,
        x_scaling: str = "auto",
        temperature_scaling: bool = False,
        num_draws: int = 200,
        prior_precision: float | None = None,
    ):
        super().__init__(
            classes,
            embedding=embedding,
            hidden=hidden,
            depth=depth,
            x_scaling=x_scaling,
            temperature_scaling=temperature_scaling,
        )
        if isinstance(num_draws, bool) or not isinstance(num_draws, int) or num_draws < 1:
            raise ValueError(f"num_draws: expected a positive integer; got {num_draws!r}")
        self.num_draws = num_draws
        self.prior_precision = _check_prior_precision(prior_precision)
        self.fitted_prior_precision: float | None = None

    @classmethod
    def from_classifier(
        cls,
        key: PRNGKeyArray,
        classifier: ModelClassifier,
        x_train: ArrayLike,
        *,
        num_draws: int = 200,
        prior_precision: float | None = None,
    ) -> BayesianClassifier:
        """Make a trained `ModelClassifier` Bayesian, post hoc, without retraining.

        The network weights are copied; the temperature is reset to 1 (the
        Laplace predictive replaces it) and the last-layer posterior is
        computed from ``x_train``, the inputs the classifier was trained on.

        Args:
            key: PRNG key of the weight draws.
            classifier: a trained (not Bayesian) classifier.
            x_train: its training inputs ``(n, *observation_shape)``.
            num_draws: last-layer weight draws.
            prior_precision: λ, or ``None`` for the evidence-optimal one.
        """
        if not isinstance(classifier, ModelClassifier) or isinstance(classifier, cls):
            raise TypeError(
                f"classifier: expected a trained ModelClassifier; got {type(classifier).__name__}"
            )
        classifier._require_fitted()
        new = cls(
            classifier.class_names,
            embedding=classifier._embedding,
            hidden=classifier.hidden,
            depth=classifier.depth,
            x_scaling=classifier.x_scaling,
            num_draws=num_draws,
            prior_precision=prior_precision,
        )
        new.observation_shape = classifier.observation_shape
        new._fitted_x_scaling = classifier._fitted_x_scaling
        new.training_class_prior = classifier.training_class_prior
        new.history, new.training_config = classifier.history, classifier.training_config
        shape = _supervised.statistic_shape(new.observation_shape, new._fitted_x_scaling)
        network = new._build_network(jnp.zeros(shape), jnp.ones(shape), nnx.Rngs(0))
        nnx.update(network, nnx.clone(_supervised.saved_state(classifier._network)))
        network.temperature[...] = jnp.ones((), jnp.float32)
        new._install(network)
        new.fit_laplace(key, x_train)
        return new

    def _build_network(
        self, x_shift: Array, x_scale: Array, rngs: nnx.Rngs
    ) -> BayesianClassifierNetwork:
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
        return BayesianClassifierNetwork(
            features, self.num_classes, num_draws=self.num_draws, rngs=rngs
        )

    def _after_training(
        self, key: PRNGKeyArray, train_data: tuple[Array, Array], val_data: tuple[Array, Array]
    ) -> None:
        self.fit_laplace(key, np.asarray(train_data[0]))
        super()._after_training(key, train_data, val_data)

    def fit_laplace(self, key: PRNGKeyArray, x: ArrayLike) -> float:
        """(Re)compute the last-layer Laplace posterior from the training inputs ``x``.

        Returns:
            The prior precision λ used.
        """
        self._require_fitted()
        net = self._network
        x = _supervised.as_observations(x, self.observation_shape)
        phi = with_bias(jnp.asarray(_supervised.batched(_supervised.bind(net, "features"), x)))
        weight = jnp.concatenate([net.output.kernel[...], net.output.bias[...][None]], axis=0)
        probs = jax.nn.softmax(phi @ weight, axis=-1)
        curvature = jax.jit(classification_ggn)(phi, probs)
        scale, lam = laplace_posterior(curvature, np.asarray(weight).ravel(), self.prior_precision)
        mean = np.asarray(weight, np.float64).ravel()
        normal = dist.Normal(0.0, 1.0).expand((self.num_draws, mean.size))
        eps = np.asarray(normal.sample(key), dtype=np.float64)
        draws = mean[None] + eps @ scale.T
        net.weight_draws[...] = jnp.asarray(draws.reshape(net.weight_draws.shape), jnp.float32)
        self.fitted_prior_precision = lam
        self._install(net)
        return lam

    def _install(self, network: ClassifierNetwork) -> None:
        super()._install(network)
        self._draw_log_probs_fn = _supervised.bind(network, "draw_log_probs")
        self._draw_logits_fn = _supervised.bind(network, "draw_logits")

    def _fit_temperature_on(self, x: np.ndarray, labels: np.ndarray) -> float:
        draw_logits = self._batched(self._draw_logits_fn, x).astype(np.float64)  # (s, n, k)
        s = draw_logits.shape[0]
        true = labels[None, :, None]

        def nll(log_t: float) -> float:
            z = draw_logits / math.exp(log_t)
            top = z.max(axis=-1, keepdims=True)
            log_p = z - top - np.log(np.exp(z - top).sum(axis=-1, keepdims=True))
            log_true = np.take_along_axis(log_p, true.repeat(s, axis=0), axis=-1)[..., 0]
            m = log_true.max(axis=0)
            mix = m + np.log(np.mean(np.exp(log_true - m), axis=0))
            return float(-np.mean(mix))

        return _golden_log_temperature(nll)

    def predict_proba_draws(self, x: ArrayLike) -> np.ndarray:
        """Softmax probabilities under each weight draw, ``(num_draws, n, num_classes)``."""
        self._require_fitted()
        x = _supervised.as_observations(x, self.observation_shape)
        return np.exp(self._batched(self._draw_log_probs_fn, x).astype(np.float64))

    def uncertainty(self, x: ArrayLike) -> ClassifierUncertainty:
        """Total, aleatoric and epistemic (mutual information) predictive entropy, in nats."""
        draws = self.predict_proba_draws(x)
        mean = draws.mean(axis=0)
        total = -np.sum(mean * np.log(np.maximum(mean, 1e-300)), axis=-1)
        aleatoric = -np.mean(np.sum(draws * np.log(np.maximum(draws, 1e-300)), axis=-1), axis=0)
        return ClassifierUncertainty(total, aleatoric, np.maximum(total - aleatoric, 0.0))

    def _config(self) -> dict[str, Any]:
        return {
            **super()._config(),
            "num_draws": self.num_draws,
            "prior_precision": self.prior_precision,
            "fitted_prior_precision": self.fitted_prior_precision,
        }

    @classmethod
    def _from_config(cls, config: dict[str, Any], embedding: nnx.Module | None) -> Any:
        clf = cls(
            tuple(config["class_names"]),
            embedding=embedding,
            hidden=config["hidden"],
            depth=config["depth"],
            x_scaling=config["x_scaling"],
            temperature_scaling=config["temperature_scaling"],
            num_draws=config["num_draws"],
            prior_precision=config["prior_precision"],
        )
        clf.fitted_prior_precision = config["fitted_prior_precision"]
        return clf


# ------------------------------------------------------------------------ regressor
class RegressionNetwork(nnx.Module):
    """Heteroscedastic Gaussian regression head with a last-layer Laplace posterior.

    Works in z-scored targets ``(y - y_shift) / y_scale``.

    Args:
        features: the feature network.
        num_outputs: number of regressed quantities.
        rngs: random state for the initial weights.
    """

    def __init__(self, features: _supervised.FeatureNetwork, num_outputs: int, *, rngs: nnx.Rngs):
        self.features = features
        self.mean = _supervised.linear(features.num_features, num_outputs, rngs=rngs)
        self.log_scale = _supervised.linear(features.num_features, num_outputs, rngs=rngs)
        self.y_shift = Statistic(jnp.zeros(num_outputs, jnp.float32))
        self.y_scale = Statistic(jnp.ones(num_outputs, jnp.float32))
        f = features.num_features + 1
        # Square root of each output's last-layer covariance; zero for a point estimate.
        self.posterior_scale = Statistic(jnp.zeros((num_outputs, f, f), jnp.float32))

    def normal(
        self, x: Float[Array, "batch ..."]
    ) -> tuple[Float[Array, "batch d"], Float[Array, "batch d"]]:
        """Mean and aleatoric standard deviation in z-scored units."""
        phi = self.features(x)
        return self.mean(phi), jnp.exp(self.log_scale(phi))

    def nll(
        self, x: Float[Array, "batch ..."], y: Float[Array, "batch d"]
    ) -> Float[Array, " batch"]:
        """Gaussian negative log-likelihood of raw targets (up to a constant), ``(batch,)``."""
        mu, sigma = self.normal(x)
        z = (y - self.y_shift[...]) / self.y_scale[...]
        return jnp.sum(0.5 * ((z - mu) / sigma) ** 2 + jnp.log(sigma), axis=-1)

    def features_and_scale(self, x: Float[Array, "batch ..."]) -> Float[Array, "batch f_plus_d"]:
        """Features φ(x) and the aleatoric scale σ(x) (z-scored units), concatenated."""
        phi = self.features(x)
        return jnp.concatenate([phi, jnp.exp(self.log_scale(phi))], axis=-1)

    def predict(self, x: Float[Array, "batch ..."]) -> Float[Array, "3 batch d"]:
        """Stacked ``(mean, aleatoric std, epistemic std)`` in the units of the targets."""
        phi = self.features(x)
        mu, sigma = self.mean(phi), jnp.exp(self.log_scale(phi))
        projected = jnp.einsum("dfg,nf->ndg", self.posterior_scale[...], with_bias(phi))
        epistemic = jnp.sqrt(jnp.sum(projected**2, axis=-1))
        scale = self.y_scale[...]
        return jnp.stack([mu * scale + self.y_shift[...], sigma * scale, epistemic * scale])


class RegressionPrediction(NamedTuple):
    """Predictive distribution ``N(mean, std²)`` of a `BayesianRegressor`, each ``(n, d)``.

    Attributes:
        mean: predictive mean, in the units of the targets.
        aleatoric_std: the noise the network learned, σ(x).
        epistemic_std: the spread from the last-layer weight posterior.
        std: total standard deviation ``sqrt(aleatoric² + epistemic²)``.
    """

    mean: np.ndarray
    aleatoric_std: np.ndarray
    epistemic_std: np.ndarray
    std: np.ndarray


class BayesianRegressor:
    """Point parameters with full predictive uncertainty: heteroscedastic Gaussian + Laplace.

    The network predicts a mean and a standard deviation σ(x) per parameter and
    is trained by Gaussian maximum likelihood; the last-layer Laplace posterior
    of the mean's weights adds the epistemic variance φ̃ᵀ Σ φ̃. The predictive
    is ``N(mean, σ² + epistemic²)`` per parameter (marginals, no correlations).

    Args:
        outputs: the number of regressed quantities or their names.
        embedding: optional embedding network (see `ModelClassifier`).
        hidden: width of the MLP trunk.
        depth: number of trunk layers.
        x_scaling: z-scoring of the data.
        laplace: compute the Laplace posterior; ``False`` gives a deterministic
            network with zero epistemic spread (a negative control).
        prior_precision: λ of the Gaussian weight prior; ``None`` maximises the
            marginal likelihood (per output).

    Examples:
        >>> import jax, numpy as np
        >>> x = np.linspace(-1, 1, 400, dtype=np.float32)[:, None]
        >>> reg = BayesianRegressor(1, hidden=16, depth=1)
        >>> reg = reg.fit(jax.random.key(0), x, 2 * x, max_epochs=3, progress_bar=False)
        >>> reg.predict(np.zeros((5, 1))).std.shape
        (5, 1)
    """

    _format = REGRESSOR_FORMAT

    def __init__(
        self,
        outputs: int | Sequence[str],
        *,
        embedding: nnx.Module | None = None,
        hidden: int = 64,
        depth: int = 2,
        x_scaling: str = "auto",
        laplace: bool = True,
        prior_precision: float | None = None,
    ):
        if isinstance(outputs, int | np.integer) and not isinstance(outputs, bool):
            names = tuple(f"y{i}" for i in range(int(outputs)))
        elif isinstance(outputs, Sequence) and not isinstance(outputs, str):
            names = tuple(outputs)
        else:
            raise TypeError(f"outputs: expected a number or a sequence of names; got {outputs!r}")
        if not names or len(set(names)) != len(names) or not all(isinstance(n, str) for n in names):
            raise ValueError(f"outputs: expected at least one distinct name; got {outputs!r}")
        _supervised.check_architecture(hidden, depth, x_scaling, embedding)
        self.output_names = names
        self.hidden = hidden
        self.depth = depth
        self.x_scaling = x_scaling
        self.laplace = bool(laplace)
        self.prior_precision = _check_prior_precision(prior_precision)
        self.fitted_prior_precision: list[float] | None = None
        self._embedding = None if embedding is None else nnx.clone(embedding)
        self._network: RegressionNetwork | None = None
        self.observation_shape: tuple[int, ...] | None = None
        self.history: TrainingHistory | None = None
        self.training_config: TrainingConfig | None = None

    @property
    def num_outputs(self) -> int:
        """Number of regressed quantities."""
        return len(self.output_names)

    def _build_network(self, x_shift: Array, x_scale: Array, rngs: nnx.Rngs) -> RegressionNetwork:
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
        return RegressionNetwork(features, self.num_outputs, rngs=rngs)

    def fit(
        self, key: PRNGKeyArray, x: ArrayLike, y: ArrayLike, **training_options: Any
    ) -> BayesianRegressor:
        """Train on pairs ``(x, y)``, then fit the Laplace posterior; returns ``self``.

        Args:
            key: PRNG key for the weights, the split and the minibatch order.
            x: inputs ``(n, *observation_shape)``, e.g. simulations.
            y: targets ``(n, num_outputs)``, e.g. the parameters θ.
            **training_options: fields of `TrainingConfig`.

        Raises:
            ValueError: on wrong shapes.
        """
        config = _training_config(training_options)
        x = _supervised.as_observations(x, None)
        y = np.asarray(y, dtype=np.float32)
        if y.ndim == 1 and self.num_outputs == 1:
            y = y[:, None]
        if y.shape != (len(x), self.num_outputs):
            raise ValueError(f"y: expected shape ({len(x)}, {self.num_outputs}); got {y.shape}")
        keep, num_invalid = _supervised.finite_rows(x, y)
        x, y = x[keep], y[keep]
        self.observation_shape = tuple(x.shape[1:])
        key_split, key_init, key_train = jax.random.split(key, 3)
        train_idx, val_idx = split_train_validation(key_split, len(x), config.validation_fraction)
        x_shift, x_scale, self._fitted_x_scaling = _supervised.x_statistics(
            x[train_idx], self.x_scaling
        )
        network = self._build_network(x_shift, x_scale, nnx.Rngs(key_init))
        y_shift, y_scale = data_statistics(jnp.asarray(y[train_idx]), per_feature=True)
        network.y_shift[...], network.y_scale[...] = y_shift, y_scale

        def loss_fn(model: RegressionNetwork, batch: tuple[Array, Array]) -> Array:
            return model.nll(*batch)

        history = train(
            key_train,
            network,
            loss_fn,
            (jnp.asarray(x[train_idx]), jnp.asarray(y[train_idx])),
            (jnp.asarray(x[val_idx]), jnp.asarray(y[val_idx])),
            config,
            description="BayesianRegressor",
        )
        history.num_invalid = num_invalid
        self.history, self.training_config = history, config
        self._install(network)
        if self.laplace:
            self.fit_laplace(x[train_idx])
        return self

    def fit_laplace(self, x: ArrayLike) -> list[float]:
        """(Re)compute the last-layer posterior from the training inputs; returns λ per output."""
        self._require_fitted()
        net = self._network
        x = _supervised.as_observations(x, self.observation_shape)
        out = jnp.asarray(_supervised.batched(_supervised.bind(net, "features_and_scale"), x))
        phi, sigma = with_bias(out[:, : -self.num_outputs]), out[:, -self.num_outputs :]
        # Weighted least squares: H_d = Σ_n φ̃ φ̃ᵀ / σ_d(x_n)², exact for the Gaussian mean.
        curvature = jnp.einsum("nf,ng,nd->dfg", phi, phi, 1.0 / sigma**2)
        weights = np.concatenate(
            [np.asarray(net.mean.kernel[...]), np.asarray(net.mean.bias[...])[None]], axis=0
        )
        scales, lams = [], []
        for d in range(self.num_outputs):
            scale, lam = laplace_posterior(curvature[d], weights[:, d], self.prior_precision)
            scales.append(scale)
            lams.append(lam)
        net.posterior_scale[...] = jnp.asarray(np.stack(scales), jnp.float32)
        self.fitted_prior_precision = lams
        self._install(net)
        return lams

    def point_estimate(self) -> BayesianRegressor:
        """A deterministic copy: the same trained network without the weight posterior.

        Its epistemic spread is zero everywhere, a baseline for the Bayesian one.
        """
        self._require_fitted()
        copy = BayesianRegressor(
            self.output_names,
            hidden=self.hidden,
            depth=self.depth,
            x_scaling=self.x_scaling,
            laplace=False,
        )
        network = nnx.clone(self._network)
        network.posterior_scale[...] = jnp.zeros_like(network.posterior_scale[...])
        copy._embedding = self._embedding
        copy.observation_shape = self.observation_shape
        copy._fitted_x_scaling = self._fitted_x_scaling
        copy.history, copy.training_config = self.history, self.training_config
        copy._install(network)
        return copy

    def _install(self, network: RegressionNetwork) -> None:
        self._network = network
        self._predict_fn = _supervised.bind(network, "predict")

    @property
    def is_fitted(self) -> bool:
        """Whether the regressor has been trained or loaded."""
        return self._network is not None

    @property
    def network(self) -> RegressionNetwork:
        """The trained network."""
        self._require_fitted()
        return self._network

    def _require_fitted(self) -> None:
        if self._network is None:
            raise RuntimeError("this BayesianRegressor is not trained yet: call fit() or load()")

    def predict(self, x: ArrayLike) -> RegressionPrediction:
        """Predictive mean and standard deviations for a batch ``(n, *observation_shape)``."""
        self._require_fitted()
        x = _supervised.as_observations(x, self.observation_shape)
        mean, aleatoric, epistemic = _supervised.batched(self._predict_fn, x).astype(np.float64)
        return RegressionPrediction(
            mean, aleatoric, epistemic, np.sqrt(aleatoric**2 + epistemic**2)
        )

    def sample(self, key: PRNGKeyArray, x: ArrayLike, num_samples: int) -> np.ndarray:
        """Draws from the predictive ``N(mean, std²)``, ``(n, num_samples, num_outputs)``."""
        if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
            raise ValueError(f"num_samples: expected a positive integer; got {num_samples!r}")
        pred = self.predict(x)
        eps = np.asarray(jax.random.normal(key, (len(pred.mean), num_samples, self.num_outputs)))
        return pred.mean[:, None] + pred.std[:, None] * eps

    # ------------------------------------------------------------- persistence
    def save(self, path: str | Path) -> Path:
        """Save config (JSON) and weights (msgpack, no pickle) into directory ``path``."""
        self._require_fitted()
        embedding = self._network.features.embedding
        config = {
            "format": self._format,
            "format_version": FORMAT_VERSION,
            "output_names": list(self.output_names),
            "observation_shape": list(self.observation_shape),
            "hidden": self.hidden,
            "depth": self.depth,
            "x_scaling": self._fitted_x_scaling,
            "laplace": self.laplace,
            "prior_precision": self.prior_precision,
            "fitted_prior_precision": self.fitted_prior_precision,
            "embedding": None if embedding is None else _supervised.qualified_name(embedding),
            "training": None if self.training_config is None else self.training_config.to_dict(),
            "history": None if self.history is None else self.history.to_dict(),
        }
        return _supervised.save_run(path, self._network, config)

    @classmethod
    def load(cls, path: str | Path, *, embedding: nnx.Module | None = None) -> BayesianRegressor:
        """Load a regressor written by `save` (pass ``embedding`` if it was trained with one).

        Raises:
            FileNotFoundError: if the directory lacks the config or weights.
            ValueError: for another format, a mismatching embedding, or corrupted weights.
        """
        config, path = _supervised.read_config(path, cls._format, FORMAT_VERSION)
        _supervised.check_embedding_matches(config, embedding)
        reg = cls(
            tuple(config["output_names"]),
            embedding=embedding,
            hidden=config["hidden"],
            depth=config["depth"],
            x_scaling=config["x_scaling"],
            laplace=config["laplace"],
            prior_precision=config["prior_precision"],
        )
        reg.fitted_prior_precision = config["fitted_prior_precision"]
        reg.observation_shape = tuple(config["observation_shape"])
        reg._fitted_x_scaling = config["x_scaling"]
        shape = _supervised.statistic_shape(reg.observation_shape, config["x_scaling"])
        network = reg._build_network(jnp.zeros(shape), jnp.ones(shape), nnx.Rngs(0))
        _supervised.load_weights_into(path, network, config)
        if config.get("training"):
            reg.training_config = TrainingConfig(**config["training"])
        if config.get("history"):
            reg.history = TrainingHistory.from_dict(config["history"])
        reg._install(network)
        return reg

    def __repr__(self) -> str:
        state = "trained" if self.is_fitted else "untrained"
        return f"BayesianRegressor(outputs={self.output_names}, {state})"
