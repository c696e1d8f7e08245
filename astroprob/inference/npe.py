"""Neural posterior estimation (NPE): amortized p(θ | x) from simulations.

A conditional density estimator q(θ | x) is trained by maximum likelihood on
pairs (θ, x) drawn from the prior and the simulator; for any new observation
the posterior is then one network evaluation away.

References:
    Papamakarios & Murray 2016, arXiv:1605.06376; Greenberg et al. 2019,
    arXiv:1905.07488; Lueckmann et al. 2021 (sbibm), arXiv:2101.04653.
"""

from __future__ import annotations

import dataclasses
import json
import warnings
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.typing import ArrayLike
from jaxtyping import Array, PRNGKeyArray

from astroprob._version import __version__
from astroprob.flows import DENSITY_NAMES, make_density
from astroprob.inference import _checkpoint
from astroprob.inference._loop import TrainingConfig, TrainingHistory, split_train_validation, train
from astroprob.inference._network import PosteriorNetwork, context_size, data_statistics
from astroprob.inference._support import SupportBijection
from astroprob.inference.posterior import Posterior
from astroprob.tasks._task import Task

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "weights.msgpack"
FORMAT = "astroprob-npe"
FORMAT_VERSION = 1
X_SCALINGS = ("auto", "per_feature", "global", "none")


