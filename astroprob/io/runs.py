"""Run directories: a TOML config in, a trained, resumable, reloadable estimator out.

``astroprob train CONFIG.toml --out RUN_DIR`` and ``astroprob infer`` are thin
shells over `train_run` and `infer_images`. A run directory holds

- ``run.toml``: a copy of the config (task, simulations, embedding, density, training);
- ``config.json`` and ``weights.msgpack``: the estimator as `astroprob.NPE.save`
  writes it, with the training history and the astroprob version;
- ``checkpoint.msgpack``: the training loop's state after the last completed
  epoch (weights, optimizer, PRNG key, early-stopping counters, history), so
  that ``--resume`` after an interruption loses at most the epoch in progress.

Every file is written through a temporary file and a rename, so a crash never
leaves a half-written one. The config format (every key optional except
``task.name``; quantities are strings with units, parsed by astropy)::

    [task]
    name = "sersic_galaxy"        # or a built-in benchmark: "two_moons", "slcp", ...
    stamp_size = 32               # sersic_galaxy only, like the keys below
    pixel_scale = "0.15 arcsec"
    psf = "moffat"                # or "gaussian"
    psf_fwhm = "0.3 arcsec"
    psf_beta = 3.0                # Moffat only
    zero_point = "28 mag"
    sky_level = "21 mag / arcsec2"
    read_noise = "5 ct"
    noise = "poisson"             # or "gaussian"

    [simulation]
    num_simulations = 4000
    seed = 0

    [embedding]                   # images only
    kind = "cnn"                  # astroprob.nn.ConvEmbedding; "equivariant" or "none"
    features = 32
    channels = [8, 16]
    convs_per_stage = 1           # "cnn" only
    hidden = 64
    # kind = "equivariant": astroprob.nn.EquivariantCNN, with
    # group = "D4", rings = 4, equivariant_outputs = ["spin2", "spin1"],
    # input_rings = 8 (the image's radial profile, which keeps its flux)

    [density]
    kind = "nsf"                  # "nsf_autoregressive", "maf", "mdn"
    hidden_features = 64          # any hyperparameter of the estimator
    num_transforms = 4

    [estimator]                   # options of astroprob.NPE
    ensemble = 5                  # a deep ensemble of 5 networks
    balance = 100.0               # balanced NPE
    symmetry = "D4"               # a posterior exactly equivariant under D4
    x_scaling = "auto"
    theta_scaling = "auto"

    [training]
    seed = 1
    learning_rate = 5e-4          # any field of TrainingConfig but progress_bar
    batch_size = 50
    max_epochs = 200
    patience = 20
    validation_fraction = 0.1
"""

from __future__ import annotations

import dataclasses
import math
import tomllib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import astropy.units as u
import jax
import numpy as np
from astropy.coordinates import SkyCoord
from astropy.table import QTable, Table

from astroprob.io.catalogs import posterior_catalog, table_format, write_samples, write_table
from astroprob.io.fits_images import read_fits_image, sky_stamps

__all__ = [
    "CHECKPOINT_FILE",
    "RUN_CONFIG_FILE",
    "RunConfig",
    "infer_catalog",
    "infer_images",
    "infer_lightcurves",
    "load_run",
    "read_positions",
    "train_run",
]

RUN_CONFIG_FILE = "run.toml"
CHECKPOINT_FILE = "checkpoint.msgpack"
SERSIC = "sersic_galaxy"
SUPERNOVA = "supernova_light_curves"

_SUPERNOVA_KEYS: dict[str, Any] = {
    "sn_type": ("str_or_list", '"Ia" or ["Ia", "II-P"]'),
    "reference_band": (str, '"g"'),
    "form": (str, '"bazin"'),
    "redshift": ("pair", "[0.01, 0.1]"),
    "type_probabilities": ("numbers", "[0.7, 0.3]"),
    "prior_bounds": ("table", "{ t_peak = [-15, 15] }"),
    "survey": ("table", "a [task.survey] table of astroprob.tasks.supernova.Survey fields"),
}

_SERSIC_KEYS: dict[str, Any] = {
    # key: (type or unit, example)
    "stamp_size": (int, "32"),
    "pixel_scale": (u.arcsec, '"0.15 arcsec"'),
    "psf": (str, '"moffat"'),
    "psf_fwhm": (u.arcsec, '"0.3 arcsec"'),
    "psf_beta": (float, "3.0"),
    "zero_point": (u.mag, '"28 mag"'),
    "sky_level": ("sky", '"21 mag / arcsec2"'),
    "read_noise": (u.ct, '"5 ct"'),
    "noise": (str, '"poisson"'),
}
_SECTIONS = ("task", "simulation", "embedding", "estimator", "density", "training")
_SIMULATION_KEYS = {"num_simulations": (int, "4000"), "seed": (int, "0")}
_EMBEDDING_KEYS = {
    "kind": (str, '"cnn"'),
    "num_heads": (int, "4"),
    "features": (int, "32"),
    "channels": (list, "[8, 16]"),
    "convs_per_stage": (int, "1"),
    "hidden": (int, "64"),
    "group": (str, '"D4"'),
    "rings": (int, "4"),
    "input_rings": (int, "8"),
    "equivariant_outputs": ("strings", '["spin2", "spin1"]'),
    "seed": (int, "0"),
}
_EMBEDDING_KINDS = ("cnn", "equivariant", "lightcurve", "none")
_ESTIMATOR_KEYS = {
    "ensemble": (int, "5"),
    "balance": (float, "100.0"),
    "symmetry": (str, '"D4"'),
    "x_scaling": (str, '"global"'),
    "theta_scaling": (str, '"per_feature"'),
}


