"""Figures for a trained VAE: reconstructions, latent traversals, a 2-D latent projection.

Images are shown with ``origin="lower"`` (the astroprob pixel convention) and an
arcsinh stretch; multi-band stamps are shown as the sum over bands. Each
function returns a matplotlib ``Figure`` and draws nothing else.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from jax.typing import ArrayLike


def _display(image: np.ndarray, scale: float) -> np.ndarray:
    image = np.asarray(image, dtype=np.float64)
    if image.ndim == 3:
        image = image.sum(axis=-1)
    return np.arcsinh(image / scale)


def _stretch_scale(images: np.ndarray) -> float:
    spread = float(np.median(np.abs(images - np.median(images)))) * 1.4826
    return spread if spread > 0 else float(np.std(images)) or 1.0


def plot_reconstructions(
    images: ArrayLike,
    reconstructions: ArrayLike,
    *,
    num_images: int = 8,
    residuals: bool = True,
) -> Any:
    """Grid of data (top row), reconstructions and, optionally, residuals (bottom row).

    Args:
        images: ``(n, h, w)`` or ``(n, h, w, bands)``.
        reconstructions: same shape, e.g. from `astroprob.nn.vae.reconstruct`.
        num_images: columns shown (the first ones).
        residuals: add a row of ``data - reconstruction``.
    """
    import matplotlib.pyplot as plt

    images, recon = np.asarray(images), np.asarray(reconstructions)
    if images.shape != recon.shape:
        raise ValueError(
            f"reconstructions: expected the shape of images {images.shape}; got {recon.shape}"
        )
    k = min(num_images, len(images))
    rows = [("data", images), ("reconstruction", recon)]
    if residuals:
        rows.append(("residual", images - recon))
    scale = _stretch_scale(images[:k])
    fig, axes = plt.subplots(len(rows), k, figsize=(1.3 * k, 1.3 * len(rows)), squeeze=False)
    for r, (label, data) in enumerate(rows):
        for c in range(k):
            ax = axes[r, c]
            ax.imshow(_display(data[c], scale), origin="lower", cmap="gray_r")
            ax.set_xticks([])
            ax.set_yticks([])
        axes[r, 0].set_ylabel(label, fontsize=8)
    fig.tight_layout()
    return fig


def plot_latent_traversal(traversal: ArrayLike, values: Any, *, dims: Any = None) -> Any:
    """One row per latent dimension, one column per value (from `latent_traversal`).

    Args:
        traversal: ``(num_dims, num_values, h, w[, bands])``.
        values: the ``num_values`` latent values (column titles).
        dims: labels of the rows; default ``0 .. num_dims - 1``.
    """
    import matplotlib.pyplot as plt

    traversal, values = np.asarray(traversal), np.asarray(values)
    if traversal.ndim not in (4, 5) or traversal.shape[1] != len(values):
        raise ValueError(
            f"traversal: expected (num_dims, {len(values)}, h, w[, bands]); got {traversal.shape}"
        )
    num_dims, num_values = traversal.shape[:2]
    dims = list(range(num_dims)) if dims is None else list(dims)
    scale = _stretch_scale(traversal)
    fig, axes = plt.subplots(
        num_dims, num_values, figsize=(1.2 * num_values, 1.2 * num_dims), squeeze=False
    )
    for i in range(num_dims):
        for j in range(num_values):
            ax = axes[i, j]
            ax.imshow(_display(traversal[i, j], scale), origin="lower", cmap="gray_r")
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(f"{values[j]:+.1f}", fontsize=8)
        axes[i, 0].set_ylabel(f"z[{dims[i]}]", fontsize=8)
    fig.tight_layout()
    return fig


def plot_latent_projection(
    latents: ArrayLike, colour: Any, *, label: str = "", max_points: int = 5000
) -> Any:
    """Scatter of the first two principal components of the latent means, coloured.

    Args:
        latents: ``(n, latent_dim)`` encoder means.
        colour: ``(n,)`` a physical parameter (or class label) per point.
        label: colour-bar label.
        max_points: plot at most this many (the first ones).
    """
    import matplotlib.pyplot as plt

    latents, colour = np.asarray(latents, np.float64), np.asarray(colour, np.float64)
    if latents.ndim != 2 or colour.shape != (latents.shape[0],):
        raise ValueError(
            f"latents, colour: expected (n, latent_dim) and (n,); got {latents.shape} and "
            f"{colour.shape}"
        )
    centred = latents - latents.mean(axis=0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    projected = centred @ vt[:2].T
    if projected.shape[1] == 1:
        projected = np.column_stack([projected[:, 0], np.zeros(len(projected))])
    k = min(max_points, len(latents))
    fig, ax = plt.subplots(figsize=(4.5, 3.8))
    points = ax.scatter(projected[:k, 0], projected[:k, 1], c=colour[:k], s=6, cmap="viridis")
    fig.colorbar(points, ax=ax, label=label)
    ax.set_xlabel("latent PC 1")
    ax.set_ylabel("latent PC 2")
    fig.tight_layout()
    return fig
