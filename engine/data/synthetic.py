"""Synthetic street scenes: procedurally drawn, deterministic from (seed, split, index), labels exact per pixel.

A scene is a road in perspective with lane markings (and sometimes a crossing), sidewalks with curbs and tiles,
terrain verges, facades with windows and shop fronts, hedges, fences, poles with signs, trees, people and cars,
under a sky with clouds and a distant skyline; then cast shadows, haze, exposure, tint and sensor noise. Each
part is a numpy mask over its bounding box (no per-pixel Python loops).

The small classes are sized to need capacity at the quickstart's 128x256: 2-7 people on the sidewalks within 25 m,
signs 0.45-0.7 m across, poles at least 2 pixels wide, a fence beside 7 sidewalks in 10. Trained as the quickstart
retrains its picks (700 steps), the wider networks learn person and sign and the smallest path misses them; poles
and fences stay below what any of them resolves at that size (BENCHMARKS.md, "Small classes that need capacity").

Geometry: a pinhole camera `cam` metres above flat ground with focal length `focal` pixels, horizon row
`horizon` and vanishing column `vx`. A ground point at depth Z and lateral position X (metres; X = 0 is the road
axis, the camera sits at X = `shift`) is drawn at row `horizon + focal * cam / Z` and column
`vx + focal * (X - shift) / Z`, where one metre spans `focal / Z` pixels. Objects are drawn far to near.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from engine.data.classes import SYNTHETIC_CLASSES
from engine.data.transforms import IGNORE_INDEX, eval_transform

SKY, BUILDING, ROAD, SIDEWALK, VEGETATION, TERRAIN, CAR, PERSON, POLE, SIGN, FENCE = range(len(SYNTHETIC_CLASSES))
MIN_SIZE = 16
CACHE_BYTES = 1 << 30  # rendered scenes kept per dataset: a scene is rendered once, not once an epoch
FAR = 150.0  # metres: nothing beyond is drawn but the skyline
_SEGMENTS = 65  # facade / hedge / gap segments per side, more than any view spans

_FACADES = np.array([[0.78, 0.72, 0.62], [0.62, 0.36, 0.28], [0.55, 0.55, 0.57], [0.85, 0.83, 0.78],
                     [0.70, 0.60, 0.45], [0.45, 0.42, 0.40], [0.80, 0.70, 0.55], [0.60, 0.66, 0.70]], np.float32)
_PAINTS = np.array([[0.8, 0.8, 0.82], [0.1, 0.1, 0.12], [0.6, 0.05, 0.05], [0.1, 0.2, 0.5], [0.5, 0.5, 0.52],
                    [0.9, 0.9, 0.9], [0.2, 0.35, 0.25], [0.75, 0.6, 0.2]], np.float32)
_SIGNS = np.array([[0.8, 0.1, 0.1], [0.1, 0.3, 0.75], [0.95, 0.8, 0.1], [0.1, 0.5, 0.25]], np.float32)
_SKINS = np.array([[0.9, 0.75, 0.6], [0.75, 0.55, 0.4], [0.45, 0.3, 0.2], [0.95, 0.82, 0.7]], np.float32)


def _rgb(values) -> np.ndarray:
    """An RGB colour shaped [3, 1, 1], to broadcast over the channel-first canvas."""
    return np.asarray(values, dtype=np.float32).reshape(3, 1, 1)


_WHITE = _rgb([0.95, 0.95, 0.92])


def _frac(values: np.ndarray) -> np.ndarray:
    return values - np.floor(values)


def _noise(rng: np.random.Generator, shape: tuple[int, int], cell: float) -> np.ndarray:
    """Smooth value noise in [0, 1]: a random grid of `cell`-pixel spacing, bilinearly upsampled."""
    grid = rng.random((int(shape[0] / cell) + 2, int(shape[1] / cell) + 2), dtype=np.float32)
    return np.asarray(Image.fromarray(grid).resize(shape[::-1], Image.Resampling.BILINEAR))


@dataclass(frozen=True)
class _Box:
    """A clipped pixel box with pixel-centre coordinates: `ys` a column, `xs` a row."""

    rows: slice
    cols: slice
    ys: np.ndarray
    xs: np.ndarray


class _Canvas:
    """The image (float RGB in [0, 1], channel-first so colours broadcast fast) and the label being drawn, with
    two texture noise fields."""

    def __init__(self, height: int, width: int, rng: np.random.Generator):
        self.height, self.width = height, width
        self.image = np.zeros((3, height, width), np.float32)
        self.label = np.full((height, width), SKY, np.uint8)
        self.fine = _noise(rng, (height, width), max(1.5, width / 300))
        self.coarse = _noise(rng, (height, width), max(6.0, width / 14))

    def box(self, top: float, bottom: float, left: float, right: float) -> _Box | None:
        y0, y1 = max(int(np.floor(top)), 0), min(int(np.ceil(bottom)), self.height)
        x0, x1 = max(int(np.floor(left)), 0), min(int(np.ceil(right)), self.width)
        if y0 >= y1 or x0 >= x1:
            return None
        return _Box(slice(y0, y1), slice(x0, x1), np.arange(y0, y1, dtype=np.float32)[:, None] + 0.5,
                    np.arange(x0, x1, dtype=np.float32)[None, :] + 0.5)

    def grain(self, box: _Box, amount: float) -> np.ndarray:
        """A multiplicative texture [h, w] around 1 from the fine noise."""
        return 1 + amount * (self.fine[box.rows, box.cols] - 0.5)

    def paint(self, box: _Box, mask: np.ndarray, colour: np.ndarray, cls: int | None = None) -> None:
        """Set the masked pixels to `colour` (broadcast to the box) and, unless None, their label to `cls`."""
        np.copyto(self.image[:, box.rows, box.cols], colour, where=mask, casting="unsafe")
        if cls is not None:
            np.copyto(self.label[box.rows, box.cols], cls, where=mask, casting="unsafe")

    def darken(self, box: _Box, mask: np.ndarray, factor: np.ndarray | float) -> None:
        region = self.image[:, box.rows, box.cols]
        np.multiply(region, factor, out=region, where=mask, casting="unsafe")


@dataclass(frozen=True)
class _Street:
    """Camera and street layout; per-side widths are indexed 0 = left, 1 = right."""

    horizon: float
    vx: float
    focal: float
    cam: float
    shift: float
    road: float
    walk: tuple[float, float]
    verge: tuple[float, float]
    lanes: int

    @classmethod
    def random(cls, rng: np.random.Generator, height: int, width: int) -> _Street:
        road = float(rng.uniform(3.0, 7.5))
        return cls(horizon=height * rng.uniform(0.34, 0.5), vx=width * rng.uniform(0.38, 0.62),
                   focal=width * rng.uniform(0.5, 0.8), cam=rng.uniform(1.4, 2.4),
                   shift=rng.uniform(-0.5, 0.5) * road, road=road,
                   walk=tuple(rng.uniform(1.2, 4.5, 2)), verge=tuple(rng.uniform(0, 5, 2) * (rng.random(2) < 0.6)),
                   lanes=int(rng.integers(1, 3)))

    def scale(self, z: float) -> float:
        return self.focal / z

    def row(self, z: float) -> float:
        return self.horizon + self.cam * self.focal / z

    def col(self, x: float, z: float) -> float:
        return self.vx + (x - self.shift) * self.focal / z

    def edge(self, side: int, name: str) -> float:
        """Lateral position of a side's sidewalk outer edge ('walk') or facade line ('facade')."""
        offset = self.road + self.walk[side] + (self.verge[side] if name == "facade" else 0.0)
        return offset if side else -offset


