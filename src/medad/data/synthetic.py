"""Embedded synthetic datasets: brain MRI-like and chest X-ray-like images with planted anomalies.

medad is useful without any download: these generators draw small, medical-looking grayscale images
whose normal anatomy varies from image to image (shape, size, position, rotation, intensity,
contrast, bias field, noise) and whose abnormal images are a normal anatomy plus planted lesions
with exact pixel masks:

- ``brain``: an axial FLAIR-like slice (bright scalp, dark skull and CSF, cortex with sulci, white
  matter, lateral ventricles, deep grey matter); anomalies are tumour-like hyperintense blobs,
  sometimes with a darker necrotic core and an oedema halo, with a slight mass effect when large.
  The mask covers the lesion and its oedema, inside the brain only.
- ``chest``: a frontal radiograph-like projection (body soft tissue, dark lungs, mediastinum and
  heart shadow, spine, posterior and anterior ribs, clavicles, diaphragm domes, gastric bubble,
  vascular markings, film grain); anomalies are opacities (consolidation-like patches and nodules),
  inside the lungs only. The mask covers the opacity.

Every image has its own random generators, seeded from ``(seed, kind, stream, index, part)``, so an
image does not depend on how many images are generated, and streams (train normals, test normals,
test abnormals) never share an image. ``part`` separates the anatomy, lesion and acquisition draws:
an abnormal image is the normal image of the same ``(seed, stream, index)`` plus lesions, which
keeps the difference between the two confined to the lesions (and their mass effect).

``difficulty`` (0 to 1, default 0.5) sets how conspicuous lesions are: each step of 0.5 halves
(harder) or doubles (easier) the lesion contrast and shrinks or grows the largest lesions by √2.

Everything is computed in float32 with closed-form shapes and separable smooth noise, so that
600 images of 128×128 take a few seconds on two cores.
"""

from __future__ import annotations

import contextlib
import functools
import math
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from scipy import ndimage

from medad.data.base import SPLITS, DatasetSource, Record, Split, register_dataset
from medad.errors import MedadError

#: bump when a change alters any generated pixel (it is part of the dataset fingerprint)
GENERATOR_VERSION = 1

Kind = Literal["brain", "chest"]
_KIND_CODES: dict[str, int] = {"brain": 1, "chest": 2}
#: the streams `SyntheticDataset` draws its parts from
TRAIN_STREAM, TEST_NORMAL_STREAM, TEST_ABNORMAL_STREAM = 0, 1, 2
#: `part` of an image's seed: anatomy, lesions and acquisition draw from separate generators
_PARTS = (_ANATOMY, _LESION, _ACQUISITION) = (0, 1, 2)

_Rngs = tuple[np.random.Generator, np.random.Generator, np.random.Generator]


# --------------------------------------------------------------------------------------------
# Shared pieces: the pixel grid, smooth noise, soft shapes, irregular blobs, acquisition
# --------------------------------------------------------------------------------------------


@functools.cache
def _noise_basis(size: int, cells: int) -> np.ndarray:
    """(size, cells) Gaussian interpolation weights, normalised to unit output variance."""
    centres = np.linspace(-1.15, 1.15, cells)
    spacing = centres[1] - centres[0]
    pos = (np.arange(size) + 0.5) / size * 2.0 - 1.0
    w = np.exp(-0.5 * ((pos[:, None] - centres[None, :]) / (0.75 * spacing)) ** 2)
    return (w / np.sqrt((w**2).sum(axis=1, keepdims=True))).astype(np.float32)


class _Grid:
    """Pixel-centre coordinates in [-1, 1] (x to the right, y down), float32."""

    def __init__(self, size: int) -> None:
        self.size = size
        centres = ((np.arange(size) + 0.5) / size * 2.0 - 1.0).astype(np.float32)
        self.x = centres[None, :]
        self.y = centres[:, None]
        #: one pixel in normalised units
        self.px = 2.0 / size
        #: blur sigmas are chosen for 128 px images and scaled with the size
        self.scale = size / 128.0

    def pixel(self, t: float) -> int:
        """Index of the pixel (row or column) holding coordinate `t`, clipped to the image."""
        return min(max(int((t + 1.0) / self.px), 0), self.size - 1)

    def noise(self, rng: np.random.Generator, cells: int) -> np.ndarray:
        """A smooth zero-mean, unit-variance random field with about `cells` bumps per side.

        ``B @ G @ B.T`` for a `cells`² white-noise grid G: a separable Gaussian interpolation that
        costs two small matrix products instead of a full-size filter.
        """
        b = _noise_basis(self.size, cells)
        return b @ rng.standard_normal((cells, cells), dtype=np.float32) @ b.T


@functools.cache
def _grid(size: int) -> _Grid:
    return _Grid(size)


_ZERO, _ONE = np.float32(0.0), np.float32(1.0)  # float32 bounds keep np.clip on its fast path


def _inside(signed: np.ndarray, width: float) -> np.ndarray:
    """Soft indicator of ``signed > 0`` with a linear edge `width` wide (area anti-aliasing)."""
    out = signed * (1.0 / width) + 0.5
    return np.clip(out, _ZERO, _ONE, out=out)


def _bump(z2: np.ndarray) -> np.ndarray:
    """``exp(-z2)``, with `z2` capped so that far tails stay off exp's slow underflow path."""
    return np.exp(-np.minimum(z2, np.float32(30.0)))


def _lerp(a: Any, b: Any, t: Any) -> Any:
    return a + (b - a) * t


def _angle(y: np.ndarray, x: np.ndarray) -> np.ndarray:
    """``arctan2(y, x)`` to within 2e-4 rad, several times faster than NumPy's (octant reduction
    and a minimax polynomial for atan on [0, 1])."""
    ax, ay = np.abs(x), np.abs(y)
    a = np.minimum(ax, ay) / np.maximum(np.maximum(ax, ay), 1e-12)
    s = a * a
    r = (((-0.0464964749 * s + 0.15931422) * s - 0.327622764) * s) * a + a
    r = np.where(ay > ax, np.pi / 2 - r, r)
    r = np.where(x < 0, np.pi - r, r)
    return np.copysign(r, y)


