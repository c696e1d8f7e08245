"""ConvVAE on simulated Sersic galaxies and on real SDSS (Galaxy Zoo 1) cutouts.

Six experiments, each reported in JSON (benchmarks/results/vae_galaxies[_quick].json)
and a Markdown table (.md beside it), with figures as PNG:

A. Simulated: train on SersicGalaxy stamps, report held-out ELBO and the
   importance-weighted bound (nats and bits/dim), and two-sample KS distances of
   morphology statistics (flux, half-light radius, concentration, ellipticity,
   Gini) of generated (with noise) vs held-out galaxies.
B. Real: train a 3-band (gri colour JPEG) VAE on 70 % of the 556 Galaxy Zoo
   cutouts (stratified), report held-out ELBO / IW bound, and a linear probe
   (logistic regression on the latent means, fitted on the training images,
   scored on the held-out ones) for the 6 Galaxy Zoo classes, with a PCA-of-pixels
   probe of the same size as a baseline.
D. Hubble Deep Field: 3-band stamps cut around the sources detected in the HDF
   colour JPEG (local maxima of the smoothed grey image, 10 sigma above the sky,
   at least half a stamp apart and from the edges); a VAE trained on 80 % of them,
   held-out ELBO / IW bound reported. No labels: a real-image test of training
   and evaluation only.
E. Latent as summary: NPE on the simulation task of A, with the CNN embedding
   (`ConvEmbedding`, trained jointly) against the encoder of the VAE of A, frozen
   and fine-tuned, at --npe-budgets simulations; metric: mean log q(θ | x) of the
   true parameters of the held-out simulations. The VAE itself was trained on
   --num-sims unlabeled stamps, so at small budgets it brings more images.
C. Representativeness: the atypicality score of a VAE trained on simulated
   Sersic galaxies (experiment A), evaluated on the real cutouts (grey, rescaled
   to the simulations' noise level): do mergers score as more atypical than
   ellipticals? Reported as medians per class and the AUC of merger vs elliptical.
F. Generation from a learned latent prior: a neural spline flow fitted to the
   aggregate posterior of A's VAE on its training stamps (`fit_latent_prior`,
   Lanusse et al. 2021), against z ~ N(0, I); KS distances of the morphology
   statistics to --num-ks fresh simulations, with noisy reconstructions of
   other fresh simulations (close to what a perfect prior would give) and a second
   fresh sample (the floor) as references. The prior is saved with A's VAE.

Caveats (see ../shared/data/README.md): the cutouts are asinh-stretched colour
JPEGs (Lupton et al. 2004), not linear fluxes; their pixel scale varies with the
galaxy's size; the labels are GZ1-derived and unverified; class 4 ("don't know")
is often a star or an artefact.

Usage:
    python benchmarks/vae_galaxies.py --quick     # a few minutes: proves it runs
    python benchmarks/vae_galaxies.py             # the full run
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import time
from pathlib import Path

import astropy.units as u
import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
from flax import nnx

from astroprob.nn import vae as V
from astroprob.tasks import SersicGalaxy

ROOT = Path(__file__).resolve().parent
DATA = Path(
    os.environ.get("ASTROPROB_GZ1_DATA", ROOT.parent.parent / "shared/data/galaxyzoo1_sdss_subset")
)
HDF_IMAGE = Path(
    os.environ.get(
        "ASTROPROB_HDF_IMAGE",
        ROOT.parent.parent / "shared/data/hubble_deep_field_skimage/hubble_deep_field.jpg",
    )
)
CLASS_NAMES = ["elliptical", "spiral_cw", "spiral_acw", "edge_on", "dont_know", "merger"]


def sim_task(stamp: int) -> SersicGalaxy:
    # Flux and size ranges chosen to cover the rescaled SDSS cutouts (see load_sdss).
    return SersicGalaxy(
        stamp_size=stamp,
        pixel_scale=0.15 * u.arcsec,
        noise="gaussian",
        flux_prior=dist.LogUniform(2e3, 2e5),
        size_prior=dist.Uniform(0.15, 0.9),
    )


def load_sdss(stamp: int, crop: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cutouts as ``(n, stamp, stamp, 3)`` float (JPEG DN, background subtracted), noise
    variance per image and band ``(n, 1, 1, 3)``, labels ``(n,)``."""
    from PIL import Image

    with open(DATA / "labels_subset.csv") as f:
        rows = list(csv.DictReader(f))
    factor = crop // stamp
    images, labels = [], []
    for row in rows:
        a = np.asarray(Image.open(DATA / "images" / f"{row['OBJID']}.jpeg"), dtype=np.float64)
        h, w = a.shape[:2]
        top, left = (h - crop) // 2, (w - crop) // 2
        a = a[top : top + crop, left : left + crop]
        a = a.reshape(stamp, factor, stamp, factor, 3).mean(axis=(1, 3))
        images.append(a)
        labels.append(int(row["CLASS"]))
    images, variance = sky_subtract(np.stack(images), 1.0 / (factor * np.sqrt(12.0)))
    return images, variance, np.array(labels)


