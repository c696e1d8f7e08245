"""Side-by-side benchmark: astroprob NPE (JAX) against sbi NPE (PyTorch).

For each task and simulation budget the simulations are drawn ONCE with
astroprob's task (fixed seed) and both libraries train a neural spline flow on
the very same (theta, x) with the same training settings (each library keeps
its own default minibatch size and weight decay). Each (library, task, budget)
runs in its own subprocess, pinned to the same CPU cores, so that peak
memory (``ru_maxrss``) and thread counts are measured per library. C2ST against
the sbibm reference posteriors is computed afterwards, for both libraries with
``astroprob.diagnostics.c2st``, outside the timed subprocesses.

Usage::

    python benchmarks/npe_vs_sbi.py                  # full run: JSON + docs/benchmarks.md
    python benchmarks/npe_vs_sbi.py --quick          # smoke test: benchmarks/results/quick.*
    python benchmarks/npe_vs_sbi.py --markdown-only  # docs/benchmarks.md from the JSON

See benchmarks/README.md for what is measured and how.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
import warnings
from importlib import metadata
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "results"
WORKDIR = REPO / "benchmarks" / "_work"  # git-ignored: simulations and posterior samples
DEFAULT_OUTPUT = RESULTS / "npe_vs_sbi.json"
QUICK_OUTPUT = RESULTS / "quick.json"
DEFAULT_MARKDOWN = REPO / "docs" / "benchmarks.md"
QUICK_MARKDOWN = RESULTS / "quick.md"
SECTION = "## NPE vs sbi"
SCHEMA = "astroprob-benchmark-npe-vs-sbi/1"

TASKS = ("two_moons", "slcp", "gaussian_linear")
BUDGETS = (1_000, 10_000)
LIBRARIES = ("astroprob", "sbi")

# Identical architecture sizes passed explicitly to both libraries (sbi's posterior_nn("nsf")
# defaults). The conditioners still differ in kind; see ARCHITECTURE_NOTES.
NSF_SIZES = {"hidden_features": 50, "num_transforms": 5, "num_bins": 10, "tail_bound": 3.0}
ASTROPROB_NSF_EXTRA = {"num_hidden_layers": 2}
SBI_NSF_EXTRA = {"num_blocks": 2}
# astroprob.inference.npe.NPE_TRAINING_DEFAULTS, written out so that the sbi workers
# never import JAX; tests/inference/test_benchmark_defaults.py checks that they agree.
ASTROPROB_DEFAULTS = {"batch_size": 50, "weight_decay": 0.1, "average_decay": 0.99}
ARCHITECTURE_NOTES = {
    "astroprob": (
        "coupling RQ-spline flow (astroprob defaults); conditioner: MLP on [theta_identity, x] "
        "with num_hidden_layers=2 hidden ReLU layers of hidden_features; a conditional "
        "elementwise affine layer (MLP + linear map of x) first on the data side; an "
        "LU-linear layer after each coupling layer and reverse permutations between them; "
        "trained in an unconstrained space of the prior's support (identity on box priors "
        "but for 1% exponential margins at each edge, SoftIntervalTransform), z-scored there"
    ),
    "sbi": (
        "nflows coupling RQ-spline flow (sbi build_nsf); conditioner: nflows ResidualNet "
        "(initial linear, num_blocks=2 residual blocks of two linear layers with a GLU "
        "context gate, final linear); alternating masks and an LU-linear layer after each "
        "coupling layer; z-scored theta; rejection against the prior when sampling"
    ),
}


# ============================================================================ helpers (stdlib)
def _now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


def _rss_kib() -> int:
    """Current resident set size (VmRSS) in KiB."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return -1