def _sky(canvas: _Canvas, street: _Street, rng: np.random.Generator) -> None:
    """Vertical gradient from zenith to horizon colour, with clouds from the coarse and fine noise."""
    zenith = _rgb(np.array([0.25, 0.45, 0.8]) * rng.uniform(0.7, 1.15) + rng.uniform(-0.08, 0.08, 3))
    low = _rgb(np.array([0.75, 0.82, 0.9]) + rng.uniform(-0.1, 0.1, 3))
    t = np.clip((np.arange(canvas.height, dtype=np.float32)[:, None] + 0.5) / street.horizon, 0, 1)
    gradient = zenith + (low - zenith) * t**0.7
    cover = np.float32(rng.uniform(0.35, 0.75))
    clouds = np.clip((canvas.coarse * 0.75 + canvas.fine * 0.25 - cover) * 4, 0, 1)
    cloud = _WHITE * np.float32(rng.uniform(0.75, 1.0)) * (0.85 + 0.15 * t)
    canvas.image[:] = gradient + (cloud - gradient) * clouds


def _skyline(canvas: _Canvas, street: _Street, rng: np.random.Generator) -> None:
    """Distant buildings along the horizon: a piecewise-constant height profile in hazy colours."""
    cuts = np.sort(rng.uniform(0, canvas.width, int(rng.integers(6, 20))))
    heights = rng.uniform(0, 0.12, len(cuts) + 1) * canvas.height * (rng.random(len(cuts) + 1) < 0.7)
    box = canvas.box(street.horizon - heights.max() - 1, street.horizon + 1, 0, canvas.width)
    if box is None:
        return
    profile = heights[np.searchsorted(cuts, box.xs[0])]
    tones = rng.uniform(0.55, 0.75, len(cuts) + 1)[np.searchsorted(cuts, box.xs[0])]
    colour = _rgb([0.85, 0.9, 1.0]) * tones * canvas.grain(box, 0.15)
    canvas.paint(box, box.ys >= street.horizon - profile, colour, BUILDING)


