"""The work behind ``astroprob calibrate RUN_DIR``: load, calibrate, write, print."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import jax

from astroprob.report._calibrate import calibrate
from astroprob.report._report import CalibrationReport


@dataclass(frozen=True)
class CalibrateConfig:
    """Options of ``astroprob calibrate``.

    Attributes:
        run_dir: run directory (``astroprob train``) or directory written by ``NPE.save``.
        out: the HTML report to write.
        json: optional path of the JSON numbers.
        num_simulations: held-out simulations.
        num_samples: posterior samples per simulation.
        alpha: family-wise significance level.
        seed: integer seed of the test simulations.
        observations: also check the task's stored observations with predictive checks.
    """

    run_dir: Path
    out: Path = Path("report.html")
    json: Path | None = None
    num_simulations: int = 1000
    num_samples: int = 1000
    alpha: float = 0.05
    seed: int = 0
    observations: bool = False


def run_calibrate(config: CalibrateConfig) -> CalibrationReport:
    """Load the saved NPE, calibrate it and write the report.

    The task (and embedding) are rebuilt from the run directory's ``run.toml``
    for a run made by ``astroprob train``, or from the task's name for a
    directory written by ``NPE.save`` with a built-in task.
    """
    from astroprob.io.runs import load_run

    npe = load_run(config.run_dir)
    task = npe.task
    observations = None
    if config.observations and task.num_observations:
        observations = task.observations
    report = calibrate(
        jax.random.key(config.seed),
        npe,
        task,
        n=config.num_simulations,
        num_samples=config.num_samples,
        alpha=config.alpha,
        observations=observations,
    )
    print(report)
    written = [report.save(config.out)]
    if config.json is not None:
        written.append(report.save(config.json))
    for path in written:
        print(f"wrote {path}")
    return report