class ConfigError(ValueError):
    """A run config that cannot be used; the message names the file, section and key."""


@dataclass(frozen=True)
class RunConfig:
    """A parsed, checked run config (see the module docstring for the keys).

    Attributes:
        source: the TOML file (or ``"<string>"``).
        text: its text, copied verbatim into the run directory.
        task: the ``[task]`` table, quantities parsed.
        simulation: ``num_simulations`` and ``seed``.
        embedding: the ``[embedding]`` table (``kind`` filled in).
        density: the ``[density]`` table (``kind`` filled in).
        training: the ``[training]`` table (``seed`` filled in).
        estimator: the ``[estimator]`` table: keyword arguments of `astroprob.NPE`.
    """

    source: str
    text: str
    task: dict[str, Any]
    simulation: dict[str, Any]
    embedding: dict[str, Any]
    density: dict[str, Any]
    training: dict[str, Any]
    estimator: dict[str, Any] = field(default_factory=dict)
    _built: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def read(cls, path: str | Path) -> RunConfig:
        """Parse and check a TOML run config.

        Raises:
            FileNotFoundError: if the file is missing.
            ValueError: for invalid TOML, an unknown section or key, a value of the
                wrong type or unit, or options the task, embedding, density or
                training loop reject; the message names the file and the key.
        """
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such file; expected a TOML run config")
        return cls.from_text(path.read_text(), source=str(path))

    @classmethod
    def from_text(cls, text: str, *, source: str = "<string>") -> RunConfig:
        """`read` for a TOML string."""
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as err:
            raise ConfigError(f"{source}: expected valid TOML; {err}") from err
        unknown = sorted(set(data) - set(_SECTIONS))
        if unknown:
            raise ConfigError(
                f"{source}: unknown section [{unknown[0]}]; expected some of "
                f"{', '.join(f'[{s}]' for s in _SECTIONS)}"
            )
        for section in _SECTIONS:
            if not isinstance(data.get(section, {}), dict):
                raise ConfigError(f"{source}: expected [{section}] to be a table")
        task = dict(data.get("task", {}))
        if "name" not in task:
            raise ConfigError(f'{source}: [task] expected a name (e.g. name = "two_moons")')
        name = task.pop("name")
        from astroprob import tasks

        if name == SERSIC:
            task = {k: _value(source, "task", k, v, _SERSIC_KEYS) for k, v in task.items()}
        elif name == SUPERNOVA:
            task = {k: _value(source, "task", k, v, _SUPERNOVA_KEYS) for k, v in task.items()}
        elif name in tasks.names():
            if task:
                raise ConfigError(
                    f"{source}: [task] unknown key {sorted(task)[0]!r}; the benchmark task "
                    f"{name!r} takes only a name"
                )
        else:
            raise ConfigError(
                f"{source}: [task] name: expected {SERSIC!r}, {SUPERNOVA!r} or one of "
                f"{tasks.names()}; got {name!r}"
            )
        task["name"] = name
        simulation = {
            k: _value(source, "simulation", k, v, _SIMULATION_KEYS)
            for k, v in data.get("simulation", {}).items()
        }
        simulation.setdefault("num_simulations", 10_000)
        simulation.setdefault("seed", 0)
        if simulation["num_simulations"] < 2:
            raise ConfigError(
                f"{source}: [simulation] num_simulations: expected an integer >= 2; got "
                f"{simulation['num_simulations']}"
            )
        embedding = {
            k: _value(source, "embedding", k, v, _EMBEDDING_KEYS)
            for k, v in data.get("embedding", {}).items()
        }
        embedding.setdefault("kind", {SERSIC: "cnn", SUPERNOVA: "lightcurve"}.get(name, "none"))
        embedding.setdefault("seed", 0)
        if embedding["kind"] not in _EMBEDDING_KINDS:
            raise ConfigError(
                f"{source}: [embedding] kind: expected one of {list(_EMBEDDING_KINDS)}; got "
                f"{embedding['kind']!r}"
            )
        if embedding["kind"] == "none" and set(embedding) - {"kind", "seed"}:
            raise ConfigError(f"{source}: [embedding] kind 'none' takes no other keys")
        density = dict(data.get("density", {}))
        density.setdefault("kind", "nsf")
        training = dict(data.get("training", {}))
        training.setdefault("seed", 1)
        estimator = {
            k: _value(source, "estimator", k, v, _ESTIMATOR_KEYS)
            for k, v in data.get("estimator", {}).items()
        }
        config = cls(
            source=source,
            text=text,
            task=task,
            simulation=simulation,
            embedding=embedding,
            density=density,
            training=training,
            estimator=estimator,
        )
        config._check_training()
        config.build_npe()  # builds the task, embedding and density: reject bad options now
        return config

    def _check_training(self) -> None:
        from astroprob.inference._loop import TrainingConfig

        names = {f.name for f in dataclasses.fields(TrainingConfig)} - {"progress_bar"}
        options = dict(self.training)
        seed = options.pop("seed")
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ConfigError(f"{self.source}: [training] seed: expected an integer; got {seed!r}")
        unknown = sorted(set(options) - names)
        if unknown:
            raise ConfigError(
                f"{self.source}: [training] unknown key {unknown[0]!r}; expected some of "
                f"{sorted(names | {'seed'})}"
            )
        try:
            TrainingConfig(**options)
        except (TypeError, ValueError) as err:
            raise ConfigError(f"{self.source}: [training] {err}") from err

    @property
    def training_options(self) -> dict[str, Any]:
        """The ``[training]`` table without ``seed``: keyword arguments of `NPE.fit`."""
        return {k: v for k, v in self.training.items() if k != "seed"}

    def build_task(self) -> Any:
        """The `~astroprob.tasks.Task` the config describes.

        Raises:
            ValueError: if the task rejects an option (the message names the file).
        """
        if "task" not in self._built:
            self._built["task"] = self._make_task()
        return self._built["task"]

    def _make_task(self) -> Any:
        from astroprob import tasks

        options = dict(self.task)
        name = options.pop("name")
        if name == SUPERNOVA:
            return self._make_supernova(options)
        if name != SERSIC:
            return tasks.get(name)
        from astroprob.tasks.sersic import GaussianPSF, MoffatPSF

        psf_kind = options.pop("psf", "moffat")
        fwhm = options.pop("psf_fwhm", 0.2 * u.arcsec)
        beta = options.pop("psf_beta", None)
        try:
            if psf_kind == "moffat":
                psf = MoffatPSF(fwhm, beta=3.0 if beta is None else beta)
            elif psf_kind == "gaussian":
                if beta is not None:
                    raise ValueError("psf_beta: a Gaussian PSF takes no beta")
                psf = GaussianPSF(fwhm)
            else:
                raise ValueError(f"psf: expected 'moffat' or 'gaussian'; got {psf_kind!r}")
            return tasks.SersicGalaxy(psf=psf, **options)
        except (TypeError, ValueError) as err:
            raise ConfigError(f"{self.source}: [task] {err}") from err

    def _make_supernova(self, options: dict[str, Any]) -> Any:
        from astroprob.tasks.supernova import SupernovaLightCurves, Survey

        try:
            survey = options.pop("survey", None)
            if survey is not None:
                survey = Survey(**{k: _tuples(v) for k, v in survey.items()})
            if "prior_bounds" in options:
                options["prior_bounds"] = {k: tuple(v) for k, v in options["prior_bounds"].items()}
            sn_type = options.pop("sn_type", "Ia")
            return SupernovaLightCurves(
                sn_type, survey=survey, **{k: _tuples(v) for k, v in options.items()}
            )
        except (TypeError, ValueError) as err:
            raise ConfigError(f"{self.source}: [task] {err}") from err

    def build_embedding(self, task: Any) -> Any:
        """The embedding network (fresh weights from ``[embedding] seed``), or ``None``.

        Raises:
            ValueError: if the task's observations are not images, or an option is bad.
        """
        options = dict(self.embedding)
        kind, seed = options.pop("kind"), options.pop("seed")
        if kind == "none":
            return None
        from flax import nnx

        if kind == "lightcurve":
            from astroprob.nn import LightCurveEncoder

            if len(task.observation_shape) != 3:
                raise ConfigError(
                    f"{self.source}: [embedding] kind 'lightcurve' expects light-curve "
                    f"observations (bands, points, channels); task {task.name!r} has shape "
                    f"{task.observation_shape}"
                )
            try:
                return LightCurveEncoder(
                    task.observation_shape[0],
                    num_channels=task.observation_shape[2],
                    rngs=nnx.Rngs(seed),
                    **options,
                )
            except (TypeError, ValueError) as err:
                raise ConfigError(f"{self.source}: [embedding] {err}") from err
        if len(task.observation_shape) != 2:
            raise ConfigError(
                f"{self.source}: [embedding] kind {kind!r} expects image observations; task "
                f"{task.name!r} has observation shape {task.observation_shape}"
            )
        from astroprob.nn import ConvEmbedding, EquivariantCNN

        if "channels" in options:
            options["channels"] = tuple(options["channels"])
        try:
            if kind == "equivariant":
                return EquivariantCNN(options.pop("group", "D4"), rngs=nnx.Rngs(seed), **options)
            return ConvEmbedding(task.observation_shape, rngs=nnx.Rngs(seed), **options)
        except (TypeError, ValueError) as err:
            raise ConfigError(f"{self.source}: [embedding] {err}") from err

    def build_npe(self, task: Any = None) -> Any:
        """An untrained `astroprob.NPE` for the config (task built if not given).

        Raises:
            ValueError: if the density rejects an option.
        """
        from flax import nnx

        from astroprob.flows import DENSITY_NAMES, make_density
        from astroprob.inference import NPE

        task = self.build_task() if task is None else task
        embedding = self.build_embedding(task)
        options = dict(self.density)
        kind = options.pop("kind")
        try:
            if kind not in DENSITY_NAMES:
                raise ValueError(f"kind: expected one of {sorted(DENSITY_NAMES)}; got {kind!r}")
            make_density(kind, task.dim, 4, rngs=nnx.Rngs(0), **options)  # checks the options
        except (TypeError, ValueError) as err:
            raise ConfigError(f"{self.source}: [density] {err}") from err
        try:
            return NPE(task, kind, embedding=embedding, **self.estimator, **options)
        except (TypeError, ValueError) as err:
            raise ConfigError(f"{self.source}: [estimator] {err}") from err

    def same_run(self, other: RunConfig) -> bool:
        """Whether two configs describe the same run (text and source ignored)."""
        fields = ("task", "simulation", "embedding", "estimator", "density", "training")
        return all(_plain(getattr(self, f)) == _plain(getattr(other, f)) for f in fields)


