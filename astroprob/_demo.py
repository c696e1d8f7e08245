"""The demo behind ``astroprob demo``: galaxy images to a posterior catalog, end to end.

It walks through what a user does with their own data, with the same calls as
the command line: it writes a TOML run config for `SersicGalaxy` (32×32
stamps, a CNN embedding, a spline flow), trains it with `astroprob.io.train_run`
(as ``astroprob train``), writes a small mock field of galaxies as a FITS image
with a WCS and a table of their sky positions, infers a posterior catalog with
`astroprob.io.infer_images` (as ``astroprob infer``), then draws a corner plot
for one galaxy and a calibration report on fresh simulations.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import astropy.units as u
import jax
import numpy as np
from astropy.io import fits
from astropy.table import QTable
from astropy.wcs import WCS

from astroprob.inference import _checkpoint
from astroprob.io.catalogs import read_samples, write_table
from astroprob.io.runs import RUN_CONFIG_FILE, RunConfig, infer_images, train_run


@dataclass(frozen=True)
class DemoConfig:
    """Options of the demo.

    Attributes:
        out: output directory (created if needed).
        num_simulations: training simulations.
        max_epochs: limit on training epochs (early stopping usually ends sooner).
        patience: epochs without a better validation loss before stopping.
        features: CNN output features.
        channels: CNN channels per stage.
        hidden: width of the CNN's final MLP and of the flow's networks.
        num_transforms: spline-flow layers.
        num_objects: galaxies in the mock field (a grid of stamps).
        num_samples: posterior samples per galaxy.
        calibration_simulations: held-out simulations of the calibration report.
        calibration_samples: posterior samples per held-out simulation.
        seed: integer seed of every random choice.
        progress_bar: show the training progress bar.
    """

    out: Path = Path("astroprob-demo")
    num_simulations: int = 4000
    max_epochs: int = 40
    patience: int = 5
    features: int = 32
    channels: tuple[int, ...] = (8, 16)
    hidden: int = 64
    num_transforms: int = 4
    num_objects: int = 6
    num_samples: int = 4000
    calibration_simulations: int = 300
    calibration_samples: int = 500
    seed: int = 0
    progress_bar: bool = True

    def __post_init__(self) -> None:
        counts = ("num_simulations", "max_epochs", "patience", "features", "hidden")
        counts += ("num_transforms", "num_objects", "num_samples", "calibration_simulations")
        for name in (*counts, "calibration_samples"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}: expected a positive integer; got {value!r}")

    @classmethod
    def tiny(cls, out: Path) -> DemoConfig:
        """Seconds-long settings for tests (the outputs are all there, the numbers are poor)."""
        return cls(
            out=Path(out),
            num_simulations=100,
            max_epochs=2,
            features=4,
            channels=(4,),
            hidden=8,
            num_transforms=1,
            num_objects=2,
            num_samples=100,
            calibration_simulations=100,
            calibration_samples=100,
            progress_bar=False,
        )

    def replace(self, **changes: Any) -> DemoConfig:
        """A copy with some fields changed."""
        return dataclasses.replace(self, **changes)

    def run_toml(self) -> str:
        """The TOML run config the demo trains (also usable with ``astroprob train``)."""
        channels = ", ".join(str(c) for c in self.channels)
        return f"""# Written by `astroprob demo`; train it again with
#   astroprob train demo.toml --out my-run
[task]
name = "sersic_galaxy"
stamp_size = 32
pixel_scale = "0.15 arcsec"
psf = "moffat"
psf_fwhm = "0.3 arcsec"
psf_beta = 3.0
zero_point = "28 mag"
sky_level = "21 mag / arcsec2"
read_noise = "5 ct"

[simulation]
num_simulations = {self.num_simulations}
seed = {self.seed}

[embedding]
kind = "cnn"
features = {self.features}
channels = [{channels}]
hidden = {self.hidden}
seed = {self.seed}

[density]
kind = "nsf"
hidden_features = {self.hidden}
num_transforms = {self.num_transforms}

