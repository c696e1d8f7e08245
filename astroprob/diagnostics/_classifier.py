"""K-fold cross-validated MLP classifier in JAX: the kernel of :func:`astroprob.diagnostics.c2st`.

The classifier reproduces scikit-learn's ``MLPClassifier(solver="adam")`` with its
default options: Glorot-uniform initialisation of weights and biases, a logistic
output trained on the binary log loss plus an L2 penalty ``alpha / 2 * sum(W**2)``
divided by the minibatch size, Adam with step size 1e-3, reshuffled minibatches
of ``min(200, n_train)`` examples, and the stopping rule on the training loss
(stop once the epoch loss has failed to improve on the best loss by ``tol`` more
than ``n_iter_no_change`` epochs in a row, or after ``max_iter`` epochs).
The one deliberate difference is Adam's epsilon: optax adds it to the
bias-corrected ``sqrt(v_hat)``, sklearn to the uncorrected ``sqrt(v)``; at 1e-8
this is immaterial. Random numbers come from JAX, not from sklearn's generator.

All folds train at once: one fold's training is a ``lax.while_loop`` over epochs
whose body is a ``lax.scan`` over minibatches, and ``jax.vmap`` runs it for all
folds. Under ``vmap`` the loop keeps going until the last fold has stopped; the
folds that stopped earlier keep their parameters (the batched ``while_loop``
selects the old carry for them), so each fold sees exactly its own schedule.

Folds have sizes that differ by at most one, so training and test sets are
padded to common shapes and carry a mask. Padding rows never enter a loss, a
gradient or an accuracy.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import Array

HIDDEN_FACTOR = 10
"""Hidden units per layer, per input dimension (sbibm: two layers of ``10 * dim``)."""
LEARNING_RATE = 1e-3
ALPHA = 1e-4
"""L2 penalty, as sklearn's ``alpha``."""
MAX_BATCH_SIZE = 200
TOL = 1e-4
N_ITER_NO_CHANGE = 10

Params = list[tuple[Array, Array]]


class FoldLayout(NamedTuple):
    """Positions of each fold's training and test examples in a shuffled order.

    Fold ``f`` tests on positions ``[start_f, stop_f)`` of a random permutation of
    the ``n`` examples and trains on the others, as in sklearn's
    ``KFold(shuffle=True)`` (the first ``n % n_folds`` folds hold one extra
    example). Rows are padded to a common length; the mask marks real entries,
    and padding comes last in every row.

    Attributes:
        train_pos: (n_folds, n_train_max) int32 positions.
        train_mask: (n_folds, n_train_max) bool.
        test_pos: (n_folds, n_test_max) int32 positions.
        test_mask: (n_folds, n_test_max) bool.
    """

    train_pos: np.ndarray
    train_mask: np.ndarray
    test_pos: np.ndarray
    test_mask: np.ndarray


def fold_layout(n: int, n_folds: int) -> FoldLayout:
    """The static K-fold layout of ``n`` examples (see :class:`FoldLayout`)."""
    sizes = np.full(n_folds, n // n_folds)
    sizes[: n % n_folds] += 1
    stops = np.cumsum(sizes)
    starts = stops - sizes
    n_test, n_train = int(sizes.max()), int(n - sizes.min())
    train_pos = np.zeros((n_folds, n_train), np.int32)
    train_mask = np.zeros((n_folds, n_train), bool)
    test_pos = np.zeros((n_folds, n_test), np.int32)
    test_mask = np.zeros((n_folds, n_test), bool)
    everything = np.arange(n)
    for f, (start, stop) in enumerate(zip(starts, stops, strict=True)):
        test = everything[start:stop]
        train = np.concatenate([everything[:start], everything[stop:]])
        test_pos[f, : test.size], test_mask[f, : test.size] = test, True
        train_pos[f, : train.size], train_mask[f, : train.size] = train, True
    return FoldLayout(train_pos, train_mask, test_pos, test_mask)


def _init(key: Array, sizes: tuple[int, ...]) -> Params:
    """Glorot-uniform weights and biases, bound ``sqrt(6 / (fan_in + fan_out))`` (sklearn).

    All values come from one draw (each ``jax.random`` call site adds seconds of
    compile time under ``vmap``), then are cut into layers.
    """
    shapes = [
        s
        for fan_in, fan_out in zip(sizes[:-1], sizes[1:], strict=True)
        for s in ((fan_in, fan_out), (fan_out,))
    ]
    u = jax.random.uniform(key, (sum(math.prod(s) for s in shapes),), minval=-1.0, maxval=1.0)
    params, start = [], 0
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:], strict=True):
        bound = math.sqrt(6.0 / (fan_in + fan_out))
        w = bound * u[start : start + fan_in * fan_out].reshape(fan_in, fan_out)
        start += fan_in * fan_out
        b = bound * u[start : start + fan_out]
        start += fan_out
        params.append((w, b))
    return params


