"""Figures of the calibration diagnostics, drawn with matplotlib's object API (no pyplot state).

Every function takes a diagnostic result and returns a `matplotlib.figure.Figure`
rendered by the Agg backend; `to_png` turns one into PNG bytes.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence

import numpy as np
from matplotlib.colors import PowerNorm
from matplotlib.figure import Figure

from astroprob.diagnostics.classification import ClassificationCalibrationResult
from astroprob.diagnostics.contraction import ContractionResult
from astroprob.diagnostics.coverage import CoverageResult
from astroprob.diagnostics.sbc import SBCResult
from astroprob.diagnostics.tarp import TARPResult

__all__ = [
    "contraction_figure",
    "corner_figure",
    "coverage_figure",
    "rank_ecdf_figure",
    "recovery_figure",
    "reliability_figure",
    "tarp_figure",
    "to_png",
]

VERDICT_COLOURS = {
    "calibrated": "#2e7d32",
    "overconfident": "#c62828",
    "underconfident": "#ef6c00",
    "biased": "#6a1b9a",
}
BAND_COLOUR = "#90caf9"
LINE_COLOUR = "#0d47a1"
MAX_POINTS = 300
"""Simulations drawn in scatter plots (a fixed, evenly spaced subset beyond this)."""


def to_png(fig: Figure, *, dpi: int = 100) -> bytes:
    """The figure as PNG bytes."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    return buffer.getvalue()


def _grid(n_panels: int, *, max_cols: int = 4, size: float = 2.6) -> tuple[Figure, list]:
    cols = min(n_panels, max_cols)
    rows = math.ceil(n_panels / cols)
    fig = Figure(figsize=(size * cols + 0.4, size * rows * 0.9 + 0.4), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).ravel().tolist()
    for ax in axes[n_panels:]:
        ax.set_visible(False)
    return fig, axes[:n_panels]


def _subset(n: int) -> np.ndarray:
    return np.unique(np.linspace(0, n - 1, min(n, MAX_POINTS)).round().astype(int))


def rank_ecdf_figure(result: SBCResult) -> Figure:
    """SBC rank ECDF minus the uniform CDF, one panel per statistic, with the simultaneous band."""
    test = result.test
    fig, axes = _grid(len(result.names))
    z = np.concatenate([[0.0], test.grid, [1.0]])
    lower = np.concatenate([[0.0], test.band_lower - test.grid, [0.0]])
    upper = np.concatenate([[0.0], test.band_upper - test.grid, [0.0]])
    for j, (ax, name) in enumerate(zip(axes, result.names, strict=True)):
        verdict = result.verdict[j]
        diff = np.concatenate([[0.0], test.ecdf[j] - test.grid, [0.0]])
        ax.fill_between(z, lower, upper, step="post", color=BAND_COLOUR, alpha=0.6, lw=0)
        ax.step(z, diff, where="post", color=VERDICT_COLOURS.get(verdict, LINE_COLOUR), lw=1.2)
        ax.axhline(0.0, color="0.4", lw=0.6)
        ax.set_title(f"{name}: {verdict}\np = {test.p_value[j]:.3g}", fontsize=9)
        ax.set_xlabel("fractional rank", fontsize=8)
        ax.set_ylabel("ECDF − uniform", fontsize=8)
        ax.tick_params(labelsize=7)
    fig.suptitle(
        f"SBC rank ECDF difference, simultaneous {1 - test.alpha:.4g} band "
        f"({result.ranks.shape[0]} sims, {result.num_samples} samples)",
        fontsize=10,
    )
    return fig


