"""The amortized posterior of one observation or a batch of them."""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from astropy.table import QTable
from jax.typing import ArrayLike
from jaxtyping import Array, Float, Int, PRNGKeyArray

from astroprob.nn.vae import Atypicality, add_atypicality_columns
from astroprob.tasks._task import Task, units_of

SUMMARY_QUANTILES = {"q2.5": 0.025, "q16": 0.16, "median": 0.5, "q84": 0.84, "q97.5": 0.975}
"""Column suffix -> quantile level of `Posterior.summary`."""

SampleFn = Callable[[PRNGKeyArray, Array, int], Array]
LogProbFn = Callable[[Array, Array], Array]


class Posterior:
    """p(θ | x) for one observation or a batch, from a trained amortized estimator.

    Created by ``NPE.posterior(x)``; users rarely build it directly.

    Args:
        task: the task, for parameter names, units and the observation shape.
        x: one observation, shape ``task.observation_shape``, or a batch
            ``(n_obs, *task.observation_shape)``.
        sample_fn: compiled ``(key, x (n_obs, ...), num_samples) -> (n_obs, num_samples, dim)``;
            for an ensemble it returns ``(samples, member)`` with the
            ``(n_obs, num_samples)`` index of the member each sample came from.
        log_prob_fn: compiled ``(theta (n_obs, m, dim), x (n_obs, ...)) -> (n_obs, m)``.
        num_members: ``None`` for a single estimator, else the ensemble size ``K``.

    Raises:
        ValueError: if ``x`` has the wrong shape or non-finite values.
    """

    def __init__(
        self,
        task: Task,
        x: ArrayLike,
        sample_fn: SampleFn,
        log_prob_fn: LogProbFn,
        *,
        num_members: int | None = None,
    ):
        # Check in numpy: NaNs must be reported, not trip jax_debug_nans on conversion.
        x = np.asarray(x, dtype=np.float32)
        obs_shape = task.observation_shape
        if x.shape == obs_shape:
            self._batched = False
            x = x[None]
        elif x.ndim == len(obs_shape) + 1 and x.shape[1:] == obs_shape and x.shape[0] > 0:
            self._batched = True
        else:
            raise ValueError(
                f"x: expected one observation of shape {obs_shape} or a batch of shape "
                f"(n_obs, {', '.join(map(str, obs_shape))}); got {x.shape}"
            )
        if not np.all(np.isfinite(x)):
            bad = np.flatnonzero(~np.isfinite(x).reshape(len(x), -1).all(axis=1))
            raise ValueError(
                f"x: expected finite values; observations {bad.tolist()[:10]} hold NaN or inf"
            )
        self.task = task
        self._x = jnp.asarray(x)
        self._sample_fn = sample_fn
        self._log_prob_fn = log_prob_fn
        self._num_members = num_members
        self._last_samples: Array | None = None
        self._last_members: Array | None = None

    @property
    def num_members(self) -> int | None:
        """Ensemble size ``K`` of a mixture posterior; ``None`` for a single estimator."""
        return self._num_members

    @property
    def last_members(self) -> Int[Array, ...] | None:
        """For an ensemble, the member that drew each sample of the last `sample` call.

        Shape ``(num_samples,)`` for one observation, ``(n_obs, num_samples)`` for
        a batch; ``None`` for a single estimator or before any sampling.
        """
        if self._last_members is None:
            return None
        return self._last_members if self._batched else self._last_members[0]

    @property
    def num_observations(self) -> int:
        """Number of observations this posterior is conditioned on."""
        return int(self._x.shape[0])

    @property
    def is_batched(self) -> bool:
        """Whether the posterior was built from a batch of observations."""
        return self._batched

    @property
    def x(self) -> Array:
        """The observation(s), as given (without the added batch axis)."""
        return self._x if self._batched else self._x[0]

    def sample(self, key: PRNGKeyArray, num_samples: int) -> Float[Array, ...]:
        """Draw posterior samples; every sample lies inside the prior's support.

        Args:
            key: PRNG key.
            num_samples: samples per observation.

        Returns:
            ``(num_samples, dim)`` for one observation, ``(n_obs, num_samples, dim)``
            for a batch. One compiled call for all observations.
        """
        if (
            isinstance(num_samples, bool)
            or not isinstance(num_samples, int | np.integer)
            or num_samples < 1
        ):
            raise ValueError(f"num_samples: expected a positive integer; got {num_samples!r}")
        samples, members = self._draw(key, int(num_samples))
        self._last_samples, self._last_members = samples, members
        return samples if self._batched else samples[0]

    def _draw(self, key: PRNGKeyArray, num_samples: int) -> tuple[Array, Array | None]:
        out = self._sample_fn(key, self._x, num_samples)
        return out if self._num_members is not None else (out, None)

    def log_prob(self, theta: ArrayLike) -> Float[Array, ...]:
        """Posterior log-density of parameter values (``-inf`` outside the prior's support).

        Args:
            theta: for one observation ``(dim,)`` or ``(m, dim)``; for a batch of
                ``n_obs`` observations ``(n_obs, dim)`` (one θ per observation) or
                ``(n_obs, m, dim)``.

        Returns:
            ``theta.shape[:-1]``.
        """
        theta = jnp.asarray(theta, dtype=jnp.float32)
        dim, n_obs = self.task.dim, self.num_observations
        if theta.ndim == 0 or theta.shape[-1] != dim:
            raise ValueError(f"theta: expected a last axis of size {dim}; got shape {theta.shape}")
        if not self._batched:
            if theta.ndim > 2:
                raise ValueError(f"theta: expected shape ({dim},) or (m, {dim}); got {theta.shape}")
            lp = self._log_prob_fn(theta.reshape(1, -1, dim), self._x)
            return lp.reshape(theta.shape[:-1])
        if theta.ndim not in (2, 3) or theta.shape[0] != n_obs:
            raise ValueError(
                f"theta: expected shape ({n_obs}, {dim}) or ({n_obs}, m, {dim}) for a batch of "
                f"{n_obs} observations; got {theta.shape}"
            )
        lp = self._log_prob_fn(theta.reshape(n_obs, -1, dim), self._x)
        return lp.reshape(theta.shape[:-1])

    def summary(
        self,
        key: PRNGKeyArray | None = None,
        *,
        num_samples: int = 10_000,
        atypicality: Atypicality | None = None,
    ) -> QTable:
        """Posterior mean, std, median and 68 %/95 % central intervals, one row per observation.

        Args:
            key: PRNG key for fresh samples. If ``None``, the samples of the last
                `sample` call are summarised; if there were none, ``num_samples``
                samples are drawn with ``jax.random.key(0)`` (recorded in ``meta``).
            num_samples: samples per observation when drawing fresh ones.
            atypicality: how unlike the training data each observation is, from
                `astroprob.nn.vae.score_atypicality` for the same observations
                in order; adds the columns ``atypicality`` (score in [0, 1]) and
                ``atypicality_flag`` (``True``: do not trust this posterior
                before checking the observation).

        Returns:
            A `QTable` with column ``obs`` (0-based index) and, for each
            parameter ``p``, ``p_mean``, ``p_std``, ``p_median``, ``p_q2.5``,
            ``p_q16``, ``p_q84``, ``p_q97.5``, carrying the task's units. For
            an ensemble of ``K`` members, ``p_std`` is the spread of the
            mixture and two more columns split it by the law of total
            variance, ``p_std² ≈ p_std_aleatoric² + p_std_epistemic²``:
            ``p_std_aleatoric`` (root mean of the members' variances: the
            width the data allow) and ``p_std_epistemic`` (standard deviation
            of the members' means: the estimator's own uncertainty from the
            finite simulation budget), both from the samples grouped by
            member.
        """
        meta = {}
        if key is not None or self._last_samples is None:
            if key is None:
                key = jax.random.key(0)
                meta["key"] = "jax.random.key(0) (default)"
            samples, members = self._draw(key, int(num_samples))
        else:
            samples, members = self._last_samples, self._last_members
            meta["key"] = "samples of the last sample() call"
        stats = _summary_statistics(samples)
        columns = ["mean", "std", "median", "q2.5", "q16", "q84", "q97.5"]
        if self._num_members is not None:
            stats.update(_member_statistics(samples, members, self._num_members))
            if not np.all(np.isfinite(np.asarray(stats["std_aleatoric"]))):
                warnings.warn(
                    "some ensemble member drew fewer than 2 of the samples, so its spread is "
                    "undefined (NaN in p_std_aleatoric); summarise more samples",
                    stacklevel=2,
                )
            columns += ["std_aleatoric", "std_epistemic"]
            meta["num_members"] = self._num_members
        stats = {name: np.asarray(v) for name, v in stats.items()}
        table = QTable()
        table["obs"] = np.arange(self.num_observations)
        for j, (name, unit) in enumerate(
            zip(self.task.parameter_names, units_of(self.task), strict=True)
        ):
            for stat in columns:
                column = stats[stat][:, j]
                table[f"{name}_{stat}"] = column * unit if unit is not None else column
        table.meta.update(meta)
        table.meta["task"] = self.task.name
        table.meta["num_samples"] = int(samples.shape[1])
        if atypicality is not None:
            add_atypicality_columns(table, atypicality)
        return table

    def __repr__(self) -> str:
        what = f"{self.num_observations} observations" if self._batched else "1 observation"
        return f"Posterior(task={self.task.name!r}, {what}, dim={self.task.dim})"