def _tuples(value: Any) -> Any:
    """TOML arrays as tuples (the task constructors take pairs as tuples)."""
    return tuple(value) if isinstance(value, list) else value


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, u.Quantity):
        return (float(value.value), value.unit.to_string())
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _value(source: str, section: str, key: str, value: Any, spec: dict[str, Any]) -> Any:
    """Check one config value against ``spec[key] = (type or unit, example)``."""
    where = f"{source}: [{section}] {key}"
    if key not in spec:
        raise ConfigError(
            f"{source}: [{section}] unknown key {key!r}; expected some of {sorted(spec)}"
        )
    kind, example = spec[key]
    if kind == "str_or_list":
        if isinstance(value, str) or (
            isinstance(value, list) and value and all(isinstance(v, str) for v in value)
        ):
            return value
        raise ConfigError(f"{where}: expected a string or a list of strings (e.g. {example})")
    if kind in ("pair", "numbers"):
        numbers = isinstance(value, list) and all(
            isinstance(v, int | float) and not isinstance(v, bool) for v in value
        )
        if not numbers or (kind == "pair" and len(value) != 2):
            what = "two numbers" if kind == "pair" else "a list of numbers"
            raise ConfigError(f"{where}: expected {what} (e.g. {example}); got {value!r}")
        return [float(v) for v in value]
    if kind == "strings":
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(
                f"{where}: expected a list of strings (e.g. {example}); got {value!r}"
            )
        return list(value)
    if kind == "table":
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a table ({example}); got {value!r}")
        return dict(value)
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer (e.g. {example}); got {value!r}")
        return value
    if kind is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{where}: expected a number (e.g. {example}); got {value!r}")
        return float(value)
    if kind is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string (e.g. {example}); got {value!r}")
        return value
    if kind is list:
        if not isinstance(value, list) or not all(
            isinstance(v, int) and not isinstance(v, bool) for v in value
        ):
            raise ConfigError(
                f"{where}: expected a list of integers (e.g. {example}); got {value!r}"
            )
        return list(value)
    # A quantity: a string "number unit".
    if not isinstance(value, str):
        raise ConfigError(
            f"{where}: expected a quantity with units as a string (e.g. {example}); got {value!r}"
        )
    try:
        quantity = u.Quantity(value)
    except (TypeError, ValueError) as err:
        raise ConfigError(
            f"{where}: expected a quantity with units (e.g. {example}); got {value!r}"
        ) from err
    if kind == "sky":
        ok = any(
            quantity.unit.is_equivalent(w)
            for w in (u.mag / u.arcsec**2, u.ct / u.arcsec**2, u.ct, u.ct / u.pix)
        )
        wanted = "mag / arcsec2, ct / arcsec2 or ct"
    else:
        ok = quantity.unit.is_equivalent(kind)
        wanted = kind.to_string()
    if not ok:
        raise ConfigError(f"{where}: expected units of {wanted} (e.g. {example}); got {value!r}")
    return quantity