def _num_threads() -> int:
    """Number of OS threads of this process."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("Threads:"):
                return int(line.split()[1])
    return -1


def _maxrss_kib() -> int:
    """Peak resident set size of this process so far, in KiB (Linux ru_maxrss units)."""
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def _summary_times(times: list[float]) -> dict:
    return {
        "times_s": times,
        "min_s": min(times),
        "median_s": statistics.median(times),
    }


def _machine() -> dict:
    cpu_model = "unknown"
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu_model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem_kib = None
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemTotal:"):
                    mem_kib = int(line.split()[1])
                    break
    except OSError:
        pass
    return {
        "cpu_model": cpu_model,
        "logical_cores": os.cpu_count(),
        "cores_available": len(os.sched_getaffinity(0)),
        "ram_gib": None if mem_kib is None else round(mem_kib / 2**20, 1),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "hostname": platform.node(),
    }


def _versions() -> dict:
    out = {}
    names = ("astroprob", "jax", "jaxlib", "flax", "optax", "numpyro", "numpy", "torch", "sbi")
    for name in (*names, "nflows"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    from astroprob import __version__  # the source tree's version, not stale metadata

    out["astroprob"] = __version__
    return out


def _git_commit() -> dict:
    """HEAD commit read straight from .git (no git subprocess)."""
    git = REPO / ".git"
    try:
        head = (git / "HEAD").read_text().strip()
        if not head.startswith("ref:"):
            return {"commit": head, "ref": None}
        ref = head.split(None, 1)[1]
        ref_file = git / ref
        if ref_file.is_file():
            return {"commit": ref_file.read_text().strip(), "ref": ref}
        packed = git / "packed-refs"
        if packed.is_file():
            for line in packed.read_text().splitlines():
                parts = line.split()
                if len(parts) == 2 and parts[1] == ref:
                    return {"commit": parts[0], "ref": ref}
        return {"commit": None, "ref": ref}
    except OSError:
        return {"commit": None, "ref": None}


def _pin(cores: list[int]) -> list[int]:
    os.sched_setaffinity(0, cores)
    return sorted(os.sched_getaffinity(0))


# ====================================================================== worker: astroprob
def _worker_astroprob(spec: dict, data_path: Path) -> dict:
    t0 = time.perf_counter()
    import jax
    import numpy as np
    from flax import nnx

    import astroprob as ap

    jax.numpy.zeros(1).block_until_ready()  # initialise the CPU backend outside the timings
    import_s = time.perf_counter() - t0
    out = {
        "import_s": import_s,
        "rss_after_imports_kib": _rss_kib(),
        "maxrss_after_imports_kib": _maxrss_kib(),
        "jax_devices": [str(d) for d in jax.devices()],
    }
    data = np.load(data_path)
    budget, seed = spec["budget"], spec["seed"]
    theta, x = data["theta"][:budget], data["x"][:budget]
    task = ap.tasks.get(spec["task"])
    tr = spec["training"]

    t0 = time.perf_counter()
    npe = ap.NPE(task, "nsf", **NSF_SIZES, **ASTROPROB_NSF_EXTRA)
    npe.fit(
        jax.random.key(seed + 1),
        theta,
        x,
        learning_rate=tr["learning_rate"],
        batch_size=spec["astroprob_batch_size"],
        validation_fraction=tr["validation_fraction"],
        patience=tr["patience"],
        clip_norm=tr["clip_norm"],
        max_epochs=tr["max_epochs"],
        weight_decay=spec["astroprob_weight_decay"],
        average_decay=spec.get("astroprob_average_decay"),
        progress_bar=False,
    )
    fit_wall_s = time.perf_counter() - t0
    h = npe.history
    epochs = len(h.train_loss)
    params = jax.tree.leaves(nnx.state(npe.network, nnx.Param))
    out.update(
        fit_wall_s=fit_wall_s,
        compile_s=h.compile_time_s,
        train_s=h.train_time_s,
        epochs=epochs,
        best_epoch=h.best_epoch,
        stopped_early=h.stopped_early,
        s_per_epoch=h.train_time_s / max(epochs, 1),
        best_validation_loss=h.validation_loss[h.best_epoch],
        validation_loss=h.validation_loss,
        train_loss=h.train_loss,
        num_train=h.num_train,
        num_validation=h.num_validation,
        num_parameters=int(sum(p.size for p in params)),
        density_config=npe.network.density.config,
    )

    key = jax.random.key(seed + 2)
    repeats = spec["repeats"]

    def timed(x_obs, n):
        nonlocal key
        key, sub = jax.random.split(key)
        t = time.perf_counter()
        s = npe.posterior(x_obs).sample(sub, n)
        jax.block_until_ready(s)
        return time.perf_counter() - t

    x_single = data["x_c2st"][0]
    n_single = spec["single_num_samples"]
    first = timed(x_single, n_single)
    warm = [timed(x_single, n_single) for _ in range(repeats)]
    out["sample_single"] = {"num_samples": n_single, "first_s": first, **_summary_times(warm)}

    x_batch = data["x_batch"]
    n_batch = spec["batch_num_samples"]
    first = timed(x_batch, n_batch)
    warm = [timed(x_batch, n_batch) for _ in range(repeats)]
    out["sample_batched"] = {
        "num_observations": len(x_batch),
        "num_samples": n_batch,
        "first_s": first,
        **_summary_times(warm),
    }

    # Posterior samples for C2ST (one batched call for all observations).
    key, sub = jax.random.split(key)
    t = time.perf_counter()
    samples = np.asarray(npe.posterior(data["x_c2st"]).sample(sub, spec["c2st_num_samples"]))
    out["c2st_sampling_s"] = time.perf_counter() - t
    inside = _inside_prior(samples, data)
    out["outside_prior"] = [int((~ins).sum()) for ins in inside]
    out["maxrss_kib"] = _maxrss_kib()
    out["rss_end_kib"] = _rss_kib()
    out["num_threads"] = _num_threads()
    np.save(spec["samples_path"], samples.astype(np.float32))
    return out


# ============================================================================ worker: sbi
def _worker_sbi(spec: dict, data_path: Path) -> dict:
    t0 = time.perf_counter()
    import numpy as np
    import torch

    torch.set_num_threads(len(spec["cores"]))
    torch.set_num_interop_threads(1)
    from sbi.inference import NPE
    from sbi.neural_nets import posterior_nn
    from sbi.utils import BoxUniform

    import_s = time.perf_counter() - t0
    out = {
        "import_s": import_s,
        "rss_after_imports_kib": _rss_kib(),
        "maxrss_after_imports_kib": _maxrss_kib(),
        "torch_num_threads": torch.get_num_threads(),
        "torch_num_interop_threads": torch.get_num_interop_threads(),
    }
    data = np.load(data_path)
    budget, seed = spec["budget"], spec["seed"]
    theta = torch.as_tensor(data["theta"][:budget], dtype=torch.float32)
    x = torch.as_tensor(data["x"][:budget], dtype=torch.float32)
    if str(data["prior_kind"]) == "box":
        prior = BoxUniform(
            torch.as_tensor(data["prior_low"], dtype=torch.float32),
            torch.as_tensor(data["prior_high"], dtype=torch.float32),
        )
    else:
        prior = torch.distributions.MultivariateNormal(
            torch.as_tensor(data["prior_loc"], dtype=torch.float32),
            covariance_matrix=torch.diag(torch.as_tensor(data["prior_scale"]) ** 2).float(),
        )
    out["prior"] = repr(prior)
    tr = spec["training"]

    torch.manual_seed(seed + 1)
    t0 = time.perf_counter()
    inference = NPE(
        prior=prior,
        density_estimator=posterior_nn("nsf", **NSF_SIZES, **SBI_NSF_EXTRA),
        show_progress_bars=False,
    )
    inference.append_simulations(theta, x)
    estimator = inference.train(
        training_batch_size=tr["batch_size"],
        learning_rate=tr["learning_rate"],
        validation_fraction=tr["validation_fraction"],
        stop_after_epochs=tr["patience"],
        # sbi runs max_num_epochs + 1 epochs (its loop is `while epoch <= max_num_epochs`).
        max_num_epochs=tr["max_epochs"] - 1,
        clip_max_norm=tr["clip_norm"],
    )
    posterior = inference.build_posterior()
    fit_wall_s = time.perf_counter() - t0
    summary = inference._summary  # sbi's own per-epoch record
    val = [float(v) for v in summary["validation_loss"]]
    durations = [float(d) for d in summary["epoch_durations_sec"]]
    epochs = int(summary["epochs_trained"][-1])
    best_epoch = int(min(range(len(val)), key=val.__getitem__))
    out.update(
        fit_wall_s=fit_wall_s,
        compile_s=0.0,
        train_s=sum(durations),
        epochs=epochs,
        best_epoch=best_epoch,
        stopped_early=epochs < tr["max_epochs"],
        s_per_epoch=sum(durations) / max(len(durations), 1),
        best_validation_loss=val[best_epoch],
        validation_loss=val,
        train_loss=[float(v) for v in summary["training_loss"]],
        epoch_durations_s=durations,
        s_per_epoch_median=statistics.median(durations) if durations else None,
        num_parameters=int(sum(p.numel() for p in estimator.parameters())),
    )

    repeats = spec["repeats"]

    def timed(fn):
        t = time.perf_counter()
        fn()
        return time.perf_counter() - t

    x_single = torch.as_tensor(data["x_c2st"][0], dtype=torch.float32)
    n_single = spec["single_num_samples"]

    def single():
        posterior.sample((n_single,), x=x_single, show_progress_bars=False)

    first = timed(single)
    warm = [timed(single) for _ in range(repeats)]
    out["sample_single"] = {"num_samples": n_single, "first_s": first, **_summary_times(warm)}

    x_batch = torch.as_tensor(data["x_batch"], dtype=torch.float32)
    n_batch = spec["batch_num_samples"]

    def batched():
        posterior.sample_batched((n_batch,), x=x_batch, show_progress_bars=False)

    def loop():
        for xi in x_batch:
            posterior.sample((n_batch,), x=xi, show_progress_bars=False)

    for name, fn in (("sample_batched", batched), ("sample_loop", loop)):
        first = timed(fn)
        warm = [timed(fn) for _ in range(repeats)]
        out[name] = {
            "num_observations": len(x_batch),
            "num_samples": n_batch,
            "first_s": first,
            **_summary_times(warm),
        }

    # Posterior samples for C2ST (sbi's default: rejection against the prior), and the raw
    # flow samples without rejection, to measure leakage out of the prior's support.
    n_c2st = spec["c2st_num_samples"]
    samples, raw = [], []
    t = time.perf_counter()
    for xi in data["x_c2st"]:
        xi = torch.as_tensor(xi, dtype=torch.float32)
        samples.append(posterior.sample((n_c2st,), x=xi, show_progress_bars=False).numpy())
    out["c2st_sampling_s"] = time.perf_counter() - t
    with warnings.catch_warnings(), torch.no_grad():  # as sbi's own rejection sampler
        warnings.simplefilter("ignore")  # sbi warns about the leakage we are measuring
        for xi in data["x_c2st"]:
            xi = torch.as_tensor(xi, dtype=torch.float32)
            raw.append(
                posterior.sample(
                    (n_c2st,), x=xi, show_progress_bars=False, reject_outside_prior=False
                ).numpy()
            )
    samples, raw = np.stack(samples), np.stack(raw)
    out["outside_prior"] = [int((~ins).sum()) for ins in _inside_prior(samples, data)]
    out["acceptance_rate"] = [float(ins.mean()) for ins in _inside_prior(raw, data)]
    out["maxrss_kib"] = _maxrss_kib()
    out["rss_end_kib"] = _rss_kib()
    out["num_threads"] = _num_threads()
    np.save(spec["samples_path"], samples.astype(np.float32))
    return out


def _inside_prior(samples, data):
    """Boolean mask (n_obs, n) of samples inside the prior's support (numpy only)."""
    import numpy as np

    if str(data["prior_kind"]) == "box":
        low, high = data["prior_low"], data["prior_high"]
        return np.all((samples >= low) & (samples <= high), axis=-1)
    return np.all(np.isfinite(samples), axis=-1)