@jax.jit
def _summary_statistics(samples: Float[Array, "n_obs n dim"]) -> dict[str, Array]:
    levels = jnp.asarray(list(SUMMARY_QUANTILES.values()))
    quantiles = jnp.quantile(samples, levels, axis=1)
    out = {name: quantiles[i] for i, name in enumerate(SUMMARY_QUANTILES)}
    out["mean"] = samples.mean(axis=1)
    out["std"] = samples.std(axis=1, ddof=1)
    return out


@functools.partial(jax.jit, static_argnums=2)
def _member_statistics(
    samples: Float[Array, "n_obs n dim"], members: Int[Array, "n_obs n"], num_members: int
) -> dict[str, Array]:
    """Per-member means and variances of mixture samples, combined with equal weights.

    A member with fewer than two samples has an undefined variance, and gives NaN.
    """
    onehot = jax.nn.one_hot(members, num_members, dtype=samples.dtype)  # (n_obs, n, K)
    count = onehot.sum(axis=1)[..., None]  # (n_obs, K, 1)
    total = jnp.einsum("onk,ond->okd", onehot, samples)
    mean = total / count  # (n_obs, K, dim)
    own_mean = jnp.take_along_axis(mean, members[..., None], axis=1)  # (n_obs, n, dim)
    squares = jnp.einsum("onk,ond->okd", onehot, (samples - own_mean) ** 2)
    variance = jnp.where(count > 1, squares / (count - 1), jnp.nan)
    return {
        "std_aleatoric": jnp.sqrt(variance.mean(axis=1)),
        "std_epistemic": mean.std(axis=1),
    }