def sky_subtract(images: np.ndarray, floor: float) -> tuple[np.ndarray, np.ndarray]:
    """Subtract each stamp's sky (median of a 3-pixel border, per band) and estimate
    its noise variance ``(n, 1, 1, bands)`` from the same border; ``floor`` (DN) is
    the JPEG quantisation limit on the noise."""
    stamp = images.shape[1]
    ring = np.ones((stamp, stamp), bool)
    ring[3:-3, 3:-3] = False
    border = images[:, ring, :]  # (n, pixels, bands)
    background = np.median(border, axis=1)
    sigma = 1.4826 * np.median(np.abs(border - background[:, None, :]), axis=1)
    sigma = np.maximum(sigma, np.std(border, axis=1))  # MAD is 0 on quantised flat skies
    sigma = np.maximum(sigma, floor)
    images = images - background[:, None, None, :]
    return images.astype(np.float32), (sigma**2)[:, None, None, :].astype(np.float32)


def load_hdf(stamp: int, nsigma: float = 10.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Stamps ``(n, stamp, stamp, 3)`` around the sources of the Hubble Deep Field JPEG
    (sky-subtracted per stamp), the field's noise variance per band ``(n, 1, 1, 3)``
    and the stamp centres ``(n, 2)`` (row, column)."""
    from PIL import Image
    from scipy import ndimage

    rgb = np.asarray(Image.open(HDF_IMAGE), dtype=np.float64)
    grey = ndimage.uniform_filter(rgb.mean(axis=-1), size=3)
    sky = np.median(grey)
    sigma = 1.4826 * np.median(np.abs(grey - sky))
    peaks = (grey == ndimage.maximum_filter(grey, size=stamp // 2 + 1)) & (
        grey > sky + nsigma * sigma
    )
    half = stamp // 2
    # A saturated core is a plateau of equal maxima: keep one peak per plateau.
    labels, count = ndimage.label(peaks)
    rows, cols = (
        np.round(np.asarray(ndimage.center_of_mass(peaks, labels, range(1, count + 1))))
        .astype(int)
        .T
    )
    inside = (
        (rows >= half)
        & (rows + half <= grey.shape[0])
        & (cols >= half)
        & (cols + half <= grey.shape[1])
    )
    centres = np.stack([rows[inside], cols[inside]], axis=1)
    images = np.stack(
        [rgb[r - half : r - half + stamp, c - half : c - half + stamp] for r, c in centres]
    )
    images, _ = sky_subtract(images, 0.0)
    # One noise level per band for the whole field: stamp borders often hold neighbours.
    flat = rgb.reshape(-1, 3)
    band_sigma = 1.4826 * np.median(np.abs(flat - np.median(flat, axis=0)), axis=0)
    band_sigma = np.maximum(band_sigma, 1.0 / np.sqrt(12.0))  # JPEG quantisation floor
    variance = np.broadcast_to((band_sigma**2)[None, None, None, :], (len(images), 1, 1, 3))
    return images, variance.astype(np.float32), centres


def to_sim_units(images: np.ndarray, variance: np.ndarray, sim_variance: float):
    """Grey (band mean) cutouts rescaled so that their sky noise equals the simulations'."""
    grey = images.mean(axis=-1)
    grey_var = variance.sum(axis=-1) / 9.0  # variance of the mean of 3 bands
    scale = np.sqrt(sim_variance / grey_var)
    return (grey * scale).astype(np.float32)


def bounds(key, model, x, var, k, batch):
    t0 = time.perf_counter()
    elbo = np.asarray(V.elbo(key, model, x, var, num_samples=8))
    iw = np.asarray(
        V.importance_weighted_bound(
            key, model, x, var, num_samples=k, chunk_size=min(k, 100), batch_size=batch
        )
    )
    dims = int(np.prod(model.observation_shape))
    return {
        "elbo_nats_mean": float(elbo.mean()),
        "elbo_nats_median": float(np.median(elbo)),
        "iw_nats_mean": float(iw.mean()),
        "iw_nats_median": float(np.median(iw)),
        "iw_minus_elbo_mean": float((iw - elbo).mean()),
        "elbo_bits_per_dim": float(V.bits_per_dim(elbo.mean(), dims)),
        "iw_bits_per_dim": float(V.bits_per_dim(iw.mean(), dims)),
        "iw_num_samples": k,
        "num_images": len(x),
        "eval_time_s": time.perf_counter() - t0,
    }


def mann_whitney_auc(a: np.ndarray, b: np.ndarray) -> float:
    """P(score of a > score of b) + 0.5 P(tie)."""
    a, b = np.asarray(a)[:, None], np.asarray(b)[None, :]
    return float(np.mean(a > b) + 0.5 * np.mean(a == b))


def save_figures(prefix: Path, model, x_held, colour, colour_label):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = []
    fig = V.plot_reconstructions(x_held[:8], V.reconstruct(model, x_held[:8]))
    path = prefix.with_name(prefix.name + "_reconstructions.png")
    fig.savefig(path, dpi=110)
    out.append(path)
    values = (-2.0, -1.0, 0.0, 1.0, 2.0)
    dims = list(range(min(6, model.latent_dim)))
    fig2 = V.plot_latent_traversal(
        V.latent_traversal(model, values=values, dims=dims), values, dims=dims
    )
    path = prefix.with_name(prefix.name + "_traversal.png")
    fig2.savefig(path, dpi=110)
    out.append(path)
    z, _ = V.encode(model, x_held)
    fig3 = V.plot_latent_projection(z, colour, label=colour_label)
    path = prefix.with_name(prefix.name + "_latent.png")
    fig3.savefig(path, dpi=110)
    out.append(path)
    for f in (fig, fig2, fig3):
        plt.close(f)
    return [os.path.relpath(p, ROOT.parent) for p in out]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="tiny settings that prove it runs")
    p.add_argument("--num-sims", type=int, default=20_000)
    p.add_argument("--stamp", type=int, default=32)
    p.add_argument("--crop", type=int, default=256, help="central SDSS crop before binning")
    p.add_argument("--latent-dim", type=int, default=16)
    p.add_argument("--max-epochs", type=int, default=200)
    p.add_argument("--iw-samples", type=int, default=1000)
    p.add_argument("--num-eval", type=int, default=500, help="held-out simulations evaluated")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--npe-budgets", type=int, nargs="+", default=[1000, 10_000])
    p.add_argument("--npe-max-epochs", type=int, default=300)
    p.add_argument("--output", type=Path, default=None)
    p.add_argument(
        "--experiments",
        default="ABCDEF",
        help="which of the experiments A-F to run, e.g. E (default ABCDEF)",
    )
    p.add_argument(
        "--num-ks",
        type=int,
        default=2000,
        help="F: generated and fresh held-out galaxies per side of each KS distance",
    )
    p.add_argument("--prior-max-epochs", type=int, default=300, help="F: latent prior epochs")
    p.add_argument(
        "--sim-model",
        type=Path,
        default=None,
        help="a VAE saved by an earlier run's A (vae_galaxies_sim_model): load it "
        "instead of training",
    )
    args = p.parse_args()
    if not set(args.experiments) <= set("ABCDEF"):
        p.error(f"--experiments: expected letters of ABCDEF; got {args.experiments!r}")
    if args.quick:
        args.num_sims, args.max_epochs, args.num_eval = 1200, 6, 100
        args.num_ks, args.prior_max_epochs = 200, 5
        args.latent_dim = 8
        args.npe_budgets, args.npe_max_epochs = [300], 3
    name = "vae_galaxies_quick" if args.quick else "vae_galaxies"
    subset = "" if args.experiments == "ABCDEF" else f"_{args.experiments}"
    output = args.output = args.output or ROOT / "results" / f"{name}{subset}.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    key = jax.random.key(args.seed)
    k_sim, k_fit, k_eval, k_real, k_fit_real, k_eval_real = jax.random.split(key, 6)
    channels = (16, 32, 64) if not args.quick else (8, 16)
    hidden = 128 if not args.quick else 32
    train_opts = {
        "max_epochs": args.max_epochs,
        "batch_size": 100,
        "learning_rate": 1e-3,
        "progress_bar": False,
    }
    result = {
        "settings": vars(args) | {"output": str(output), "channels": channels, "hidden": hidden},
        "machine": {
            "platform": platform.platform(),
            "loadavg_start": os.getloadavg(),
            "devices": [str(d) for d in jax.devices()],
        },
    }

    # ------------------------------------------------------------ A: simulations
    # The simulations and their VAE serve A, C, E and F.
    task = sim_task(args.stamp)
    sim_var = float(task.noise_variance(jnp.zeros((1, 1)))[0, 0])
    sim_model_path = args.sim_model or output.with_suffix("").with_name(name + "_sim_model")
    if set(args.experiments) & set("ACEF"):
        t0 = time.perf_counter()
        theta, x = task.simulate(k_sim, args.num_sims + 2 * args.num_eval)
        x, theta = np.asarray(x), np.asarray(theta)
        n_train = args.num_sims
        x_train, x_ref = x[:n_train], x[n_train : n_train + args.num_eval]
        x_test, theta_test = x[n_train + args.num_eval :], theta[n_train + args.num_eval :]
        # What fixes the simulations: a loaded VAE must have been trained on these.
        data_settings = {k: getattr(args, k) for k in ("seed", "num_sims", "num_eval", "stamp")}
        if args.sim_model is None:
            sim_model = V.ConvVAE(
                (args.stamp, args.stamp),
                latent_dim=args.latent_dim,
                channels=channels,
                hidden=hidden,
                rngs=nnx.Rngs(args.seed),
            )
            history = V.fit_vae(k_fit, sim_model, x_train, sim_var, free_bits=0.0, **train_opts)
            train_time_s = time.perf_counter() - t0
            V.save_vae(sim_model, sim_model_path, history=history, metadata=data_settings)
        else:
            saved = V.load_vae(args.sim_model)
            _check_sim_model(saved.metadata, data_settings, args.sim_model)
            sim_model, history, train_time_s = saved.model, saved.history, None
            result["settings"]["sim_model"] = str(args.sim_model)
    if "A" in args.experiments:
        result["simulated"] = evaluate_simulated(
            k_eval, sim_model, history, train_time_s, x_test, theta_test, sim_var, args, output
        )
        _write(output, result)

    # ------------------------------------------------------------------- B: real
    if "B" in args.experiments or "C" in args.experiments:
        images, variance, labels = load_sdss(args.stamp, args.crop)
    if "B" in args.experiments:
        result["real_sdss"] = real_sdss(
            k_fit_real, k_eval_real, images, variance, labels, args, channels, hidden, train_opts
        )
        _write(output, result)

    # ------------------------------------------------ C: atypicality of real data
    if "C" in args.experiments:
        result["atypicality"] = atypicality(
            k_real, sim_model, x_ref, x_test, sim_var, images, variance, labels
        )
        _write(output, result)

    # ----------------------------------------------------- D: Hubble Deep Field
    if "D" in args.experiments:
        result["real_hdf"] = hubble_deep_field(
            jax.random.fold_in(key, 4), args, channels, hidden, train_opts, output
        )
        _write(output, result)

    # ------------------------------------------------ E: the latent as an NPE summary
    if "E" in args.experiments:
        result["npe_summary"] = npe_embeddings(task, sim_model, theta_test, x_test, args)
        print("E done", json.dumps(result["npe_summary"]), flush=True)
        _write(output, result)

    # ------------------------------- F: generation from a learned latent prior
    if "F" in args.experiments:
        result["generation"], prior = latent_prior_generation(
            jax.random.fold_in(key, 6), task, sim_model, x_train, sim_var, args, output
        )
        # Keep the prior with the simulation VAE it was fitted to.
        saved = V.load_vae(sim_model_path)
        V.save_vae(
            saved.model,
            sim_model_path,
            history=saved.history,
            atypicality=saved.atypicality,
            metadata=saved.metadata,
            latent_prior=prior,
        )
    result["machine"]["loadavg_end"] = os.getloadavg()
    _write(output, result)
    print(markdown(result))