def coverage_figure(result: CoverageResult) -> Figure:
    """Expected coverage of HPD regions against credibility, with band and Monte Carlo errors."""
    fig = Figure(figsize=(4.6, 4.4), layout="constrained")
    ax = fig.subplots()
    levels = np.concatenate([[0.0], result.levels, [1.0]])
    ax.fill_between(
        levels,
        np.concatenate([[0.0], result.band_lower, [1.0]]),
        np.concatenate([[0.0], result.band_upper, [1.0]]),
        step="post",
        color=BAND_COLOUR,
        alpha=0.5,
        lw=0,
        label=f"simultaneous {1 - result.alpha:.3g} band",
    )
    ax.fill_between(
        result.levels,
        result.coverage_lower,
        result.coverage_upper,
        color=LINE_COLOUR,
        alpha=0.2,
        lw=0,
        label=f"pointwise {1 - result.alpha:.3g} MC error",
    )
    ax.plot([0, 1], [0, 1], color="0.3", lw=0.8, ls="--", label="ideal")
    colour = VERDICT_COLOURS.get(result.verdict, LINE_COLOUR)
    ax.plot(result.levels, result.coverage, color=colour, lw=1.5, label="estimate")
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="credibility level", ylabel="expected coverage")
    ax.set_title(
        f"HPD coverage ({result.method}): {result.verdict}, p = {result.p_value:.3g}", fontsize=10
    )
    ax.legend(fontsize=7, loc="upper left")
    return fig


def tarp_figure(result: TARPResult) -> Figure:
    """The TARP expected coverage probability with its bootstrap band."""
    fig = Figure(figsize=(4.6, 4.4), layout="constrained")
    ax = fig.subplots()
    ax.fill_between(
        result.levels,
        result.ecp_lower,
        result.ecp_upper,
        color=BAND_COLOUR,
        alpha=0.6,
        lw=0,
        label=f"bootstrap {1 - result.alpha:.3g} band",
    )
    ax.plot([0, 1], [0, 1], color="0.3", lw=0.8, ls="--", label="ideal")
    colour = VERDICT_COLOURS.get(result.verdict, LINE_COLOUR)
    ax.plot(result.levels, result.ecp, color=colour, lw=1.5, label="TARP")
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="credibility level", ylabel="expected coverage")
    ax.set_title(
        f"TARP: {result.verdict}, p = {result.p_value:.3g}, ATC = {result.atc:+.3f}", fontsize=10
    )
    ax.legend(fontsize=7, loc="upper left")
    return fig


def recovery_figure(result: ContractionResult) -> Figure:
    """True value against posterior mean with ±1 posterior standard deviation, per parameter."""
    fig, axes = _grid(len(result.names))
    idx = _subset(result.theta.shape[0])
    for j, (ax, name) in enumerate(zip(axes, result.names, strict=True)):
        truth = result.theta[idx, j]
        ax.errorbar(
            truth,
            result.posterior_mean[idx, j],
            yerr=result.posterior_std[idx, j],
            fmt="o",
            ms=2,
            lw=0.5,
            color=LINE_COLOUR,
            alpha=0.6,
        )
        lo = min(truth.min(), (result.posterior_mean[idx, j] - result.posterior_std[idx, j]).min())
        hi = max(truth.max(), (result.posterior_mean[idx, j] + result.posterior_std[idx, j]).max())
        ax.plot([lo, hi], [lo, hi], color="0.3", lw=0.8, ls="--")
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("true value", fontsize=8)
        ax.set_ylabel("posterior mean ± std", fontsize=8)
        ax.tick_params(labelsize=7)
    fig.suptitle(f"Parameter recovery ({idx.size} of {result.theta.shape[0]} sims)", fontsize=10)
    return fig


def contraction_figure(result: ContractionResult) -> Figure:
    """Posterior z-score against posterior contraction, per parameter."""
    fig, axes = _grid(len(result.names))
    idx = _subset(result.z.shape[0])
    for j, (ax, name) in enumerate(zip(axes, result.names, strict=True)):
        ax.scatter(result.contraction[idx, j], result.z[idx, j], s=4, color=LINE_COLOUR, alpha=0.6)
        for level in (-3, 3):
            ax.axhline(level, color="0.6", lw=0.6, ls=":")
        ax.axhline(0, color="0.4", lw=0.6)
        ax.set_xlim(min(0.0, float(result.contraction[idx, j].min())), 1.0)
        ax.set_title(f"{name}: rms z = {result.rms_z[j]:.2f}", fontsize=9)
        ax.set_xlabel("posterior contraction", fontsize=8)
        ax.set_ylabel("z-score", fontsize=8)
        ax.tick_params(labelsize=7)
    fig.suptitle("Posterior z-score vs contraction", fontsize=10)
    return fig