def run_worker(spec_path: Path) -> None:
    spec = json.loads(spec_path.read_text())
    cores = _pin(spec["cores"])
    caught: list[str] = []
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("default")
        fn = _worker_astroprob if spec["library"] == "astroprob" else _worker_sbi
        out = fn(spec, Path(spec["data_path"]))
    for w in record:
        msg = f"{w.category.__name__}: {str(w.message).strip().splitlines()[0][:200]}"
        if msg not in caught:
            caught.append(msg)
    out.update(library=spec["library"], task=spec["task"], budget=spec["budget"])
    # Time in fit() outside compilation and the epoch loop: data checks, z-scoring,
    # network initialisation (for JAX including the compilation of eager ops).
    out["other_fit_s"] = out["fit_wall_s"] - out["compile_s"] - out["train_s"]
    out["affinity"] = cores
    out["warnings"] = caught
    Path(spec["result_path"]).write_text(json.dumps(out, indent=1))


# ============================================================================ orchestrator
def _prior_spec(task) -> dict:
    """Plain numpy description of a box or diagonal-Gaussian prior, for the sbi worker."""
    import numpy as np
    import numpyro.distributions as dist

    prior = task.prior
    base = prior.base_dist if isinstance(prior, dist.Independent) else prior
    shape = (task.dim,)
    if isinstance(base, dist.Uniform):
        return {
            "prior_kind": "box",
            "prior_low": np.broadcast_to(np.asarray(base.low, np.float64), shape).copy(),
            "prior_high": np.broadcast_to(np.asarray(base.high, np.float64), shape).copy(),
        }
    if isinstance(base, dist.Normal):
        return {
            "prior_kind": "normal",
            "prior_loc": np.broadcast_to(np.asarray(base.loc, np.float64), shape).copy(),
            "prior_scale": np.broadcast_to(np.asarray(base.scale, np.float64), shape).copy(),
        }
    raise ValueError(f"task {task.name!r}: no sbi prior for {type(base).__name__}")