class NPE:
    """Amortized neural posterior estimation for a `Task`.

    Args:
        task: prior, simulator and parameter names.
        density: conditional density estimator, one of ``"nsf"`` (coupling
            rational-quadratic spline flow, default), ``"nsf_autoregressive"``,
            ``"maf"``, ``"mdn"``.
        embedding: optional Flax NNX module mapping z-scored data
            ``(batch, *observation_shape)`` to ``(batch, features)``, trained
            jointly with the density; ``None`` flattens the data.
        x_scaling: how the data are z-scored before the embedding:
            ``"per_feature"`` (a mean and std per entry), ``"global"`` (one
            mean and std for all entries, right for images whose pixels share
            units), ``"none"`` (the embedding sees raw data, e.g. light curves
            whose channels mix times, fluxes and a mask), or ``"auto"``
            (default: per feature for flat observations, global otherwise).
        **density_options: hyperparameters of the density estimator, e.g.
            ``hidden_features=50, num_transforms=5`` (see `astroprob.flows`).

    Examples:
        >>> import jax, astroprob as ap
        >>> task = ap.tasks.get("gaussian_linear")
        >>> theta, x = task.simulate(jax.random.key(0), 500)
        >>> npe = ap.NPE(task, density="mdn", num_components=2)
        >>> npe = npe.fit(jax.random.key(1), theta, x, max_epochs=3, progress_bar=False)
        >>> npe.posterior(task.observation(1)).sample(jax.random.key(2), 100).shape
        (100, 10)
    """

    def __init__(
        self,
        task: Task,
        density: str = "nsf",
        *,
        embedding: nnx.Module | None = None,
        x_scaling: str = "auto",
        **density_options: Any,
    ):
        if x_scaling not in X_SCALINGS:
            raise ValueError(f"x_scaling: expected one of {X_SCALINGS}; got {x_scaling!r}")
        if not isinstance(task, Task):
            raise TypeError(f"task: expected an astroprob Task; got {type(task).__name__}")
        if density not in DENSITY_NAMES:
            raise ValueError(f"density: expected one of {sorted(DENSITY_NAMES)}; got {density!r}")
        if embedding is not None and not isinstance(embedding, nnx.Module):
            raise TypeError(
                f"embedding: expected a flax.nnx.Module or None; got {type(embedding).__name__}"
            )
        self.task = task
        self.density = density
        self.density_options = dict(density_options)
        self.x_scaling = x_scaling
        # Keep a pristine copy so that every fit starts from the same embedding weights.
        self._embedding = None if embedding is None else nnx.clone(embedding)
        self._bijection = SupportBijection(task.prior)
        self._network: PosteriorNetwork | None = None
        self.history: TrainingHistory | None = None
        self.training_config: TrainingConfig | None = None

    # ------------------------------------------------------------------ training
    def fit(
        self,
        key: PRNGKeyArray,
        theta: ArrayLike,
        x: ArrayLike,
        **training_options: Any,
    ) -> NPE:
        """Train on simulations; returns ``self``.

        Simulations with NaN or inf in θ or x are excluded, with a warning that
        gives their count (``history.num_invalid``). A random
        ``validation_fraction`` of the rest is held out for early stopping.

        Args:
            key: PRNG key for the initial weights, the split and the minibatch order.
            theta: parameters ``(n, dim)``, inside the prior's support.
            x: simulations ``(n, *task.observation_shape)``.
            **training_options: fields of `TrainingConfig` (``learning_rate``,
                ``batch_size``, ``max_epochs``, ``patience``,
                ``validation_fraction``, ``clip_norm``, ``weight_decay``,
                ``progress_bar``).

        Raises:
            ValueError: on wrong shapes, θ outside the prior's support, or too
                few valid simulations.
        """
        try:
            config = TrainingConfig(**training_options)
        except TypeError as err:
            valid = [f.name for f in dataclasses.fields(TrainingConfig)]
            raise TypeError(f"unknown training option; expected some of {valid}: {err}") from err
        theta, x, num_invalid = self._check_simulations(theta, x)
        u = self._bijection.to_unconstrained(theta)

        key_split, key_init, key_train = jax.random.split(key, 3)
        train_idx, val_idx = split_train_validation(
            key_split, len(theta), config.validation_fraction
        )
        u_train, x_train = u[train_idx], x[train_idx]
        theta_shift, theta_scale = data_statistics(u_train, per_feature=True)
        scaling = self.x_scaling
        if scaling == "auto":
            scaling = "per_feature" if x.ndim == 2 else "global"
        if scaling == "none":
            x_shift, x_scale = jnp.zeros(()), jnp.ones(())
        else:
            x_shift, x_scale = data_statistics(x_train, per_feature=scaling == "per_feature")
        self._fitted_x_scaling = scaling

        embedding = None if self._embedding is None else nnx.clone(self._embedding)
        density = make_density(
            self.density,
            self.task.dim,
            context_size(embedding, self.task.observation_shape),
            rngs=nnx.Rngs(key_init),
            **self.density_options,
        )
        network = PosteriorNetwork(density, embedding, theta_shift, theta_scale, x_shift, x_scale)

        def loss_fn(model: PosteriorNetwork, batch: tuple[Array, Array]) -> Array:
            return -model.log_prob(*batch)

        history = train(
            key_train,
            network,
            loss_fn,
            (u_train, x_train),
            (u[val_idx], x[val_idx]),
            config,
            description=f"NPE {self.task.name}",
        )
        history.num_invalid = num_invalid
        self._install(network)
        self.history = history
        self.training_config = config
        return self

    def _check_simulations(self, theta: ArrayLike, x: ArrayLike) -> tuple[Array, Array, int]:
        # Check in numpy: NaNs must be counted, not trip jax_debug_nans on conversion.
        theta = np.asarray(theta, dtype=np.float32)
        x = np.asarray(x, dtype=np.float32)
        dim, obs_shape = self.task.dim, self.task.observation_shape
        if theta.ndim != 2 or theta.shape[1] != dim:
            raise ValueError(f"theta: expected shape (n, {dim}); got {theta.shape}")
        if x.shape[1:] != obs_shape or x.shape[0] != theta.shape[0]:
            raise ValueError(
                f"x: expected shape ({theta.shape[0]}, {', '.join(map(str, obs_shape))}) to match "
                f"theta {theta.shape}; got {x.shape}"
            )
        finite = np.isfinite(theta).all(axis=1) & np.isfinite(x).reshape(len(x), -1).all(axis=1)
        num_invalid = int((~finite).sum())
        if num_invalid:
            warnings.warn(
                f"{num_invalid} of {len(finite)} simulations contain NaN or inf and are "
                "excluded from training",
                stacklevel=3,
            )
            keep = np.flatnonzero(finite)
            theta, x = theta[keep], x[keep]
        theta, x = jnp.asarray(theta), jnp.asarray(x)
        outside = int((~np.asarray(self._bijection.contains(theta))).sum())
        if outside:
            raise ValueError(
                f"theta: expected every row inside the prior's support "
                f"({self.task.prior.support}); {outside} rows are outside"
            )
        return theta, x, num_invalid

    # ----------------------------------------------------------------- inference
    def _install(self, network: PosteriorNetwork) -> None:
        """Adopt a trained network and compile its sampler and density once."""
        self._network = network
        graphdef, state = nnx.split(network)
        bijection = self._bijection
        dim = self.task.dim

        def sample(state, key, x, num_samples):
            net = nnx.merge(graphdef, state)
            return bijection.to_constrained(net.sample(key, x, num_samples))

        def log_prob(state, theta, x):
            net = nnx.merge(graphdef, state)
            n_obs, m = theta.shape[:2]
            safe, inside = bijection.safe(theta)
            u = bijection.to_unconstrained(safe)
            context = jnp.repeat(net.context(x), m, axis=0)
            lp = net.log_prob_given_context(u.reshape(n_obs * m, dim), context).reshape(n_obs, m)
            lp = lp - bijection.log_abs_det_jacobian(u)
            return jnp.where(inside, lp, -jnp.inf)

        self._sample_jit = jax.jit(sample, static_argnums=3)
        self._log_prob_jit = jax.jit(log_prob)
        self._sample_fn = lambda key, x, n: self._sample_jit(state, key, x, n)
        self._log_prob_fn = lambda theta, x: self._log_prob_jit(state, theta, x)

    @property
    def is_fitted(self) -> bool:
        """Whether the estimator has been trained or loaded."""
        return self._network is not None

    @property
    def network(self) -> PosteriorNetwork:
        """The trained posterior network (z-scoring, embedding, density)."""
        self._require_fitted()
        return self._network

    def posterior(self, x: ArrayLike) -> Posterior:
        """The posterior for one observation ``obs_shape`` or a batch ``(n_obs, *obs_shape)``."""
        self._require_fitted()
        return Posterior(self.task, x, self._sample_fn, self._log_prob_fn)

    def _require_fitted(self) -> None:
        if self._network is None:
            raise RuntimeError("this NPE is not trained yet: call fit() or NPE.load() first")

    # ------------------------------------------------------------- persistence
    def save(self, path: str | Path) -> Path:
        """Save config (JSON) and weights (msgpack, no pickle) into directory ``path``.

        Each file is written atomically; the config records a checksum of the
        weights, so a directory mixing two runs is detected on load.

        Returns:
            The directory.
        """
        self._require_fitted()
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        arrays = _checkpoint.flatten_state(nnx.to_pure_dict(_saved_state(self._network)))
        blob = _checkpoint.encode_arrays(arrays)
        embedding = self._network.embedding
        config = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "astroprob_version": __version__,
            "task": self.task.name,
            "parameter_names": list(self.task.parameter_names),
            "observation_shape": list(self.task.observation_shape),
            "density": self.density,
            "density_config": self._network.density.config,
            "embedding": None if embedding is None else _qualified_name(embedding),
            "x_scaling": self._fitted_x_scaling,
            "training": None if self.training_config is None else self.training_config.to_dict(),
            "history": None if self.history is None else self.history.to_dict(),
            "weights_sha256": _checkpoint.sha256(blob),
        }
        _checkpoint.write_atomic(path / WEIGHTS_FILE, blob)
        _checkpoint.write_json_atomic(path / CONFIG_FILE, config)
        return path

    @classmethod
    def load(
        cls,
        path: str | Path,
        *,
        task: Task | None = None,
        embedding: nnx.Module | None = None,
    ) -> NPE:
        """Load an estimator written by `save`.

        Args:
            path: the run directory.
            task: the task; defaults to ``astroprob.tasks.get(<saved name>)``,
                so it must be given for user-defined tasks.
            embedding: a module of the same architecture as the one trained,
                required when the run used an embedding network.

        Raises:
            FileNotFoundError: if the directory lacks the config or weights.
            ValueError: for a file of another format or a newer astroprob,
                a task or embedding that does not match, or corrupted weights.
        """
        path = Path(path)
        config_path, weights_path = path / CONFIG_FILE, path / WEIGHTS_FILE
        for p in (config_path, weights_path):
            if not p.is_file():
                raise FileNotFoundError(
                    f"{p}: no such file; expected a run directory from NPE.save"
                )
        config = json.loads(config_path.read_text())
        _check_format(config, config_path)
        if task is None:
            from astroprob import tasks

            try:
                task = tasks.get(config["task"])
            except ValueError as err:
                raise ValueError(
                    f"{config_path}: task {config['task']!r} is not a built-in task; "
                    "pass task= to NPE.load"
                ) from err
        if (
            list(task.parameter_names) != config["parameter_names"]
            or list(task.observation_shape) != config["observation_shape"]
        ):
            raise ValueError(
                f"task: expected parameters {config['parameter_names']} and observation shape "
                f"{tuple(config['observation_shape'])}; got {list(task.parameter_names)} and "
                f"{task.observation_shape}"
            )
        if config["embedding"] is not None and embedding is None:
            raise ValueError(
                f"embedding: this run was trained with an embedding network "
                f"({config['embedding']}); pass a module of the same architecture"
            )
        if config["embedding"] is None and embedding is not None:
            raise ValueError(
                "embedding: this run was trained without an embedding network; got one"
            )

        blob = weights_path.read_bytes()
        if _checkpoint.sha256(blob) != config["weights_sha256"]:
            raise ValueError(
                f"{weights_path}: checksum does not match {config_path}; the directory mixes "
                "files from different runs or the weights are corrupted"
            )
        npe = cls(task, config["density"], embedding=embedding, x_scaling=config["x_scaling"])
        npe._fitted_x_scaling = config["x_scaling"]
        obs_shape = task.observation_shape
        stat_shape = obs_shape if config["x_scaling"] == "per_feature" else ()
        embedding = None if embedding is None else nnx.clone(embedding)
        density = make_density(
            config["density"],
            task.dim,
            context_size(embedding, obs_shape),
            rngs=nnx.Rngs(0),
            **config["density_config"],
        )
        network = PosteriorNetwork(
            density,
            embedding,
            jnp.zeros(task.dim),
            jnp.ones(task.dim),
            jnp.zeros(stat_shape),
            jnp.ones(stat_shape),
        )
        state = _saved_state(network)
        arrays = _checkpoint.decode_arrays(blob, source=str(weights_path))
        pure = _checkpoint.unflatten_like(nnx.to_pure_dict(state), arrays, source=str(weights_path))
        nnx.replace_by_pure_dict(state, pure)
        nnx.update(network, state)
        npe.density_options = dict(config["density_config"])
        if config.get("training"):
            npe.training_config = TrainingConfig(**config["training"])
        if config.get("history"):
            npe.history = TrainingHistory.from_dict(config["history"])
        npe._install(network)
        return npe

    def __repr__(self) -> str:
        state = "trained" if self.is_fitted else "untrained"
        return f"NPE(task={self.task.name!r}, density={self.density!r}, {state})"


def _saved_state(network: nnx.Module) -> nnx.State:
    """Everything but random-number state: parameters, statistics, batch-norm averages."""
    return nnx.state(network, nnx.Not(nnx.RngState))


def _qualified_name(obj: Any) -> str:
    cls = type(obj)
    return f"{cls.__module__}.{cls.__qualname__}"


def _check_format(config: dict[str, Any], source: Path) -> None:
    if config.get("format") != FORMAT:
        raise ValueError(
            f"{source}: expected an {FORMAT} config; got format {config.get('format')!r}"
        )
    if config.get("format_version") != FORMAT_VERSION:
        raise ValueError(
            f"{source}: expected format_version {FORMAT_VERSION}; got "
            f"{config.get('format_version')!r} "
            f"(written by astroprob {config.get('astroprob_version')})"
        )
    saved = config.get("astroprob_version", "")
    if _version_tuple(saved) > _version_tuple(__version__):
        raise ValueError(
            f"{source}: written by astroprob {saved}, newer than the installed {__version__}; "
            "upgrade astroprob to load it"
        )


def _version_tuple(version: str) -> tuple[int, ...]:
    parts = []
    for piece in str(version).split(".")[:3]:
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits) if digits else 0)
    return tuple(parts)