def _ground(canvas: _Canvas, street: _Street, rng: np.random.Generator) -> None:
    """Terrain, sidewalks with tiles and curbs, the road with markings, and building shadows across it."""
    box = canvas.box(street.horizon + 0.5, canvas.height, 0, canvas.width)
    if box is None:
        return
    metre = (box.ys - street.horizon) / street.cam
    z = street.focal / metre
    x = (box.xs - street.vx) / metre + street.shift
    ax = np.abs(x)
    grass = _rgb(np.array([0.35, 0.5, 0.2]) + rng.uniform(-0.08, 0.08, 3))
    dirt = _rgb([0.5, 0.42, 0.3])
    patches = canvas.coarse[box.rows, box.cols]
    canvas.paint(box, np.ones(ax.shape, bool), (grass + (dirt - grass) * patches) * canvas.grain(box, 0.8), TERRAIN)
    walk_edge = street.road + np.where(x < 0, street.walk[0], street.walk[1])
    walk = (ax >= street.road) & (ax < walk_edge)
    tile = np.float32(rng.uniform(0.4, 1.2))
    grout = (_frac(x / tile) < 0.07) | (_frac(z / tile) < 0.07)
    paving = _WHITE * rng.uniform(0.5, 0.8) * _rgb([1, rng.uniform(0.9, 1), rng.uniform(0.8, 1)])
    shade = np.where(grout, np.float32(0.8), np.float32(1)) * np.where(ax < street.road + 0.2, np.float32(1.15), 1)
    canvas.paint(box, walk, paving * (shade * canvas.grain(box, 0.3)), SIDEWALK)
    asphalt = _rgb(rng.uniform(0.25, 0.45) * np.array([1, 1, rng.uniform(1, 1.08)]))
    canvas.paint(box, ax < street.road, asphalt * (0.85 + 0.3 * patches) * canvas.grain(box, 0.35), ROAD)
    _markings(canvas, street, box, x, z, rng)
    _building_shadows(canvas, street, box, x, z, rng)