def _prepare_data(
    task_name: str, budgets: list[int], settings: dict, workdir: Path
) -> tuple[Path, dict]:
    """Simulate max(budgets) once (fixed seed); budgets use the leading rows."""
    import jax
    import numpy as np

    import astroprob as ap

    task = ap.tasks.get(task_name)
    n = max(budgets)
    key_sim, key_obs = jax.random.split(jax.random.key(settings["seed"]))
    theta, x = task.simulate(key_sim, n)
    _, x_batch = task.simulate(key_obs, settings["batch_num_observations"])
    obs = list(range(1, settings["num_c2st_observations"] + 1))
    x_c2st = np.stack([np.asarray(task.observation(i)) for i in obs])
    prior = _prior_spec(task)
    path = workdir / f"sims_{task_name}_{n}_seed{settings['seed']}.npz"
    np.savez(
        path,
        theta=np.asarray(theta, np.float32),
        x=np.asarray(x, np.float32),
        x_batch=np.asarray(x_batch, np.float32),
        x_c2st=x_c2st.astype(np.float32),
        **prior,
    )
    info = {
        "dim": task.dim,
        "observation_shape": list(task.observation_shape),
        "num_simulated": n,
        "num_invalid": int((~np.isfinite(np.asarray(x)).reshape(n, -1).all(axis=1)).sum()),
        "prior": {k: np.asarray(v).tolist() for k, v in prior.items()},
        "observations": obs,
    }
    return path, info


def _run_one(spec: dict, workdir: Path, timeout: float | None) -> dict:
    spec_path = workdir / f"spec_{spec['library']}_{spec['task']}_{spec['budget']}.json"
    spec_path.write_text(json.dumps(spec, indent=1))
    result_path = Path(spec["result_path"])
    result_path.unlink(missing_ok=True)
    load_before = os.getloadavg()
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(
            [sys.executable, str(Path(__file__).resolve()), "--worker", str(spec_path)],
            cwd=REPO,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            capture_output=True,
            text=True,
            check=False,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired as err:
        proc = subprocess.CompletedProcess(err.cmd, f"timeout after {timeout} s", "", "")
        result_path.unlink(missing_ok=True)
    wall = time.perf_counter() - t0
    load_after = os.getloadavg()
    if proc.returncode != 0 or not result_path.is_file():
        sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-4000:])
        return {
            "library": spec["library"],
            "task": spec["task"],
            "budget": spec["budget"],
            "error": f"worker exited with {proc.returncode}",
            "stderr_tail": proc.stderr[-4000:],
            "loadavg_before": load_before,
            "loadavg_after": load_after,
            "subprocess_wall_s": wall,
        }
    out = json.loads(result_path.read_text())
    out.update(
        loadavg_before=load_before,
        loadavg_after=load_after,
        subprocess_wall_s=wall,
        samples_path=str(Path(spec["samples_path"]).relative_to(REPO)),
    )
    return out


def _compute_c2st(run: dict, task_name: str, observations: list[int], n: int) -> None:
    import numpy as np

    import astroprob as ap

    samples = np.load(REPO / run["samples_path"])
    per_obs, times, unconverged = [], [], []
    for j, i in enumerate(observations):
        reference = ap.tasks.reference_posterior_samples(task_name, i)[:n]
        t = time.perf_counter()
        with warnings.catch_warnings(record=True) as record:
            warnings.simplefilter("always", RuntimeWarning)
            per_obs.append(float(ap.diagnostics.c2st(reference, samples[j, :n])))
        times.append(time.perf_counter() - t)
        # c2st warns when a fold's classifier hit max_iter before converging.
        unconverged.append(any(issubclass(w.category, RuntimeWarning) for w in record))
    run["c2st"] = {
        "observations": observations,
        "per_observation": per_obs,
        "mean": float(np.mean(per_obs)),
        "num_samples": n,
        "time_s": times,
        "classifier_hit_max_iter": unconverged,
    }