# ------------------------------------------------------------------------ training
def train_run(
    config: RunConfig | str | Path,
    out: str | Path,
    *,
    resume: bool = False,
    progress_bar: bool = True,
    log: Callable[[str], None] = print,
) -> Any:
    """Simulate, train and save a run into directory ``out``; resumable.

    Args:
        config: a `RunConfig` or the path of a TOML config.
        out: the run directory. Without ``resume`` it must not exist or be empty.
        resume: continue the run in ``out`` from its last checkpoint (the config
            must be the one it was started with); a finished run is left as is.
        progress_bar: show the training progress bar.
        log: where progress messages go.

    Returns:
        The trained `astroprob.NPE` (also saved in ``out``).

    Raises:
        FileNotFoundError: if the config is missing.
        FileExistsError: if ``out`` holds files and ``resume`` is false.
        ValueError: for a bad config, or one that differs from the run's on resume.
    """
    from astroprob.inference import _checkpoint

    if not isinstance(config, RunConfig):
        config = RunConfig.read(config)
    out = Path(out)
    saved_config = out / RUN_CONFIG_FILE
    if resume:
        if not saved_config.is_file():
            raise FileNotFoundError(
                f"{saved_config}: no such file; expected a run directory started by "
                "astroprob train (drop --resume to start a new run)"
            )
        previous = RunConfig.read(saved_config)
        if not previous.same_run(config):
            raise ValueError(
                f"{config.source}: differs from the config the run in {out} was started with "
                f"({saved_config}); resume with that config or start a new run"
            )
        for stale in out.glob(".*.tmp"):  # temporary files of a write that was killed
            stale.unlink()
        if (out / "config.json").is_file():
            try:
                npe = load_run(out)
            except ValueError:
                pass  # a half-finished save: train on from the checkpoint and save again
            else:
                log(f"{out}: the run is already complete")
                return npe
    elif out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise FileExistsError(
            f"{out}: already exists and is not empty; choose another --out or add --resume"
        )
    out.mkdir(parents=True, exist_ok=True)
    if not resume:
        _checkpoint.write_atomic(saved_config, config.text.encode())

    task = config.build_task()
    npe = config.build_npe(task)
    num = config.simulation["num_simulations"]
    log(f"simulating {num} data sets of {task.name} ...")
    theta, x = task.simulate(jax.random.key(config.simulation["seed"]), num)
    checkpoint_path = out / CHECKPOINT_FILE
    # What a resumed run must share with the interrupted one, beyond the network's shapes.
    settings = {
        "support_transform": npe.support_transform,
        # Checkpoints keep trained weights, not the standardisation statistics (they are
        # recomputed from the simulations): a run written before theta_scaling existed
        # must not resume under a linear standardisation.
        "theta_scaling": npe.theta_scaling,
        "training": npe.training_settings(**config.training_options).to_dict(),
    }
    settings["training"].pop("progress_bar")

    def checkpoint(state: Any) -> None:
        _checkpoint.save_loop_state(checkpoint_path, state, settings)

    def restore(template: Any) -> Any:
        if not checkpoint_path.is_file():
            log("no checkpoint yet: training from the start")
            return None
        state = _checkpoint.load_loop_state(checkpoint_path, template, settings)
        log(f"resuming after epoch {state.epoch} from {checkpoint_path}")
        return state

    npe.fit(
        jax.random.key(config.training["seed"]),
        theta,
        x,
        checkpoint=checkpoint,
        resume=restore if resume else None,
        progress_bar=progress_bar,
        **config.training_options,
    )
    h = npe.history
    npe.save(out)
    log(
        f"trained {len(h.train_loss)} epochs (best {h.best_epoch + 1}, validation loss "
        f"{h.best_validation_loss:.3f}); saved to {out}"
    )
    return npe


