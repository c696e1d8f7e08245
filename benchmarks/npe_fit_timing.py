"""One NPE fit and warm sampling in this process, as one JSON line: for A/B runs of two trees.

Uses the NSF sizes and training options of `npe_vs_sbi.py` (astroprob's own
minibatch and weight decay). Run it with ``PYTHONPATH`` pointing at each tree in
turn, alternating, each in a fresh process::

    git worktree add /tmp/old <commit>
    for code in /tmp/old .; do PYTHONPATH=$code python benchmarks/npe_fit_timing.py slcp 1000; done

Prints the fit's wall time split into compilation, epochs and the rest (set-up),
and the time of 1,000 samples for each of 100 observations (first call, and the
best of 3 warm calls).
"""

from __future__ import annotations

import argparse
import json
import os
import time

import jax
import numpy as np
from npe_vs_sbi import ASTROPROB_NSF_EXTRA, NSF_SIZES

import astroprob as ap

TRAINING = {
    "learning_rate": 5e-4,
    "validation_fraction": 0.1,
    "patience": 20,
    "clip_norm": 5.0,
    "max_epochs": 1000,
}
"""The training options of `npe_vs_sbi.py` but the minibatch (astroprob's own default)."""


def main() -> None:
    """Fit, sample, print one JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("task")
    parser.add_argument("budget", type=int)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    task = ap.tasks.get(args.task)
    theta, x = task.simulate(jax.random.key(args.seed), args.budget)
    theta, x = np.asarray(theta), np.asarray(x)
    t0 = time.perf_counter()
    npe = ap.NPE(task, "nsf", **NSF_SIZES, **ASTROPROB_NSF_EXTRA)
    npe.fit(jax.random.key(args.seed + 1), theta, x, progress_bar=False, **TRAINING)
    wall = time.perf_counter() - t0
    h = npe.history
    posterior = npe.posterior(np.asarray(task.simulate(jax.random.key(args.seed + 5), 100)[1]))
    t0 = time.perf_counter()
    jax.block_until_ready(posterior.sample(jax.random.key(2), 1000))
    first = time.perf_counter() - t0
    warm = []
    for r in range(3):
        t0 = time.perf_counter()
        jax.block_until_ready(posterior.sample(jax.random.key(3 + r), 1000))
        warm.append(time.perf_counter() - t0)
    print(
        json.dumps(
            {
                "astroprob": os.path.dirname(ap.__file__),
                "task": args.task,
                "budget": args.budget,
                "fit_wall_s": wall,
                "compile_s": h.compile_time_s,
                "train_s": h.train_time_s,
                "set_up_s": wall - h.compile_time_s - h.train_time_s,
                "epochs": len(h.train_loss),
                "sample_100x1000_first_s": first,
                "sample_100x1000_warm_s": min(warm),
                "loadavg": os.getloadavg(),
            }
        )
    )


if __name__ == "__main__":
    main()