def _key(run: dict) -> tuple:
    return (run["library"], run["task"], run["budget"])


def _save(doc: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(doc, indent=1, default=float) + "\n")
    tmp.replace(path)


def run_benchmark(args: argparse.Namespace) -> dict:
    quick = args.quick
    settings = {
        "seed": args.seed,
        "quick": quick,
        "tasks": args.tasks,
        "budgets": args.budgets,
        "libraries": args.libraries,
        "cores": args.cores,
        "training": {
            "learning_rate": 5e-4,
            "batch_size": args.sbi_batch_size,
            "validation_fraction": 0.1,
            "patience": 20,
            "clip_norm": 5.0,
            "max_epochs": args.max_epochs,
        },
        # Each library trains with its own defaults for the minibatch size, weight
        # decay and parameter averaging (sbi: 200, torch Adam without decay, the last
        # iterate; astroprob NPE: 50, AdamW 0.1, a running average with decay 0.99);
        # everything else in "training" is shared.
        "astroprob_weight_decay": args.astroprob_weight_decay,
        "astroprob_batch_size": args.astroprob_batch_size,
        "astroprob_average_decay": args.astroprob_average_decay,
        "nsf_sizes": NSF_SIZES,
        "astroprob_nsf_extra": ASTROPROB_NSF_EXTRA,
        "sbi_nsf_extra": SBI_NSF_EXTRA,
        "architecture_notes": ARCHITECTURE_NOTES,
        "single_num_samples": 1_000 if quick else 10_000,
        "batch_num_observations": 10 if quick else 100,
        "batch_num_samples": 100 if quick else 1_000,
        "num_c2st_observations": args.observations,
        "c2st_num_samples": 1_000 if quick else 10_000,
        "repeats": 1 if quick else args.repeats,
        "c2st": not args.no_c2st,
    }
    doc = {
        "schema": SCHEMA,
        "date": _now(),
        "command": "python " + " ".join([os.path.relpath(sys.argv[0], REPO), *sys.argv[1:]]),
        "machine": _machine(),
        "versions": _versions(),
        "git": _git_commit(),
        "output": os.path.relpath(args.output, REPO),
        "settings": settings,
        "tasks": {},
        "runs": [],
    }
    output = args.output
    previous = {}
    if args.resume and output.is_file():
        old = json.loads(output.read_text())
        if old.get("settings") == settings:
            origin = {"date": old["date"], "commit": old.get("git", {}).get("commit")}
            previous = {
                _key(r): {"from_run": origin, **r} for r in old.get("runs", []) if "error" not in r
            }
            doc["tasks"] = old.get("tasks", {})
            print(f"resuming: {len(previous)} finished runs kept from {output}")
        else:
            print(f"not resuming: settings in {output} differ from this run's")

    workdir = WORKDIR / output.stem  # one folder per output file: quick runs never clobber
    workdir.mkdir(parents=True, exist_ok=True)
    _pin(args.cores)  # the orchestrator (simulation, C2ST) uses the same cores
    t_start = time.perf_counter()
    for task_name in args.tasks:
        print(f"[{task_name}] simulating {max(args.budgets)} (seed {args.seed})", flush=True)
        data_path, info = _prepare_data(task_name, args.budgets, settings, workdir)
        doc["tasks"][task_name] = info
        for budget in args.budgets:
            for library in args.libraries:
                key = (library, task_name, budget)
                if key in previous:
                    doc["runs"].append(previous[key])
                    continue
                stem = f"{library}_{task_name}_{budget}"
                spec = {
                    "library": library,
                    "task": task_name,
                    "budget": budget,
                    "seed": args.seed,
                    "cores": args.cores,
                    "data_path": str(data_path),
                    "result_path": str(workdir / f"result_{stem}.json"),
                    "samples_path": str(workdir / f"samples_{stem}.npy"),
                    **{
                        k: settings[k]
                        for k in (
                            "training",
                            "astroprob_weight_decay",
                            "astroprob_batch_size",
                            "astroprob_average_decay",
                            "repeats",
                        )
                    },
                    **{
                        k: settings[k]
                        for k in ("single_num_samples", "batch_num_samples", "c2st_num_samples")
                    },
                }
                print(f"[{task_name}] {library:9s} n={budget:<7d} ...", end=" ", flush=True)
                run = _run_one(spec, workdir, args.run_timeout)
                doc["runs"].append(run)
                _save(doc, output)
                if "error" in run:
                    print(f"FAILED ({run['error']})", flush=True)
                else:
                    print(
                        f"fit {run['fit_wall_s']:.1f}s ({run['epochs']} epochs, "
                        f"{1e3 * run['s_per_epoch']:.0f} ms/epoch), "
                        f"peak {run['maxrss_kib'] / 1024:.0f} MiB",
                        flush=True,
                    )
    doc["timing_phase_s"] = time.perf_counter() - t_start

    # C2ST after all timed runs, so that it does not load the machine during them.
    t0 = time.perf_counter()
    for run in doc["runs"]:
        if "error" in run or "c2st" in run or not settings["c2st"]:
            continue
        info = doc["tasks"][run["task"]]
        print(f"[c2st] {run['library']:9s} {run['task']} n={run['budget']}", end=" ", flush=True)
        _compute_c2st(run, run["task"], info["observations"], settings["c2st_num_samples"])
        print(" ".join(f"{v:.3f}" for v in run["c2st"]["per_observation"]), flush=True)
        _save(doc, output)
    doc["c2st_phase_s"] = time.perf_counter() - t0
    doc["total_s"] = time.perf_counter() - t_start
    _save(doc, output)
    return doc