def _outline(
    cos1: np.ndarray, sin1: np.ndarray, amps: tuple[float, ...], phases: tuple[float, ...]
) -> np.ndarray:
    """``1 + Σ_k amps[k] cos(kθ + phases[k])`` for k = 2, 3, … from cos θ and sin θ alone
    (Chebyshev recurrence instead of an arctan and one cosine per harmonic)."""
    c_prev, s_prev, c_k, s_k = 1.0, 0.0, cos1, sin1
    out = 1.0
    for amp, phase in zip(amps, phases, strict=True):
        c_prev, s_prev, c_k, s_k = c_k, s_k, 2 * cos1 * c_k - c_prev, 2 * cos1 * s_k - s_prev
        out = out + (amp * math.cos(phase)) * c_k - (amp * math.sin(phase)) * s_k
    return out


def _floats(values: np.ndarray) -> tuple[float, ...]:
    return tuple(float(v) for v in values)


@dataclass(frozen=True)
class _Blob:
    """An irregular, anisotropic blob; its normalised distance is 1 on the outline."""

    cx: float
    cy: float
    radius: float
    aspect: float
    angle: float
    amps: tuple[float, ...]  # outline harmonics 2..5
    phases: tuple[float, ...]

    @staticmethod
    def draw(
        rng: np.random.Generator, cx: float, cy: float, radius: float, irregularity: float
    ) -> _Blob:
        return _Blob(
            cx=cx,
            cy=cy,
            radius=radius,
            aspect=float(rng.uniform(0.65, 1.0)),
            angle=float(rng.uniform(0.0, np.pi)),
            amps=_floats(rng.normal(0.0, irregularity, 4) / np.arange(2, 6)),
            phases=_floats(rng.uniform(0.0, 2.0 * np.pi, 4)),
        )

    def window(self, grid: _Grid, reach: float) -> tuple[slice, slice]:
        """Rows and columns within `reach` radii of the centre (where the blob can matter);
        never empty: the pixel holding the centre is always in."""
        half = reach * self.radius
        rows = slice(grid.pixel(self.cy - half), grid.pixel(self.cy + half) + 1)
        cols = slice(grid.pixel(self.cx - half), grid.pixel(self.cx + half) + 1)
        return rows, cols

    def outline(self, grid: _Grid, rows: slice, cols: slice) -> np.ndarray:
        """Pixels of the window (`rows`, `cols`) inside the outline, the pixel holding the
        centre always included, so that a lesion thinner than a pixel still has a mask."""
        inside = self.distance(grid.x[:, cols], grid.y[rows, :]) < 1.0
        inside[grid.pixel(self.cy) - rows.start, grid.pixel(self.cx) - cols.start] = True
        return inside

    def distance(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Normalised distance: < 1 inside the blob, growing outwards."""
        dx, dy = x - self.cx, y - self.cy
        c, s = math.cos(self.angle), math.sin(self.angle)
        u = (c * dx + s * dy) * (1.0 / self.radius)
        v = (c * dy - s * dx) * (1.0 / (self.radius * self.aspect))
        r = np.sqrt(u * u + v * v) + 1e-6
        return r / np.maximum(_outline(u / r, v / r, self.amps, self.phases), 0.4)


def _lesion_count(rng: np.random.Generator) -> int:
    """One lesion in 70 % of abnormal images, two in the rest."""
    return 1 if rng.uniform() < 0.7 else 2


def _conspicuity(difficulty: float) -> float:
    """Contrast multiplier: 1 at the default difficulty 0.5, ×2 at 0 (easy), ×0.5 at 1 (hard)."""
    return float(2.0 ** (1.0 - 2.0 * difficulty))


def _log_uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(np.exp(rng.uniform(np.log(lo), np.log(hi))))


@dataclass(frozen=True)
class _Sample:
    """One rendered image: float image in [0, 1], lesion mask, region lesions are confined to."""

    image: np.ndarray
    mask: np.ndarray
    region: np.ndarray


def _acquire(grid: _Grid, signal: np.ndarray, rng: np.random.Generator, *, mri: bool) -> np.ndarray:
    """Partial-volume blur, smooth multiplicative bias field, gain and gamma, noise → [0, 1].

    MRI magnitude images get Rician noise (the modulus of a complex signal with Gaussian noise,
    hence a noisy dark background); radiographs get slightly correlated film grain.
    """
    x, y = grid.x, grid.y
    c = _floats(rng.normal(0.0, [0.08, 0.08, 0.04, 0.04, 0.04]))
    bias = np.exp(c[0] * x + c[1] * y + c[2] * x * x + c[3] * y * y + c[4] * x * y)
    gain = float(rng.uniform(0.88, 1.05))
    gamma = float(rng.uniform(0.9, 1.1))
    sigma = float(rng.uniform(0.008, 0.03))
    out = ndimage.gaussian_filter(signal * bias, 0.55 * grid.scale)
    out = gain * np.exp(gamma * np.log(np.maximum(out, 1e-6)))
    n1 = rng.standard_normal(out.shape, dtype=np.float32)
    if mri:
        n2 = rng.standard_normal(out.shape, dtype=np.float32)
        out = out + sigma * n1
        out = np.sqrt(out * out + (sigma * n2) ** 2)
    else:
        out = out + (1.6 * sigma) * ndimage.uniform_filter(n1, 2)
    return np.clip(out, 0.0, 1.0)


# --------------------------------------------------------------------------------------------
# Brain MRI (axial FLAIR-like slice)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Head:
    """Head pose and shape: the head frame (p, q) is 1 on the scalp, q < 0 anterior (up)."""

    cx: float
    cy: float
    angle: float
    a: float  # left-right semi-axis (normalised image units)
    b: float  # anterior-posterior semi-axis
    egg: float  # the back of the head is wider than the front
    amps: tuple[float, ...]  # outline harmonics 2..4
    phases: tuple[float, ...]

    def frame(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        dx, dy = x - self.cx, y - self.cy
        c, s = math.cos(self.angle), math.sin(self.angle)
        q = (c * dy - s * dx) * (1.0 / self.b)
        p = (c * dx + s * dy) / (self.a * (1.0 + self.egg * q))
        return p, q

    def to_image(self, p: float, q: float) -> tuple[float, float]:
        """Inverse of `frame` for one point."""
        u, v = p * self.a * (1.0 + self.egg * q), q * self.b
        c, s = math.cos(self.angle), math.sin(self.angle)
        return float(self.cx + c * u - s * v), float(self.cy + s * u + c * v)


@dataclass(frozen=True)
class _BrainAnatomy:
    head: _Head
    scalp: float  # layer thicknesses, in head-radius units
    bone: float
    csf: float
    n_gyri: int
    gyri_phase: float
    #: per sulcus (main, secondary) depth and width, tiled three times so that the sulcus index
    #: plus `n_gyri` addresses it without a modulo whatever the warp
    sulcus_depth: np.ndarray
    sulcus_depth2: np.ndarray
    sulcus_width: np.ndarray
    vent_scale: float
    vent_asym: tuple[float, ...]
    vent_spread: float
    vent_length: float
    i_scalp: float
    i_bone: float
    i_csf: float
    i_gm: float
    i_wm: float
    i_deep: float
    tex: np.ndarray  # smooth tissue texture
    warp: np.ndarray  # bends the sulci
    bend: np.ndarray  # tilts them with depth
    depth: np.ndarray  # sulcal depth variation
    scalp_tex: np.ndarray

    @property
    def edge(self) -> float:
        """Brain surface radius, in head-radius units."""
        return 1.0 - self.scalp - self.bone - self.csf


def _draw_brain_anatomy(grid: _Grid, rng: np.random.Generator) -> _BrainAnatomy:
    a = float(rng.uniform(0.6, 0.72))
    head = _Head(
        cx=float(rng.normal(0.0, 0.035)),
        cy=float(rng.normal(0.0, 0.035)),
        angle=float(rng.normal(0.0, 0.1)),
        a=a,
        b=float(min(a * rng.uniform(1.15, 1.3), 0.9)),
        egg=float(rng.uniform(0.02, 0.09)),
        amps=_floats(rng.normal(0.0, 0.012, 3)),
        phases=_floats(rng.uniform(0.0, 2.0 * np.pi, 3)),
    )
    n_gyri = int(rng.integers(24, 32))
    i_gm = float(rng.uniform(0.5, 0.6))
    return _BrainAnatomy(
        head=head,
        scalp=float(rng.uniform(0.05, 0.08)),
        bone=float(rng.uniform(0.035, 0.055)),
        csf=float(rng.uniform(0.012, 0.03)),
        n_gyri=n_gyri,
        gyri_phase=float(rng.uniform(0.0, 1.0)),
        sulcus_depth=np.tile(rng.uniform(0.03, 0.15, n_gyri).astype(np.float32), 3),
        sulcus_depth2=np.tile(rng.uniform(-0.04, 0.08, n_gyri).astype(np.float32), 3),
        sulcus_width=np.tile(rng.uniform(0.3, 0.8, n_gyri).astype(np.float32), 3),
        vent_scale=float(np.clip(rng.lognormal(0.0, 0.25), 0.6, 1.8)),
        vent_asym=_floats(rng.normal(1.0, 0.08, 2)),
        vent_spread=float(rng.uniform(0.7, 1.1)),
        vent_length=float(rng.uniform(0.85, 1.1)),
        i_scalp=float(rng.uniform(0.7, 0.9)),
        i_bone=float(rng.uniform(0.03, 0.08)),
        i_csf=float(rng.uniform(0.06, 0.14)),
        i_gm=i_gm,
        i_wm=float(i_gm * rng.uniform(0.7, 0.82)),
        i_deep=float(rng.uniform(0.2, 0.55)),
        tex=grid.noise(rng, 14),
        warp=grid.noise(rng, 12),
        bend=grid.noise(rng, 8),
        depth=grid.noise(rng, 12),
        scalp_tex=grid.noise(rng, 18),
    )


def _ventricles(an: _BrainAnatomy, p: np.ndarray, q: np.ndarray, soft: float) -> np.ndarray:
    """Two lateral ventricles in a butterfly: closest at the septum, frontal horns and atria
    diverging, rounded ends."""
    out = None
    length = 0.4 * an.vent_length
    for side, asym in zip((-1.0, 1.0), an.vent_asym, strict=True):
        ps = side * p
        centre = 0.05 + an.vent_spread * 0.7 * (q + 0.02) ** 2
        frontal = _bump(((q + 0.27 * an.vent_length) * (1 / 0.12)) ** 2)
        atrium = _bump(((q - 0.24 * an.vent_length) * (1 / 0.1)) ** 2)
        width = (an.vent_scale * asym) * (0.02 + 0.045 * frontal + 0.045 * atrium)
        taper = 1.0 - ((q + 0.02) * (1.0 / length)) ** 2  # negative beyond the ends
        inside = _inside(width * taper - np.abs(ps - centre), soft)
        out = inside if out is None else np.maximum(out, inside)
    assert out is not None
    return out


def _brain_tissue(
    an: _BrainAnatomy, p: np.ndarray, q: np.ndarray, r: np.ndarray, theta: np.ndarray, px: float
) -> np.ndarray:
    """FLAIR intensities inside the brain: cortex and sulci, white matter, ventricles, nuclei."""
    depth = an.edge - r
    # sulci: dark CSF clefts at irregular angles and depths, bent by a smooth warp
    phase = (an.n_gyri / (2.0 * np.pi)) * (theta + 0.2 * an.warp + 0.6 * depth * an.bend)
    phase = phase + an.gyri_phase
    nearest = np.round(phase)
    idx = nearest.astype(np.int32) + an.n_gyri
    to_main = np.abs(phase - nearest)  # 0 on a main sulcus, 0.5 half-way between two
    arc_unit = (2.0 * np.pi / an.n_gyri) * r
    arc = to_main * arc_unit
    arc2 = (0.5 - to_main) * arc_unit  # secondary, shallower sulci half-way between
    jitter = 0.025 * an.depth
    depth1 = np.take(an.sulcus_depth, idx, mode="clip") + jitter
    depth2 = np.take(an.sulcus_depth2, idx, mode="clip") + jitter
    width = np.take(an.sulcus_width, idx, mode="clip") * px
    sulcus = np.maximum(
        _inside(width - arc, px) * _inside(depth1 - depth, 2 * px),
        _inside(0.7 * width - arc2, px) * _inside(depth2 - depth, 2 * px),
    )
    # grey matter lines the surface and the sulci
    cortex = 0.05
    gm = np.maximum(
        _inside(cortex - depth, 1.5 * px),
        _inside(0.8 * cortex - arc, 1.5 * px) * _inside(depth1 + cortex - depth, 1.5 * px),
    )
    # interhemispheric fissure in front of and behind the ventricles
    fissure_zone = _inside(np.abs(q) - 0.5, 0.1)
    fissure = _inside(0.6 * px - np.abs(p), px) * fissure_zone
    gm = np.maximum(gm, _inside(0.8 * cortex - np.abs(p), 1.5 * px) * fissure_zone)
    tissue = _lerp(an.i_wm, an.i_gm, gm) * (1.0 + 0.035 * an.tex)
    tissue = _lerp(tissue, an.i_csf, np.maximum(sulcus, fissure))
    # central structures, computed only in their window: deep grey nuclei, ventricles
    central = (np.abs(p) < 0.5) & (np.abs(q) < 0.55)
    rows, cols = np.flatnonzero(central.any(axis=1)), np.flatnonzero(central.any(axis=0))
    if rows.size:
        win = slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1)
        pw, qw = p[win], q[win]
        ap = np.abs(pw)
        # thalami and basal ganglia: between white and grey matter
        deep = np.minimum(
            ((ap - 0.14) * (1 / 0.1)) ** 2 + ((qw - 0.12) * (1 / 0.13)) ** 2,
            ((ap - 0.3) * (1 / 0.07)) ** 2 + ((qw + 0.06) * (1 / 0.16)) ** 2,
        )
        nuclei = an.i_wm + an.i_deep * (an.i_gm - an.i_wm)
        tw = _lerp(tissue[win], nuclei, _inside(0.8 - deep, 0.8))
        tissue[win] = _lerp(tw, an.i_csf, _ventricles(an, pw, qw, px))
    return tissue


def _render_brain_anatomy(
    an: _BrainAnatomy, x: np.ndarray, y: np.ndarray, px: float, lesion: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    """Paint the slice from the outside in; returns the image and the soft brain region."""
    h = an.head
    p, q = h.frame(x, y)
    rr = np.sqrt(p * p + q * q) + 1e-6
    r = rr / _outline(p / rr, q / rr, h.amps, h.phases)
    theta = _angle(q, p)
    pr = px / h.a  # one pixel in head-radius units
    bone_in = 1.0 - an.scalp
    csf_in = bone_in - an.bone
    # scalp: bright fat under a slightly darker skin line
    skin = _inside(r - (1.0 - 0.25 * an.scalp), 2 * pr)
    scalp = an.i_scalp * (1.0 + 0.06 * an.scalp_tex) * (1.0 - 0.35 * skin)
    img = _inside(1.0 - r, pr) * scalp
    # skull: dark cortical bone around a faint marrow line
    diploe = _inside(0.25 * an.bone - np.abs(r - (bone_in - 0.5 * an.bone)), pr)
    img = _lerp(img, an.i_bone + 0.25 * an.i_scalp * diploe, _inside(bone_in - r, pr))
    img = _lerp(img, an.i_csf, _inside(csf_in - r, pr))
    tissue = _brain_tissue(an, p, q, r, theta, pr)
    if lesion is not None:
        tissue = tissue + lesion
    brain = _inside(an.edge - r, pr)
    return _lerp(img, tissue, brain), brain


def _brain_lesions(
    grid: _Grid, an: _BrainAnatomy, rng: np.random.Generator, difficulty: float
) -> tuple[np.ndarray, np.ndarray, list[_Blob]]:
    """Tumour-like FLAIR hyperintensities: intensity change, outline (oedema included), blobs."""
    shape = (grid.size, grid.size)
    delta = np.zeros(shape, np.float32)
    extent = np.zeros(shape, bool)
    blobs = []
    strength = _conspicuity(difficulty)
    for _ in range(_lesion_count(rng)):
        rho = an.edge * 0.8 * np.sqrt(rng.uniform(0.02, 1.0))
        ang = rng.uniform(0.0, 2.0 * np.pi)
        cx, cy = an.head.to_image(rho * np.cos(ang), rho * np.sin(ang))
        radius = _log_uniform(rng, 0.06, 0.32 * math.sqrt(strength))
        blob = _Blob.draw(rng, cx, cy, radius, irregularity=0.35)
        contrast = strength * float(rng.uniform(0.15, 0.6))
        core = float(rng.uniform(0.45, 0.8)) if rng.uniform() < 0.6 else 1.0  # < 1: oedema halo
        necrosis = float(rng.uniform(0.3, 0.6)) if radius > 0.08 and rng.uniform() < 0.4 else 0.0
        soft = float(rng.uniform(0.06, 0.2))
        texture = grid.noise(rng, 24)
        rows, cols = blob.window(grid, 1.0 + soft + 0.05)
        d = blob.distance(grid.x[:, cols], grid.y[rows, :])
        oedema = _inside(1.0 - d, 2 * soft)
        tumour = _inside(core - d, 2 * soft * core)
        change = 0.55 * oedema + 0.45 * tumour
        if necrosis:
            change = change - 0.9 * _inside(necrosis * core - d, 0.1)
        delta[rows, cols] += contrast * change * (1.0 + 0.15 * texture[rows, cols])
        extent[rows, cols] |= blob.outline(grid, rows, cols)
        blobs.append(blob)
    return delta, extent, blobs


def _mass_effect(
    grid: _Grid, an: _BrainAnatomy, blobs: list[_Blob]
) -> tuple[np.ndarray, np.ndarray]:
    """Sampling coordinates that push tissue away from large lesions, fading out before the skull
    (small lesions have none)."""
    x = np.broadcast_to(grid.x, (grid.size, grid.size))
    y = np.broadcast_to(grid.y, (grid.size, grid.size))
    p, q = an.head.frame(x, y)
    keep_skull = np.clip((an.edge - np.sqrt(p * p + q * q)) * (1 / 0.2), 0.0, 1.0)
    for blob in blobs:
        push = 0.3 * min(max((blob.radius - 0.07) / 0.1, 0.0), 1.0)
        if push == 0.0:
            continue
        dx, dy = x - blob.cx, y - blob.cy
        pull = (push * keep_skull) * _bump((dx * dx + dy * dy) * (0.5 / (1.3 * blob.radius) ** 2))
        x, y = x - dx * pull, y - dy * pull
    return x, y


def _render_brain(grid: _Grid, rngs: _Rngs, abnormal: bool, difficulty: float) -> _Sample:
    rng_anatomy, rng_lesion, rng_acquisition = rngs
    an = _draw_brain_anatomy(grid, rng_anatomy)
    if abnormal:
        delta, extent, blobs = _brain_lesions(grid, an, rng_lesion, difficulty)
        x, y = _mass_effect(grid, an, blobs)
        signal, brain = _render_brain_anatomy(an, x, y, grid.px, delta)
        region = brain > 0.5
        mask = extent & region
    else:
        signal, brain = _render_brain_anatomy(an, grid.x, grid.y, grid.px, None)
        region = brain > 0.5
        mask = np.zeros_like(region)
    return _Sample(_acquire(grid, signal, rng_acquisition, mri=True), mask, region)


# --------------------------------------------------------------------------------------------
# Chest X-ray (frontal radiograph)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _ChestAnatomy:
    cx: float
    cy: float
    angle: float
    scale: float
    width: float  # body half-width
    apex: tuple[float, ...]  # per lung: (image left = patient's right, image right)
    lateral: tuple[float, ...]
    dome: tuple[float, ...]  # lowest lung border, at the costophrenic angles
    dome_height: tuple[float, ...]
    heart: float  # how far the heart bulges into the patient's left lung
    heart_y: float
    knob: float  # aortic knob
    rib_origin: float
    rib_spacing: float
    rib_curve: float
    clavicle_y: float
    clavicle_slope: float
    bubble: bool
    i_tissue: float
    i_air: float
    i_bone: float
    tex: np.ndarray
    fine: np.ndarray
    vessels: np.ndarray


def _draw_chest_anatomy(grid: _Grid, rng: np.random.Generator) -> _ChestAnatomy:
    return _ChestAnatomy(
        cx=float(rng.normal(0.0, 0.03)),
        cy=float(rng.normal(0.03, 0.03)),
        angle=float(rng.normal(0.0, 0.035)),
        scale=float(rng.uniform(0.9, 1.05)),
        width=float(rng.uniform(0.86, 0.96)),
        apex=_floats(rng.uniform(-0.76, -0.66, 2)),
        lateral=_floats(rng.uniform(0.75, 0.83, 2)),
        dome=(float(rng.uniform(0.5, 0.62)), float(rng.uniform(0.56, 0.7))),
        dome_height=_floats(rng.uniform(0.12, 0.22, 2)),
        heart=float(rng.uniform(0.3, 0.42)),
        heart_y=float(rng.uniform(0.3, 0.42)),
        knob=float(rng.uniform(0.03, 0.07)),
        rib_origin=float(rng.uniform(-0.84, -0.76)),
        rib_spacing=float(rng.uniform(0.115, 0.135)),
        rib_curve=float(rng.uniform(0.75, 1.05)),
        clavicle_y=float(rng.uniform(-0.66, -0.56)),
        clavicle_slope=float(rng.uniform(0.1, 0.3)),
        bubble=bool(rng.uniform() < 0.7),
        i_tissue=float(rng.uniform(0.9, 1.1)),
        i_air=float(rng.uniform(0.62, 0.75)),
        i_bone=float(rng.uniform(0.8, 1.2)),
        tex=grid.noise(rng, 10),
        fine=grid.noise(rng, 48),
        vessels=grid.noise(rng, 8),
    )


def _chest_frame(an: _ChestAnatomy, grid: _Grid) -> tuple[np.ndarray, np.ndarray]:
    """Body coordinates (u to the image's right, v down), normalised by the patient's size."""
    dx, dy = grid.x - an.cx, grid.y - an.cy
    c, s = math.cos(an.angle), math.sin(an.angle)
    k = 1.0 / an.scale
    return (c * dx + s * dy) * k, (c * dy - s * dx) * k


def _per_side(left: np.ndarray, values: tuple[float, ...]) -> np.ndarray:
    return np.where(left, np.float32(values[1]), np.float32(values[0]))


def _lungs(
    an: _ChestAnatomy, u: np.ndarray, v: np.ndarray, xx: np.ndarray, px: float
) -> tuple[np.ndarray, np.ndarray]:
    """Soft mask of both lungs and an approximate distance inside them (for the air depth)."""
    left = u > 0  # the patient's left lung, on the image's right
    # medial border: mediastinum, aortic knob, heart (bulging more into the patient's left lung)
    heart_bulge = _per_side(left, (0.45 * an.heart, an.heart))
    above = np.minimum(v - an.heart_y, 0.0)  # the heart rests on the diaphragm
    heart_shape = _bump((above * (1 / 0.3)) ** 2)
    knob = _per_side(left, (0.0, an.knob)) * _bump(((v + 0.33) * (1 / 0.08)) ** 2)
    medial = 0.085 + heart_bulge * heart_shape + knob
    upper = np.clip(0.25 - v, 0.0, None)
    lat = _per_side(left, an.lateral) - 0.3 * upper * upper
    top = _per_side(left, an.apex) + 1.1 * (xx - 0.3) ** 2
    curve = np.clip((xx - 0.36) * (1 / 0.42), -1.0, 1.0)
    bottom = _per_side(left, an.dome) - _per_side(left, an.dome_height) * (1.0 - curve * curve)
    dist = np.minimum(np.minimum(xx - medial, lat - xx), np.minimum(v - top, bottom - v))
    return _inside(dist, 1.5 * px), dist


def _bands(t: np.ndarray, duty: float) -> np.ndarray:
    """Periodic bands with a rounded (parabolic) profile over the first `duty` of each period."""
    f = np.clip((t - np.floor(t)) * (1.0 / duty), 0.0, 1.0)
    return 4.0 * f * (1.0 - f)


def _ribs(an: _ChestAnatomy, v: np.ndarray, xx: np.ndarray) -> np.ndarray:
    """Posterior ribs (rising a little from the spine, then curving down) and anterior ribs."""
    lateral = _inside(an.width - 0.03 - xx, 0.06)
    beyond = np.clip(xx - 0.6, 0.0, None)
    curve = an.rib_curve * ((xx - 0.28) ** 2 - 0.08) + 0.25 * beyond * beyond
    t = (v - curve - an.rib_origin) * (1.0 / an.rib_spacing)
    t = t * (1.0 - 0.035 * t)  # lower ribs a little further apart
    posterior = _bands(t, 0.45) * _inside(xx - 0.07, 0.03) * _inside(t, 0.3)
    posterior = posterior * _inside(10.3 - t, 0.3)
    # anterior: from the lateral wall down towards the sternum, fading medially (cartilage)
    w = an.width - xx
    ta = (v - 0.5 * w - 0.4 * w * w - an.rib_origin - 0.12) * (1.0 / (1.3 * an.rib_spacing))
    anterior = _bands(ta, 0.35) * _inside(xx - 0.35, 0.25) * _inside(ta, 0.3)
    anterior = anterior * _inside(6.0 - ta, 0.3)
    return (posterior + 0.4 * anterior) * lateral


def _chest_density(an: _ChestAnatomy, grid: _Grid) -> tuple[np.ndarray, np.ndarray]:
    """Projected density (0 = air outside the body, about 1 = mediastinum) and the lung mask."""
    u, v = _chest_frame(an, grid)
    xx = np.abs(u)
    px = grid.px / an.scale
    # body: a cylinder of soft tissue (thicker in the middle); neck and sloping shoulders on top
    half = an.width * (1.0 + 0.04 * v)
    neck = (xx * (1 / 0.24)) ** 2
    neck = _bump(neck * neck)
    slope = np.clip((xx - 0.25) * (1 / 0.65), 0.0, None)
    shoulder = -0.8 - 0.35 * neck + 0.16 * slope * slope
    body = _inside(half - xx, 2 * px) * _inside(v - shoulder, 4 * px)
    thickness = np.sqrt(np.clip(1.0 - (xx / half) ** 2, 0.0, 1.0))
    density = an.i_tissue * (0.2 + 0.8 * thickness) * body * (1.0 + 0.03 * an.tex)
    # lungs: air lowers the density, most where the lung is deepest
    lung, dist = _lungs(an, u, v, xx, px)
    air = an.i_air * lung * (0.5 + 0.5 * np.sqrt(np.clip(dist * (1 / 0.15), 0.0, 1.0)))
    # vascular markings: hila and branching streaks fanning out, fading to the periphery
    hx = np.where(u > 0, np.float32(0.15), np.float32(-0.14))
    du, dv = u - hx, v + 0.02
    hd = np.sqrt(du * du + 0.64 * dv * dv)
    streak = np.clip(np.cos(18.0 * _angle(dv, du) + 3.0 * an.vessels + 4.0 * hd), 0.0, None)
    streak = streak * streak
    markings = 0.55 * _bump(hd * (1 / 0.1)) + 0.35 * streak * streak * _bump(hd * (1 / 0.3))
    markings = markings * (1.0 + 0.3 * an.fine) + 0.04 * an.fine
    density = density - air * (1.0 - np.clip(markings, -0.2, 0.8))
    # trachea: an air column in the upper mediastinum
    trachea = _inside(0.035 - np.abs(u - 0.01), 2 * px) * _inside(-0.3 - v, 0.06)
    density = density - 0.25 * trachea * body
    # gastric bubble under the left hemidiaphragm
    if an.bubble:
        gb = ((u - 0.4) * (1 / 0.1)) ** 2 + ((v - an.dome[1] - 0.02) * (1 / 0.055)) ** 2
        density = density - 0.2 * _inside(1.0 - gb, 0.4) * body
    # bones: spine, ribs, clavicles, humeral heads
    vertebra = 0.6 + 0.4 * _bands((v - an.rib_origin) * (1.0 / an.rib_spacing), 0.8)
    spine = _inside(0.065 + 0.01 * v - xx, 2 * px) * vertebra
    clav_y = an.clavicle_y - an.clavicle_slope * (xx - 0.08) + 0.3 * (xx - 0.35) ** 2
    clav = np.sqrt(np.clip(1.0 - np.abs(v - clav_y) * (1 / 0.034), 0.0, 1.0))
    clav = clav * _inside(xx - 0.06, 0.03) * _inside(0.64 - xx, 0.06)
    hum = (xx - an.width - 0.02) ** 2 + (v + 0.58) ** 2
    humerus = _inside(1.0 - np.sqrt(hum) * (1 / 0.13), 0.1)
    bones = 0.2 * spine + 0.13 * _ribs(an, v, xx) + 0.4 * clav + 0.35 * humerus
    density = density + an.i_bone * bones * body
    return density, lung


def _chest_opacities(
    grid: _Grid, lung: np.ndarray, rng: np.random.Generator, difficulty: float
) -> tuple[np.ndarray, np.ndarray]:
    """Consolidation-like patches and nodules: the density they add, and their outline."""
    shape = lung.shape
    delta = np.zeros(shape, np.float32)
    extent = np.zeros(shape, bool)
    strength = _conspicuity(difficulty)
    # lesion centres lie well inside a lung
    interior = ndimage.binary_erosion(lung > 0.5, iterations=max(1, round(2 * grid.scale)))
    rows, cols = np.nonzero(interior if interior.any() else lung > 0.5)
    for _ in range(_lesion_count(rng)):
        k = int(rng.integers(len(rows)))
        cx, cy = float(grid.x[0, cols[k]]), float(grid.y[rows[k], 0])
        if rng.uniform() < 0.75:  # consolidation: large, soft, irregular, textured
            radius = _log_uniform(rng, 0.12, 0.45 * math.sqrt(strength))
            blob = _Blob.draw(rng, cx, cy, radius, irregularity=0.45)
            soft = float(rng.uniform(0.25, 0.5))
            texture = 1.0 + 0.35 * grid.noise(rng, 30)
            thickness = 1.0
        else:  # nodule: small, round, sharper; a thin object in projection, so fainter
            radius = _log_uniform(rng, 0.03, 0.07)
            blob = _Blob.draw(rng, cx, cy, radius, irregularity=0.12)
            soft = float(rng.uniform(0.1, 0.25))
            texture = None
            thickness = 0.5
        contrast = strength * thickness * float(rng.uniform(0.2, 0.75))
        r_sl, c_sl = blob.window(grid, 1.0 + soft + 0.05)
        d = blob.distance(grid.x[:, c_sl], grid.y[r_sl, :])
        change = contrast * _inside(1.0 - d, 2.0 * soft)
        delta[r_sl, c_sl] += change if texture is None else change * texture[r_sl, c_sl]
        extent[r_sl, c_sl] |= blob.outline(grid, r_sl, c_sl)
    return delta, extent


def _render_chest(grid: _Grid, rngs: _Rngs, abnormal: bool, difficulty: float) -> _Sample:
    rng_anatomy, rng_lesion, rng_acquisition = rngs
    an = _draw_chest_anatomy(grid, rng_anatomy)
    density, lung = _chest_density(an, grid)
    region = lung > 0.5
    mask = np.zeros_like(region)
    if abnormal:
        delta, extent = _chest_opacities(grid, lung, rng_lesion, difficulty)
        density = density + delta * lung
        mask = extent & region
    # film response: density → brightness, with a per-image exposure
    exposure = float(rng_acquisition.uniform(1.4, 1.8))
    signal = (1.0 - np.exp(-exposure * np.maximum(density, _ZERO))) * (
        1.0 / (1.0 - math.exp(-2.0 * exposure))
    )
    return _Sample(_acquire(grid, signal, rng_acquisition, mri=False), mask, region)


# --------------------------------------------------------------------------------------------
# Public generators
# --------------------------------------------------------------------------------------------

_Renderer = Callable[[_Grid, _Rngs, bool, float], _Sample]
_RENDERERS: dict[str, _Renderer] = {"brain": _render_brain, "chest": _render_chest}


@dataclass(frozen=True)
class SyntheticBatch:
    """Generated images with their lesion masks and the anatomy region lesions are confined to."""

    #: uint8 [n, size, size]
    images: np.ndarray
    #: bool [n, size, size]; all False for normal images
    masks: np.ndarray
    #: bool [n, size, size]: brain (inside the CSF rim, ventricles included) or lungs
    regions: np.ndarray


def _check_int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise MedadError(f"synthetic data: {name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _check_difficulty(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 <= value <= 1.0:
        raise MedadError(f"synthetic data: difficulty must be a number in [0, 1], got {value!r}")
    return float(value)


def generate(
    kind: Kind,
    n: int,
    *,
    size: int = 128,
    seed: int = 0,
    abnormal: bool = False,
    stream: int = 0,
    difficulty: float = 0.5,
) -> SyntheticBatch:
    """Generate `n` images of `kind` ("brain" or "chest"); see the module docstring.

    Image `i` is seeded by ``(seed, kind, stream, i)`` alone, so the first k images of any call
    are the same, and a different `stream` gives different anatomy.
    """
    if kind not in _RENDERERS:
        raise MedadError(f"synthetic data: unknown kind {kind!r}; use 'brain' or 'chest'")
    n = _check_int("n", n, 0)
    size = _check_int("size", size, 32)
    seed = _check_int("seed", seed, 0)
    stream = _check_int("stream", stream, 0)
    difficulty = _check_difficulty(difficulty)
    render = _RENDERERS[kind]
    grid = _grid(size)
    images = np.empty((n, size, size), dtype=np.uint8)
    masks = np.zeros((n, size, size), dtype=bool)
    regions = np.zeros((n, size, size), dtype=bool)
    with _single_threaded_blas():
        for i in range(n):
            key = [seed, _KIND_CODES[kind], stream, i]
            rngs = tuple(np.random.default_rng([*key, part]) for part in _PARTS)
            sample = render(grid, rngs, abnormal, difficulty)  # type: ignore[arg-type]
            images[i] = np.round(sample.image * 255.0).astype(np.uint8)
            masks[i] = sample.mask
            regions[i] = sample.region
    return SyntheticBatch(images, masks, regions)


def _single_threaded_blas() -> AbstractContextManager[Any]:
    """The noise fields are tiny matrix products, for which BLAS threads cost more than they
    save (ten times slower on two cores); limit them while generating."""
    try:
        from threadpoolctl import threadpool_limits  # installed with scikit-learn
    except ImportError:  # pragma: no cover
        return contextlib.nullcontext()
    return threadpool_limits(1, user_api="blas")


def generate_brain(
    n: int,
    *,
    size: int = 128,
    seed: int = 0,
    abnormal: bool = False,
    stream: int = 0,
    difficulty: float = 0.5,
) -> tuple[np.ndarray, np.ndarray]:
    """Brain MRI-like axial slices.

    -> images uint8 [n, size, size], masks bool [n, size, size] (all False when not abnormal).
    """
    batch = generate(
        "brain", n, size=size, seed=seed, abnormal=abnormal, stream=stream, difficulty=difficulty
    )
    return batch.images, batch.masks


def generate_chest(
    n: int,
    *,
    size: int = 128,
    seed: int = 0,
    abnormal: bool = False,
    stream: int = 0,
    difficulty: float = 0.5,
) -> tuple[np.ndarray, np.ndarray]:
    """Chest X-ray-like frontal radiographs.

    -> images uint8 [n, size, size], masks bool [n, size, size] (all False when not abnormal).
    """
    batch = generate(
        "chest", n, size=size, seed=seed, abnormal=abnormal, stream=stream, difficulty=difficulty
    )
    return batch.images, batch.masks


# --------------------------------------------------------------------------------------------
# Dataset source
# --------------------------------------------------------------------------------------------

_MODALITIES: dict[str, str] = {"brain": "brain MRI (synthetic)", "chest": "chest X-ray (synthetic)"}


class SyntheticDataset(DatasetSource):
    """An embedded dataset: train normals, then test normals and test abnormals with masks.

    The three parts come from separate streams, so no image is shared between them. Images are
    generated on first use and kept in the instance.
    """

    channels = 1
    has_masks = True

    def __init__(
        self,
        kind: Kind,
        *,
        n_train: int = 400,
        n_test_normal: int = 100,
        n_test_abnormal: int = 100,
        size: int = 128,
        seed: int = 0,
        difficulty: float = 0.5,
    ) -> None:
        if kind not in _MODALITIES:
            raise MedadError(f"synthetic data: unknown kind {kind!r}; use 'brain' or 'chest'")
        self.kind = kind
        self.name = f"synth-{kind}"
        self.modality = _MODALITIES[kind]
        self.n_train = _check_int("n_train", n_train, 1)
        self.n_test_normal = _check_int("n_test_normal", n_test_normal, 1)
        self.n_test_abnormal = _check_int("n_test_abnormal", n_test_abnormal, 1)
        self.size = _check_int("size", size, 32)
        self.seed = _check_int("seed", seed, 0)
        self.difficulty = _check_difficulty(difficulty)
        self._records: dict[str, list[Record]] = {}

    def _batch(self, n: int, stream: int, abnormal: bool) -> SyntheticBatch:
        batch = generate(
            self.kind,
            n,
            size=self.size,
            seed=self.seed,
            abnormal=abnormal,
            stream=stream,
            difficulty=self.difficulty,
        )
        # records hand out views of these arrays, kept for the instance's lifetime: read-only
        batch.images.flags.writeable = False
        batch.masks.flags.writeable = False
        return batch

    def records(self, split: Split) -> list[Record]:
        if split not in SPLITS:
            raise MedadError(f"unknown split {split!r}; use one of {', '.join(SPLITS)}")
        if split not in self._records:
            if split == "train":
                train = self._batch(self.n_train, TRAIN_STREAM, False)
                recs = [Record(f"train-{i:05d}", 0, im) for i, im in enumerate(train.images)]
            else:
                normal = self._batch(self.n_test_normal, TEST_NORMAL_STREAM, False)
                abnormal = self._batch(self.n_test_abnormal, TEST_ABNORMAL_STREAM, True)
                recs = [Record(f"test-normal-{i:05d}", 0, im) for i, im in enumerate(normal.images)]
                recs += [
                    Record(f"test-abnormal-{i:05d}", 1, im, mask)
                    for i, (im, mask) in enumerate(
                        zip(abnormal.images, abnormal.masks, strict=True)
                    )
                ]
            self._records[split] = recs
        return list(self._records[split])

    def fingerprint(self) -> str:
        return (
            f"{self.name}-v{GENERATOR_VERSION}-train{self.n_train}-test{self.n_test_normal}"
            f"+{self.n_test_abnormal}-size{self.size}-seed{self.seed}-difficulty{self.difficulty:g}"
        )


_OPTIONS = ("n_train", "n_test_normal", "n_test_abnormal", "size", "seed", "difficulty")


def _build(kind: Kind, options: dict[str, Any]) -> SyntheticDataset:
    unknown = sorted(set(options) - set(_OPTIONS))
    if unknown:
        raise MedadError(
            f"dataset 'synth-{kind}' has no option {', '.join(map(repr, unknown))}; "
            f"allowed options: {', '.join(_OPTIONS)}"
        )
    return SyntheticDataset(kind, **options)


@register_dataset(
    "synth-brain",
    modality=_MODALITIES["brain"],
    description="embedded brain MRI-like FLAIR slices with tumour-like lesions and masks "
    "(no download)",
    needs_root=False,
)
def _synth_brain(root: Any, **options: Any) -> SyntheticDataset:
    return _build("brain", options)


@register_dataset(
    "synth-chest",
    modality=_MODALITIES["chest"],
    description="embedded chest X-ray-like radiographs with opacities and masks (no download)",
    needs_root=False,
)
def _synth_chest(root: Any, **options: Any) -> SyntheticDataset:
    return _build("chest", options)