def _check_sim_model(metadata: dict, data_settings: dict, path: Path) -> None:
    """Refuse a saved simulation VAE trained on other simulations than this run's."""
    missing = [k for k in data_settings if k not in metadata]
    if missing:
        print(f"warning: {path} does not record {missing}; assuming this run's values")
    differ = {k: (metadata[k], v) for k, v in data_settings.items() if metadata.get(k, v) != v}
    if differ:
        raise SystemExit(
            f"--sim-model: {path} was trained with other settings (saved, this run): {differ}"
        )


def _write(output: Path, result: dict) -> None:
    """Write the results so far (JSON and Markdown); each experiment adds its part."""
    output.write_text(json.dumps(result, indent=2, default=float) + "\n")
    output.with_suffix(".md").write_text(markdown(result))


def evaluate_simulated(
    key, sim_model, history, train_time_s, x_test, theta_test, sim_var, args, output
) -> dict:
    """A: held-out bounds, morphology KS distances and figures of the simulation VAE."""
    sim = {
        "train_time_s": train_time_s,
        "history": None
        if history is None
        else {
            "best_epoch": history.best_epoch,
            "epochs": len(history.validation_loss),
            "best_validation_loss": history.best_validation_loss,
        },
    }
    sim |= bounds(key, sim_model, x_test, sim_var, args.iw_samples, 4)
    generated = np.asarray(V.generate(key, sim_model, len(x_test), noise_variance=sim_var))
    sim["ks"] = V.morphology_ks_distances(
        V.morphology_statistics(generated), V.morphology_statistics(x_test)
    )
    # Sanity scale for the KS distances: two independent held-out halves.
    half = len(x_test) // 2
    sim["ks_held_out_halves"] = V.morphology_ks_distances(
        V.morphology_statistics(x_test[:half]), V.morphology_statistics(x_test[half:])
    )
    sim["figures"] = save_figures(
        output.with_suffix(""), sim_model, x_test, np.log10(theta_test[:, 0]), "log10 flux [ct]"
    )
    print("A done", json.dumps({k: v for k, v in sim.items() if "nats" in k}), flush=True)
    return sim


