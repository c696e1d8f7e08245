"""`calibrate`: run the calibration suite on fresh simulations and build the report."""

from __future__ import annotations

import datetime as _dt
import platform
import time
import warnings
from importlib import metadata
from typing import Any

import jax
import numpy as np
from jax.typing import ArrayLike
from jaxtyping import PRNGKeyArray

from astroprob._version import __version__
from astroprob.diagnostics import _checks
from astroprob.diagnostics.contraction import z_score_contraction
from astroprob.diagnostics.coverage import expected_coverage
from astroprob.diagnostics.runners import (
    DEFAULT_BATCH_SIZE,
    batched_log_prob,
    run_predictive_check,
    simulate_test_set,
)
from astroprob.diagnostics.sbc import sbc
from astroprob.diagnostics.tarp import tarp
from astroprob.diagnostics.verdict import combine
from astroprob.report._report import CalibrationReport
from astroprob.tasks._task import Task

__all__ = ["calibrate"]

TEST_SET_SALT = 0x7E57
"""Folded into the key before simulating, so test data never reuse a training key's stream."""


def calibrate(
    key: PRNGKeyArray,
    estimator: Any,
    task: Task,
    *,
    n: int = 1000,
    num_samples: int = 1000,
    alpha: float = 0.05,
    use_log_prob: bool = True,
    observations: ArrayLike | None = None,
    num_predictive: int = 500,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> CalibrationReport:
    """Check that an estimator's error bars are honest, on ``n`` fresh held-out simulations.

    Draws ``n`` parameter vectors from the task's prior and simulates them (with
    a key derived from ``key`` that no training run uses), samples the
    estimator's posterior for each, and runs SBC per parameter, expected
    coverage of HPD regions (of the estimator's own density if it has
    ``log_prob``, else a kernel estimate), TARP, and z-scores with posterior
    contraction. One Bonferroni correction over SBC, coverage and TARP gives the
    verdict per parameter (calibrated, overconfident, underconfident, biased)
    and overall. If ``observations`` are given, posterior predictive checks
    flag those unlike anything the simulator makes.

    Args:
        key: PRNG key of the test simulations, posterior samples and TARP.
        estimator: trained estimator with ``posterior(x)`` (e.g. `astroprob.NPE`).
        task: the task the estimator was trained on.
        n: number of held-out simulations.
        num_samples: posterior samples per simulation.
        alpha: family-wise significance level of the verdict.
        use_log_prob: rank HPD coverage by the estimator's log-density.
        observations: optional observations ``(n_obs, *obs_shape)`` (or one) for
            posterior predictive checks.
        num_predictive: posterior predictive simulations per observation.
        batch_size: observations per posterior call.

    Returns:
        A `CalibrationReport`: ``str(report)``, ``report.to_dict()``,
        ``report.save("report.html")``.

    Raises:
        TypeError: if ``task`` is not a Task or ``estimator`` lacks ``posterior``.
        ValueError: on bad sizes or levels.

    Warns:
        UserWarning: once, when ``n`` or ``num_samples`` is below 100.
    """
    if not isinstance(task, Task):
        raise TypeError(f"task: expected an astroprob Task; got {type(task).__name__}")
    n = _checks.check_int("n", n, minimum=2)
    num_samples = _checks.check_int("num_samples", num_samples, minimum=4)
    alpha = _checks.check_alpha(alpha)
    if n < _checks.MIN_RELIABLE or num_samples < _checks.MIN_RELIABLE:
        warnings.warn(
            f"calibrate: n={n} simulations and num_samples={num_samples}; use at least "
            f"{_checks.MIN_RELIABLE} of both for reliable verdicts",
            UserWarning,
            stacklevel=2,
        )
    timings: dict[str, float] = {}
    start = time.perf_counter()
    key_test, key_tarp, key_ppc = jax.random.split(jax.random.fold_in(key, TEST_SET_SALT), 3)
    test = simulate_test_set(
        key_test, estimator, task, n, num_samples=num_samples, batch_size=batch_size
    )
    timings["simulate_and_sample_s"] = time.perf_counter() - start
    names = task.parameter_names

    with warnings.catch_warnings():
        # calibrate warned once above; the diagnostics' own small-sample warnings would repeat it.
        warnings.filterwarnings("ignore", message=".*for a reliable test", category=UserWarning)
        t0 = time.perf_counter()
        sbc_result = sbc(test.samples, test.theta, names=names, alpha=alpha)
        timings["sbc_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        log_prob = None
        if use_log_prob:
            log_prob = batched_log_prob(estimator, test.x, batch_size=batch_size)
        coverage_result = expected_coverage(
            test.samples, test.theta, log_prob=log_prob, alpha=alpha
        )
        timings["coverage_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        tarp_result = tarp(key_tarp, test.samples, test.theta, alpha=alpha)
        timings["tarp_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        contraction = z_score_contraction(test.samples, test.theta, names=names, alpha=alpha)
        timings["contraction_s"] = time.perf_counter() - t0
    verdict = combine(sbc=sbc_result, coverage=coverage_result, tarp=tarp_result, alpha=alpha)

    predictive = None
    if observations is not None:
        t0 = time.perf_counter()
        predictive = run_predictive_check(
            key_ppc,
            estimator,
            task,
            observations,
            num_samples=num_predictive,
            alpha=alpha,
            batch_size=batch_size,
        )
        timings["predictive_s"] = time.perf_counter() - t0
    timings["total_s"] = time.perf_counter() - start

    settings = {
        "n": int(len(test.theta)),
        "n_requested": n,
        "num_samples": num_samples,
        "alpha": alpha,
        "num_invalid": test.num_invalid,
        "coverage_method": coverage_result.method,
        "tarp_references": "uniform over the box spanned by the test parameters",
        "num_predictive": num_predictive if observations is not None else None,
        "test_data": "fresh simulations from the prior, drawn from the given key",
    }
    meta = {
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "astroprob_version": __version__,
        "jax_version": jax.__version__,
        "matplotlib_version": metadata.version("matplotlib"),
        "python_version": platform.python_version(),
        "timings_s": {k: round(v, 3) for k, v in timings.items()},
    }
    return CalibrationReport(
        task=task.name,
        estimator=repr(estimator),
        parameter_names=tuple(names),
        settings=settings,
        sbc=sbc_result,
        coverage=coverage_result,
        tarp=tarp_result,
        contraction=contraction,
        verdict=verdict,
        predictive=predictive,
        example_truth=np.asarray(test.theta[0], np.float64),
        example_samples=np.asarray(test.samples[0], np.float64),
        metadata=meta,
    )