def corner_figure(
    samples: np.ndarray,
    truth: np.ndarray | None = None,
    names: Sequence[str] | None = None,
    *,
    bins: int = 40,
    title: str = "",
) -> Figure:
    """Corner plot of posterior samples ``(n, dim)``: histograms and pairwise densities."""
    samples = np.asarray(samples, np.float64)
    dim = samples.shape[1]
    names = list(names) if names is not None else [f"theta_{j + 1}" for j in range(dim)]
    size = max(1.3, min(2.4, 9.0 / dim))
    fig = Figure(figsize=(size * dim + 0.5, size * dim + 0.5), layout="constrained")
    axes = fig.subplots(dim, dim, squeeze=False)
    ranges = [(float(samples[:, j].min()), float(samples[:, j].max())) for j in range(dim)]
    if truth is not None:
        truth = np.asarray(truth, np.float64)
        ranges = [(min(lo, truth[j]), max(hi, truth[j])) for j, (lo, hi) in enumerate(ranges)]
    ranges = [(lo, hi) if hi > lo else (lo - 0.5, hi + 0.5) for lo, hi in ranges]
    for i in range(dim):
        for j in range(dim):
            ax = axes[i, j]
            if j > i:
                ax.set_visible(False)
                continue
            if i == j:
                ax.hist(samples[:, j], bins=bins, range=ranges[j], color=LINE_COLOUR, alpha=0.7)
                if truth is not None:
                    ax.axvline(truth[j], color="#c62828", lw=1.2)
                ax.set_yticks([])
            else:
                ax.hist2d(
                    samples[:, j],
                    samples[:, i],
                    bins=bins,
                    range=[ranges[j], ranges[i]],
                    cmap="Blues",
                    cmin=0.5,  # empty bins stay white
                    norm=PowerNorm(0.5),  # show the low-density wings too
                )
                if truth is not None:
                    ax.plot(truth[j], truth[i], "+", color="#c62828", ms=8, mew=1.5)
            ax.tick_params(labelsize=6)
            if i == dim - 1:
                ax.set_xlabel(names[j], fontsize=8)
            else:
                ax.set_xticklabels([])
            if j == 0 and i > 0:
                ax.set_ylabel(names[i], fontsize=8)
            elif j > 0:
                ax.set_yticklabels([])
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def reliability_figure(result: ClassificationCalibrationResult) -> Figure:
    """Reliability diagram: accuracy against confidence per bin, with bin counts."""
    fig = Figure(figsize=(4.6, 4.6), layout="constrained")
    ax, ax_count = fig.subplots(2, 1, height_ratios=(3, 1), sharex=True)
    centres = 0.5 * (result.bin_edges[1:] + result.bin_edges[:-1])
    width = np.diff(result.bin_edges)
    filled = result.bin_count > 0
    ax.bar(
        centres[filled],
        result.bin_accuracy[filled],
        width=width[filled] * 0.9,
        color=VERDICT_COLOURS.get(result.verdict, LINE_COLOUR),
        alpha=0.7,
        label="accuracy",
    )
    ax.plot([0, 1], [0, 1], color="0.3", lw=0.8, ls="--", label="ideal")
    ax.plot(result.bin_confidence[filled], result.bin_accuracy[filled], "o", color="k", ms=3)
    ax.set(ylim=(0, 1), ylabel="accuracy")
    ax.set_title(
        f"Reliability: {result.verdict}, ECE = {result.ece:.3f}, p = {result.p_value:.3g}",
        fontsize=10,
    )
    ax.legend(fontsize=7, loc="upper left")
    ax_count.bar(centres, result.bin_count, width=width * 0.9, color="0.5")
    ax_count.set(xlim=(0, 1), xlabel="confidence", ylabel="count")
    return fig
