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
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jaxtyping import Array, PRNGKeyArray
from tqdm.auto import tqdm

from astroprob.inference import _sharding
from astroprob.inference._compilation import EXECUTABLES

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
        devices: train data-parallel on the first ``devices`` of
            ``jax.devices()`` (``None``: all of them; 1: no sharding).
        average_decay: if set, validate (and keep as the result) an
            exponential moving average of the parameters over the optimizer
            steps, with this decay per step (bias-corrected, as Adam's moments),
            instead of the last iterate; ``None`` uses the parameters as they are.
    """

    learning_rate: float = 5e-4
    weight_decay: float = 0.0
    batch_size: int = 200
    max_epochs: int = 1000
    patience: int = 20
    validation_fraction: float = 0.1
    clip_norm: float | None = 5.0
    progress_bar: bool = True
    devices: int | None = None
    average_decay: float | None = None

    def __post_init__(self) -> None:
        if self.average_decay is not None and not 0.0 < self.average_decay < 1.0:
            raise ValueError(
                f"average_decay: expected None or a number in (0, 1); got {self.average_decay!r}"
            )
        if self.devices is not None:
            _positive("devices", self.devices, integer=True)
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
        compile_time_s: seconds spent tracing and compiling the epoch and validation
            functions (tracing only where this process compiled the same programs
            before: `astroprob.inference._compilation.ExecutableCache`).
        train_time_s: seconds spent training, compilation excluded.
        num_devices: devices the training was spread over (`jax.sharding`).
        members: for an ensemble (`train_ensemble`), one history per member;
            the lists above then summarise the members (see there).
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
    num_devices: int = 1
    members: list[TrainingHistory] | None = None

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
        out = cls(**{k: v for k, v in data.items() if k in names})
        if out.members is not None:
            out.members = [m if isinstance(m, cls) else cls.from_dict(m) for m in out.members]
        return out


@dataclass
class LoopState:
    """Where training stands after ``epoch`` completed epochs: enough to resume it exactly.

    A run resumed from the state of epoch k continues with the same minibatch
    orders, and so gives the same weights as the run that was never stopped.

    Attributes:
        epoch: number of completed epochs.
        key: PRNG key for the minibatch orders of the following epochs (one per
            member, shape ``(K,)``, for an ensemble).
        params: trained parameters (a pytree of arrays).
        opt_state: optimizer state.
        best_params: parameters of the best validation epoch so far.
        best_loss: best validation loss so far (``inf`` before the first epoch);
            for an ensemble, an array with one per member.
        since_best: epochs since the best one (an array per member for an ensemble).
        history: the history so far.
    """

    epoch: int
    key: Array
    params: Any
    opt_state: Any
    best_params: Any
    best_loss: float | np.ndarray
    since_best: int | np.ndarray
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
            "best_loss": np.asarray(self.best_loss, dtype=float).tolist(),
            "since_best": np.asarray(self.since_best, dtype=int).tolist(),
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
            best_loss=_like(self.best_loss, scalars["best_loss"], float),
            since_best=_like(self.since_best, scalars["since_best"], int),
            history=TrainingHistory.from_dict(scalars["history"]),
        )


def _like(template: Any, value: Any, kind: type) -> Any:
    """``value`` as a scalar of ``kind``, or as an array when ``template`` is one."""
    if np.ndim(template):
        return np.asarray(value, dtype=kind)
    return kind(value)


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
    # A host-side shuffle seeded by the key's bits: reproducible from the key, and
    # unlike jax.random.permutation it compiles nothing for a new n.
    perm = np.random.default_rng(np.asarray(jax.random.key_data(key)).ravel()).permutation(n)
    return np.sort(perm[num_val:]), np.sort(perm[:num_val])


class AverageState(NamedTuple):
    """State of `with_parameter_average`: the inner optimizer's and the running average."""

    inner: Any
    count: Array
    average: Any


def with_parameter_average(
    inner: optax.GradientTransformation, decay: float
) -> optax.GradientTransformation:
    """Wrap ``inner`` so that its state also tracks an average of the parameters.

    After every update the state holds ``a_t = decay * a_{t-1} + (1 - decay) * p_t``
    of the updated parameters ``p_t``, from ``a_0 = 0``; `averaged_parameters`
    returns the bias-corrected ``a_t / (1 - decay^t)`` (Polyak-Ruppert averaging
    with exponential weights). The updates themselves are ``inner``'s.
    """

    def init(params: Any) -> AverageState:
        zeros = jax.tree.map(jnp.zeros_like, params)
        return AverageState(inner.init(params), jnp.zeros((), jnp.int32), zeros)

    def update(updates: Any, state: AverageState, params: Any = None) -> tuple[Any, AverageState]:
        updates, inner_state = inner.update(updates, state.inner, params)
        new_params = optax.apply_updates(params, updates)
        average = jax.tree.map(
            lambda a, p: decay * a + (1.0 - decay) * p, state.average, new_params
        )
        return updates, AverageState(inner_state, state.count + 1, average)

    return optax.GradientTransformation(init, update)


def averaged_parameters(state: AverageState, decay: float, params: Any) -> Any:
    """The bias-corrected parameter average of a `with_parameter_average` state.

    Before the first update it is ``params``.
    """
    correction = 1.0 - jnp.asarray(decay, jnp.float32) ** state.count
    safe = jnp.where(correction > 0, correction, 1.0)
    return jax.tree.map(
        lambda a, p: jnp.where(correction > 0, a / safe.astype(a.dtype), p), state.average, params
    )


def make_optimizer(config: TrainingConfig) -> optax.GradientTransformation:
    """AdamW, preceded by global-norm gradient clipping when ``clip_norm`` is set.

    With ``average_decay`` set, wrapped in `with_parameter_average`.
    """
    optimizer = optax.adamw(config.learning_rate, weight_decay=config.weight_decay)
    if config.clip_norm is not None:
        optimizer = optax.chain(optax.clip_by_global_norm(config.clip_norm), optimizer)
    if config.average_decay is not None:
        optimizer = with_parameter_average(optimizer, config.average_decay)
    return optimizer


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

    On several devices (``config.devices``, default all of ``jax.devices()``)
    every minibatch is split over the devices and the parameters are
    replicated (data parallelism with `jax.sharding`); the losses agree with a
    one-device run up to floating-point summation order.

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
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    best_params, history = _train(
        key,
        graphdef,
        params,
        rest,
        loss_fn,
        train_data,
        validation_data,
        config,
        num_members=None,
        description=description,
        checkpoint=checkpoint,
        resume=resume,
    )
    nnx.update(model, best_params)
    return history


def train_ensemble(
    keys: Array,
    models: Sequence[nnx.Module],
    loss_fn: LossFn,
    train_data: tuple[Array, ...],
    validation_data: tuple[Array, ...],
    config: TrainingConfig,
    *,
    description: str = "training",
    checkpoint: CheckpointFn | None = None,
    resume: ResumeFn | None = None,
) -> TrainingHistory:
    """Train ``K`` models of one architecture at once, in one compiled program.

    The members' parameters are stacked along a leading axis and one epoch of
    all members is ``jax.vmap`` of the one-member epoch, each member with its
    own minibatch order (its own key). Early stopping is per member: a member
    whose validation loss has not improved for ``patience`` epochs is frozen
    (its updates are discarded) and keeps its best epoch, so member ``k``
    ends exactly as a separate `train` run with key ``keys[k]`` would;
    training ends when every member has stopped. On several devices the
    members are split over a ``"members"`` mesh axis and each member's
    minibatches over a ``"data"`` axis.

    Args:
        keys: ``(K,)`` PRNG keys, one per member, for the minibatch orders.
        models: ``K`` Flax NNX modules of the same structure (different
            initial weights); trained in place.
        loss_fn: ``loss_fn(model, batch) -> (batch,)`` per-example losses of one member.
        train_data: arrays with a common leading axis, shared by all members.
        validation_data: arrays like ``train_data``.
        config: loop options.
        description: label of the progress bar.
        checkpoint: as for `train`; the `LoopState` holds stacked arrays and
            ``best_loss`` and ``since_best`` per member.
        resume: as for `train`.

    Returns:
        A history whose ``members`` are the per-member histories;
        ``train_loss`` is the mean over the members still training,
        ``validation_loss`` the mean of the members' best validation losses
        so far, and ``best_epoch`` the last epoch that improved any member.
    """
    if not isinstance(models, list | tuple) or len(models) < 1:
        raise ValueError(f"models: expected a non-empty sequence of modules; got {models!r}")
    num_members = len(models)
    if keys.shape != (num_members,):
        raise ValueError(
            f"keys: expected shape ({num_members},), one key per member; got {keys.shape}"
        )
    splits = [nnx.split(m, nnx.Param, ...) for m in models]
    graphdef = splits[0][0]
    if any(s[0] != graphdef for s in splits[1:]):
        raise ValueError("models: expected modules of one architecture (equal graph definitions)")
    params = jax.tree.map(lambda *a: jnp.stack(a), *[s[1] for s in splits])
    rest = jax.tree.map(lambda *a: jnp.stack(a), *[s[2] for s in splits])
    best_params, history = _train(
        keys,
        graphdef,
        params,
        rest,
        loss_fn,
        train_data,
        validation_data,
        config,
        num_members=num_members,
        description=description,
        checkpoint=checkpoint,
        resume=resume,
    )
    for k, model in enumerate(models):
        nnx.update(model, jax.tree.map(lambda a, k=k: a[k], best_params))
    return history


def _train(
    key: Array,
    graphdef: Any,
    params: Any,
    rest: Any,
    loss_fn: LossFn,
    train_data: tuple[Array, ...],
    validation_data: tuple[Array, ...],
    config: TrainingConfig,
    *,
    num_members: int | None,
    description: str,
    checkpoint: CheckpointFn | None,
    resume: ResumeFn | None,
) -> tuple[Any, TrainingHistory]:
    """The loop shared by `train` (``num_members=None``) and `train_ensemble`."""
    n_train = _leading(train_data, "train_data")
    n_val = _leading(validation_data, "validation_data")
    batch_size = min(config.batch_size, n_train)
    num_batches = n_train // batch_size
    optimizer = make_optimizer(config)
    ensemble = num_members is not None
    mesh = _sharding.training_mesh(config.devices, num_members)
    constrain = _sharding.batch_constraint(mesh)

    def example_losses(params: Any, rest: Any, batch: tuple[Array, ...]) -> Array:
        return loss_fn(nnx.merge(graphdef, params, rest), batch)

    def evaluated(params, opt_state):
        """The parameters that are validated and kept: the iterate or its average."""
        if config.average_decay is None:
            return params
        return averaged_parameters(opt_state, config.average_decay, params)

    def member_epoch(params, opt_state, rest, key, data):
        order = jax.random.permutation(key, n_train)[: num_batches * batch_size]

        def step(carry, idx):
            params, opt_state = carry
            batch = tuple(constrain(a[idx]) for a in data)
            mean_loss = lambda p: example_losses(p, rest, batch).mean()  # noqa: E731
            loss, grads = jax.value_and_grad(mean_loss)(params)
            updates, opt_state = optimizer.update(grads, opt_state, params)
            return (optax.apply_updates(params, updates), opt_state), loss

        (params, opt_state), losses = jax.lax.scan(
            step, (params, opt_state), order.reshape(num_batches, batch_size)
        )
        return params, opt_state, losses.mean(), evaluated(params, opt_state)

    val_chunk = min(max(batch_size, 1024), n_val)
    num_chunks = math.ceil(n_val / val_chunk)
    pad = num_chunks * val_chunk - n_val

    def member_validation(params, rest, data):
        # Pad to whole chunks by repeating row 0, then weight the padding out.
        idx = jnp.concatenate([jnp.arange(n_val), jnp.zeros(pad, dtype=int)])
        weight = jnp.concatenate([jnp.ones(n_val), jnp.zeros(pad)])

        def chunk(total, ix):
            i, w = ix
            losses = example_losses(params, rest, tuple(constrain(a[i]) for a in data))
            return total + jnp.sum(w * losses), None

        total, _ = jax.lax.scan(
            chunk, 0.0, (idx.reshape(num_chunks, val_chunk), weight.reshape(num_chunks, val_chunk))
        )
        return total / n_val

    if ensemble:
        spmd = None if mesh is None else _sharding.MEMBERS
        vmapped_epoch = jax.vmap(member_epoch, in_axes=(0, 0, 0, 0, None), spmd_axis_name=spmd)

        def run_epoch(params, opt_state, rest, keys, active, data):
            new_params, new_opt_state, losses, candidates = vmapped_epoch(
                params, opt_state, rest, keys, data
            )
            # Members that stopped early keep their parameters and optimizer state
            # (their candidates are never selected: they are not `improved`).
            return (
                _select_members(active, new_params, params),
                _select_members(active, new_opt_state, opt_state),
                losses,
                candidates,
            )

        validation_loss = jax.vmap(member_validation, in_axes=(0, 0, None), spmd_axis_name=spmd)
        opt_state = jax.jit(jax.vmap(optimizer.init))(params)  # one compilation, not one per leaf
    else:

        def run_epoch(params, opt_state, rest, key, active, data):
            del active
            return member_epoch(params, opt_state, rest, key, data)

        validation_loss = member_validation
        opt_state = jax.jit(optimizer.init)(params)  # one compilation, not one per leaf

    if mesh is None:
        shard, data_sharding = None, None
    else:
        shard = (_sharding.member_sharded if ensemble else _sharding.replicated)(mesh)
        data_sharding = _sharding.replicated(mesh)
        params, opt_state, rest, key = _sharding.put((params, opt_state, rest, key), shard)
        train_data, validation_data = _sharding.put((train_data, validation_data), data_sharding)
    active = np.ones(num_members, bool) if ensemble else np.ones((), bool)

    history = TrainingHistory(
        num_train=n_train, num_validation=n_val, num_devices=1 if mesh is None else mesh.size
    )
    if ensemble:
        history.members = [
            TrainingHistory(num_train=n_train, num_validation=n_val) for _ in range(num_members)
        ]
    t0 = time.perf_counter()
    out = {} if shard is None else {"out_shardings": shard}
    lowered = [
        jax.jit(run_epoch, donate_argnums=(0, 1), **out).lower(
            params, opt_state, rest, key, _place(active, shard), train_data
        ),
        jax.jit(validation_loss, **out).lower(params, rest, validation_data),
    ]
    if ensemble:
        mask = _place(active, shard)
        lowered.append(jax.jit(_select_members, **out).lower(mask, params, params))
        lowered.append(jax.jit(_split_members, **out).lower(key))
    devices = () if mesh is None else tuple(int(d.id) for d in mesh.devices.flat)
    compiled = EXECUTABLES.compile(lowered, devices)
    epoch_fn, val_fn = compiled[:2]
    if ensemble:
        select_fn, split_fn = compiled[2:]
    history.compile_time_s = time.perf_counter() - t0

    if ensemble:
        best_loss, since_best = np.full(num_members, math.inf), np.zeros(num_members, int)
    else:
        best_loss, since_best = math.inf, 0
    best_params = jax.device_put(params, may_alias=False)
    state = LoopState(0, key, params, opt_state, best_params, best_loss, since_best, history)
    if resume is not None:
        state = resume(state) or state
        state.history.compile_time_s = history.compile_time_s
    history = state.history
    key, params, opt_state = state.key, state.params, state.opt_state
    best_loss, best_params, since_best = state.best_loss, state.best_params, state.since_best
    if mesh is not None:
        key, params, opt_state, best_params = _sharding.put(
            (key, params, opt_state, best_params), shard
        )
    active = np.asarray(since_best) < config.patience
    finished = not active.any() or state.epoch >= config.max_epochs

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
        if ensemble:
            key, sub = split_fn(key)
        else:
            key, sub = jax.random.split(key)
        params, opt_state, train_loss, candidate = epoch_fn(
            params, opt_state, rest, sub, _place(active, shard), train_data
        )
        val_loss = np.asarray(val_fn(candidate, rest, validation_data), dtype=float)
        train_loss = np.asarray(train_loss, dtype=float)
        bad = np.flatnonzero(~np.isfinite(val_loss) & active)
        if bad.size:
            which = f" of member {int(bad[0])}" if ensemble else ""
            raise FloatingPointError(
                f"validation loss{which} became {val_loss.reshape(-1)[bad[0]]} at epoch {epoch}; "
                "try a smaller learning_rate or check the simulations"
            )
        if ensemble:
            improved = active & (val_loss < best_loss)
            for k in np.flatnonzero(active):
                member = history.members[k]
                member.train_loss.append(float(train_loss[k]))
                member.validation_loss.append(float(val_loss[k]))
                if improved[k]:
                    member.best_epoch = epoch
            if improved.any():
                best_params = select_fn(_place(improved, shard), candidate, best_params)
                history.best_epoch = epoch
            history.train_loss.append(float(train_loss[active].mean()))
            best_loss = np.where(improved, val_loss, best_loss)
            since_best = np.where(improved, 0, since_best + active)
            history.validation_loss.append(float(best_loss.mean()))
            active = since_best < config.patience
            for k, member in enumerate(history.members):
                member.stopped_early = bool(since_best[k] >= config.patience)
            stop = not active.any()
            shown = {"train": history.train_loss[-1], "best": history.validation_loss[-1]}
            shown["training"] = f"{int(active.sum())}/{num_members}"
        else:
            val_loss = float(val_loss)
            history.train_loss.append(float(train_loss))
            history.validation_loss.append(val_loss)
            if val_loss < best_loss:
                # Copy: the next epoch donates (reuses) the buffers of `params`.
                best_loss, since_best = val_loss, 0
                best_params = jax.device_put(candidate, may_alias=False)
                history.best_epoch = epoch
            else:
                since_best += 1
            stop = since_best >= config.patience
            shown = {"train": float(train_loss), "val": val_loss, "best": best_loss}
        bar.set_postfix({k: f"{v:.3f}" if isinstance(v, float) else v for k, v in shown.items()})
        history.stopped_early = bool(stop)
        if checkpoint is not None:
            checkpoint(
                LoopState(
                    epoch + 1,
                    key,
                    params,
                    opt_state,
                    best_params,
                    np.copy(best_loss) if ensemble else best_loss,
                    np.copy(since_best) if ensemble else since_best,
                    history,
                )
            )
        if stop:
            break
    bar.close()
    history.train_time_s += time.perf_counter() - t0
    if mesh is not None:
        # Gather onto every device, then back to the default device.
        best_params = jax.jit(lambda t: t, out_shardings=_sharding.replicated(mesh))(best_params)
        best_params = jax.tree.map(lambda a: jnp.asarray(np.asarray(a)), best_params)
    return best_params, history


def _select_members(mask: Array, new: Any, old: Any) -> Any:
    """Per member (leading axis): ``new`` where ``mask`` else ``old``."""

    def pick(a: Array, b: Array) -> Array:
        return jnp.where(mask.reshape(mask.shape + (1,) * (a.ndim - 1)), a, b)

    return jax.tree.map(pick, new, old)


def _split_members(keys: Array) -> tuple[Array, Array]:
    """``jax.random.split`` of each member's key: (next keys, keys for this epoch)."""
    both = jax.vmap(jax.random.split)(keys)
    return both[:, 0], both[:, 1]


def _place(mask: Any, sharding: Any) -> Any:
    if sharding is None:
        return jnp.asarray(mask)
    return _sharding.put(jnp.asarray(mask), sharding)


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
