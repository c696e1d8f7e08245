"""The demo behind ``astroprob demo``: amortized inference on the two-moons benchmark."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import jax
import numpy as np

from astroprob import tasks
from astroprob.inference import NPE


@dataclass(frozen=True)
class DemoConfig:
    """Options of the demo.

    Attributes:
        out: output directory (created if needed).
        num_simulations: training simulations.
        num_samples: posterior samples drawn for the plotted observation.
        seed: integer seed of every random choice.
        max_epochs: limit on training epochs.
        progress_bar: show the training progress bar.
    """

    out: Path = Path("astroprob-demo")
    num_simulations: int = 10_000
    num_samples: int = 10_000
    seed: int = 0
    max_epochs: int = 1000
    progress_bar: bool = True


def run_demo(config: DemoConfig) -> dict[str, Path]:
    """Train NPE on two_moons, infer observations 1-10, write a table, a plot and the run.

    Returns:
        Paths of what was written: ``run`` (saved estimator), ``summary``
        (ECSV table), ``plot`` (PNG of the posterior of observation 1).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    task = tasks.get("two_moons")
    key_sim, key_fit, key_sample = jax.random.split(jax.random.key(config.seed), 3)

    print(f"simulating {config.num_simulations} two-moons data sets ...")
    theta, x = task.simulate(key_sim, config.num_simulations)
    npe = NPE(task, "nsf")
    t0 = time.perf_counter()
    npe.fit(key_fit, theta, x, max_epochs=config.max_epochs, progress_bar=config.progress_bar)
    h = npe.history
    print(
        f"trained in {time.perf_counter() - t0:.1f} s ({len(h.train_loss)} epochs, "
        f"compile {h.compile_time_s:.1f} s); best validation loss {h.best_validation_loss:.3f}"
    )

    observations = np.stack([np.asarray(task.observation(i)) for i in range(1, 11)])
    posterior = npe.posterior(observations)
    t0 = time.perf_counter()
    samples = np.asarray(posterior.sample(key_sample, config.num_samples))
    print(
        f"drew {config.num_samples} posterior samples for each of 10 observations in "
        f"{time.perf_counter() - t0:.2f} s (one compiled call, compilation included)"
    )
    table = posterior.summary()
    table.meta["observations"] = "sbibm two_moons observations 1-10"
    print(table)

    paths = {"run": out / "run", "summary": out / "summary.ecsv", "plot": out / "posterior.png"}
    npe.save(paths["run"])
    table.write(paths["summary"], overwrite=True)

    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.hist2d(samples[0, :, 0], samples[0, :, 1], bins=120, range=[[-1, 1], [-1, 1]], cmap="Blues")
    truth = np.asarray(task.true_parameters_of(1))
    ax.plot(*truth, "r+", ms=12, label="true θ")
    ax.set(
        xlabel=task.parameter_names[0],
        ylabel=task.parameter_names[1],
        title="two_moons, observation 1: NPE posterior",
    )
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(paths["plot"], dpi=120)
    plt.close(fig)
    for name, path in paths.items():
        print(f"{name:8s} {path}")
    return paths