def _markings(canvas: _Canvas, street: _Street, box: _Box, x: np.ndarray, z: np.ndarray,
              rng: np.random.Generator) -> None:
    """Edge lines, dashed lane lines, a centre line and sometimes a zebra crossing (all still labelled road)."""
    width = rng.uniform(0.1, 0.16)
    dashes = _frac(z / rng.uniform(6, 12)) < rng.uniform(0.3, 0.6)
    lines = np.abs(np.abs(x) - (street.road - 0.3)) < width
    for k in range(1, street.lanes):
        lines |= (np.abs(np.abs(x) - street.road * k / street.lanes) < width) & dashes
    centre = np.abs(x) < width * (2.5 if rng.random() < 0.3 else 1)
    lines |= centre & (dashes | (rng.random() < 0.4))
    if rng.random() < 0.3:
        start = rng.uniform(8, 30)
        lines |= (z > start) & (z < start + 3) & (_frac(x / 0.6) < 0.5)
    paint = _WHITE * rng.uniform(0.75, 1.0) if rng.random() < 0.8 else _rgb([0.9, 0.75, 0.2])
    canvas.paint(box, lines & (np.abs(x) < street.road), paint * canvas.grain(box, 0.3))


def _building_shadows(canvas: _Canvas, street: _Street, box: _Box, x: np.ndarray, z: np.ndarray,
                      rng: np.random.Generator) -> None:
    """Shadows of buildings on one side: bands across the ground whose edges follow the street."""
    if rng.random() < 0.3:
        return
    side = 1 if rng.random() < 0.5 else -1
    reach = rng.uniform(-street.road, street.road + 4)
    period, duty, phase = rng.uniform(10, 40), rng.uniform(0.4, 0.9), rng.uniform(0, 40)
    shadow = (side * x > -reach + 0.15 * z) & (_frac((z + phase) / period) < duty)
    canvas.darken(box, shadow, _rgb([0.5, 0.55, 0.68]) * rng.uniform(0.8, 1.2))


def _side(canvas: _Canvas, street: _Street, side: int, rng: np.random.Generator) -> None:
    """One side's facades, hedges and gaps, as segments along depth seen through the facade line's columns."""
    facade = street.edge(side, "facade")
    xs = np.arange(canvas.width, dtype=np.float32) + 0.5
    metre = (xs - street.vx) / (facade - street.shift)
    columns = np.flatnonzero(metre > street.focal / FAR)
    if columns.size == 0:
        return
    metre = metre[columns]
    z = street.focal / metre
    cuts = np.cumsum(rng.uniform(6, 30, _SEGMENTS - 1)) + z.min() - rng.uniform(0, 20)
    kinds = rng.choice([BUILDING, VEGETATION, -1], size=_SEGMENTS, p=[0.65, 0.22, 0.13])
    heights = np.where(kinds == BUILDING, rng.uniform(6, 28, _SEGMENTS), rng.uniform(1.5, 7, _SEGMENTS))
    segment = np.searchsorted(cuts, z)
    base = street.horizon + street.cam * metre
    bump = np.where(kinds[segment] == VEGETATION, 0.7 + 0.6 * canvas.coarse[0, columns], 1.0)
    top = base - heights[segment] * metre * bump
    box = canvas.box(top.min(), base.max(), columns.min(), columns.max() + 1)
    if box is None:
        return
    inside = (box.ys >= top) & (box.ys < base)
    height = (base - box.ys) / metre
    start = np.concatenate([[z.min() - 30], cuts])[segment]
    _facades(canvas, box, inside & (kinds[segment] == BUILDING), height, z - start, segment, rng)
    green = _rgb([0.18, 0.38, 0.12]) * rng.uniform(0.7, 1.3)
    canvas.paint(box, inside & (kinds[segment] == VEGETATION), green * canvas.grain(box, 1.4), VEGETATION)


