"""NPE on the 10-D gaussian_linear benchmark, checked against its exact posterior.

Run:  python examples/gaussian_linear_npe.py [--num-simulations 10000] [--max-epochs 1000]
"""

import argparse
import time

import jax
import numpy as np

import astroprob as ap
from astroprob.tasks.gaussian_linear import analytic_posterior


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--num-simulations", type=int, default=10_000)
    parser.add_argument("--max-epochs", type=int, default=1000)
    parser.add_argument("--num-samples", type=int, default=5_000)
    args = parser.parse_args(argv)

    task = ap.tasks.get("gaussian_linear")
    theta, x = task.simulate(jax.random.key(0), args.num_simulations)
    t0 = time.perf_counter()
    npe = ap.NPE(task, "nsf").fit(
        jax.random.key(1), theta, x, max_epochs=args.max_epochs, progress_bar=False
    )
    print(f"trained on {args.num_simulations} simulations in {time.perf_counter() - t0:.1f} s")

    observations = np.stack([np.asarray(task.observation(i)) for i in range(1, 11)])
    samples = np.asarray(npe.posterior(observations).sample(jax.random.key(2), args.num_samples))
    exact = analytic_posterior(observations)
    mean_error = np.abs(samples.mean(1) - np.asarray(exact.mean)).max()
    std_ratio = samples.std(1) / np.sqrt(
        np.diagonal(np.asarray(exact.covariance_matrix), 0, -2, -1)
    )
    print(f"max |posterior mean - exact| over 10 observations x 10 parameters: {mean_error:.3f}")
    print(f"posterior std / exact std: {std_ratio.min():.2f} .. {std_ratio.max():.2f}")
    print(npe.posterior(task.observation(1)).summary())


if __name__ == "__main__":
    main()
