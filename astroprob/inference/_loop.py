"""The package's one training loop: minibatch AdamW with early stopping.

The loop is functional at its core. The model is split into its graph and its
state with ``nnx.split``; one whole epoch (shuffle, then a ``lax.scan`` over
minibatches of ``step(params, opt_state, batch) -> (params, opt_state, loss)``)
is a single compiled call. Python only runs the loop over epochs, which decides
about early stopping and updates the progress bar.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jaxtyping import Array, PRNGKeyArray
from tqdm.auto import tqdm

LossFn = Callable[[nnx.Module, tuple[Array, ...]], Array]
"""``loss_fn(model, batch) -> per-example losses (batch,)``."""

CheckpointFn = Callable[["LoopState"], None]
"""``checkpoint(state)``: called after every epoch, e.g. to save it for ``--resume``."""

ResumeFn = Callable[["LoopState"], "LoopState | None"]
"""``resume(initial) -> saved state or None``: called once before the first epoch."""


@dataclass(frozen=True)
class TrainingConfig:
    """Options of the training loop (defaults follow sbi's NPE defaults).

    Attributes:
        learning_rate: AdamW step size.
        weight_decay: AdamW decoupled weight decay.
        batch_size: minibatch size (capped at the number of training examples).
        max_epochs: hard limit on the number of epochs.
        patience: stop after this many epochs without a better validation loss.
        validation_fraction: fraction of the simulations held out for validation.
        clip_norm: global gradient-norm clipping threshold (``None`` disables it).
        progress_bar: show a tqdm progress bar with the losses.
    """

    learning_rate: float = 5e-4
    weight_decay: float = 0.0
    batch_size: int = 200
    max_epochs: int = 1000
    patience: int = 20
    validation_fraction: float = 0.1
    clip_norm: float | None = 5.0
    progress_bar: bool = True

    def __post_init__(self) -> None:
        _positive("learning_rate", self.learning_rate)
        _positive("batch_size", self.batch_size, integer=True)
        _positive("max_epochs", self.max_epochs, integer=True)
        _positive("patience", self.patience, integer=True)
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay: expected >= 0; got {self.weight_decay}")
        if not 0.0 < self.validation_fraction < 1.0:
            raise ValueError(
                f"validation_fraction: expected a number in (0, 1); got {self.validation_fraction}"
            )
        if self.clip_norm is not None:
            _positive("clip_norm", self.clip_norm)

    def to_dict(self) -> dict[str, Any]:
        """The options as a JSON-serialisable dict."""
        return dataclasses.asdict(self)


@dataclass
class TrainingHistory:
    """What happened during training.

    Attributes:
        train_loss: mean training loss per epoch (nats per example).
        validation_loss: validation loss per epoch.
        best_epoch: 0-based epoch whose weights were kept.
        stopped_early: whether early stopping ended training before ``max_epochs``.
        num_train: simulations used for training.
        num_validation: simulations used for validation.
        num_invalid: simulations excluded because they held NaN or inf.
        compile_time_s: seconds spent compiling the epoch and validation functions.
        train_time_s: seconds spent training, compilation excluded.
    """

    train_loss: list[float] = field(default_factory=list)
    validation_loss: list[float] = field(default_factory=list)
    best_epoch: int = -1
    stopped_early: bool = False
    num_train: int = 0
    num_validation: int = 0
    num_invalid: int = 0
    compile_time_s: float = 0.0
    train_time_s: float = 0.0

    @property
    def best_validation_loss(self) -> float:
        """Validation loss of the kept weights."""
        return self.validation_loss[self.best_epoch]

    def to_dict(self) -> dict[str, Any]:
        """The history as a JSON-serialisable dict."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainingHistory:
        """Inverse of `to_dict`."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


@dataclass
class LoopState:
    """Where training stands after ``epoch`` completed epochs: enough to resume it exactly.

    A run resumed from the state of epoch k continues with the same minibatch
    orders, and so gives the same weights as the run that was never stopped.

    Attributes:
        epoch: number of completed epochs.
        key: PRNG key for the minibatch orders of the following epochs.
        params: trained parameters (a pytree of arrays).
        opt_state: optimizer state.
        best_params: parameters of the best validation epoch so far.
        best_loss: best validation loss so far (``inf`` before the first epoch).
        since_best: epochs since the best one.
        history: the history so far.
    """

    epoch: int
    key: PRNGKeyArray
    params: Any
    opt_state: Any
    best_params: Any
    best_loss: float
    since_best: int
    history: TrainingHistory

    def arrays(self) -> dict[str, Any]:
        """The array part as one pytree (the key as its raw ``uint32`` data)."""
        return {
            "key": jax.random.key_data(self.key),
            "params": self.params,
            "opt_state": self.opt_state,
            "best_params": self.best_params,
        }

    def scalars(self) -> dict[str, Any]:
        """The JSON-serialisable part."""
        return {
            "epoch": self.epoch,
            "best_loss": self.best_loss,
            "since_best": self.since_best,
            "history": self.history.to_dict(),
        }

    def restored(self, arrays: dict[str, Any], scalars: dict[str, Any]) -> LoopState:
        """A state of the same structure as ``self`` holding saved ``arrays`` and ``scalars``.

        Args:
            arrays: a pytree shaped like ``self.arrays()``.
            scalars: a dict like ``self.scalars()``.
        """
        return LoopState(
            epoch=int(scalars["epoch"]),
            key=jax.random.wrap_key_data(
                jnp.asarray(arrays["key"]), impl=jax.random.key_impl(self.key)
            ),
            params=jax.tree.map(jnp.asarray, arrays["params"]),
            opt_state=jax.tree.map(jnp.asarray, arrays["opt_state"]),
            best_params=jax.tree.map(jnp.asarray, arrays["best_params"]),
            best_loss=float(scalars["best_loss"]),
            since_best=int(scalars["since_best"]),
            history=TrainingHistory.from_dict(scalars["history"]),
        )


def split_train_validation(
    key: PRNGKeyArray, n: int, validation_fraction: float
) -> tuple[np.ndarray, np.ndarray]:
    """Random disjoint index sets ``(train, validation)`` covering ``range(n)``.

    Raises:
        ValueError: if either set would be empty.
    """
    num_val = int(round(n * validation_fraction))
    if num_val < 1 or n - num_val < 1:
        raise ValueError(
            f"expected at least one training and one validation simulation; got {n} "
            f"simulations with validation_fraction={validation_fraction}"
        )
    perm = np.asarray(jax.random.permutation(key, n))
    return np.sort(perm[num_val:]), np.sort(perm[:num_val])


def make_optimizer(config: TrainingConfig) -> optax.GradientTransformation:
    """AdamW, preceded by global-norm gradient clipping when ``clip_norm`` is set."""
    adamw = optax.adamw(config.learning_rate, weight_decay=config.weight_decay)
    if config.clip_norm is None:
        return adamw
    return optax.chain(optax.clip_by_global_norm(config.clip_norm), adamw)


def train(
    key: PRNGKeyArray,
    model: nnx.Module,
    loss_fn: LossFn,
    train_data: tuple[Array, ...],
    validation_data: tuple[Array, ...],
    config: TrainingConfig,
    *,
    description: str = "training",
    checkpoint: CheckpointFn | None = None,
    resume: ResumeFn | None = None,
) -> TrainingHistory:
    """Train ``model`` in place on minibatches; keep the weights of the best validation epoch.

    Args:
        key: PRNG key for the minibatch order.
        model: Flax NNX module; its ``nnx.Param`` variables are trained, all
            other state is held fixed.
        loss_fn: ``loss_fn(model, batch) -> (batch,)`` per-example losses.
        train_data: arrays with a common leading axis (the examples).
        validation_data: arrays like ``train_data``.
        config: loop options.
        description: label of the progress bar.
        checkpoint: called with the `LoopState` after every epoch (before the
            next epoch reuses its buffers, so save or copy it right away).
        resume: called once with the initial `LoopState` (a template of the
            structure); returns a saved state to continue from, or ``None``
            to start afresh.

    Returns:
        The training history; ``model`` holds the best weights afterwards.
    """
    n_train = _leading(train_data, "train_data")
    n_val = _leading(validation_data, "validation_data")
    batch_size = min(config.batch_size, n_train)
    num_batches = n_train // batch_size
    optimizer = make_optimizer(config)

    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    opt_state = optimizer.init(params)

    def example_losses(params: Any, batch: tuple[Array, ...]) -> Array:
        return loss_fn(nnx.merge(graphdef, params, rest), batch)

    def run_epoch(params, opt_state, key, data):
        order = jax.random.permutation(key, n_train)[: num_batches * batch_size]

        def step(carry, idx):
            params, opt_state = carry
            batch = tuple(a[idx] for a in data)
            loss, grads = jax.value_and_grad(lambda p: example_losses(p, batch).mean())(params)
            updates, opt_state = optimizer.update(grads, opt_state, params)
            return (optax.apply_updates(params, updates), opt_state), loss

        (params, opt_state), losses = jax.lax.scan(
            step, (params, opt_state), order.reshape(num_batches, batch_size)
        )
        return params, opt_state, losses.mean()

    val_chunk = min(max(batch_size, 1024), n_val)
    num_chunks = math.ceil(n_val / val_chunk)
    pad = num_chunks * val_chunk - n_val

    def validation_loss(params, data):
        # Pad to whole chunks by repeating row 0, then weight the padding out.
        idx = jnp.concatenate([jnp.arange(n_val), jnp.zeros(pad, dtype=int)])
        weight = jnp.concatenate([jnp.ones(n_val), jnp.zeros(pad)])

        def chunk(total, ix):
            i, w = ix
            losses = example_losses(params, tuple(a[i] for a in data))
            return total + jnp.sum(w * losses), None

        total, _ = jax.lax.scan(
            chunk, 0.0, (idx.reshape(num_chunks, val_chunk), weight.reshape(num_chunks, val_chunk))
        )
        return total / n_val

    history = TrainingHistory(num_train=n_train, num_validation=n_val)
    t0 = time.perf_counter()
    epoch_fn = (
        jax.jit(run_epoch, donate_argnums=(0, 1))
        .lower(params, opt_state, key, train_data)
        .compile()
    )
    val_fn = jax.jit(validation_loss).lower(params, validation_data).compile()
    history.compile_time_s = time.perf_counter() - t0

    state = LoopState(0, key, params, opt_state, params, math.inf, 0, history)
    if resume is not None:
        state = resume(state) or state
        state.history.compile_time_s = history.compile_time_s
    history = state.history
    key, params, opt_state = state.key, state.params, state.opt_state
    best_loss, best_params, since_best = state.best_loss, state.best_params, state.since_best
    finished = since_best >= config.patience or state.epoch >= config.max_epochs

    t0 = time.perf_counter()
    bar = tqdm(
        range(state.epoch, config.max_epochs),
        desc=description,
        disable=not config.progress_bar or finished,
        leave=False,
        initial=state.epoch,
        total=config.max_epochs,
    )
    for epoch in () if finished else bar:
        key, sub = jax.random.split(key)
        params, opt_state, train_loss = epoch_fn(params, opt_state, sub, train_data)
        val_loss = float(val_fn(params, validation_data))
        history.train_loss.append(float(train_loss))
        history.validation_loss.append(val_loss)
        if val_loss < best_loss:
            # Copy: the next epoch donates (reuses) the buffers of `params`.
            best_loss, best_params, since_best = val_loss, jax.tree.map(jnp.copy, params), 0
            history.best_epoch = epoch
        else:
            since_best += 1
        bar.set_postfix(
            train=f"{float(train_loss):.3f}", val=f"{val_loss:.3f}", best=f"{best_loss:.3f}"
        )
        if not math.isfinite(val_loss):
            raise FloatingPointError(
                f"validation loss became {val_loss} at epoch {epoch}; try a smaller "
                "learning_rate or check the simulations"
            )
        stop = since_best >= config.patience
        history.stopped_early = stop
        if checkpoint is not None:
            checkpoint(
                LoopState(
                    epoch + 1, key, params, opt_state, best_params, best_loss, since_best, history
                )
            )
        if stop:
            break
    bar.close()
    history.train_time_s += time.perf_counter() - t0
    nnx.update(model, best_params)
    return history


def _leading(data: tuple[Array, ...], name: str) -> int:
    sizes = {int(a.shape[0]) for a in data}
    if len(sizes) != 1:
        raise ValueError(f"{name}: expected arrays with a common leading axis; got {sorted(sizes)}")
    return sizes.pop()


def _positive(name: str, value: Any, *, integer: bool = False) -> None:
    ok_type = isinstance(value, int | np.integer) if integer else isinstance(value, int | float)
    if isinstance(value, bool) or not ok_type or not value > 0:
        kind = "a positive integer" if integer else "a positive number"
        raise ValueError(f"{name}: expected {kind}; got {value!r}")
