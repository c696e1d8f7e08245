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
from astroprob.inference._balance import balanced_npe_losses, marginal_pairs
from astroprob.inference._compilation import SharedJit
from astroprob.inference._loop import (
    CheckpointFn,
    ResumeFn,
    TrainingConfig,
    TrainingHistory,
    split_train_validation,
    train,
    train_ensemble,
)
from astroprob.inference._network import (
    PosteriorNetwork,
    context_size,
    data_statistics,
    linear_statistics,
)
from astroprob.inference._support import SUPPORT_TRANSFORMS, SupportBijection
from astroprob.inference._symmetry import check_symmetry, make_symmetry
from astroprob.inference.posterior import Posterior
from astroprob.nn.groups import Group
from astroprob.tasks._task import Task

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "weights.msgpack"
FORMAT = "astroprob-npe"
FORMAT_VERSION = 3
"""Version 3 added ``symmetry`` (an older astroprob must not load such a run as a
plain flow); version 2 added ``support_transform``; version 1 runs load with
numpyro's bijection."""
READABLE_FORMAT_VERSIONS = (1, 2, 3)
LINEAR_SIMULATIONS_PER_FEATURE = 10
"""``theta_scaling="auto"`` regresses θ on the data when there are at least
this many training simulations per regression coefficient (each data feature,
and the intercept); an explicit ``"linear"`` warns below it."""
X_SCALINGS = ("auto", "per_feature", "global", "none")
THETA_SCALINGS = ("auto", "per_feature", "linear")
NPE_TRAINING_DEFAULTS = {"batch_size": 50, "weight_decay": 0.1, "average_decay": 0.99}
"""Where `NPE.fit` departs from `TrainingConfig`'s (sbi's) defaults. Smaller
minibatches and a little decoupled weight decay, which pulls the conditioners'
outputs towards the identity spline, gave higher held-out log densities on
two_moons (10³ and 10⁴ simulations), slcp and gaussian_linear (10⁴);
validating and keeping a running average of the parameters (decay 0.99 per
step) instead of the last iterate gave higher ones again on all three tasks at
10⁴ simulations and on two_moons and slcp at 10³; see the "NPE ablation"
section of docs/benchmarks.md."""


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
        theta_scaling: how the unconstrained parameters are standardised
            before the density: ``"per_feature"`` (a mean and std per
            parameter), ``"linear"`` (conditionally: the least-squares
            regression of the parameters on the z-scored data is subtracted
            and the residual whitened, see
            `astroprob.inference._network.linear_statistics`; needs
            ``embedding=None``), or ``"auto"`` (default: ``"linear"`` when
            there is no embedding, no box edge in the flow's space (see
            `SupportBijection.has_box_edges`) and at least 10 training
            simulations per regression coefficient, i.e. 10 × (data features
            + 1); ``"per_feature"`` otherwise). Where
            a box prior cuts the posterior, the regression would make the
            box's edge move with x, which flows learn worse (docs/benchmarks.md,
            "Linear standardisation").
        ensemble: ``None`` (default) for one network, or the number ``K`` of
            members of a deep ensemble, trained together in one compiled
            program (see `astroprob.inference._loop.train_ensemble`) from
            different initial weights and minibatch orders; the posterior is
            their equal-weight mixture. Member 0 is the network a single NPE
            fitted with the same key would give. The members share the
            initial weights of ``embedding``, if one is given.
        balance: weight λ ≥ 0 of the balancing penalty of balanced NPE
            (Delaunoy et al. 2023, see `astroprob.inference._balance`; the
            authors use λ = 100); 0 (default) is plain NPE.
        symmetry: ``None`` (default), or a group of rotations and mirrorings
            of the image that map its pixel grid onto itself (``"C4"``,
            ``"D4"``, ... or an `astroprob.nn.groups.Group`): the posterior is
            then the group average ``q_G(θ | x) = (1/|G|) Σ_g q(ρ_g θ | g x)``,
            trained as such, and exactly equivariant: turning the image turns
            the posterior of the orientation parameters with it (see
            `astroprob.inference._symmetry`). Needs a task that declares
            `Task.parameter_symmetry` (`astroprob.tasks.SersicGalaxy` does), an
            invariant prior, and the per-parameter standardisations. With an
            `astroprob.nn.EquivariantCNN` of the same group as the embedding,
            the ``|G|`` contexts come from one embedding pass; any other
            embedding sees all ``|G|`` turned images.
        support_transform: the map from the flow's space onto the prior's
            support: ``"soft_interval"`` (default; the identity inside box
            priors but for thin exponential margins, see
            `astroprob.inference._support`) or ``"numpyro"`` (numpyro's
            ``biject_to``: a sigmoid across the whole of every interval).
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
        theta_scaling: str = "auto",
        ensemble: int | None = None,
        balance: float = 0.0,
        symmetry: str | Group | None = None,
        support_transform: str = "soft_interval",
        **density_options: Any,
    ):
        if ensemble is not None and (
            isinstance(ensemble, bool) or not isinstance(ensemble, int | np.integer)
        ):
            raise TypeError(
                f"ensemble: expected None or an integer number of members; got {ensemble!r}"
            )
        if ensemble is not None and ensemble < 1:
            raise ValueError(f"ensemble: expected None or at least 1 member; got {ensemble!r}")
        if isinstance(balance, bool) or not isinstance(balance, int | float | np.number):
            raise TypeError(f"balance: expected a number; got {balance!r}")
        if not np.isfinite(balance) or balance < 0:
            raise ValueError(f"balance: expected a finite number >= 0; got {balance!r}")
        if x_scaling not in X_SCALINGS:
            raise ValueError(f"x_scaling: expected one of {X_SCALINGS}; got {x_scaling!r}")
        if theta_scaling not in THETA_SCALINGS:
            raise ValueError(
                f"theta_scaling: expected one of {THETA_SCALINGS}; got {theta_scaling!r}"
            )
        if theta_scaling == "linear" and embedding is not None:
            raise ValueError(
                "theta_scaling: 'linear' regresses the parameters on the flattened data and "
                "needs embedding=None; use 'per_feature' or 'auto' with an embedding"
            )
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
        self.theta_scaling = theta_scaling
        self.ensemble = None if ensemble is None else int(ensemble)
        self.balance = float(balance)
        # Keep a pristine copy so that every fit starts from the same embedding weights.
        self._embedding = None if embedding is None else nnx.clone(embedding)
        if support_transform not in SUPPORT_TRANSFORMS:
            raise ValueError(
                f"support_transform: expected one of {SUPPORT_TRANSFORMS}; "
                f"got {support_transform!r}"
            )
        self._bijection = SupportBijection(task.prior, support_transform)
        self._symmetry = None
        if symmetry is not None:
            if theta_scaling == "linear":
                raise ValueError(
                    "theta_scaling: 'linear' cannot be combined with a symmetry; use "
                    "'per_feature' or 'auto'"
                )
            self._symmetry = make_symmetry(symmetry, task, embedding)
            if self._symmetry.mode == "features" and x_scaling == "per_feature":
                raise ValueError(
                    "x_scaling: 'per_feature' z-scores every pixel apart, which breaks the "
                    "equivariance of the embedding; use 'auto', 'global' or 'none' with a symmetry"
                )
            check_symmetry(self._symmetry, task, self._bijection)
        self._network: PosteriorNetwork | None = None
        self._members: list[PosteriorNetwork] | None = None
        self.history: TrainingHistory | None = None
        self.training_config: TrainingConfig | None = None

    # ------------------------------------------------------------------ training
    @property
    def symmetry(self) -> str | None:
        """Name of the group the posterior is equivariant under (``"D4"``), or ``None``."""
        return None if self._symmetry is None else self._symmetry.group.name

    @property
    def support_transform(self) -> str:
        """The map onto the prior's support (see `astroprob.inference._support`)."""
        return self._bijection.kind

    @staticmethod
    def training_settings(**training_options: Any) -> TrainingConfig:
        """The `TrainingConfig` `fit` uses for these options (with `NPE_TRAINING_DEFAULTS`).

        Raises:
            TypeError: on an unknown option.
        """
        try:
            return TrainingConfig(**{**NPE_TRAINING_DEFAULTS, **training_options})
        except TypeError as err:
            valid = [f.name for f in dataclasses.fields(TrainingConfig)]
            raise TypeError(f"unknown training option; expected some of {valid}: {err}") from err

    def fit(
        self,
        key: PRNGKeyArray,
        theta: ArrayLike,
        x: ArrayLike,
        *,
        checkpoint: CheckpointFn | None = None,
        resume: ResumeFn | None = None,
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
                ``average_decay``, ``progress_bar``); ``batch_size``,
                ``weight_decay`` and ``average_decay`` default to
                `NPE_TRAINING_DEFAULTS` (50, 0.1 and 0.99).
            checkpoint: called with the loop's `LoopState` after every epoch
                (see `astroprob.inference._loop.train`), e.g. to save it.
            resume: called once with the initial `LoopState`; returns a saved
                state to continue from, or ``None`` to start afresh.

        Raises:
            ValueError: on wrong shapes, θ outside the prior's support, or too
                few valid simulations.
        """
        config = self.training_settings(**training_options)
        theta, x, num_invalid = self._check_simulations(theta, x)
        # Split on the host: indexing device arrays compiles a gather per shape.
        u = np.asarray(self._bijection.to_unconstrained(theta))
        x = np.asarray(x)

        key_split, key_init, key_train = jax.random.split(key, 3)
        train_idx, val_idx = split_train_validation(
            key_split, len(theta), config.validation_fraction
        )
        u_train, x_train = u[train_idx], x[train_idx]
        scaling = self.x_scaling
        if scaling == "auto":
            scaling = "per_feature" if x.ndim == 2 else "global"
        if scaling == "none":
            x_shift, x_scale = jnp.zeros(()), jnp.ones(())
        else:
            x_shift, x_scale = data_statistics(x_train, per_feature=scaling == "per_feature")
        num_features = int(np.prod(self.task.observation_shape))
        theta_scaling = self.theta_scaling
        enough = enough_for_linear(len(train_idx), num_features)
        if theta_scaling == "auto":
            linear = self._embedding is None and not self._bijection.has_box_edges and enough
            linear = linear and self._symmetry is None
            theta_scaling = "linear" if linear else "per_feature"
        elif theta_scaling == "linear" and num_features + 1 < len(train_idx) and not enough:
            # (With no more simulations than coefficients, linear_statistics raises.)
            warnings.warn(
                f"theta_scaling='linear' with {len(train_idx)} training simulations for "
                f"{num_features} data features: the regression is poorly determined below "
                f"{LINEAR_SIMULATIONS_PER_FEATURE} simulations per feature (plus one)",
                stacklevel=2,
            )
        theta_slope = None
        if theta_scaling == "linear":
            z_train = (x_train - np.asarray(x_shift)) / np.asarray(x_scale)
            theta_shift, theta_slope, theta_scale = linear_statistics(
                u_train, z_train.reshape(len(z_train), -1)
            )
        else:
            theta_shift, theta_scale = data_statistics(u_train, per_feature=True)

        def build(key_init: PRNGKeyArray) -> PosteriorNetwork:
            embedding = None if self._embedding is None else nnx.clone(self._embedding)
            density = make_density(
                self.density,
                self.task.dim,
                context_size(embedding, self.task.observation_shape),
                rngs=nnx.Rngs(key_init),
                **self.density_options,
            )
            return PosteriorNetwork(
                density,
                embedding,
                theta_shift,
                theta_scale,
                x_shift,
                x_scale,
                theta_slope,
                symmetry=self._symmetry,
            )

        train_data, val_data = (u_train, x_train), (u[val_idx], x[val_idx])
        balance = self.balance
        if balance > 0:
            # log p_u(u) = log p(θ) + log|det dT/du|, the prior density of the flow's space.
            log_prior = np.asarray(
                self.task.prior.log_prob(theta)
                + self._bijection.log_abs_det_jacobian(jnp.asarray(u))
            )
            train_data += (log_prior[train_idx],)
            val_data += (log_prior[val_idx],)
        train_data, val_data = (tuple(map(jnp.asarray, d)) for d in (train_data, val_data))

        def loss_fn(model: PosteriorNetwork, batch: tuple[Array, ...]) -> Array:
            return npe_losses(model, batch, balance)

        description = f"NPE {self.task.name}"
        if self.ensemble in (None, 1):
            # One network; a one-member ensemble takes the unbatched loop too, so that it
            # reproduces the single NPE bit for bit.
            networks = [build(key_init)]
            history = train(
                key_train,
                networks[0],
                loss_fn,
                train_data,
                val_data,
                config,
                description=description,
                checkpoint=checkpoint,
                resume=resume,
            )
            if self.ensemble == 1:
                history.members = [dataclasses.replace(history)]
        else:
            networks = [build(member_key(key_init, k)) for k in range(self.ensemble)]
            history = train_ensemble(
                jnp.stack([member_key(key_train, k) for k in range(self.ensemble)]),
                networks,
                loss_fn,
                train_data,
                val_data,
                config,
                description=f"{description} ({self.ensemble} members)",
                checkpoint=checkpoint,
                resume=resume,
            )
        history.num_invalid = num_invalid
        # Set only now, so that a failed refit leaves the labels of the installed networks.
        self._fitted_x_scaling = scaling
        self._fitted_theta_scaling = theta_scaling
        self._install(networks)
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
    def _install(self, networks: list[PosteriorNetwork]) -> None:
        """Adopt trained networks (one, or an ensemble's members) and compile once."""
        self._network = networks[0]
        self._members = list(networks)
        graphdef, state = nnx.split(networks[0])
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

        if self.ensemble is not None:
            state = jax.tree.map(lambda *a: jnp.stack(a), *[nnx.split(n)[1] for n in networks])
            sample, log_prob = ensemble_mixture(sample, log_prob, self.ensemble)
        # Compiled once per shape, and shared with every estimator whose program
        # is the same (a refit or reload of the same architecture).
        self._sample_fn = SharedJit(sample, state, static_argnums=(2,))
        self._log_prob_fn = SharedJit(log_prob, state)

    @property
    def is_fitted(self) -> bool:
        """Whether the estimator has been trained or loaded."""
        return self._network is not None

    @property
    def network(self) -> PosteriorNetwork:
        """The trained posterior network (z-scoring, embedding, density).

        Raises:
            RuntimeError: for an ensemble, whose networks are `members`.
        """
        self._require_fitted()
        if self.ensemble is not None:
            raise RuntimeError(
                f"this NPE is an ensemble of {self.ensemble} networks: use npe.members or "
                "npe.member(k)"
            )
        return self._network

    @property
    def members(self) -> list[PosteriorNetwork]:
        """The trained networks: the ensemble's members, or ``[network]`` for a single NPE."""
        self._require_fitted()
        return list(self._members)

    def member(self, k: int) -> NPE:
        """Member ``k`` of an ensemble as a single-network NPE (shares the trained weights).

        Raises:
            ValueError: if ``k`` is not a member index.
        """
        self._require_fitted()
        n = len(self._members)
        if isinstance(k, bool) or not isinstance(k, int | np.integer) or not 0 <= k < n:
            raise ValueError(f"k: expected a member index in [0, {n}); got {k!r}")
        single = NPE(
            self.task,
            self.density,
            embedding=self._embedding,
            x_scaling=self.x_scaling,
            theta_scaling=self.theta_scaling,
            balance=self.balance,
            symmetry=None if self._symmetry is None else self._symmetry.group,
            support_transform=self._bijection.kind,
            **self.density_options,
        )
        single._fitted_x_scaling = self._fitted_x_scaling
        single._fitted_theta_scaling = self._fitted_theta_scaling
        single.training_config = self.training_config
        if self.history is not None:
            members = self.history.members
            single.history = self.history if members is None else members[k]
        single._install([self._members[k]])
        return single

    def posterior(self, x: ArrayLike) -> Posterior:
        """The posterior for one observation ``obs_shape`` or a batch ``(n_obs, *obs_shape)``.

        For an ensemble it is the equal-weight mixture of the members' posteriors.
        """
        self._require_fitted()
        return Posterior(
            self.task, x, self._sample_fn, self._log_prob_fn, num_members=self.ensemble
        )

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
        arrays = _checkpoint.flatten_state(nnx.to_pure_dict(_stacked_saved_state(self._members)))
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
            "theta_scaling": self._fitted_theta_scaling,
            "support_transform": self._bijection.kind,
            "ensemble": self.ensemble,
            "balance": self.balance,
            "symmetry": self.symmetry,
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
        npe = cls(
            task,
            config["density"],
            embedding=embedding,
            x_scaling=config["x_scaling"],
            # Runs saved before the key existed were standardised per parameter.
            theta_scaling=config.get("theta_scaling", "per_feature"),
            ensemble=config.get("ensemble"),
            balance=config.get("balance", 0.0),
            symmetry=config.get("symmetry"),
            # Runs saved before the key existed were trained through numpyro's biject_to.
            support_transform=config.get("support_transform", "numpyro"),
        )
        npe._fitted_x_scaling = config["x_scaling"]
        npe._fitted_theta_scaling = npe.theta_scaling
        obs_shape = task.observation_shape
        stat_shape = obs_shape if config["x_scaling"] == "per_feature" else ()
        linear = npe.theta_scaling == "linear"
        num_features = int(np.prod(obs_shape))

        def template() -> PosteriorNetwork:
            member_embedding = None if embedding is None else nnx.clone(embedding)
            density = make_density(
                config["density"],
                task.dim,
                context_size(member_embedding, obs_shape),
                rngs=nnx.Rngs(0),
                **config["density_config"],
            )
            return PosteriorNetwork(
                density,
                member_embedding,
                jnp.zeros(task.dim),
                jnp.eye(task.dim) if linear else jnp.ones(task.dim),
                jnp.zeros(stat_shape),
                jnp.ones(stat_shape),
                jnp.zeros((num_features, task.dim)) if linear else None,
                symmetry=npe._symmetry,
            )

        networks = [template() for _ in range(npe.ensemble or 1)]
        state = _stacked_saved_state(networks)
        arrays = _checkpoint.decode_arrays(blob, source=str(weights_path))
        pure = _checkpoint.unflatten_like(nnx.to_pure_dict(state), arrays, source=str(weights_path))
        nnx.replace_by_pure_dict(state, pure)
        for k, network in enumerate(networks):
            if len(networks) > 1:
                nnx.update(network, jax.tree.map(lambda a, k=k: a[k], state))
            else:
                nnx.update(network, state)
        npe.density_options = dict(config["density_config"])
        if config.get("training"):
            npe.training_config = TrainingConfig(**config["training"])
        if config.get("history"):
            npe.history = TrainingHistory.from_dict(config["history"])
        npe._install(networks)
        return npe

    def __repr__(self) -> str:
        state = "trained" if self.is_fitted else "untrained"
        extra = "" if self.ensemble is None else f", ensemble={self.ensemble}"
        extra += f", balance={self.balance:g}" if self.balance else ""
        extra += f", symmetry={self.symmetry!r}" if self._symmetry is not None else ""
        return f"NPE(task={self.task.name!r}, density={self.density!r}{extra}, {state})"


def enough_for_linear(num_train: int, num_features: int) -> bool:
    """Whether ``num_train`` simulations determine a regression on ``num_features`` features.

    At least `LINEAR_SIMULATIONS_PER_FEATURE` per coefficient (the features and
    the intercept).
    """
    return num_train >= LINEAR_SIMULATIONS_PER_FEATURE * (num_features + 1)


def npe_losses(network: PosteriorNetwork, batch: tuple[Array, ...], balance: float) -> Array:
    """Per-example training losses of NPE (``balance == 0``) or balanced NPE.

    Args:
        network: the posterior network.
        batch: ``(u, x)`` for NPE; ``(u, x, log_prior)`` for balanced NPE, with
            ``u`` the unconstrained parameters ``(batch, dim)`` and ``log_prior``
            the prior log-density of ``u`` in that space, ``(batch,)``.
        balance: weight λ of the balancing penalty (see `_balance`).

    Returns:
        ``(batch,)`` losses: ``-log q(u | x)`` (with a symmetry, the mean over
        group elements, `PosteriorNetwork.training_log_prob`), plus ``λ ·
        violation²`` when balancing.
    """
    if balance == 0:
        return -network.training_log_prob(*batch[:2])
    u, x, log_prior = batch
    context = network.context(x)
    log_q = network.log_prob_given_context(u, context)
    log_q_marginal = network.log_prob_given_context(marginal_pairs(u), context)
    losses = balanced_npe_losses(
        log_q, log_q_marginal, log_prior, marginal_pairs(log_prior), balance
    )
    if network.symmetry is not None:
        # The balancing condition is on the estimator q_G; the likelihood term is the
        # flow's, averaged over the group's elements (see training_log_prob).
        losses = losses + log_q - network.training_log_prob_given_context(u, context)
    return losses


def member_key(key: PRNGKeyArray, k: int) -> PRNGKeyArray:
    """Key of ensemble member ``k``: ``key`` itself for member 0, ``fold_in(key, k)`` otherwise.

    So member 0 of an ensemble is the estimator a single NPE fitted with the
    same key would give, and ``ensemble=1`` reproduces the single NPE.
    """
    return key if k == 0 else jax.random.fold_in(key, k)


PICK_STREAM = 0x7FFFFFFF
"""``fold_in`` data of the key that picks a member for each mixture sample."""


def ensemble_mixture(sample: Any, log_prob: Any, num_members: int) -> tuple[Any, Any]:
    """Equal-weight mixture ``(sample, log_prob)`` of per-member functions on stacked states.

    Args:
        sample: ``(state, key, x (n_obs, ...), n) -> (n_obs, n, dim)`` of one member.
        log_prob: ``(state, theta (n_obs, m, dim), x) -> (n_obs, m)`` of one member.
        num_members: ``K``.

    Returns:
        ``sample(states, key, x, n) -> (samples (n_obs, n, dim), member (n_obs, n))``
        drawing, for every sample, a member uniformly at random (every member
        draws ``n`` samples, member ``k`` with `member_key` ``(key, k)``, and
        the picked ones are kept); and ``log_prob(states, theta, x) ->
        (n_obs, m)``, the log-mean-exp of the members' log-densities.
    """

    def mixture_sample(states: Any, key: PRNGKeyArray, x: Array, n: int) -> tuple[Array, Array]:
        if num_members == 1:
            one = sample(jax.tree.map(lambda a: a[0], states), key, x, n)
            return one, jnp.zeros(one.shape[:2], dtype=jnp.int32)
        keys = jnp.stack([member_key(key, k) for k in range(num_members)])
        every = jax.vmap(sample, in_axes=(0, 0, None, None))(states, keys, x, n)
        n_obs = every.shape[1]
        pick = jax.random.randint(
            jax.random.fold_in(key, PICK_STREAM), (n_obs, n), 0, num_members, dtype=jnp.int32
        )
        chosen = jnp.take_along_axis(every, pick[None, :, :, None], axis=0)[0]
        return chosen, pick

    def mixture_log_prob(states: Any, theta: Array, x: Array) -> Array:
        if num_members == 1:
            return log_prob(jax.tree.map(lambda a: a[0], states), theta, x)
        every = jax.vmap(log_prob, in_axes=(0, None, None))(states, theta, x)
        return jax.nn.logsumexp(every, axis=0) - jnp.log(num_members)

    return mixture_sample, mixture_log_prob


def _saved_state(network: nnx.Module) -> nnx.State:
    """Everything but random-number state: parameters, statistics, batch-norm averages."""
    return nnx.state(network, nnx.Not(nnx.RngState))


def _stacked_saved_state(networks: list[nnx.Module]) -> nnx.State:
    """`_saved_state` of one network, or of an ensemble's members stacked on a leading axis."""
    if len(networks) == 1:
        return _saved_state(networks[0])
    return jax.tree.map(lambda *a: jnp.stack(a), *[_saved_state(n) for n in networks])


def _qualified_name(obj: Any) -> str:
    cls = type(obj)
    return f"{cls.__module__}.{cls.__qualname__}"


def _check_format(config: dict[str, Any], source: Path) -> None:
    if config.get("format") != FORMAT:
        raise ValueError(
            f"{source}: expected an {FORMAT} config; got format {config.get('format')!r}"
        )
    if config.get("format_version") not in READABLE_FORMAT_VERSIONS:
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