def _facades(canvas: _Canvas, box: _Box, mask: np.ndarray, height: np.ndarray, along: np.ndarray,
             segment: np.ndarray, rng: np.random.Generator) -> None:
    """Facade colours per segment, storeys of windows in perspective, and a darker shop-front floor."""
    n = _SEGMENTS
    colours = _FACADES[rng.integers(0, len(_FACADES), n)] * rng.uniform(0.75, 1.15, (n, 1)).astype(np.float32)
    storey, spacing = rng.uniform(2.8, 3.6, n)[segment], rng.uniform(2.0, 4.0, n)[segment]
    sill, width = rng.uniform(0.7, 1.1, n)[segment], rng.uniform(0.35, 0.7, n)[segment]
    canvas.paint(box, mask, colours[segment].T[:, None, :] * canvas.grain(box, 0.25), BUILDING)
    level = _frac(height / storey) * storey
    windows = mask & (height > 3.5) & (level > sill) & (level < sill + 1.4) & (_frac(along / spacing) < width)
    glass = _rgb([0.2, 0.25, 0.32]) * (0.6 + 0.9 * canvas.coarse[box.rows, box.cols])
    canvas.paint(box, windows, glass)
    canvas.darken(box, mask & (height < 3.0) & (height > 0.3), rng.uniform(0.45, 0.8))


def _fence(canvas: _Canvas, street: _Street, side: int, rng: np.random.Generator) -> None:
    """A fence along a sidewalk's outer edge over a depth range: posts and rails, or mesh, or boards."""
    line = street.edge(side, "walk") + (0.05 if side else -0.05)
    near, far = street.focal * street.cam / (canvas.height - street.horizon), rng.uniform(15, 80)
    start = rng.uniform(near, far)
    rise = rng.uniform(1.2, 2.2)
    top_row = street.row(start) - rise * street.scale(start)
    left, right = sorted((street.col(line, start), street.col(line, far)))
    box = canvas.box(top_row, street.row(start), left, right + 1)
    if box is None:
        return
    metre = np.maximum((box.xs - street.vx) / (line - street.shift), 1e-6)
    z = street.focal / metre
    height = (street.horizon + street.cam * metre - box.ys) / metre
    span = (z >= start) & (z <= far) & (height >= 0) & (height < rise)
    style = rng.integers(0, 3)
    if style == 0:
        posts, rails = rng.uniform(2, 3.5), rng.uniform(0.35, 0.6)
        bars = (_frac(z / posts) * posts < 0.25) | (_frac(height / rails) * rails < 0.1) | (height > rise - 0.12)
    elif style == 1:
        bars = (_frac((height + z) / 0.3) < 0.17) | (_frac((height - z) / 0.3) < 0.17) | (_frac(z / 2.5) < 0.04)
    else:
        bars = _frac(z / 0.25) < 0.8
    colour = _rgb([[0.35, 0.38, 0.36], [0.55, 0.4, 0.25], [0.2, 0.3, 0.22]][int(rng.integers(0, 3))])
    colour = colour * rng.uniform(0.8, 1.3)
    canvas.paint(box, span & bars, colour * canvas.grain(box, 0.3), FENCE)


def _local(canvas: _Canvas, street: _Street, x: float, z: float, half: float, rise: float,
           below: float = 0.0) -> tuple[_Box, np.ndarray, np.ndarray] | None:
    """The box around an upright object at ground point (x, z), with metre coordinates: u lateral, a height."""
    metre, row, col = street.scale(z), street.row(z), street.col(x, z)
    box = canvas.box(row - rise * metre, row + below * metre, col - half * metre, col + half * metre + 1)
    if box is None:
        return None
    return box, (box.xs - col) / metre, (row - box.ys) / metre