[training]
seed = {self.seed + 1}
max_epochs = {self.max_epochs}
patience = {self.patience}
batch_size = 100
learning_rate = 1e-3
"""


FIELD_CENTRE = (150.1, 2.2)
"""RA, Dec (deg) of the mock field (in the COSMOS field)."""


def mock_field(
    key: jax.Array, task: Any, num_objects: int, *, pool: int | None = None
) -> tuple[np.ndarray, WCS, QTable, np.ndarray]:
    """A mock field: ``num_objects`` simulated stamps tiled on a grid, with a TAN WCS.

    The galaxies are the first of ``pool`` simulations (a batch size the caller
    has already compiled the simulator for).

    Returns:
        ``(image, wcs, positions, theta)``: the image ``(rows*h, cols*w)``, its
        WCS (north up, east left), the positions table (``id``, ``ra``, ``dec``
        of each stamp's centre) and the true parameters ``(num_objects, 7)``.
    """
    height, width = task.observation_shape
    cols = min(num_objects, 3)
    rows = -(-num_objects // cols)
    theta, stamps = task.simulate(key, max(num_objects, pool or 0))
    theta, stamps = np.asarray(theta)[:num_objects], np.asarray(stamps)[:num_objects]
    image = np.zeros((rows * height, cols * width), np.float32)
    for k in range(num_objects):
        i, j = divmod(k, cols)
        image[i * height : (i + 1) * height, j * width : (j + 1) * width] = stamps[k]
    scale = task.pixel_scale.to_value(u.deg)
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crval = list(FIELD_CENTRE)
    wcs.wcs.crpix = [(image.shape[1] + 1) / 2, (image.shape[0] + 1) / 2]
    wcs.wcs.cdelt = [-scale, scale]
    # Stamp centres in 0-based pixels (x along columns).
    x = np.array([(k % cols) * width + (width - 1) / 2 for k in range(num_objects)])
    y = np.array([(k // cols) * height + (height - 1) / 2 for k in range(num_objects)])
    sky = wcs.pixel_to_world(x, y)
    positions = QTable()
    positions["id"] = [f"gal{k + 1:02d}" for k in range(num_objects)]
    positions["ra"] = sky.ra.to(u.deg)
    positions["dec"] = sky.dec.to(u.deg)
    return image, wcs, positions, theta


def run_demo(config: DemoConfig) -> dict[str, Path]:
    """Train, infer a mock field, and write catalog, corner plot and calibration report.

    Returns:
        Paths of what was written: ``config`` (TOML), ``run`` (run directory),
        ``field`` (FITS image), ``positions`` (ECSV), ``catalog`` (FITS),
        ``samples`` (FITS), ``truth`` (ECSV), ``corner`` (PNG) and ``report`` (HTML).
    """
    import matplotlib

    matplotlib.use("Agg")
    from astroprob.report import calibrate
    from astroprob.report.figures import corner_figure

    start = time.perf_counter()
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {
        "config": out / "demo.toml",
        "run": out / "run",
        "field": out / "field.fits",
        "positions": out / "positions.ecsv",
        "catalog": out / "catalog.fits",
        "samples": out / "samples.fits",
        "truth": out / "truth.ecsv",
        "corner": out / "corner.png",
        "report": out / "report.html",
    }
    _checkpoint.write_atomic(paths["config"], config.run_toml().encode())
    run_config = RunConfig.read(paths["config"])
    # A second demo with the same options reuses (or finishes) the first one's run.
    resume = (paths["run"] / RUN_CONFIG_FILE).is_file()
    npe = train_run(run_config, paths["run"], resume=resume, progress_bar=config.progress_bar)
    task = npe.task

    key_field, key_calibrate = jax.random.split(jax.random.key(config.seed + 2))
    image, wcs, positions, theta = mock_field(
        key_field, task, config.num_objects, pool=config.calibration_simulations
    )
    header = wcs.to_header()
    header["BUNIT"] = ("ct", "counts, sky subtracted")
    header["COMMENT"] = "Mock field of simulated Sersic galaxies written by astroprob demo"
    _checkpoint.write_atomic(paths["field"], _fits_bytes(image, header))
    write_table(positions, paths["positions"], overwrite=True)
    truth = QTable(positions)
    for j, (name, unit) in enumerate(zip(task.parameter_names, task.parameter_units, strict=True)):
        truth[name] = theta[:, j] if unit is None else theta[:, j] * unit
    write_table(truth, paths["truth"], overwrite=True)

    catalog = infer_images(
        npe,
        [paths["field"]],
        paths["catalog"],
        positions=paths["positions"],
        num_samples=config.num_samples,
        seed=config.seed,
        samples_out=paths["samples"],
        overwrite=True,
    )
    _print_comparison(catalog, truth, ("flux", "half_light_radius", "sersic_n"))

    drawn = read_samples(paths["samples"])
    samples = np.stack(
        [np.asarray(getattr(drawn[n][0], "value", drawn[n][0])) for n in task.parameter_names],
        axis=-1,
    )
    # The flux prior is a power law over two decades: show log10(flux), as astronomers do.
    samples[:, 0], truth_0 = np.log10(samples[:, 0]), theta[0].copy()
    truth_0[0] = np.log10(truth_0[0])
    labels = [
        f"{name} [{unit}]" if unit is not None else name
        for name, unit in zip(task.parameter_names, task.parameter_units, strict=True)
    ]
    labels[0] = "log10 flux [ct]"
    fig = corner_figure(
        samples,
        truth=truth_0,
        names=labels,
        title=f"{positions['id'][0]}: NPE posterior (red: true values)",
    )
    fig.savefig(paths["corner"], dpi=90)

    print(f"calibrating on {config.calibration_simulations} fresh simulations ...")
    report = calibrate(
        key_calibrate,
        npe,
        task,
        n=config.calibration_simulations,
        num_samples=config.calibration_samples,
    )
    report.save(paths["report"])
    print(report)
    print(f"\ndemo finished in {time.perf_counter() - start:.0f} s; wrote:")
    for name, path in paths.items():
        print(f"  {name:10s} {path}")
    return paths


def _fits_bytes(image: np.ndarray, header: fits.Header) -> bytes:
    import io

    buffer = io.BytesIO()
    fits.PrimaryHDU(image, header=header).writeto(buffer)
    return buffer.getvalue()


def _print_comparison(catalog: QTable, truth: QTable, names: tuple[str, ...]) -> None:
    print(f"\n{'id':8s}{'parameter':26s}{'true':>10s}{'median':>10s}   68 % interval")
    for row, true in zip(catalog, truth, strict=True):
        for k, name in enumerate(names):
            value = true[name]
            unit = getattr(value, "unit", None)
            label = f"{name} [{unit}]" if unit is not None else name
            t, m, lo, hi = (
                float(getattr(v, "value", v))
                for v in (value, row[f"{name}_median"], row[f"{name}_q16"], row[f"{name}_q84"])
            )
            ident = str(row["id"]) if k == 0 else ""
            print(f"{ident:8s}{label:26s}{t:10.3g}{m:10.3g}   [{lo:.3g}, {hi:.3g}]")
    print()
