"""Residual rotation error of EquivariantCNN for groups whose rotations are not grid symmetries.

For C_8, D_8 and C_16 (steerable filter basis) the network's outputs are compared
on smooth images and on the same images rendered rotated by each group element
(elliptical Gaussian blobs, widths 1.5-3 px, inside the inscribed disk of a 33x33
stamp, so the rotated image is exact, not interpolated). Reported per group: the
error ``max |y(g x) - rho(g) y(x)|`` over the elements that are not multiples of
90 degrees, relative to ``max |y(x)|`` (median and worst over network seeds), and
relative to the typical difference between the outputs of two different images.
Outputs are the invariant features and spin-2 / spin-1 (and sign for D_N) heads.

    python benchmarks/equivariant_rotation_error.py            # 5 seeds, ~2 min on 2 cores
    python benchmarks/equivariant_rotation_error.py --seeds 2  # quicker
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import jax
import numpy as np
from flax import nnx

from astroprob.nn import EquivariantCNN
from astroprob.nn.groups import as_group

RESULTS = Path(__file__).parent / "results"


def blob_parameters(rng, n, size, blobs=4):
    radius = rng.uniform(0, size / 2 - 11, (n, blobs))
    angle = rng.uniform(0, 2 * np.pi, (n, blobs))
    centres = np.stack([radius * np.cos(angle), radius * np.sin(angle)], -1)
    widths = rng.uniform(1.5, 3.0, (n, blobs, 2))
    tilt = rng.uniform(0, np.pi, (n, blobs))
    amplitude = rng.uniform(0.5, 1.5, (n, blobs))
    return centres, widths, tilt, amplitude


def render(params, size, matrix):
    centres, widths, tilt, amplitude = params
    c = (size - 1) / 2
    ys, xs = np.mgrid[:size, :size] - c
    points = np.stack([xs, ys], -1)
    rot = np.stack([[np.cos(tilt), -np.sin(tilt)], [np.sin(tilt), np.cos(tilt)]])
    axes = matrix @ rot.transpose(2, 3, 0, 1)
    cov = axes @ (widths[..., :, None] ** 2 * np.swapaxes(axes, -1, -2))
    prec = np.linalg.inv(cov)
    d = points[None, None] - (centres @ matrix.T)[:, :, None, None, :]
    q = np.einsum("nbhwi,nbij,nbhwj->nbhw", d, prec, d)
    return np.sum(amplitude[..., None, None] * np.exp(-0.5 * q), axis=1).astype(np.float32)


def measure(group_name, seed, *, size=33, n_images=8):
    group = as_group(group_name)
    outputs = ("spin2", "spin1") + (("sign",) if group.reflections else ())
    net = EquivariantCNN(group, features=16, equivariant_outputs=outputs, rngs=nnx.Rngs(seed))
    graphdef, state = nnx.split(net)
    fn = jax.jit(lambda s, x: nnx.merge(graphdef, s)(x))
    params = blob_parameters(np.random.default_rng(seed), n_images, size)
    y = np.asarray(fn(state, render(params, size, np.eye(2))))
    errors, grid_errors = [], []
    for g in range(group.order):
        yg = np.asarray(fn(state, render(params, size, group.matrix(g))))
        expected = [y[:, :16]]
        for name, columns in net.output_slices[1:]:
            expected.append(y[:, columns] @ group.representation(name)[g].T)
        err = np.abs(yg - np.concatenate(expected, 1)).max(axis=1)  # per image
        on_grid = (4 * group.element(g)[0]) % group.n == 0
        (grid_errors if on_grid else errors).append(err)
    errors, grid_errors = np.array(errors), np.array(grid_errors)
    between = np.abs(y[:, None] - y[None]).max(-1)[~np.eye(len(y), dtype=bool)]
    return {
        "relative_to_max_output": float(errors.max() / np.abs(y).max()),
        "relative_to_between_images": float(errors.mean() / between.mean()),
        "grid_elements_relative": float(grid_errors.max() / np.abs(y).max()),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--groups", nargs="+", default=["C8", "D8", "C16"])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--output", default=str(RESULTS / "equivariant_rotation_error.json"))
    args = parser.parse_args()
    start = time.time()
    rows = {}
    for name in args.groups:
        runs = [measure(name, seed) for seed in range(args.seeds)]
        rows[name] = {
            key: {
                "median": float(np.median([r[key] for r in runs])),
                "max": float(np.max([r[key] for r in runs])),
            }
            for key in runs[0]
        }
        print(name, json.dumps(rows[name]))
    result = {
        "seeds": args.seeds,
        "image": "33x33, 8 images of 4 elliptical Gaussian blobs (widths 1.5-3 px)",
        "network": "EquivariantCNN defaults, features=16, spin2+spin1(+sign) heads, untrained",
        "groups": rows,
        "platform": platform.platform(),
        "jax": jax.__version__,
        "loadavg": Path("/proc/loadavg").read_text().split()[:3],
        "wall_s": time.time() - start,
    }
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(result, indent=2))
    lines = [
        "| group | error / max output (median, worst) | error / between-image difference "
        "(median, worst) | 90-degree elements / max output (worst) |",
        "|---|---|---|---|",
    ]
    for name, r in rows.items():
        a, b, c = (
            r[k]
            for k in (
                "relative_to_max_output",
                "relative_to_between_images",
                "grid_elements_relative",
            )
        )
        lines.append(
            f"| {name} | {a['median']:.2%}, {a['max']:.2%} | {b['median']:.2%}, "
            f"{b['max']:.2%} | {c['max']:.1e} |"
        )
    markdown = "\n".join(lines)
    Path(args.output).with_suffix(".md").write_text(markdown + "\n")
    print(markdown)


if __name__ == "__main__":
    main()
