"""Procedural (offline) ground-truth datasets: dSprites, color-dSprites, noisy-dSprites and Circles.

SPEC §2.5 / thesis Table A.3. Rendering is vectorised over the batch: every image is evaluated only on
a window around its sprite (26×26 pixels for dSprites) by an inside-test in the sprite's rotated frame,
then pasted into the 64×64 canvas with one fancy-indexing assignment.

dSprites factors (index → value, as in the official ``latents_values``):
  shape 3 = {square, ellipse, heart}; scale 6 = linspace(0.5, 1, 6); orientation 40 = linspace(0, 2π, 40);
  posX 32, posY 32 = linspace(0, 1, 32).

Where these images differ from the official ``dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz``
(load that file with :class:`~scgbench.datamodules.disentanglement.files.DSpritesFile` when you need
pixel-identical data):

* The official sprites were drawn by DeepMind's own renderer; the shapes here are analytic: a square of
  half-side 0.7·R, an ellipse with semi-axes (R, R/2), and the implicit heart
  (x²+y²−1)³ − x²y³ ≤ 0 scaled to the same radius, with R = 11 px × scale. Sizes and the exact
  outlines therefore differ by a pixel or so; the heart's lobes are rounder than in the original.
* Like the original, images are binary (black and white, no anti-aliasing): a pixel is on iff its
  centre is inside the shape.
* Position: the sprite centre moves over pixels [12, 52] (x → columns, left to right; y → rows, top to
  bottom), a step of 1.29 px per index, so that the largest sprite never leaves the canvas. The
  original covers a similar but not identical range.
* Orientation 0 and 2π (indices 0 and 39) give identical images, as in the original; the square
  repeats (approximately) every 90° and the ellipse every 180°, so a few orientations of small sprites
  that are a near-multiple of the symmetry angle apart rasterise to the same binary image — the same
  "rotational symmetry" duplicates the original has. Measured at one position: squares of scale
  0.5 / 0.6 / 0.7 / 0.8–1.0 give 36 / 34 / 37 / 39 distinct images over the 40 orientations, ellipses and
  hearts 39 at every scale (only 0 ≡ 2π). All other factor changes give distinct images (tested).
* Speed: ~18,000 dSprites images per CPU-second (one core; ``python -m
  scgbench.bench.disentanglement``).

color-dSprites and noisy-dSprites follow disentanglement_lib exactly (colour ~ U(0.5, 1)³ multiplies
the sprite; noise ~ U(0, 1) per pixel and channel is added to the background and clipped at 1), on top
of either the procedural or the file-backed dSprites.

Circles (Watters et al. 2019, thesis §4.2 / Table A.3 / A.4): one white circle of diameter 0.2 of the
canvas (12.8 px) on black, anti-aliased (Spriteworld's renderer anti-aliases) by a one-pixel linear
ramp of the signed distance; x and y ∈ [0.2, 0.8] of the canvas. The paper samples them from U(0.2, 0.8);
the integer-factor API discretises them on ``num_values`` (default 40) equidistant values — the thesis
notes only ~40 distinct x-positions are visible at 64 px anyway.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ...specs.disentanglement import GroundTruthData

_CANVAS = 64


def _window(cx: np.ndarray, cy: np.ndarray, window: int):
    """Pixel windows around sprite centres: integer origins (clamped into the canvas, which still
    contains the whole sprite because centres keep a margin) and the pixel-centre offsets ``dx``
    [n,1,W] and ``dy`` [n,W,1] from the centre (dy grows downwards)."""
    ox = np.clip(np.floor(cx).astype(np.int64) - window // 2, 0, _CANVAS - window)
    oy = np.clip(np.floor(cy).astype(np.int64) - window // 2, 0, _CANVAS - window)
    ar = np.arange(window)
    dx = (ox[:, None] + ar[None, :] + 0.5 - cx[:, None]).astype(np.float32)[:, None, :]
    dy = (oy[:, None] + ar[None, :] + 0.5 - cy[:, None]).astype(np.float32)[:, :, None]
    return ox, oy, dx, dy


def _paste(ox: np.ndarray, oy: np.ndarray, win: np.ndarray) -> np.ndarray:
    """Paste windows [n,W,W] at origins into zero 64×64 canvases with one flat scatter."""
    n, w = win.shape[0], win.shape[1]
    ar = np.arange(w)
    flat = (np.arange(n)[:, None, None] * (_CANVAS * _CANVAS) + (oy[:, None, None] + ar[None, :, None]) * _CANVAS
            + (ox[:, None, None] + ar[None, None, :]))
    out = np.zeros((n, _CANVAS, _CANVAS), dtype=np.float32)
    out.reshape(-1)[flat.reshape(-1)] = win.reshape(-1)
    return out


class DSprites(GroundTruthData):
    """Procedural dSprites (binary 64×64×1), factors shape, scale, orientation, posX, posY."""

    name = "dsprites"
    factor_names = ("shape", "scale", "orientation", "posX", "posY")
    SHAPES = ("square", "ellipse", "heart")
    RADIUS_PX = 11.0  # sprite radius at scale 1
    POS_RANGE_PX = (12.0, 52.0)  # centre range; 12 > max extent (11 px) keeps every sprite on the canvas
    WINDOW = 26

    def __init__(self) -> None:
        self.scale_values = np.linspace(0.5, 1.0, 6)
        self.orientation_values = np.linspace(0.0, 2 * np.pi, 40)
        self.pos_values = np.linspace(0.0, 1.0, 32)

    @property
    def factors_num_values(self) -> list[int]:
        return [3, 6, 40, 32, 32]

    @property
    def observation_shape(self) -> tuple[int, int, int]:
        return (64, 64, 1)

    @property
    def data_source(self) -> str:
        return "procedural dsprites v1 (binary analytic shapes)"

    @staticmethod
    def _inside(shape: int, u, v):
        if shape == 0:  # square
            return np.maximum(np.abs(u), np.abs(v)) <= 0.7
        if shape == 1:  # ellipse, semi-axes 1 and 0.5
            return u * u + 4.0 * v * v <= 1.0
        # heart: (x²+y²−1)³ − x²y³ ≤ 0, spans x ∈ [−1.14, 1.14], y ∈ [−1, 1.24]; centre and fit in r = 1
        x = u * 1.22
        y = v * 1.22 + 0.12
        q = x * x + y * y - 1.0
        return q * q * q - x * x * y * y * y <= 0.0

    def render(self, factors: np.ndarray, nuisance: Any = None) -> np.ndarray:
        f = factors
        lo, hi = self.POS_RANGE_PX
        cx = lo + (hi - lo) * self.pos_values[f[:, 3]]
        cy = lo + (hi - lo) * self.pos_values[f[:, 4]]
        ox, oy, dx, dy = _window(cx, cy, self.WINDOW)
        radius = (self.RADIUS_PX * self.scale_values[f[:, 1]]).astype(np.float32)[:, None, None]
        theta = self.orientation_values[f[:, 2]]
        c = np.cos(theta).astype(np.float32)[:, None, None]
        sn = np.sin(theta).astype(np.float32)[:, None, None]
        up = -dy  # the shape frame has y pointing up
        win = np.zeros((f.shape[0], self.WINDOW, self.WINDOW), dtype=np.float32)
        for s in range(3):  # a loop over the 3 shapes, each evaluated for its whole sub-batch
            idx = np.flatnonzero(f[:, 0] == s)
            if idx.size:
                # rotating the pixel by −θ rotates the shape by +θ
                u = (c[idx] * dx[idx] + sn[idx] * up[idx]) / radius[idx]
                v = (-sn[idx] * dx[idx] + c[idx] * up[idx]) / radius[idx]
                win[idx] = self._inside(s, u, v)
        return _paste(ox, oy, win)[..., None]


class ColorDSprites(GroundTruthData):
    """color-dSprites: the sprite multiplied by a colour ~ U(0.5, 1)³ per image (disentanglement_lib
    ``ColorDSprites``). ``base`` is the procedural :class:`DSprites` or a file-backed one."""

    name = "color_dsprites"
    factor_names = DSprites.factor_names

    def __init__(self, base: GroundTruthData | None = None) -> None:
        self.base = base if base is not None else DSprites()

    @property
    def factors_num_values(self) -> list[int]:
        return self.base.factors_num_values

    @property
    def observation_shape(self) -> tuple[int, int, int]:
        return (64, 64, 3)

    @property
    def data_source(self) -> str:
        return f"color variant of {self.base.data_source}"

    def draw_nuisance(self, factors, rng):
        base = self.base.draw_nuisance(factors, rng)
        color = rng.uniform(0.5, 1, [factors.shape[0], 1, 1, 3])
        return base, color

    def render(self, factors, nuisance=None):
        base, color = nuisance
        gray = self.base.render(factors, base)
        # in float32 (the sprite is binary, so this equals the reference's float64 product rounded); one
        # channel at a time because a broadcast with a trailing axis of 3 runs numpy's slowest inner loop
        out = np.empty(gray.shape[:3] + (3,), dtype=np.float32)
        c32 = color.astype(np.float32)
        for ch in range(3):
            np.multiply(gray[..., 0], c32[:, :, :, ch], out=out[..., ch])
        return out


class NoisyDSprites(ColorDSprites):
    """noisy-dSprites: background replaced by U(0, 1) noise per pixel and channel, ``min(x + noise, 1)``
    (disentanglement_lib ``NoisyDSprites``)."""

    name = "noisy_dsprites"

    @property
    def data_source(self) -> str:
        return f"noisy variant of {self.base.data_source}"

    def draw_nuisance(self, factors, rng):
        base = self.base.draw_nuisance(factors, rng)
        noise = rng.uniform(0, 1, [factors.shape[0], 64, 64, 3])
        return base, noise

    def render(self, factors, nuisance=None):
        base, noise = nuisance
        gray = self.base.render(factors, base)
        out = noise.astype(np.float32)  # the reference adds in float64; the sum is exact where the sprite is 0
        for ch in range(3):  # per channel: see ColorDSprites.render
            out[..., ch] += gray[..., 0]
        return np.minimum(out, 1.0, out=out)


class Circles(GroundTruthData):
    """One anti-aliased white circle (diameter 0.2 of the canvas) at x, y ∈ [0.2, 0.8]; 64×64×1."""

    name = "circles"
    factor_names = ("x", "y")
    DIAMETER = 0.2

    def __init__(self, num_values: int = 40) -> None:
        if num_values < 2:
            raise ValueError(f"circles: num_values must be >= 2, got {num_values}")
        self.num_values = int(num_values)
        self.pos_values = np.linspace(0.2, 0.8, self.num_values)

    @property
    def factors_num_values(self) -> list[int]:
        return [self.num_values, self.num_values]

    @property
    def observation_shape(self) -> tuple[int, int, int]:
        return (64, 64, 1)

    @property
    def data_source(self) -> str:
        return f"procedural circles v1 ({self.num_values}x{self.num_values} positions)"

    def render(self, factors, nuisance=None):
        radius = np.float32(self.DIAMETER * _CANVAS / 2)
        cx = self.pos_values[factors[:, 0]] * _CANVAS
        cy = (1.0 - self.pos_values[factors[:, 1]]) * _CANVAS  # y points up, like Spriteworld

        ox, oy, dx, dy = _window(cx, cy, 18)
        dist = np.sqrt(dx * dx + dy * dy)
        win = np.clip(radius - dist + 0.5, 0.0, 1.0)  # linear coverage ramp over one pixel
        return _paste(ox, oy, win)[..., None]