def latent_prior_generation(key, task, sim_model, x_train, sim_var, args, output):
    """F: galaxies generated from N(0, I) and from a learned latent prior vs fresh simulations.

    KS distances with ``--num-ks`` galaxies per side, against three references:
    a second fresh sample (the noise floor), and noisy reconstructions of fresh
    simulations, close to what a perfect latent prior would give with this
    decoder (decoded at the encoder means, not at draws from q(z | x)).
    """
    k_fit, k_sim, k_normal, k_prior, k_noise = jax.random.split(key, 5)
    n = args.num_ks
    prior = V.LatentPrior(sim_model.latent_dim, rngs=nnx.Rngs(args.seed))
    t0 = time.perf_counter()
    history = V.fit_latent_prior(
        k_fit,
        prior,
        sim_model,
        x_train,
        draws_per_image=4,
        max_epochs=args.prior_max_epochs,
        progress_bar=False,
    )
    fit_s = time.perf_counter() - t0
    _, fresh = task.simulate(k_sim, 3 * n)
    fresh = np.asarray(fresh)
    reference, second, to_reconstruct = fresh[:n], fresh[n : 2 * n], fresh[2 * n :]
    noise = np.sqrt(sim_var) * np.asarray(jax.random.normal(k_noise, to_reconstruct.shape))
    samples = {
        "standard_normal_prior": V.generate(k_normal, sim_model, n, noise_variance=sim_var),
        "learned_latent_prior": V.generate(
            k_prior, sim_model, n, noise_variance=sim_var, prior=prior
        ),
        "reconstructions": np.asarray(V.reconstruct(sim_model, to_reconstruct)) + noise,
        "second_fresh_sample": second,
    }
    stats_ref = V.morphology_statistics(reference)
    ks = {
        label: V.morphology_ks_distances(V.morphology_statistics(np.asarray(x)), stats_ref)
        for label, x in samples.items()
    }
    # Held-out density of latent draws: the learned prior against N(0, I).
    mean, log_std = V.encode(sim_model, reference)
    z = mean + jnp.exp(log_std) * jax.random.normal(k_noise, mean.shape)
    log_p_learned = float(jnp.mean(prior.log_prob(z)))
    log_p_normal = float(jnp.mean(jax.scipy.stats.norm.logpdf(z).sum(axis=1)))
    figure = save_generated_figure(
        output.with_suffix(""),
        reference,
        samples["standard_normal_prior"],
        samples["learned_latent_prior"],
    )
    out = {
        "num_per_side": n,
        "prior": prior.config,
        "prior_fit_s": fit_s,
        "prior_history": {
            "best_epoch": history.best_epoch,
            "epochs": len(history.validation_loss),
            "best_validation_loss": history.best_validation_loss,
        },
        "held_out_latent_log_density": {"learned": log_p_learned, "standard_normal": log_p_normal},
        "ks": ks,
        "figure": figure,
    }
    print(
        "F done",
        json.dumps({k: {s: v["D"] for s, v in d.items()} for k, d in ks.items()}),
        flush=True,
    )
    return out, prior


