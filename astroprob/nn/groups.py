"""The cyclic groups C_N and dihedral groups D_N acting on images and feature maps.

An element ``g = r^k m^s`` (``0 <= k < N``, ``s`` in ``{0, 1}``) first mirrors
the plane (``m``: ``x -> -x``) when ``s = 1``, then rotates it counter-clockwise
by ``2 pi k / N``. Elements are numbered ``index = s N + k``.

Pixel convention (the one of `astroprob.tasks.SersicGalaxy` and
`astroprob.io.read_fits_image`): in an array ``(height, width)``, column ``j``
lies at ``x = j - (width - 1)/2`` and row ``i`` at ``y = i - (height - 1)/2``,
``+y`` up when shown with ``imshow(origin="lower")``. The rotation ``r`` of C_4
is then ``numpy.rot90(image, k=-1)``, and the mirror ``m`` reverses the columns.

A group acts on an image by ``(g f)(p) = f(g^{-1} p)``, and on a regular
feature map ``(batch, height, width, |G|, channels)`` by
``(g f)(p, h) = f(g^{-1} p, g^{-1} h)``.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import re

import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike
from jaxtyping import Array, Float

__all__ = ["CyclicGroup", "DihedralGroup", "Group", "as_group"]


@dataclasses.dataclass(frozen=True)
class Group:
    """C_N (``reflections=False``) or D_N (``reflections=True``) acting on the plane.

    Args:
        n: number of rotations, ``N >= 1``.
        reflections: whether the mirror ``x -> -x`` belongs to the group.
    """

    n: int
    reflections: bool = False

    def __post_init__(self):
        if isinstance(self.n, bool) or not isinstance(self.n, int) or self.n < 1:
            raise ValueError(f"n: expected a positive integer; got {self.n!r}")

    @property
    def name(self) -> str:
        """``"C4"``, ``"D8"``, ..."""
        return f"{'D' if self.reflections else 'C'}{self.n}"

    @property
    def order(self) -> int:
        """Number of elements, ``N`` or ``2N``."""
        return self.n * (2 if self.reflections else 1)

    @property
    def grid_exact(self) -> bool:
        """Whether every element maps the square pixel grid onto itself (N divides 4)."""
        return 4 % self.n == 0

    def element(self, index: int) -> tuple[int, int]:
        """``(k, s)`` of the element ``r^k m^s`` with this index."""
        if not 0 <= index < self.order:
            raise ValueError(f"index: expected 0 <= index < {self.order}; got {index}")
        return index % self.n, index // self.n

    def index(self, k: int, s: int) -> int:
        """Index of ``r^k m^s``."""
        return (s % 2) * self.n + k % self.n if self.reflections else k % self.n

    def compose(self, a: int, b: int) -> int:
        """Index of the product ``a b`` (apply ``b`` first)."""
        (ka, sa), (kb, sb) = self.element(a), self.element(b)
        return self.index(ka + (-kb if sa else kb), sa ^ sb)

    def inverse(self, a: int) -> int:
        """Index of ``a^{-1}``."""
        k, s = self.element(a)
        return a if s else self.index(-k, 0)

    def angle(self, index: int) -> float:
        """Rotation angle of the element, radians counter-clockwise."""
        return 2 * math.pi * self.element(index)[0] / self.n

    def matrix(self, index: int) -> np.ndarray:
        """The element's ``2 x 2`` orthogonal matrix acting on ``(x, y)``."""
        k, s = self.element(index)
        return _rotation(2 * math.pi * k / self.n) @ np.diag([-1.0 if s else 1.0, 1.0])

    def inverse_table(self) -> np.ndarray:
        """``table[g, h]`` = index of ``g^{-1} h``, shape ``(order, order)``."""
        return _inverse_table(self)

    def representation(self, name: str) -> np.ndarray:
        """Matrices ``(order, d, d)`` of a representation of the group.

        Args:
            name: ``"trivial"`` (d = 1); ``"sign"`` (d = 1: +1 for rotations, -1 for
                mirrored elements; D_N only); ``"spin<s>"`` (d = 2, e.g. ``"spin2"``: how
                ``(cos s phi, sin s phi)`` of a direction ``phi`` transforms, such as the
                ellipticity ``(e1, e2)`` for s = 2 or a position ``(x, y)`` for s = 1);
                ``"regular"`` (d = order, permutation matrices).

        Raises:
            ValueError: for an unknown name, or ``"sign"`` on a cyclic group.
        """
        if name == "trivial":
            return np.ones((self.order, 1, 1))
        if name == "sign":
            if not self.reflections:
                raise ValueError(f"name: 'sign' needs a dihedral group; got {self.name}")
            return np.array([[[-1.0 if self.element(g)[1] else 1.0]] for g in range(self.order)])
        if name == "regular":
            return np.eye(self.order)[self.inverse_table()]
        match = re.fullmatch(r"spin(\d+)", name)
        if match is None:
            raise ValueError(
                f"name: expected 'trivial', 'sign', 'regular' or 'spin<s>'; got {name!r}"
            )
        spin = int(match.group(1))
        mats = []
        for g in range(self.order):
            k, s = self.element(g)
            flip = np.diag([1.0, -1.0]) * (-1.0) ** spin if s else np.eye(2)
            mats.append(_rotation(spin * 2 * math.pi * k / self.n) @ flip)
        return np.stack(mats)

    # ------------------------------------------------------------------ actions
    def pixel_map(self, index: int, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
        """Source rows and columns ``(height, width)`` of ``g f`` on a pixel grid.

        ``(g f)[i, j] = f[rows[i, j], cols[i, j]]``, exact because ``g`` maps the grid onto itself.

        Raises:
            ValueError: if ``g`` does not map this grid onto itself.
        """
        height, width = shape
        matrix = self.matrix(self.inverse(index))
        ys, xs = np.mgrid[:height, :width].astype(float)
        cy, cx = (height - 1) / 2, (width - 1) / 2
        points = np.stack([xs - cx, ys - cy])
        sx, sy = np.einsum("ab,bhw->ahw", matrix, points)
        cols, rows = np.rint(sx + cx), np.rint(sy + cy)
        exact = np.allclose(cols, sx + cx, atol=1e-6) and np.allclose(rows, sy + cy, atol=1e-6)
        inside = rows.min() >= 0 and cols.min() >= 0
        if not (exact and inside and rows.max() < height and cols.max() < width):
            raise ValueError(
                f"group: element {index} of {self.name} does not map a {height}x{width} pixel "
                "grid onto itself; expected a square grid and a rotation by a multiple of 90 deg"
            )
        return rows.astype(int), cols.astype(int)

    def act_on_images(self, x: Float[ArrayLike, "batch h w *c"], index: int) -> Array:
        """``g x`` for images ``(batch, height, width[, channels])``: an exact pixel permutation."""
        rows, cols = self.pixel_map(index, x.shape[1:3])
        return jnp.asarray(x)[:, rows, cols]

    def act_on_regular(self, f: Float[ArrayLike, "batch h w g c"], index: int) -> Array:
        """``g f`` for regular feature maps ``(batch, height, width, order, channels)``."""
        rows, cols = self.pixel_map(index, f.shape[1:3])
        return jnp.asarray(f)[:, rows, cols][:, :, :, self.inverse_table()[index]]


def CyclicGroup(n: int) -> Group:  # noqa: N802 - reads as a type
    """The cyclic group C_N of N rotations."""
    return Group(n, reflections=False)


def DihedralGroup(n: int) -> Group:  # noqa: N802 - reads as a type
    """The dihedral group D_N of N rotations and N reflections."""
    return Group(n, reflections=True)


def as_group(group: Group | str) -> Group:
    """A `Group` from itself or a name such as ``"C4"``, ``"D8"``.

    Raises:
        ValueError: for anything else.
    """
    if isinstance(group, Group):
        return group
    match = re.fullmatch(r"([CD])(\d+)", group) if isinstance(group, str) else None
    if match is None or int(match.group(2)) < 1:
        raise ValueError(f"group: expected a Group or a name such as 'C4' or 'D8'; got {group!r}")
    return Group(int(match.group(2)), reflections=match.group(1) == "D")


def _rotation(angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[c, -s], [s, c]])


@functools.lru_cache(maxsize=64)
def _inverse_table(group: Group) -> np.ndarray:
    table = np.array(
        [
            [group.compose(group.inverse(g), h) for h in range(group.order)]
            for g in range(group.order)
        ]
    )
    table.setflags(write=False)
    return table