def _logits(params: Params, x: Array) -> Array:
    """ReLU MLP; returns the logit of class 1, shape (batch,)."""
    for w, b in params[:-1]:
        x = jax.nn.relu(x @ w + b)
    w, b = params[-1]
    return (x @ w + b)[:, 0]


def _batch_loss(params: Params, x: Array, y: Array, weight: Array) -> Array:
    """The minibatch objective of sklearn: mean log loss + alpha/2 * sum(W**2) / batch size."""
    count = jnp.maximum(weight.sum(), 1.0)
    nll = optax.sigmoid_binary_cross_entropy(_logits(params, x), y)
    l2 = sum(jnp.sum(w**2) for w, _ in params)
    return (jnp.sum(weight * nll) + 0.5 * ALPHA * l2) / count


def _shuffle(key: Array, mask: Array) -> Array:
    """A random order of the rows where ``mask``, followed by the others (the padding).

    Sorting one packed ``uint32`` per row (random bits above, row index below) is
    several times faster on CPU than ``argsort`` or ``jax.random.permutation``.
    Rows whose random bits tie keep their (already random) relative order, which
    is harmless for minibatch shuffling. Padding gets all-ones random bits and, as
    the last rows, the largest indices, so it sorts last.
    """
    n_rows = mask.shape[0]
    index_bits = max(1, (n_rows - 1).bit_length())
    if index_bits > 16:  # Too few random bits would be left: sort on full keys.
        sort_key = jnp.where(mask, jax.random.bits(key, (n_rows,), jnp.uint32), ~jnp.uint32(0))
        return jnp.argsort(sort_key, stable=True).astype(jnp.int32)
    index = jnp.arange(n_rows, dtype=jnp.uint32)
    random_bits = jnp.where(mask, jax.random.bits(key, (n_rows,), jnp.uint32), ~jnp.uint32(0))
    packed = (random_bits << index_bits) | index
    return (jax.lax.sort(packed) & ((1 << index_bits) - 1)).astype(jnp.int32)


def update_stopping(best_loss: Array, no_improvement: Array, loss: Array) -> tuple[Array, Array]:
    """Sklearn's bookkeeping after an epoch with training loss ``loss``.

    An epoch counts as "no improvement" unless its loss beats the best loss so far
    by more than ``TOL``; the best loss is updated either way.

    Returns:
        The new best loss and the new count of consecutive epochs without improvement.
    """
    improved = loss <= best_loss - TOL
    no_improvement = jnp.where(improved, jnp.zeros_like(no_improvement), no_improvement + 1)
    return jnp.minimum(best_loss, loss), no_improvement


def keep_training(epoch: Array, no_improvement: Array, max_iter: Array) -> Array:
    """Whether to run another epoch: sklearn stops once ``no_improvement > N_ITER_NO_CHANGE``."""
    return (epoch < max_iter) & (no_improvement <= N_ITER_NO_CHANGE)


class _LoopState(NamedTuple):
    params: Params
    opt_state: optax.OptState
    key: Array
    epoch: Array
    best_loss: Array
    no_improvement: Array