def save_generated_figure(prefix: Path, held_out, from_normal, from_prior, num: int = 8) -> str:
    """Rows of fresh simulations, images generated from N(0, I) and from the learned prior."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = (("simulated", held_out), ("N(0, I) prior", from_normal), ("learned prior", from_prior))
    fig, axes = plt.subplots(3, num, figsize=(1.4 * num, 4.6), squeeze=False)
    for r, (label, images) in enumerate(rows):
        images = np.asarray(images)
        for c in range(num):
            ax = axes[r, c]
            ax.imshow(np.arcsinh(images[c] / np.std(held_out)), cmap="gray", origin="lower")
            ax.set_xticks([])
            ax.set_yticks([])
        axes[r, 0].set_ylabel(label, fontsize=8)
    fig.tight_layout()
    path = prefix.with_name(prefix.name + "_generated.png")
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return os.path.relpath(path, ROOT.parent)


def real_sdss(
    k_fit_real, k_eval_real, images, variance, labels, args, channels, hidden, train_opts
) -> dict:
    """B: a 3-band VAE on the SDSS cutouts, its held-out bounds and a linear probe."""
    output = args.output
    name = output.stem
    rng = np.random.default_rng(args.seed)
    held = np.zeros(len(labels), bool)
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        held[rng.choice(idx, size=int(round(0.3 * len(idx))), replace=False)] = True
    real_model, real = fit_real_vae(
        k_fit_real,
        k_eval_real,
        images,
        variance,
        held,
        args.seed + 1,
        args,
        channels,
        hidden,
        train_opts,
    )
    z_all, _ = V.encode(real_model, images)
    z_all = np.asarray(z_all)
    real["probe"] = linear_probe(z_all, labels, held)
    real["probe_pca_pixels"] = linear_probe(
        pca_features(images.reshape(len(images), -1), ~held, args.latent_dim), labels, held
    )
    real["figures"] = save_figures(
        output.with_suffix("").with_name(name + "_sdss"),
        real_model,
        images[held],
        labels[held].astype(float),
        "Galaxy Zoo class",
    )
    print("B done", real["probe"], real["probe_pca_pixels"], flush=True)
    return real


def atypicality(k_real, sim_model, x_ref, x_test, sim_var, images, variance, labels) -> dict:
    """C: how the simulation-trained VAE ranks the real SDSS galaxies by atypicality."""
    reference = V.fit_atypicality(k_real, sim_model, x_ref, sim_var)
    grey = to_sim_units(images, variance, sim_var)
    scores = V.score_atypicality(k_real, sim_model, reference, grey, sim_var)
    sims_scored = V.score_atypicality(k_real, sim_model, reference, x_test, sim_var)
    per_class = {}
    for c, cname in enumerate(CLASS_NAMES):
        s = scores.score[labels == c]
        per_class[cname] = {
            "n": int(len(s)),
            "median_score": float(np.median(s)),
            "flagged_fraction": float(np.mean(scores.flagged[labels == c])),
        }
    result = {
        "held_out_simulations": {
            "median_score": float(np.median(sims_scored.score)),
            "flagged_fraction": float(np.mean(sims_scored.flagged)),
        },
        "per_class": per_class,
        "auc_merger_vs_elliptical": mann_whitney_auc(
            scores.statistic[labels == 5], scores.statistic[labels == 0]
        ),
        "auc_merger_or_dont_know_vs_elliptical": mann_whitney_auc(
            scores.statistic[(labels == 5) | (labels == 4)], scores.statistic[labels == 0]
        ),
        "threshold": reference.threshold,
    }
    print("C done", json.dumps(result["per_class"]), flush=True)
    return result


def hubble_deep_field(key, args, channels, hidden, train_opts, output) -> dict:
    """D: a 3-band VAE on stamps of the Hubble Deep Field sources; held-out bounds."""
    name = output.stem
    hdf, hdf_var, centres = load_hdf(args.stamp)
    k_split, k_fit_hdf, k_eval_hdf = jax.random.split(key, 3)
    held_hdf = np.zeros(len(hdf), bool)
    held_hdf[np.asarray(jax.random.permutation(k_split, len(hdf)))[: len(hdf) // 5]] = True
    hdf_model, hdf_result = fit_real_vae(
        k_fit_hdf,
        k_eval_hdf,
        hdf,
        hdf_var,
        held_hdf,
        args.seed + 2,
        args,
        channels,
        hidden,
        train_opts,
    )
    hdf_result["num_sources"] = len(hdf)
    hdf_result["figures"] = save_figures(
        output.with_suffix("").with_name(name + "_hdf"),
        hdf_model,
        hdf[held_hdf],
        np.log10(np.maximum(hdf[held_hdf].sum(axis=(1, 2, 3)), 1.0)),
        "log10 summed DN",
    )
    print("D done", json.dumps({k: v for k, v in hdf_result.items() if "nats" in k}), flush=True)
    return hdf_result


def fit_real_vae(key_fit, key_eval, images, variance, held, seed, args, channels, hidden, opts):
    """Train a 3-band VAE on the images not ``held`` out; bounds on the held-out ones.

    Returns the model and a dict of training facts and held-out ELBO / IW bound.
    """
    model = V.ConvVAE(
        (args.stamp, args.stamp),
        in_channels=3,
        latent_dim=args.latent_dim,
        channels=channels,
        hidden=hidden,
        rngs=nnx.Rngs(seed),
    )
    var_full = np.broadcast_to(variance, images.shape)
    t0 = time.perf_counter()
    history = V.fit_vae(key_fit, model, images[~held], var_full[~held], **opts | {"patience": 20})
    result = {
        "train_time_s": time.perf_counter() - t0,
        "num_train": int((~held).sum()),
        "num_held_out": int(held.sum()),
        "history": {"best_epoch": history.best_epoch, "epochs": len(history.validation_loss)},
    }
    result |= bounds(key_eval, model, images[held], var_full[held], args.iw_samples, 4)
    return model, result


def npe_embeddings(task, vae_model, theta_test, x_test, args) -> list[dict]:
    """Mean held-out log q(θ | x) of NPE with a CNN vs the VAE encoder as embedding."""
    import astroprob as ap

    theta_all, x_all = task.simulate(jax.random.key(args.seed + 7), max(args.npe_budgets))
    stamp = (args.stamp, args.stamp)
    embeddings = {
        "CNN (ConvEmbedding, joint)": lambda: (
            ap.nn.ConvEmbedding(stamp, features=32, rngs=nnx.Rngs(args.seed)),
            "auto",
        ),
        "VAE encoder, frozen": lambda: (V.VAEEmbedding(vae_model), "none"),
        "VAE encoder, fine-tuned": lambda: (V.VAEEmbedding(vae_model, trainable=True), "none"),
    }
    rows = []
    for budget in args.npe_budgets:
        for label, make in embeddings.items():
            embedding, scaling = make()
            t0 = time.perf_counter()
            npe = ap.NPE(task, embedding=embedding, x_scaling=scaling)
            npe.fit(
                jax.random.key(args.seed + 8),
                theta_all[:budget],
                x_all[:budget],
                max_epochs=args.npe_max_epochs,
                progress_bar=False,
            )
            fit_s = time.perf_counter() - t0
            logq = np.asarray(npe.posterior(x_test).log_prob(jnp.asarray(theta_test)[:, None, :]))
            rows.append(
                {
                    "embedding": label,
                    "budget": budget,
                    "mean_log_q": float(logq.mean()),
                    "sem_log_q": float(logq.std() / np.sqrt(logq.size)),
                    "epochs": len(npe.history.train_loss),
                    "fit_s": fit_s,
                }
            )
            print(json.dumps(rows[-1]), flush=True)
    return rows


def pca_features(flat: np.ndarray, train: np.ndarray, k: int) -> np.ndarray:
    mean = flat[train].mean(axis=0)
    _, _, vt = np.linalg.svd(flat[train] - mean, full_matrices=False)
    return (flat - mean) @ vt[:k].T


def linear_probe(features: np.ndarray, labels: np.ndarray, held: np.ndarray) -> dict:
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(features[~held])
    clf = LogisticRegression(max_iter=2000).fit(scaler.transform(features[~held]), labels[~held])
    pred = clf.predict(scaler.transform(features[held]))
    majority = np.bincount(labels[~held]).argmax()
    ell = labels[held] == 0
    return {
        "accuracy": float(np.mean(pred == labels[held])),
        "chance_majority": float(np.mean(labels[held] == majority)),
        "elliptical_vs_rest_accuracy": float(np.mean((pred == 0) == ell)),
        "num_features": int(features.shape[1]),
    }


def markdown(r: dict) -> str:
    """The results as Markdown tables; experiments not (yet) run are left out."""
    st = r["settings"]
    lines = [
        f"VAE on galaxy stamps ({'quick' if st['quick'] else 'full'} run; "
        f"{st['num_sims']} simulations, stamps {st['stamp']} px, "
        f"latent {st['latent_dim']}, load average at start "
        f"{r['machine']['loadavg_start'][0]:.1f}; experiments {st.get('experiments', 'ABCDEF')})",
        "",
    ]
    rows = [
        (label, r[k])
        for label, k in (
            ("simulated Sersic (held out)", "simulated"),
            ("SDSS gri cutouts (held out)", "real_sdss"),
        )
        if k in r
    ]
    if "real_hdf" in r:
        rows.append(
            (
                f"Hubble Deep Field stamps (held out, {r['real_hdf']['num_held_out']} of "
                f"{r['real_hdf']['num_sources']})",
                r["real_hdf"],
            )
        )
    if rows:
        lines += [
            "| data | ELBO (nats, mean / median) | IW bound K="
            f"{st['iw_samples']} (nats, mean / median) | ELBO bits/dim | IW bits/dim |",
            "|---|---|---|---|---|",
        ]
        for label, d in rows:
            lines.append(
                f"| {label} | {d['elbo_nats_mean']:.1f} / {d['elbo_nats_median']:.1f} | "
                f"{d['iw_nats_mean']:.1f} / {d['iw_nats_median']:.1f} | "
                f"{d['elbo_bits_per_dim']:.3f} | {d['iw_bits_per_dim']:.3f} |"
            )
        lines.append("")
    if "simulated" in r:
        s = r["simulated"]
        lines += [
            "| morphology statistic | KS D generated vs held out | KS D held-out halves |",
            "|---|---|---|",
        ]
        for name, v in s["ks"].items():
            lines.append(f"| {name} | {v['D']:.3f} | {s['ks_held_out_halves'][name]['D']:.3f} |")
        lines.append("")
    if "real_sdss" in r:
        p, q = r["real_sdss"]["probe"], r["real_sdss"]["probe_pca_pixels"]
        lines += [
            "| linear probe on Galaxy Zoo classes (held out) | accuracy | ellipticals vs rest |",
            "|---|---|---|",
            f"| VAE latent means ({p['num_features']} features) | {p['accuracy']:.3f} | "
            f"{p['elliptical_vs_rest_accuracy']:.3f} |",
            f"| PCA of pixels ({q['num_features']} features) | {q['accuracy']:.3f} | "
            f"{q['elliptical_vs_rest_accuracy']:.3f} |",
            f"| majority class | {p['chance_majority']:.3f} | |",
            "",
        ]
    if "atypicality" in r:
        a = r["atypicality"]
        lines += [
            "| atypicality under the simulation-trained VAE | n | median score | flagged |",
            "|---|---|---|---|",
            f"| held-out simulations | {st['num_eval']} | "
            f"{a['held_out_simulations']['median_score']:.3f} | "
            f"{a['held_out_simulations']['flagged_fraction']:.3f} |",
        ]
        for cname, v in a["per_class"].items():
            lines.append(
                f"| SDSS {cname} | {v['n']} | {v['median_score']:.3f} | "
                f"{v['flagged_fraction']:.3f} |"
            )
        lines += [
            "",
            f"AUC (merger more atypical than elliptical): {a['auc_merger_vs_elliptical']:.3f}",
            "",
        ]
    if "npe_summary" in r:
        lines += [
            f"NPE on the simulated stamps, {st['num_eval']} held out: mean "
            "log q(θ | x) of the true parameters (nats, higher is better)",
            "",
            "| embedding | simulations | mean log q ± s.e. | epochs | fit s |",
            "|---|---:|---:|---:|---:|",
        ]
        for row in r["npe_summary"]:
            lines.append(
                f"| {row['embedding']} | {row['budget']:,} | {row['mean_log_q']:.3f} ± "
                f"{row['sem_log_q']:.3f} | {row['epochs']} | {row['fit_s']:.0f} |"
            )
        lines.append("")
    if "generation" in r:
        g = r["generation"]
        labels = {
            "standard_normal_prior": "generated, z ~ N(0, I)",
            "learned_latent_prior": "generated, z ~ learned prior",
            "reconstructions": "reconstructions of fresh simulations + noise",
            "second_fresh_sample": "second fresh sample (floor)",
        }
        names = list(next(iter(g["ks"].values())))
        lines += [
            f"KS distance D to {g['num_per_side']:,} fresh simulations, "
            f"{g['num_per_side']:,} galaxies per side",
            "",
            "| sample | " + " | ".join(names) + " |",
            "|---|" + "---:|" * len(names),
        ]
        for key, label in labels.items():
            d = g["ks"][key]
            lines.append(f"| {label} | " + " | ".join(f"{d[n]['D']:.3f}" for n in names) + " |")
        h = g["held_out_latent_log_density"]
        lines += [
            "",
            f"Held-out latent draws: mean log p(z) {h['learned']:.2f} nats under the learned "
            f"prior, {h['standard_normal']:.2f} under N(0, I).",
            "",
        ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
