"""Speed of one forward+backward pass of a group-equivariant layer stack: astroprob vs escnn.

The same stack in both libraries, for D4 (and any other ``--groups``): a lifting
convolution (1 input channel -> C regular fields, 5x5), ReLU, two group
convolutions (C -> C regular fields, 3x3), ReLU, group pooling (max over the
group), mean over pixels, and the sum as the loss; the gradient is taken with
respect to all weights, whose filters are expanded from their basis on every
call in both (escnn modules in training mode). Both run in the same process,
pinned to the same cores (``--cores``), with PyTorch's and XLA's thread pools
sized to them. JAX's compilation time (first call) and escnn's set-up time
(building the basis when the module is created) are reported separately;
steady-state times are the median of ``--repeats`` timed calls after warm-up.

escnn needs ``lie_learn``, which is built against numpy < 2, while jax 0.10 needs
numpy >= 2, so the two cannot share one interpreter: the escnn half runs in a
child process started by this script (same cores, same settings), with the
Python given by ``--escnn-python``, e.g. a virtual environment made with

    python -m venv --system-site-packages /tmp/escnn-venv
    /tmp/escnn-venv/bin/pip install "numpy<2" lie-learn pymanopt autograd
    /tmp/escnn-venv/bin/pip install --no-deps escnn   # py3nj (needs Fortran) is optional

Then:

    python benchmarks/equivariant_vs_escnn.py --escnn-python /tmp/escnn-venv/bin/python
    python benchmarks/equivariant_vs_escnn.py --quick --escnn-python ...   # tiny sizes

Writes ``benchmarks/results/equivariant_vs_escnn{,_quick}.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results"


def parse():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--groups", nargs="+", default=["D4", "C8"])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--size", type=int, default=65)
    parser.add_argument("--channels", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--cores", default="0,1")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--output", default=None)
    parser.add_argument("--escnn-python", default=sys.executable)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quick:
        args.batch, args.size, args.channels, args.repeats = 4, 33, 4, 3
    return args


ARGS = parse()
CORES = sorted({int(c) for c in ARGS.cores.split(",")})
os.sched_setaffinity(0, CORES)  # before the thread pools of XLA and PyTorch start
os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + f" --xla_cpu_multi_thread_eigen=true"
    f" intra_op_parallelism_threads={len(CORES)}"
)

import numpy as np  # noqa: E402

if ARGS.worker:
    sys.modules["jax"] = None  # pymanopt (an escnn dependency) must not try jax's backend
    import escnn  # noqa: E402
    import torch  # noqa: E402
    from escnn import gspaces  # noqa: E402
    from escnn import nn as enn  # noqa: E402

    torch.set_num_threads(len(CORES))
else:
    import jax  # noqa: E402
    import jax.numpy as jnp  # noqa: E402
    from flax import nnx  # noqa: E402

    from astroprob.nn.equivariant import GroupConv, LiftingConv  # noqa: E402
    from astroprob.nn.groups import as_group  # noqa: E402


def parse_group(name):
    """``"D4"`` -> (4, True); the escnn child must not import astroprob (it imports jax)."""
    if len(name) < 2 or name[0] not in "CD" or not name[1:].isdigit():
        raise ValueError(f"--groups: expected names such as C8 or D4; got {name!r}")
    return int(name[1:]), name[0] == "D"


def median_time(fn, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def astroprob_stack(group, channels, x):
    rngs = nnx.Rngs(0)

    class Stack(nnx.Module):
        def __init__(self):
            self.lift = LiftingConv(group, 1, channels, kernel_size=5, rngs=rngs)
            self.conv1 = GroupConv(group, channels, channels, kernel_size=3, rngs=rngs)
            self.conv2 = GroupConv(group, channels, channels, kernel_size=3, rngs=rngs)

        def __call__(self, x):
            f = jax.nn.relu(self.lift(x))
            f = jax.nn.relu(self.conv1(f))
            f = self.conv2(f)
            return jnp.mean(jnp.max(f, axis=3), axis=(1, 2))

    graphdef, params = nnx.split(Stack())
    step = jax.jit(jax.value_and_grad(lambda p, x: jnp.sum(nnx.merge(graphdef, p)(x))))
    x = jnp.asarray(x)
    start = time.perf_counter()
    jax.block_until_ready(step(params, x))
    compile_s = time.perf_counter() - start
    run = lambda: jax.block_until_ready(step(params, x))  # noqa: E731
    run()
    return {"compile_s": compile_s, "step_s": median_time(run, ARGS.repeats)}


def escnn_stack(name, channels, x):
    n, reflections = parse_group(name)
    start = time.perf_counter()
    gspace = (gspaces.flipRot2dOnR2 if reflections else gspaces.rot2dOnR2)(N=n)
    trivial = enn.FieldType(gspace, [gspace.trivial_repr])
    regular = enn.FieldType(gspace, channels * [gspace.regular_repr])
    stack = enn.SequentialModule(
        enn.R2Conv(trivial, regular, kernel_size=5, padding=2),
        enn.ReLU(regular),
        enn.R2Conv(regular, regular, kernel_size=3, padding=1),
        enn.ReLU(regular),
        enn.R2Conv(regular, regular, kernel_size=3, padding=1),
        enn.GroupPooling(regular),
    ).train()
    setup_s = time.perf_counter() - start
    tensor = enn.GeometricTensor(torch.from_numpy(np.asarray(x)).permute(0, 3, 1, 2), trivial)

    def run():
        stack.zero_grad()
        out = stack(tensor).tensor.mean(dim=(2, 3)).sum()
        out.backward()

    run()
    return {"setup_s": setup_s, "step_s": median_time(run, ARGS.repeats)}


def inputs():
    rng = np.random.default_rng(0)
    return rng.normal(size=(ARGS.batch, ARGS.size, ARGS.size, 1)).astype(np.float32)


def escnn_worker():
    """Child process: time escnn and print one JSON line per group."""
    x = inputs()
    for name in ARGS.groups:
        print(json.dumps(escnn_stack(name, ARGS.channels, x)), flush=True)
    print(
        json.dumps(
            {
                "versions": {
                    "torch": torch.__version__,
                    "numpy": np.__version__,
                    "escnn": getattr(escnn, "__version__", "?"),
                }
            }
        )
    )


def run_escnn_child():
    argv = [a for a in sys.argv[1:] if a != "--worker"]
    command = [ARGS.escnn_python, __file__, *argv, "--worker"]
    out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    return lines[:-1], lines[-1]["versions"]


def main():
    if ARGS.worker:
        escnn_worker()
        return
    x = inputs()
    ours = [astroprob_stack(as_group(name), ARGS.channels, x) for name in ARGS.groups]
    theirs, versions = run_escnn_child()
    rows = []
    for name, a, b in zip(ARGS.groups, ours, theirs, strict=True):
        rows.append(
            {
                "group": name,
                "astroprob": a,
                "escnn": b,
                "ratio_escnn_over_astroprob": b["step_s"] / a["step_s"],
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    result = {
        "settings": {k: v for k, v in vars(ARGS).items() if k not in ("output", "worker")},
        "cores": CORES,
        "rows": rows,
        "versions": {
            "jax": jax.__version__,
            "numpy (jax process)": np.__version__,
            **{f"{k} (escnn process)": v for k, v in versions.items()},
        },
        "platform": platform.platform(),
        "loadavg": Path("/proc/loadavg").read_text().split()[:3],
    }
    suffix = "_quick" if ARGS.quick else ""
    output = Path(ARGS.output or RESULTS / f"equivariant_vs_escnn{suffix}.json")
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(result, indent=2))
    lines = [
        f"Batch {ARGS.batch} x {ARGS.size}x{ARGS.size}, {ARGS.channels} regular fields, "
        f"cores {CORES}, load average {result['loadavg']}.",
        "",
        "| group | astroprob fwd+bwd (ms) | escnn fwd+bwd (ms) | escnn / astroprob | "
        "astroprob compile (s) | escnn set-up (s) |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['group']} | {1e3 * r['astroprob']['step_s']:.1f} | "
            f"{1e3 * r['escnn']['step_s']:.1f} | {r['ratio_escnn_over_astroprob']:.2f} | "
            f"{r['astroprob']['compile_s']:.1f} | {r['escnn']['setup_s']:.1f} |"
        )
    output.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