def _car(canvas: _Canvas, street: _Street, x: float, z: float, rng: np.random.Generator) -> None:
    """A car seen from behind or ahead: shadow, body, tapered cabin with glass, lights, plate and wheels."""
    half, rise = rng.uniform(0.8, 1.0), rng.uniform(1.35, 2.0)
    belt = rise * rng.uniform(0.5, 0.6)
    local = _local(canvas, street, x, z, half * 1.1, rise, below=0.15)
    if local is None:
        return
    box, u, a = local
    au = np.abs(u)
    canvas.darken(box, (a < 0.05) & (a > -0.15) & (au < half * 1.05), 0.35)
    taper = half * (1 - 0.25 * np.clip((a - belt) / (rise - belt), 0, 1)) - 0.05
    body = (au < half) & (a >= 0.2) & (a < belt)
    cabin = (a >= belt) & (a < rise) & (au < taper)
    paint = _rgb(_PAINTS[rng.integers(0, len(_PAINTS))]) * rng.uniform(0.8, 1.15)
    canvas.paint(box, body | cabin, paint * (0.8 + 0.3 * np.clip(a / rise, 0, 1)), CAR)
    canvas.darken(box, body & (a < 0.45), 0.55)
    canvas.paint(box, cabin & (a > belt + 0.08) & (a < rise - 0.08) & (au < taper - 0.1),
                 _rgb([0.12, 0.15, 0.2]) * (1 + 0.8 * canvas.coarse[box.rows, box.cols]))
    lights = body & (au > half - 0.3) & (a > belt - 0.25) & (a < belt - 0.08)
    canvas.paint(box, lights, _rgb([0.85, 0.1, 0.08]) if rng.random() < 0.7 else _WHITE)
    canvas.paint(box, (au < 0.26) & (a > 0.3) & (a < 0.42), _WHITE)
    canvas.paint(box, (au > half - 0.42) & (au < half - 0.05) & (a >= 0) & (a < 0.5),
                 _rgb([0.05, 0.05, 0.06]), CAR)


def _person(canvas: _Canvas, street: _Street, x: float, z: float, rng: np.random.Generator) -> None:
    """A pedestrian: legs, torso, arms, head with hair, in random clothes and skin tones."""
    tall = rng.uniform(1.45, 1.95)
    local = _local(canvas, street, x, z, 0.35, tall * 1.02)
    if local is None:
        return
    box, u, a = local
    hip, shoulder = 0.47 * tall, 0.8 * tall
    spread = rng.uniform(0, 0.12) * np.clip(1 - a / hip, 0, 1)
    legs = (a >= 0) & (a < hip) & (np.abs(np.abs(u) - 0.08 - spread) < 0.07)
    torso = (a >= hip) & (a < shoulder) & (np.abs(u) < 0.2)
    arms = (a > 0.5 * tall) & (a < shoulder) & (np.abs(u) >= 0.2) & (np.abs(u) < 0.27)
    head = (u / 0.095) ** 2 + ((a - 0.9 * tall) / 0.11) ** 2 < 1
    neck = (a >= shoulder) & (a < 0.85 * tall) & (np.abs(u) < 0.05)
    trousers, shirt = (_rgb(rng.uniform(0.05, 0.85, 3)) for _ in range(2))
    canvas.paint(box, legs, trousers * canvas.grain(box, 0.3), PERSON)
    canvas.paint(box, torso | arms, shirt * canvas.grain(box, 0.3), PERSON)
    canvas.paint(box, head | neck, _rgb(_SKINS[rng.integers(0, len(_SKINS))]), PERSON)
    canvas.paint(box, head & (a > 0.93 * tall), rng.uniform(0.05, 0.5) * _rgb([1, 0.8, 0.6]))