# ================================================================================ markdown
def _fmt_s(v: float | None) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    if v >= 100:
        return f"{v:.0f} s"
    if v >= 1:
        return f"{v:.1f} s"
    if v >= 0.01:
        return f"{1e3 * v:.0f} ms"
    return f"{1e3 * v:.1f} ms"


def _ratio(num: float | None, den: float | None) -> str:
    if not num or not den:
        return "–"
    return f"{num / den:.1f}×"


def _count(run: dict | None) -> str:
    return "–" if run is None else f"{run['num_parameters']:,}"


def _mib(kib: int | None) -> str:
    return "–" if kib is None else f"{kib / 1024:.0f}"


def _kept_runs_lines(runs: list[dict]) -> list[str]:
    """One line per earlier run whose results ``--resume`` kept, naming what came from it."""
    origins: dict[tuple, list[str]] = {}
    for r in runs:
        if "from_run" in r:
            origin = (r["from_run"]["date"], r["from_run"].get("commit") or "unknown")
            origins.setdefault(origin, []).append(f"{r['task']} {r['budget']:,} {r['library']}")
    return [
        f"- **Kept from an earlier run** (`--resume`; date {date}, commit `{commit[:12]}`): "
        + ", ".join(names)
        for (date, commit), names in origins.items()
    ]