def _fit_one_fold(key: Array, x: Array, y: Array, mask: Array, max_iter: Array) -> tuple:
    """Train one classifier on the rows of ``x`` where ``mask``; padding rows come last.

    Returns:
        The trained parameters and the number of epochs run.
    """
    n_rows, dim = x.shape
    hidden = HIDDEN_FACTOR * dim
    batch_size = min(MAX_BATCH_SIZE, n_rows)
    n_batches = -(-n_rows // batch_size)
    n_pad = n_batches * batch_size - n_rows
    n_real = mask.sum()
    # Folds hold n_rows or n_rows - 1 real rows; only in the second case can the last
    # minibatch be all padding, and only if n_rows - 1 is a multiple of the batch size.
    may_be_empty = (n_rows - 1) % batch_size == 0
    weight = mask.astype(x.dtype)
    optimizer = optax.adam(LEARNING_RATE, b1=0.9, b2=0.999, eps=1e-8)
    grad_fn = jax.value_and_grad(_batch_loss)

    def step(carry, batch):
        params, opt_state = carry
        idx, w = batch
        loss, grads = grad_fn(params, x[idx], y[idx], w)
        updates, new_opt_state = optimizer.update(grads, opt_state, params)
        new_params = optax.apply_updates(params, updates)
        if may_be_empty:
            # A batch of padding only (the last batch of a smaller fold) is no batch
            # at all: skip it, so that Adam's step count stays as in sklearn.
            real = w.sum() > 0

            def keep(new, old):
                return jnp.where(real, new, old)

            new_params = jax.tree.map(keep, new_params, params)
            new_opt_state = jax.tree.map(keep, new_opt_state, opt_state)
        return (new_params, new_opt_state), loss * w.sum()

    def epoch(state: _LoopState) -> _LoopState:
        key, sub = jax.random.split(state.key)
        order = _shuffle(sub, mask)
        order = jnp.concatenate([order, jnp.zeros(n_pad, order.dtype)])
        batch_weight = jnp.concatenate([weight[order[:n_rows]], jnp.zeros(n_pad, x.dtype)])
        batches = (order.reshape(n_batches, batch_size), batch_weight.reshape(n_batches, -1))
        (params, opt_state), losses = jax.lax.scan(step, (state.params, state.opt_state), batches)
        loss = losses.sum() / n_real
        best_loss, no_improvement = update_stopping(state.best_loss, state.no_improvement, loss)
        return _LoopState(params, opt_state, key, state.epoch + 1, best_loss, no_improvement)

    def running(state: _LoopState) -> Array:
        return keep_training(state.epoch, state.no_improvement, max_iter)

    init_key, loop_key = jax.random.split(key)
    params = _init(init_key, (dim, hidden, hidden, 1))
    state = _LoopState(
        params=params,
        opt_state=optimizer.init(params),
        key=loop_key,
        epoch=jnp.zeros((), jnp.int32),
        best_loss=jnp.array(jnp.inf, x.dtype),
        no_improvement=jnp.zeros((), jnp.int32),
    )
    state = jax.lax.while_loop(running, epoch, state)
    return state.params, state.epoch


@jax.jit
def cross_validated_accuracy(
    key: Array,
    x: Array,
    y: Array,
    train_pos: Array,
    train_mask: Array,
    test_pos: Array,
    test_mask: Array,
    max_iter: Array,
) -> tuple[Array, Array]:
    """Shuffle, split into folds, train one classifier per fold, score on the held-out fold.

    Args:
        key: PRNG key; it fixes the split, the initialisations and the minibatch order.
        x: (n, dim) inputs.
        y: (n,) labels in {0, 1}, as floats.
        train_pos: (n_folds, n_train_max) positions of the training rows, from :func:`fold_layout`.
        train_mask: (n_folds, n_train_max) which of them are real.
        test_pos: (n_folds, n_test_max) positions of the held-out rows.
        test_mask: (n_folds, n_test_max) which of them are real.
        max_iter: bound on the number of epochs per fold.

    Returns:
        The held-out accuracy of each fold, shape (n_folds,), and the number of
        epochs each fold trained for, shape (n_folds,).
    """
    split_key, fold_key = jax.random.split(key)
    perm = jax.random.permutation(split_key, x.shape[0])
    n_folds = train_pos.shape[0]

    def one_fold(key, train_pos, train_mask, test_pos, test_mask):
        train, test = perm[train_pos], perm[test_pos]
        params, n_epochs = _fit_one_fold(key, x[train], y[train], train_mask, max_iter)
        correct = (_logits(params, x[test]) > 0) == (y[test] > 0.5)
        accuracy = jnp.sum(correct & test_mask) / jnp.sum(test_mask)
        return accuracy, n_epochs

    return jax.vmap(one_fold)(
        jax.random.split(fold_key, n_folds), train_pos, train_mask, test_pos, test_mask
    )