def _pole(canvas: _Canvas, street: _Street, x: float, z: float, rng: np.random.Generator) -> None:
    """A pole, often carrying a round, square or diamond sign with a border."""
    rise, size = rng.uniform(3.0, 7.0), rng.uniform(0.45, 0.7)
    local = _local(canvas, street, x, z, size, rise + size)
    if local is None:
        return
    box, u, a = local
    thick = max(0.1, 1.0 / street.scale(z))
    canvas.paint(box, (np.abs(u) < thick) & (a >= 0) & (a < rise),
                 _rgb([0.45, 0.46, 0.48]) * rng.uniform(0.6, 1.3) * (1.2 - u / thick * 0.3), POLE)
    if rng.random() < 0.2:
        return
    centre = rng.uniform(2.2, rise - 0.2)
    du, da = np.abs(u), np.abs(a - centre)
    shape = [du**2 + da**2, np.maximum(du, da) ** 2, (du + da) ** 2 / 1.6][int(rng.integers(0, 3))]
    outer = _rgb(_SIGNS[rng.integers(0, len(_SIGNS))])
    inner = _WHITE if rng.random() < 0.6 else _rgb(_SIGNS[0])
    canvas.paint(box, shape < size**2, outer, SIGN)
    canvas.paint(box, shape < (0.7 * size) ** 2, inner * rng.uniform(0.8, 1.0), SIGN)


def _tree(canvas: _Canvas, street: _Street, x: float, z: float, rng: np.random.Generator) -> None:
    """A tree: trunk and a crown with a noisy outline, shaded darker below; a shadow at its foot."""
    trunk, radius = rng.uniform(1.5, 3.5), rng.uniform(1.2, 3.0)
    tall = rng.uniform(0.9, 1.4) * radius
    local = _local(canvas, street, x, z, radius * 1.3, trunk + 2.2 * tall, below=0.3)
    if local is None:
        return
    box, u, a = local
    canvas.darken(box, (u / radius) ** 2 + ((a + 0.1) / 0.2) ** 2 < 1, 0.6)
    canvas.paint(box, (np.abs(u) < 0.14) & (a >= 0) & (a < trunk + tall),
                 _rgb([0.35, 0.25, 0.15]) * canvas.grain(box, 0.5), VEGETATION)
    centre = trunk + tall * 0.9
    fine = canvas.fine[box.rows, box.cols]
    crown = (u / radius) ** 2 + ((a - centre) / tall) ** 2 < (0.7 + 0.5 * fine) ** 2
    leaves = _rgb(np.array([0.2, 0.42, 0.15]) * rng.uniform(0.7, 1.3) + rng.uniform(-0.05, 0.05, 3))
    light = 0.75 + 0.35 * np.clip((a - centre) / tall, -1, 1)
    canvas.paint(box, crown, leaves * light * canvas.grain(box, 1.5), VEGETATION)


def _objects(street: _Street, height: int, rng: np.random.Generator) -> list[tuple[float, Callable, float]]:
    """(depth, draw function, lateral position) for the scene's cars, people, poles and trees."""
    near = street.focal * street.cam / (height - street.horizon)
    placed = []

    def add(draw: Callable, count: int, lateral: Callable[[int], float], far: float) -> None:
        for _ in range(count):
            side = int(rng.integers(0, 2))
            placed.append((float(rng.uniform(near * 1.05, far)), draw, lateral(side)))

    def on_walk(side: int) -> float:
        offset = street.road + street.walk[side] * rng.uniform(0.15, 0.9)
        return offset if side else -offset

    add(_car, int(rng.integers(1, 7)), lambda side: rng.uniform(-1, 1) * (street.road - 1.1), 70)
    add(_person, int(rng.integers(2, 8)), on_walk, 25)
    add(_person, int(rng.random() < 0.25), lambda side: rng.uniform(-1, 1) * street.road, 30)
    add(_pole, int(rng.integers(1, 5)), on_walk, 35)
    add(_tree, int(rng.integers(0, 5)), on_walk, 60)
    return sorted(placed, key=lambda item: -item[0])