def render_markdown(doc: dict) -> str:
    s = doc["settings"]
    m = doc["machine"]
    v = doc["versions"]
    runs = {_key(r): r for r in doc["runs"]}
    loads = [r[k] for r in doc["runs"] for k in ("loadavg_before", "loadavg_after") if k in r]
    one_min = [la[0] for la in loads]
    tr = s["training"]
    lines = [
        SECTION,
        "",
        "astroprob's NPE (JAX, Flax NNX) against sbi's NPE (PyTorch) on the same simulations "
        "with the same network sizes and training settings (but each library's own default "
        "minibatch size, weight decay and parameter averaging), made by `benchmarks/npe_vs_sbi.py` "
        "(see `benchmarks/README.md` for the method). Raw numbers: "
        f"`{doc.get('output', 'benchmarks/results/npe_vs_sbi.json')}`.",
        "",
        f"- **Date**: {doc['date']}; commit `{(doc['git'].get('commit') or 'unknown')[:12]}`"
        + (f" ({doc['git']['note']})" if doc["git"].get("note") else ""),
        f"- **Machine**: {m['cpu_model']}, {m['logical_cores']} logical cores "
        f"(runs pinned to cores {','.join(map(str, s['cores']))}), {m['ram_gib']} GiB RAM; "
        f"{m['platform']}, Python {m['python']}",
        f"- **Versions**: astroprob {v.get('astroprob')}, jax {v.get('jax')}, "
        f"flax {v.get('flax')}, torch {v.get('torch')}, sbi {v.get('sbi')}",
        "- **Load average** (1 min) before/after the runs: "
        + (f"min {min(one_min):.2f}, max {max(one_min):.2f}" if one_min else "–")
        + " (this includes the benchmark's own process); per run below",
        f"- **Command**: `{doc['command']}`",
        *_kept_runs_lines(doc["runs"]),
        *(
            [
                f"- **Warning**: the machine was busy (1-min load up to {max(one_min):.1f} with "
                f"{len(s['cores'])} cores pinned); timings are unreliable, rerun on a quiet "
                "machine."
            ]
            # The benchmark itself keeps up to len(cores) threads busy.
            if one_min and max(one_min) > len(s["cores"]) + 0.5
            else []
        ),
        f"- **Training**: learning rate {tr['learning_rate']}, "
        f"validation fraction {tr['validation_fraction']}, patience {tr['patience']}, "
        f"clip norm {tr['clip_norm']}, max epochs {tr['max_epochs']} on both sides; each "
        f"library's own default minibatch, weight decay and parameter averaging: astroprob batch "
        f"{s.get('astroprob_batch_size', tr['batch_size'])}, AdamW weight decay "
        f"{s['astroprob_weight_decay']}"
        + (
            f", validating a running average of the parameters (decay "
            f"{s['astroprob_average_decay']} per step)"
            if s.get("astroprob_average_decay")
            else ""
        )
        + f"; sbi batch {tr['batch_size']}, Adam without decay, last iterate. "
        "NSF with "
        + ", ".join(f"{k}={val}" for k, val in s["nsf_sizes"].items())
        + " on both sides; conditioners: astroprob a 2-hidden-layer MLP, sbi a 2-block "
        "ResidualNet (+ LU-linear layers), hence different parameter counts (below).",
        "",
        "Ratios are sbi ÷ astroprob: above 1× astroprob is faster (or uses less memory). "
        "astroprob times are given as total (first call, including JIT compilation) and, "
        "where it matters, warm (compiled). sbi's time for "
        f"{s['batch_num_samples']:,} samples × {s['batch_num_observations']} observations is "
        "the better of `sample_batched` and a Python loop over `sample`.",
        "",
    ]
    tasks = s["tasks"]
    budgets = s["budgets"]

    def pairs():
        for t in tasks:
            for b in budgets:
                a, q = runs.get(("astroprob", t, b)), runs.get(("sbi", t, b))
                yield (
                    t,
                    b,
                    (a if a and "error" not in a else None),
                    (q if q and "error" not in q else None),
                )

    # --- accuracy
    obs = None
    for r in doc["runs"]:
        if "c2st" in r:
            obs = r["c2st"]["observations"]
            break
    n_c2st = s["c2st_num_samples"]

    def c2(r, what):
        if r is None or "c2st" not in r:
            return "–"
        c = r["c2st"]
        if what == "mean":
            return f"{c['mean']:.3f}"
        return " ".join(f"{x:.2f}" for x in c["per_observation"])

    if not s.get("c2st", True):
        lines += ["### Accuracy", "", "C2ST skipped (`--no-c2st`)."]
    else:
        lines += [
            f"### Accuracy: C2ST against the reference posterior ({n_c2st:,} samples; 0.5 is best)",
            "",
            "| task | sims | astroprob mean | sbi mean | astroprob per observation | "
            "sbi per observation |",
            "|---|---:|---:|---:|---|---|",
        ]
        for t, b, a, q in pairs():
            lines.append(
                f"| {t} | {b:,} | {c2(a, 'mean')} | {c2(q, 'mean')} | {c2(a, 'obs')} | "
                f"{c2(q, 'obs')} |"
            )
        if obs:
            what = "Observation" if len(obs) == 1 else "Observations"
            lines += ["", f"{what} {', '.join(map(str, obs))} of each task."]

    # --- training
    lines += [
        "",
        "### Training",
        "",
        "| task | sims | astroprob total (compile + epochs + other) | sbi total (epochs + other) "
        "| ratio | "
        "epochs a / s | per epoch a / s | ratio per epoch | parameters a / s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for t, b, a, q in pairs():
        at = (
            f"{_fmt_s(a['fit_wall_s'])} ({_fmt_s(a['compile_s'])} + {_fmt_s(a['train_s'])} + "
            f"{_fmt_s(a['other_fit_s'])})"
            if a
            else "–"
        )
        qt = (
            f"{_fmt_s(q['fit_wall_s'])} ({_fmt_s(q['train_s'])} + {_fmt_s(q['other_fit_s'])})"
            if q
            else "–"
        )
        lines.append(
            f"| {t} | {b:,} | {at} | {qt} | "
            f"{_ratio(q and q['fit_wall_s'], a and a['fit_wall_s'])} | "
            f"{a['epochs'] if a else '–'} / {q['epochs'] if q else '–'} | "
            f"{_fmt_s(a and a['s_per_epoch'])} / {_fmt_s(q and q['s_per_epoch'])} | "
            f"{_ratio(q and q['s_per_epoch'], a and a['s_per_epoch'])} | "
            f"{_count(a)} / {_count(q)} |"
        )

    # --- sampling
    n1 = s["single_num_samples"]
    nb, nobs = s["batch_num_samples"], s["batch_num_observations"]
    lines += [
        "",
        "### Sampling",
        "",
        f"{n1:,} samples for one observation, and {nb:,} samples for each of {nobs} "
        "observations; warm times are the best of "
        + ("1 call." if s["repeats"] == 1 else f"{s['repeats']} repeats."),
        "",
        f"| task | sims | {n1:,}×1 astroprob first / warm | sbi | ratio (warm) | "
        f"{nb:,}×{nobs} astroprob first / warm | sbi batched / loop | ratio (warm, sbi best) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for t, b, a, q in pairs():
        if a:
            a1 = f"{_fmt_s(a['sample_single']['first_s'])} / {_fmt_s(a['sample_single']['min_s'])}"
            ab = (
                f"{_fmt_s(a['sample_batched']['first_s'])} / {_fmt_s(a['sample_batched']['min_s'])}"
            )
        else:
            a1 = ab = "–"
        q1 = _fmt_s(q["sample_single"]["min_s"]) if q else "–"
        if q:
            qb, ql = q["sample_batched"]["min_s"], q["sample_loop"]["min_s"]
            qbest = min(qb, ql)
            qbs = f"{_fmt_s(qb)} / {_fmt_s(ql)}"
        else:
            qbest, qbs = None, "–"
        lines.append(
            f"| {t} | {b:,} | {a1} | {q1} | "
            f"{_ratio(q and q['sample_single']['min_s'], a and a['sample_single']['min_s'])} | "
            f"{ab} | {qbs} | {_ratio(qbest, a and a['sample_batched']['min_s'])} |"
        )

    # --- memory and leakage
    lines += [
        "",
        "### Memory and prior leakage",
        "",
        "Peak resident memory (`ru_maxrss`) of each run's own process, and the same minus "
        "the resident memory right after importing the framework. sbi acceptance: the "
        "fraction of its flow's samples (without rejection) that fall inside the prior, per "
        "observation; sbi's default sampler rejects the rest. astroprob samples through the "
        "bijection onto the prior's support, so none can fall outside.",
        "",
        "| task | sims | astroprob peak MiB (above imports) | sbi peak MiB (above imports) | "
        "ratio (peak) | samples outside prior a / s | sbi acceptance |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for t, b, a, q in pairs():

        def mem(r):
            if r is None:
                return "–"
            return f"{_mib(r['maxrss_kib'])} ({_mib(r['maxrss_kib'] - r['rss_after_imports_kib'])})"

        out_a = sum(a["outside_prior"]) if a else "–"
        out_q = sum(q["outside_prior"]) if q else "–"
        acc = " ".join(f"{x:.3f}" for x in q["acceptance_rate"]) if q else "–"
        lines.append(
            f"| {t} | {b:,} | {mem(a)} | {mem(q)} | "
            f"{_ratio(q and q['maxrss_kib'], a and a['maxrss_kib'])} | {out_a} / {out_q} | "
            f"{acc} |"
        )
    lines += [
        "",
        "### Runs",
        "",
        "Each run is one subprocess; load average (1, 5, 15 min) just before and after it.",
        "",
        "| task | sims | library | subprocess wall | threads | load before | load after |",
        "|---|---:|---|---:|---:|---|---|",
    ]
    for r in doc["runs"]:

        def la(v):
            return "–" if v is None else " ".join(f"{x:.2f}" for x in v)

        lines.append(
            f"| {r['task']} | {r['budget']:,} | {r['library']} | "
            f"{_fmt_s(r.get('subprocess_wall_s'))} | {r.get('num_threads', '–')} | "
            f"{la(r.get('loadavg_before'))} | {la(r.get('loadavg_after'))} |"
        )
    failed = [r for r in doc["runs"] if "error" in r]
    if failed:
        lines += ["", "Failed runs: " + ", ".join("/".join(map(str, _key(r))) for r in failed)]
    return "\n".join(lines) + "\n"


def write_markdown(doc: dict, path: Path) -> None:
    section = render_markdown(doc)
    if path.is_file():
        text = path.read_text()
        start = text.find(SECTION + "\n")
        if start < 0:
            text = text.rstrip("\n") + "\n\n" + section
        else:
            end = text.find("\n## ", start + len(SECTION))
            text = text[:start] + section + ("" if end < 0 else text[end:])
    else:
        text = "# Benchmarks\n\n" + section
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


# ======================================================================================= CLI
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tasks", nargs="+", choices=TASKS, default=list(TASKS))
    p.add_argument(
        "--budgets", nargs="+", type=int, default=None, help="simulation budgets (1000 10000)"
    )
    p.add_argument("--large", action="store_true", help="add the 100000-simulation budget")
    p.add_argument("--libraries", nargs="+", choices=LIBRARIES, default=list(LIBRARIES))
    p.add_argument(
        "--quick", action="store_true", help="smoke test: 300 sims, 3 epochs, few samples"
    )
    p.add_argument(
        "--markdown-only", action="store_true", help="regenerate the Markdown from the JSON"
    )
    p.add_argument("--output", type=Path, default=None, help="JSON path")
    p.add_argument("--markdown", type=Path, default=None, help="Markdown path")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-epochs", type=int, default=None, help="default 1000 (quick: 3)")
    p.add_argument("--repeats", type=int, default=3, help="warm sampling repeats")
    p.add_argument(
        "--astroprob-weight-decay",
        type=float,
        default=ASTROPROB_DEFAULTS["weight_decay"],
        help="AdamW weight decay for astroprob (default: NPE's own default)",
    )
    p.add_argument(
        "--astroprob-average-decay",
        type=float,
        default=ASTROPROB_DEFAULTS["average_decay"],
        help="decay of astroprob's parameter average (default: NPE's own default)",
    )
    p.add_argument(
        "--astroprob-batch-size",
        type=int,
        default=ASTROPROB_DEFAULTS["batch_size"],
        help="minibatch size for astroprob (default: NPE's own default)",
    )
    p.add_argument(
        "--sbi-batch-size",
        type=int,
        default=200,
        help="minibatch size for sbi (default: sbi's own default, 200)",
    )
    p.add_argument(
        "--cores", type=str, default=None, help="CPU cores to pin every run to (default 0,1)"
    )
    p.add_argument("--resume", action="store_true", help="keep finished runs from --output")
    p.add_argument(
        "--observations", type=int, default=None, help="C2ST on observations 1..N (5; quick: 1)"
    )
    p.add_argument("--no-c2st", action="store_true", help="timings only, skip the C2ST phase")
    p.add_argument("--run-timeout", type=float, default=None, help="seconds before a run is killed")
    p.add_argument("--worker", type=Path, default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.budgets is None:
        args.budgets = [300] if args.quick else list(BUDGETS)
    if args.large and 100_000 not in args.budgets:
        args.budgets.append(100_000)
    if args.repeats < 1:
        p.error("--repeats: expected >= 1")
    if args.observations is None:
        args.observations = 1 if args.quick else 5
    if not 1 <= args.observations <= 10:
        p.error("--observations: expected 1..10")
    if args.max_epochs is None:
        args.max_epochs = 3 if args.quick else 1000
    if args.output is None:
        args.output = QUICK_OUTPUT if args.quick else DEFAULT_OUTPUT
    if args.markdown is None:
        args.markdown = QUICK_MARKDOWN if args.quick else DEFAULT_MARKDOWN
    if args.cores is None:
        available = sorted(os.sched_getaffinity(0))
        args.cores = available[:2]
    else:
        args.cores = [int(c) for c in args.cores.split(",")]
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.worker is not None:
        run_worker(args.worker)
        return
    args.output = args.output.resolve()
    args.markdown = args.markdown.resolve()
    if args.quick and args.markdown == DEFAULT_MARKDOWN.resolve():
        raise SystemExit("--quick must not write docs/benchmarks.md; pass another --markdown")
    if args.markdown_only:
        doc = json.loads(args.output.read_text())
    else:
        doc = run_benchmark(args)
        print(f"wrote {os.path.relpath(args.output, REPO)}")
    write_markdown(doc, args.markdown)
    print(f"wrote {os.path.relpath(args.markdown, REPO)}")
    if args.quick:
        print()
        print(render_markdown(doc))


if __name__ == "__main__":
    main()