def load_run(run_dir: str | Path) -> Any:
    """Load the trained `astroprob.NPE` of a run directory.

    A directory made by ``astroprob train`` rebuilds its task and embedding from
    ``run.toml``; a plain `astroprob.NPE.save` directory of a built-in task
    loads as with `astroprob.NPE.load`.

    Raises:
        FileNotFoundError: if the directory lacks the run files.
        ValueError: if they are corrupted or do not match.
    """
    from astroprob.inference import NPE

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"{run_dir}: no such directory; expected a run directory")
    saved_config = run_dir / RUN_CONFIG_FILE
    if not saved_config.is_file():
        return NPE.load(run_dir)
    config = RunConfig.read(saved_config)
    task = config.build_task()
    return NPE.load(run_dir, task=task, embedding=config.build_embedding(task))


# ----------------------------------------------------------------------- inference
def read_positions(path: str | Path) -> tuple[np.ndarray, SkyCoord, Table]:
    """Read a positions table (ECSV or FITS): identifiers and sky coordinates.

    The table needs columns ``ra`` and ``dec`` with angle units (ICRS), and may
    have ``id`` (else the row index is used) and any other columns.

    Returns:
        ``(ids, coords, table)``.

    Raises:
        FileNotFoundError: if the file is missing.
        ValueError: if a column is missing, lacks angle units or is not finite.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file; expected a positions table")
    try:
        table = QTable.read(path, format=table_format(path))
    except (OSError, ValueError, TypeError) as err:
        raise ValueError(
            f"{path}: expected an ECSV or FITS table; could not read it ({err})"
        ) from err
    for name in ("ra", "dec"):
        if name not in table.colnames:
            raise ValueError(f"{path}: expected columns 'ra' and 'dec'; found {table.colnames}")
        column = table[name]
        if not isinstance(column, u.Quantity) or not column.unit.is_equivalent(u.deg):
            unit = getattr(column, "unit", None)
            raise ValueError(f"{path}: column {name!r}: expected angle units (deg); got {unit}")
        if not np.all(np.isfinite(column.value)):
            raise ValueError(f"{path}: column {name!r} holds NaN or inf")
    if len(table) == 0:
        raise ValueError(f"{path}: expected at least one position; the table is empty")
    ids = np.asarray(table["id"]) if "id" in table.colnames else np.arange(len(table))
    coords = SkyCoord(ra=table["ra"], dec=table["dec"], frame="icrs")
    return ids, coords, table


def infer_images(
    run: Any,
    inputs: Sequence[str | Path],
    out: str | Path,
    *,
    positions: str | Path | None = None,
    hdu: int = 0,
    num_samples: int = 1000,
    seed: int = 0,
    samples_out: str | Path | None = None,
    overwrite: bool = False,
    batch_size: int = 256,
    source: str | None = None,
    log: Callable[[str], None] = print,
) -> QTable:
    """Posterior catalog of galaxy stamps in FITS images, for a trained image run.

    Without ``positions`` every input is one stamp of the training shape. With
    ``positions`` (a table with ``ra``, ``dec`` and optionally ``id`` and
    ``image``) a stamp is cut around each position with the image's WCS; with
    several inputs the ``image`` column names the file of each position.

    Args:
        run: a run directory (`train_run`) or a trained `astroprob.NPE` of an image task.
        inputs: FITS files.
        out: the catalog (``.fits`` or ``.ecsv``), written atomically at the end.
        positions: the positions table, or ``None``.
        hdu: the image HDU of every input.
        num_samples: posterior samples per object for the summary.
        seed: integer seed of the posterior samples.
        samples_out: also write the samples to this FITS file.
        overwrite: replace existing output files.
        batch_size: objects per compiled sampling call.
        source: name of the run for the catalog's metadata.
        log: where progress messages go.

    Returns:
        The catalog: ``id``, ``image``, ``ra``/``dec`` (deg, when the images
        have a WCS), ``x``/``y`` (pix, the position in the image), then the
        posterior summary of each parameter in its unit.

    Raises:
        FileNotFoundError: if an input, the positions or the run is missing.
        FileExistsError: if an output exists and ``overwrite`` is false.
        ValueError: for an image without 2-D data, a stamp of the wrong shape,
            a position outside its image, a pixel scale unlike the training
            images', or a run whose task does not observe images.
    """
    if not inputs:
        raise ValueError("inputs: expected at least one FITS file")
    _check_outputs(out, samples_out, overwrite=overwrite)
    for path in inputs:
        if not Path(path).is_file():
            raise FileNotFoundError(f"{path}: no such file; expected a FITS image")
    from astroprob.inference import NPE

    npe = run if isinstance(run, NPE) else load_run(run)
    task = npe.task
    shape = tuple(task.observation_shape)
    if len(shape) != 2:
        raise ValueError(
            f"{source or run}: expected a run trained on images; its task {task.name!r} "
            f"observes shape {shape}"
        )
    pixel_scale = getattr(task, "pixel_scale", None)
    images = [read_fits_image(path, hdu) for path in inputs]

    stamps, columns = _stamps(images, positions, shape, pixel_scale)
    log(f"inferring {len(stamps)} stamps with {num_samples} posterior samples each ...")
    ids = columns.pop("id")
    catalog = _summarise(
        npe,
        stamps,
        num_samples=num_samples,
        seed=seed,
        samples_out=samples_out,
        overwrite=overwrite,
        ids=ids,
        columns=columns,
        batch_size=batch_size,
    )
    catalog.meta["run"] = source or (str(run) if not isinstance(run, NPE) else repr(run))
    write_table(catalog, out, overwrite=overwrite)
    log(f"wrote {out} ({len(catalog)} rows)")
    if samples_out is not None:
        log(f"wrote {samples_out}")
    return catalog


def infer_catalog(
    run: Any, inputs: Sequence[str | Path], out: str | Path, **options: Any
) -> QTable:
    """Posterior catalog of FITS images or light-curve files, whichever the run observes.

    Dispatches to `infer_images` (image tasks) or `infer_lightcurves`
    (`~astroprob.tasks.SupernovaLightCurves`), with the same ``options``.

    Raises:
        ValueError: for a run whose task observes neither.
    """
    from astroprob.inference import NPE
    from astroprob.tasks.supernova import SupernovaLightCurves

    npe = run if isinstance(run, NPE) else _load_checked(run, inputs, out, options)
    if isinstance(npe.task, SupernovaLightCurves):
        if options.pop("positions", None) is not None:
            raise ValueError("positions: light curves take no --positions; drop it")
        options.pop("hdu", None)
        return infer_lightcurves(npe, inputs, out, source=str(run), **options)
    return infer_images(npe, inputs, out, source=str(run), **options)


def _load_checked(run: Any, inputs: Sequence[str | Path], out: Any, options: dict) -> Any:
    """Check the cheap things (inputs exist, outputs free) before loading the run."""
    _check_outputs(out, options.get("samples_out"), overwrite=options.get("overwrite", False))
    for path in inputs:
        if not Path(path).is_file():
            raise FileNotFoundError(f"{path}: no such file; expected an input file")
    return load_run(run)


def _check_outputs(out: Any, samples_out: Any, *, overwrite: bool) -> None:
    for path in [Path(out)] + ([] if samples_out is None else [Path(samples_out)]):
        table_format(path)
        if path.exists() and not overwrite:
            raise FileExistsError(f"{path}: already exists; choose another name or --overwrite")
        if not path.parent.is_dir():
            raise FileNotFoundError(f"{path}: the folder {path.parent} does not exist")


def infer_lightcurves(
    run: Any,
    inputs: Sequence[str | Path],
    out: str | Path,
    *,
    num_samples: int = 1000,
    seed: int = 0,
    samples_out: str | Path | None = None,
    overwrite: bool = False,
    batch_size: int = 256,
    source: str | None = None,
    log: Callable[[str], None] = print,
) -> QTable:
    """Posterior catalog of supernova light curves (SNANA FITS or text files).

    Inputs ending in ``HEAD.FITS`` or ``HEAD.FITS.gz`` are read with
    `~astroprob.io.read_snana_fits` (one file per survey, many objects), any
    others together with `~astroprob.io.read_snana_text` (one object per file).
    Each light curve is placed on the task's layout around ``t_ref``, the epoch of
    its highest flux in the task's bands; points outside the survey's time range
    are dropped.

    Args:
        run: a run directory of a `~astroprob.tasks.SupernovaLightCurves` task, or its `NPE`.
        inputs: the light-curve files.
        out: the catalog (``.fits`` or ``.ecsv``), written atomically at the end.
        num_samples: posterior samples per object.
        seed: integer seed of the posterior samples.
        samples_out: also write the samples to this FITS file.
        overwrite: replace existing output files.
        batch_size: objects per compiled sampling call.
        source: name of the run for the catalog's metadata.
        log: where progress messages go.

    Returns:
        The catalog: ``id``, ``redshift``, ``t_ref`` (MJD, d), then the posterior
        summary of each parameter in its unit.

    Raises:
        FileNotFoundError: if an input is missing.
        ValueError: for unreadable files, a missing band, or a light curve with
            more points in a band than the task's layout holds.
    """
    from astroprob.inference import NPE
    from astroprob.io.lightcurves import read_snana_fits, read_snana_text
    from astroprob.tasks.supernova import SupernovaLightCurves

    if not inputs:
        raise ValueError("inputs: expected at least one light-curve file")
    _check_outputs(out, samples_out, overwrite=overwrite)
    npe = run if isinstance(run, NPE) else load_run(run)
    task = npe.task
    if not isinstance(task, SupernovaLightCurves):
        raise ValueError(
            f"{run}: expected a run trained on SupernovaLightCurves; got {task.name!r}"
        )
    heads = [Path(p) for p in inputs if str(p).upper().endswith(("HEAD.FITS", "HEAD.FITS.GZ"))]
    texts = [Path(p) for p in inputs if Path(p) not in heads]
    batches = [read_snana_fits(h, bands=task.bands) for h in heads]
    if texts:
        batches.append(read_snana_text(texts, bands=task.bands))
    ids, redshift, t_ref, observations, dropped = [], [], [], [], []
    for lcs in batches:
        t = lcs.brightest_time(task.bands)
        obs = task.observe(lcs, t, drop_outside=True)
        observations.append(obs)
        ids.extend(lcs.ids)
        redshift.append(lcs.redshift)
        t_ref.append(t)
        # Points outside the survey's time window around t_ref are left out: count them.
        band_index = [lcs.bands.index(b) for b in task.bands]
        total = lcs.mask[:, band_index].reshape(len(obs), -1).sum(axis=1)
        dropped.append(total - (obs[..., 3] > 0).reshape(len(obs), -1).sum(axis=1))
    x = np.concatenate(observations)
    dropped = np.concatenate(dropped)
    if dropped.any():
        log(
            f"left out {int(dropped.sum())} points outside the survey's time window "
            f"{task.survey.time_range} d around the brightest epoch "
            f"({int((dropped > 0).sum())} objects; column 'n_dropped')"
        )
    if len(set(ids)) != len(ids):
        raise ValueError("inputs: an object id appears in more than one input")
    log(f"inferring {len(x)} light curves with {num_samples} posterior samples each ...")
    catalog = _summarise(
        npe,
        x,
        num_samples=num_samples,
        seed=seed,
        samples_out=samples_out,
        overwrite=overwrite,
        ids=np.array(ids),
        columns={
            "redshift": np.concatenate(redshift),
            "t_ref": np.concatenate(t_ref) * u.day,
            "n_dropped": dropped,
        },
        batch_size=batch_size,
    )
    catalog.meta["run"] = source or str(run)
    catalog.meta["t_ref"] = "MJD of the highest flux in the task's bands"
    write_table(catalog, out, overwrite=overwrite)
    log(f"wrote {out} ({len(catalog)} rows)")
    return catalog


def _summarise(
    npe: Any,
    x: np.ndarray,
    *,
    num_samples: int,
    seed: int,
    samples_out: Any,
    overwrite: bool,
    ids: np.ndarray,
    columns: dict[str, Any],
    batch_size: int,
) -> QTable:
    """Posterior summaries of ``x`` in batches (and the samples file, if asked)."""
    key = jax.random.key(seed)
    summaries, all_samples = [], []
    for start in range(0, len(x), batch_size):
        key, sub = jax.random.split(key)
        posterior = npe.posterior(x[start : start + batch_size])
        samples = posterior.sample(sub, num_samples)
        summaries.append(posterior.summary())
        if samples_out is not None:
            all_samples.append(np.asarray(samples))
    summary = summaries[0] if len(summaries) == 1 else _vstack(summaries)
    catalog = posterior_catalog(summary, ids=ids, columns=columns)
    catalog.meta["seed"] = int(seed)
    if samples_out is not None:
        task = npe.task
        write_samples(
            samples_out,
            np.concatenate(all_samples),
            task.parameter_names,
            units=task.parameter_units,
            ids=ids,
            overwrite=overwrite,
        )
    return catalog


def _vstack(tables: list[QTable]) -> QTable:
    from astropy.table import vstack

    table = vstack(tables, metadata_conflicts="silent")
    table["obs"] = np.arange(len(table))
    return table


def _stamps(
    images: list[Any], positions: str | Path | None, shape: tuple[int, ...], pixel_scale: Any
) -> tuple[np.ndarray, dict[str, Any]]:
    """Stamps ``(n, height, width)`` and the per-object columns to carry through."""
    have_wcs = all(im.wcs is not None for im in images)
    if positions is None:
        for im in images:
            if im.data.shape != shape:
                raise ValueError(
                    f"{im.path}: expected a {shape[0]}x{shape[1]} stamp (the training shape); "
                    f"got {im.data.shape[0]}x{im.data.shape[1]}; give --positions to cut stamps"
                )
        centre = ((shape[1] - 1) / 2, (shape[0] - 1) / 2)
        columns: dict[str, Any] = {
            "id": np.array([im.path.stem for im in images]),
            "image": np.array([im.path.name for im in images]),
        }
        if have_wcs:
            sky = [im.wcs.pixel_to_world(*centre) for im in images]
            columns["ra"] = np.array([c.icrs.ra.deg for c in sky]) * u.deg
            columns["dec"] = np.array([c.icrs.dec.deg for c in sky]) * u.deg
        return np.stack([im.data for im in images]), columns
    ids, coords, table = read_positions(positions)
    names = [im.path.name for im in images]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ValueError(
            f"inputs: expected images with distinct file names (the positions table's "
            f"'image' column names them); got {repeated} more than once"
        )
    if "image" in table.colnames:
        wanted = np.array([str(v) for v in table["image"]])
        unknown = sorted(set(wanted) - set(names))
        if unknown:
            raise ValueError(
                f"{positions}: column 'image' names {unknown[0]!r}, which is not among the "
                f"inputs {names}"
            )
    elif len(images) > 1:
        raise ValueError(
            f"{positions}: expected a column 'image' naming the input of each position, "
            f"since {len(images)} inputs were given"
        )
    else:
        wanted = np.array(names * len(table))
    data = np.empty((len(table), *shape), np.float32)
    x, y = np.empty(len(table)), np.empty(len(table))
    for im in images:
        rows = np.flatnonzero(wanted == im.path.name)
        if len(rows) == 0:
            continue
        cut = sky_stamps(im, coords[rows], shape, pixel_scale=pixel_scale)
        data[rows], x[rows], y[rows] = cut.data, cut.x, cut.y
    columns = {
        "id": ids,
        "image": wanted,
        "ra": coords.ra.to(u.deg),
        "dec": coords.dec.to(u.deg),
        "x": x * u.pix,
        "y": y * u.pix,
    }
    if not math.isfinite(float(np.sum(data))):
        raise ValueError(f"{positions}: a stamp holds NaN or inf pixels")
    return data, columns