def _finish(canvas: _Canvas, street: _Street, rng: np.random.Generator) -> np.ndarray:
    """Haze near the horizon, exposure, tint, a side-light gradient and sensor noise -> uint8 RGB."""
    rows = np.arange(canvas.height, dtype=np.float32)[:, None]
    haze = np.float32(rng.uniform(0, 0.45)) * np.exp(-np.abs(rows - street.horizon) / (0.12 * canvas.height))
    gain = _rgb(rng.uniform(0.6, 1.25) * (1 + rng.uniform(-0.08, 0.08, 3)))
    slope = np.float32(rng.uniform(-0.3, 0.3)) * (np.arange(canvas.width, dtype=np.float32) / canvas.width - 0.5)
    light = (1 + slope) * gain * 255
    image = canvas.image * ((1 - haze) * light) + _rgb([0.8, 0.82, 0.85]) * (haze * light)
    image += (rng.random(image.shape, dtype=np.float32) - 0.5) * np.float32(rng.uniform(4, 30))
    return np.ascontiguousarray(np.clip(image + 0.5, 0, 255).astype(np.uint8).transpose(1, 2, 0))


def render_street(size: tuple[int, int], seed: int | tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """One scene of `size` (H, W) from `seed`: RGB uint8 [H, W, 3] and class labels uint8 [H, W]."""
    height, width = size
    if min(height, width) < MIN_SIZE:
        raise ValueError(f"synthetic scenes need at least {MIN_SIZE}x{MIN_SIZE} pixels, got {height}x{width}")
    rng = np.random.default_rng(seed)
    canvas = _Canvas(height, width, rng)
    street = _Street.random(rng, height, width)
    _sky(canvas, street, rng)
    _skyline(canvas, street, rng)
    _ground(canvas, street, rng)
    for side in (0, 1):
        _side(canvas, street, side, rng)
        if rng.random() < 0.7:
            _fence(canvas, street, side, rng)
    for z, draw, x in _objects(street, height, rng):
        draw(canvas, street, x, z, rng)
    return _finish(canvas, street, rng), canvas.label


class SyntheticStreets(Dataset):
    """`count` synthetic street scenes of `size` (H, W); scene i of a split is `render_street(size, (seed,
    crc32(split), i))`, so the same seed gives identical samples and splits never share scenes. Rendered scenes
    are kept (read-only) up to CACHE_BYTES, so training renders each scene once rather than once an epoch."""

    class_names = SYNTHETIC_CLASSES
    num_classes = len(SYNTHETIC_CLASSES)
    ignore_index = IGNORE_INDEX

    def __init__(self, size: tuple[int, int] = (256, 512), count: int = 1000, seed: int = 0,
                 transform: Callable | None = None, split: str = "train"):
        if count < 1:
            raise ValueError(f"synthetic dataset count must be positive, got {count}")
        if min(size) < MIN_SIZE:
            raise ValueError(f"synthetic scenes need at least {MIN_SIZE}x{MIN_SIZE} pixels, got {list(size)}")
        self.size = (int(size[0]), int(size[1]))
        self.count, self.seed, self.split = count, seed, split
        self.transform = eval_transform() if transform is None else transform
        self._scenes: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def __len__(self) -> int:
        return self.count

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """The raw scene: RGB uint8 [H, W, 3] and labels uint8 [H, W], before the transform."""
        if not -self.count <= index < self.count:
            raise IndexError(f"scene {index} of a synthetic dataset of {self.count}")
        index %= self.count
        scene = self._scenes.get(index)
        if scene is None:
            scene = render_street(self.size, (self.seed, zlib.crc32(self.split.encode()), index))
            for array in scene:
                array.setflags(write=False)
            if (len(self._scenes) + 1) * sum(array.nbytes for array in scene) <= CACHE_BYTES:
                self._scenes[index] = scene
        return scene

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.transform(*self.load(index))
