"""Synthetic anomaly generators: the shared contract, and each generator against its definition."""

from __future__ import annotations

import re

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from medad.anomalies import (
    GENERATORS,
    NEEDS_SOURCE,
    Box,
    draem,
    foreground_mask,
    guidance_divergence,
    interpolate_patch,
    load_texture_folder,
    logistic_label,
    make_anomaly,
    nsa,
    otsu_threshold,
    perlin_mask,
    perlin_noise,
    pii,
    poisson_blend,
    poisson_interpolate_patch,
    procedural_texture,
    sample_interpolation_box,
    sample_interpolation_boxes,
    sample_nsa_patches,
)
from medad.errors import MedadError

TOL = 1e-6


def brain(size: int, seed: int, channels: int = 1) -> np.ndarray:
    """A brain-like test image: textured ellipse with a dark 'ventricle' on a black background."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size] / size
    cy, cx = 0.5 + rng.uniform(-0.04, 0.04, 2)
    fy, fx = rng.uniform(3, 7, 2)
    head = ((y - cy) / 0.4) ** 2 + ((x - cx) / 0.32) ** 2 < 1
    tissue = 0.55 + 0.15 * np.cos(fx * np.pi * x) * np.sin(fy * np.pi * y)
    tissue += 0.08 * np.sin(40 * x + 30 * y) + 0.03 * rng.standard_normal((size, size))
    img = np.where(head, tissue, 0.0)
    img = np.where(((y - cy) / 0.12) ** 2 + ((x - cx) / 0.08) ** 2 < 1, 0.2, img)
    img = np.clip(img, 0, 1)
    if channels == 3:
        img = np.clip(np.stack([img, 0.85 * img, 0.6 * img + 0.1 * head], axis=-1), 0, 1)
    return img.astype(np.float32)


def max_change(out: np.ndarray, image: np.ndarray) -> np.ndarray:
    diff = np.abs(out.astype(np.float64) - image.astype(np.float64))
    return diff if diff.ndim == 2 else diff.max(axis=-1)


def run(kind: str, image: np.ndarray, source: np.ndarray, seed: int, **params):
    if kind == "draem":
        params.setdefault("p_anomaly", 1.0)
    return make_anomaly(kind, image, np.random.default_rng(seed), source=source, **params)


CASES = [(64, 1), (64, 3), (128, 1), (128, 3)]


@pytest.mark.parametrize("kind", sorted(GENERATORS))
@pytest.mark.parametrize(("size", "channels"), CASES)
def test_contract(kind: str, size: int, channels: int) -> None:
    image, source = brain(size, 0, channels), brain(size, 1, channels)
    image_before, source_before = image.copy(), source.copy()
    outputs = []
    for seed in range(5):
        out, label = run(kind, image, source, seed)
        assert out.shape == image.shape and out.dtype == np.float32
        assert label.shape == (size, size) and label.dtype == np.float32
        assert out.min() >= 0 and out.max() <= 1
        assert label.min() >= 0 and label.max() <= 1
        change = max_change(out, image)
        assert np.all(label[change <= TOL] == 0), "label must be 0 where nothing changed"
        assert np.array_equal(out[label == 0], image[label == 0]), "label 0 must mean no change"
        again = run(kind, image, source, seed)
        assert np.array_equal(out, again[0]) and np.array_equal(label, again[1])
        outputs.append(out)
    assert any(not np.array_equal(outputs[0], o) for o in outputs[1:]), "seeds must matter"
    assert np.array_equal(image, image_before) and np.array_equal(source, source_before)


@pytest.mark.parametrize("kind", sorted(GENERATORS))
def test_explicit_single_channel_axis_is_kept(kind: str) -> None:
    image, source = brain(64, 0)[..., None], brain(64, 1)[..., None]
    for seed in range(3):
        out, label = run(kind, image, source, seed)
        assert out.shape == (64, 64, 1) and label.shape == (64, 64)
        assert np.array_equal(out[label == 0], image[label == 0])


@pytest.mark.parametrize("kind", sorted(GENERATORS))
def test_anomaly_nonempty_in_most_draws(kind: str) -> None:
    image, source = brain(128, 0), brain(128, 1)
    hits = sum(bool(run(kind, image, source, seed)[1].any()) for seed in range(20))
    # Scars are thin and often land on background, where pasting background changes nothing.
    assert hits >= (10 if kind == "cutpaste-scar" else 17)


def test_registry_and_errors() -> None:
    image = brain(64, 0)
    assert set(GENERATORS) == {
        "cutpaste", "cutpaste-scar", "cutpaste-shift", "fpi", "pii", "nsa", "draem", "anatpaste"
    }  # fmt: skip
    rng = np.random.default_rng(0)
    with pytest.raises(MedadError, match="choose one of"):
        make_anomaly("nope", image, rng)
    with pytest.raises(MedadError, match="alpha_rnge"):
        make_anomaly("fpi", image, rng, source=image, alpha_rnge=(0, 1))
    for kind in NEEDS_SOURCE:
        with pytest.raises(MedadError, match="source="):
            make_anomaly(kind, image, rng)
    with pytest.raises(MedadError, match="same shape"):
        make_anomaly("pii", image, rng, source=brain(128, 1))
    with pytest.raises(MedadError, match="float"):
        make_anomaly("cutpaste", (image * 255).astype(np.uint8), rng)
    with pytest.raises(MedadError, match=r"\[0, 1\]"):
        make_anomaly("cutpaste", image * 3, rng)
    with pytest.raises(MedadError, match="shape"):
        make_anomaly("cutpaste", image[None, None], rng)


# --- CutPaste -------------------------------------------------------------------------------


def test_cutpaste_labels_are_binary_and_sized_by_the_paper() -> None:
    image, size = brain(128, 0), 128
    for seed in range(20):
        _, label = make_anomaly("cutpaste", image, np.random.default_rng(seed))
        assert set(np.unique(label)) <= {0.0, 1.0}
        assert label.sum() <= 0.15 * size * size * 1.1  # area ratio <= 0.15, up to rounding
        _, scar = make_anomaly("cutpaste-scar", image, np.random.default_rng(seed))
        assert set(np.unique(scar)) <= {0.0, 1.0}
        scale = size / 256
        assert scar.sum() <= (16 * scale + 2) * (25 * scale + 2)


def test_cutpaste_shift_copies_nsa_patches_of_the_image_unchanged() -> None:
    """MedIAnomaly's one-stage CutPaste: NSA's patches (half-widths 0.05 + Gamma(2, 0.03)),
    cut from the image itself, pasted as they are (no jitter, no resize) onto the object, where
    the source or the target is object; binary label on the changed pixels."""
    image = brain(128, 0)
    objects = image > 20 / 255
    for seed in range(20):
        out, label = make_anomaly("cutpaste-shift", image, np.random.default_rng(seed))
        patches = sample_nsa_patches(
            image,
            image,
            np.random.default_rng(seed),
            width_gamma=(2.0, 0.03, 0.05),
            half_widths=True,
            resize_bounds=None,
            object_threshold=20 / 255,
            min_object=0.7,
            min_overlap=0.7,
        )
        assert 1 <= len(patches) <= 3
        expected = image.copy()
        for p in patches:
            src, dst = p.source_box.slices, p.target_box.slices
            assert p.source_box[2:] == p.target_box[2:]
            assert objects[src].mean() > 0.7
            copied = objects[src] | objects[dst]
            expected[dst][copied] = image[src][copied]
        changed = np.abs(expected - image) > 1 / 255
        np.testing.assert_array_equal(out, np.where(changed, expected, image))
        np.testing.assert_array_equal(label, changed.astype(np.float32))


# --- FPI ------------------------------------------------------------------------------------


def test_fpi_is_a_linear_interpolation_with_label_alpha() -> None:
    image, source = brain(128, 0), brain(128, 1)
    for seed in range(10):
        out, label = make_anomaly("fpi", image, np.random.default_rng(seed), source=source)
        changed = label > 0
        if not changed.any():
            continue
        alphas = np.unique(label[changed])
        assert alphas.size == 1
        alpha = float(alphas[0])
        expected = (1 - alpha) * image.astype(np.float64) + alpha * source
        np.testing.assert_allclose(out[changed], expected[changed], atol=1e-6)
        rows, cols = np.nonzero(changed)
        box = (slice(rows.min(), rows.max() + 1), slice(cols.min(), cols.max() + 1))
        # Inside the patch's bounding box, unchanged pixels are those where image == source.
        same = ~changed[box]
        np.testing.assert_allclose(
            image[box][same], source[box][same], atol=2e-6 / max(alpha, 1e-3)
        )


def test_fpi_core_on_a_known_box() -> None:
    image, source = brain(64, 0, 3), brain(64, 1, 3)
    box = Box(10, 20, 30, 25)
    out, label = interpolate_patch(image, source, box, 0.3)
    expected = image.astype(np.float64).copy()
    expected[box.slices] = 0.7 * image[box.slices] + 0.3 * source[box.slices]
    np.testing.assert_allclose(out, expected, atol=1e-6)
    inside = np.zeros((64, 64), dtype=bool)
    inside[box.slices] = True
    differs = max_change(image, source) > TOL
    np.testing.assert_array_equal(label, np.where(inside & differs, np.float32(0.3), 0))


def test_interpolation_box_is_inside_the_image() -> None:
    for seed in range(200):
        box = sample_interpolation_box((64, 80), np.random.default_rng(seed))
        assert box.top >= 0 and box.left >= 0 and box.height >= 3 and box.width >= 3
        assert box.top + box.height <= 64 and box.left + box.width <= 80
        assert max(box.height, box.width) <= round(0.4 * 64)


MEDIANOMALY_PLACEMENT = {"max_patches": 3, "object_threshold": 20 / 255, "min_object": 0.7}


def test_patches_on_the_object_lie_on_the_object() -> None:
    source = brain(96, 1)
    objects = source > 20 / 255
    counts = set()
    for seed in range(100):
        boxes = sample_interpolation_boxes(
            source, np.random.default_rng(seed), **MEDIANOMALY_PLACEMENT
        )
        counts.add(len(boxes))
        for box in boxes:
            assert box.top + box.height <= 96 and box.left + box.width <= 96
            assert box.height == box.width and 0.1 * 96 - 1 <= box.height <= 0.4 * 96 + 1
            assert objects[box.slices].mean() > 0.7
    assert counts == {1, 2, 3}  # the first patch always, each further one with probability 1/2


def test_no_patch_without_object() -> None:
    dark = np.zeros((64, 64), dtype=np.float32)
    assert sample_interpolation_boxes(dark, np.random.default_rng(0), **MEDIANOMALY_PLACEMENT) == []
    for kind in ("fpi", "pii"):
        out, label = make_anomaly(
            kind, brain(64, 0), np.random.default_rng(0), source=dark, **MEDIANOMALY_PLACEMENT
        )
        np.testing.assert_array_equal(out, brain(64, 0))
        assert not label.any()


def test_several_boxes_blend_in_turn_with_one_alpha() -> None:
    image, source = brain(64, 0), brain(64, 1)
    boxes = [Box(10, 10, 20, 20), Box(20, 20, 20, 20)]  # overlapping: blended twice there
    out, label = interpolate_patch(image, source, boxes, 0.4)
    expected = image.astype(np.float64).copy()
    for box in boxes:
        expected[box.slices] = 0.6 * expected[box.slices] + 0.4 * source[box.slices]
    np.testing.assert_allclose(out, expected, atol=1e-6)
    union = np.zeros((64, 64), dtype=bool)
    for box in boxes:
        union[box.slices] = True
    assert set(np.unique(label[union])) <= {0.0, np.float32(0.4)} and not label[~union].any()
    out_p, label_p = poisson_interpolate_patch(image, source, boxes, 0.4)
    first, _ = poisson_interpolate_patch(image, source, boxes[0], 0.4)
    second, _ = poisson_interpolate_patch(first, source, boxes[1], 0.4)
    np.testing.assert_allclose(out_p, second, atol=1e-6)
    assert not label_p[~union].any()


def test_tol_leaves_small_changes_unlabelled() -> None:
    image = brain(64, 0)
    source = np.clip(image + 0.002, 0, 1).astype(np.float32)  # under one grey level everywhere
    out, label = make_anomaly("fpi", image, np.random.default_rng(3), source=source, tol=1 / 255)
    np.testing.assert_array_equal(out, image)
    assert not label.any()
    out, label = make_anomaly("fpi", image, np.random.default_rng(3), source=source)
    assert label.any()  # the default tolerance (Tan et al.) labels any change


# --- Poisson (PII) ---------------------------------------------------------------------------


def laplacian(f: np.ndarray) -> np.ndarray:
    """5-point Laplacian at interior pixels."""
    return f[:-2, 1:-1] + f[2:, 1:-1] + f[1:-1, :-2] + f[1:-1, 2:] - 4 * f[1:-1, 1:-1]


@pytest.mark.parametrize("channels", [1, 3])
def test_poisson_blend_solves_the_discrete_poisson_equation(channels: int) -> None:
    rng = np.random.default_rng(0)
    shape = (17, 23) if channels == 1 else (17, 23, 3)
    target, source = rng.uniform(0, 1, shape), rng.uniform(0, 1, shape)
    for tw, sw in [(0.7, 0.3), (0.2, 0.8), (1.0, 1.0), (0.0, 1.0)]:
        out = poisson_blend(target, source, tw, sw)
        div = guidance_divergence(target, source, tw, sw)
        scale = np.abs(div).max()
        np.testing.assert_allclose(laplacian(out), div, atol=1e-9 * scale)
        ring = np.ones(shape[:2], dtype=bool)
        ring[1:-1, 1:-1] = False
        np.testing.assert_array_equal(out[ring], target[ring])


def test_poisson_blend_reproduces_the_target_when_source_equals_target() -> None:
    target = brain(64, 0)[10:40, 5:50].astype(np.float64)
    np.testing.assert_allclose(poisson_blend(target, target, 1.0, 1.0), target, atol=1e-10)


def test_mixed_guidance_picks_the_larger_weighted_difference() -> None:
    t = np.zeros((3, 3))
    t[1, 2] = 1.0  # right neighbour differs by +1 in the target
    s = np.zeros((3, 3))
    s[0, 1] = -2.0  # upper neighbour differs by -2 in the source
    div = guidance_divergence(t, s, 0.5, 0.5)
    # right edge: |0.5 * 1| > |0| -> 0.5; top edge: |0| < |0.5 * -2| -> -1; others 0.
    np.testing.assert_allclose(div, [[-0.5]])


@pytest.mark.parametrize(
    ("channels", "blend"), [(1, "interpolated"), (3, "interpolated"), (1, "mixed")]
)
def test_pii_output_satisfies_poisson_inside_the_patch(channels: int, blend: str) -> None:
    image, source = brain(128, 0, channels), brain(128, 1, channels)
    box, alpha = Box(30, 40, 40, 36), 0.6
    out, label = poisson_interpolate_patch(image, source, box, alpha, blend=blend)
    sl = box.slices
    f = out[sl].astype(np.float64).reshape(box.height, box.width, -1)
    weights, mix = ((1 - alpha, alpha), 1.0) if blend == "interpolated" else ((1, 1), alpha)
    div = guidance_divergence(image[sl], source[sl], *weights, mix=mix)
    div = div.reshape(f[1:-1, 1:-1].shape)
    # Compare where neither the pixel nor its neighbours were clipped to [0, 1].
    free = (f > 0) & (f < 1)
    ok = free[1:-1, 1:-1] & free[:-2, 1:-1] & free[2:, 1:-1] & free[1:-1, :-2] & free[1:-1, 2:]
    assert ok.mean() > 0.9
    np.testing.assert_allclose(laplacian(f)[ok], div[ok], atol=1e-5)
    ring = np.ones((box.height, box.width), dtype=bool)
    ring[1:-1, 1:-1] = False
    np.testing.assert_array_equal(out[sl][ring], image[sl][ring])
    outside = np.ones((128, 128), dtype=bool)
    outside[sl] = False
    np.testing.assert_array_equal(out[outside], image[outside])
    assert set(np.unique(label)) <= {0.0, np.float32(alpha)}
    assert label[sl].mean() > 0.5


def test_mixed_pii_change_grows_with_alpha() -> None:
    """MedIAnomaly's PII (OpenCV mixed cloning, mask ceil(255 alpha)) weights the stronger
    gradient by alpha against the image's own: the patch changes little at alpha 0.1 and more
    and more up to 0.9 (the study's code measures 5.7 / 27.9 / 50.1 grey levels)."""
    image, source = brain(64, 0), brain(64, 1)
    box = Box(10, 12, 30, 28)
    changes = []
    for alpha in (0.1, 0.5, 0.9):
        out, label = poisson_interpolate_patch(image, source, box, alpha, blend="mixed")
        changes.append(np.abs(out[box.slices] - image[box.slices]).mean())
        assert set(np.unique(label)) == {0.0, np.float32(alpha)}
    assert changes[0] < changes[1] < changes[2]
    assert changes[0] < 0.25 * changes[2]
    # alpha 1 is NSA's plain mixed clone (weights 1, 1)
    full, _ = poisson_interpolate_patch(image, source, box, 1.0, blend="mixed")
    plain = np.clip(poisson_blend(image[box.slices], source[box.slices], 1.0, 1.0), 0, 1)
    np.testing.assert_allclose(full[box.slices], plain, atol=1e-6)
    with pytest.raises(MedadError, match="blend"):
        poisson_interpolate_patch(image, source, box, 0.2, blend="normal")


def test_pii_method_defaults_to_the_studys_mixed_blend() -> None:
    from medad.methods.base import build_config, method_class

    config = build_config(method_class("pii"), {})
    assert config.anomaly_params["blend"] == "mixed"


def test_pii_draws_a_box_and_alpha_then_blends() -> None:
    image, source = brain(64, 0), brain(64, 1)
    out, label = pii(image, np.random.default_rng(7), source=source)
    rng = np.random.default_rng(7)
    box = sample_interpolation_box(image.shape, rng)
    alpha = rng.uniform(0.0, 1.0)
    ref_out, ref_label = poisson_interpolate_patch(image, source, box, alpha)
    np.testing.assert_array_equal(out, ref_out)
    np.testing.assert_array_equal(label, ref_label)


# --- NSA ------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [64, 128])
def test_nsa_patches_count_size_and_object_overlap(size: int) -> None:
    image, source = brain(size, 0), brain(size, 1)
    counts = []
    for seed in range(100):
        patches = sample_nsa_patches(image, source, np.random.default_rng(seed))
        counts.append(len(patches))
        for p in patches:
            for box in (p.source_box, p.target_box):
                assert 0.03 <= box.height / size <= 0.4 and 0.03 <= box.width / size <= 0.4
                assert box.top >= 0 and box.top + box.height <= size
                assert box.left >= 0 and box.left + box.width <= size
            assert (source[p.source_box.slices] > 0.05).mean() > 0.25
            assert (image[p.target_box.slices] > 0.05).any()
    assert max(counts) == 3 and min(counts) == 1
    assert np.median(counts) <= 2


def test_nsa_patch_widths_are_mostly_small() -> None:
    image = brain(128, 0)
    widths = [
        p.source_box.width / 128
        for seed in range(200)
        for p in sample_nsa_patches(image, image, np.random.default_rng(seed))
    ]
    assert np.median(widths) < 0.2


@pytest.mark.parametrize("channels", [1, 3])
def test_nsa_label_is_the_logistic_of_the_intensity_change(channels: int) -> None:
    image, source = brain(128, 0, channels), brain(128, 1, channels)
    for seed in range(10):
        out, label = nsa(image, np.random.default_rng(seed), source=source)
        diff = np.abs(out.astype(np.float64) - image)
        mean_change = diff if channels == 1 else diff.mean(axis=-1)
        changed = max_change(out, image) > 1 / 255
        expected = np.where(changed, logistic_label(mean_change, 255 / 6, 20 / 255), 0)
        np.testing.assert_allclose(label, expected, rtol=1e-5, atol=1e-7)
        assert np.all(label[~changed] == 0)


def test_nsa_skips_images_without_object() -> None:
    black = np.zeros((64, 64), dtype=np.float32)
    out, label = nsa(black, np.random.default_rng(0))
    assert not label.any() and np.array_equal(out, black)
    assert sample_nsa_patches(black, black, np.random.default_rng(0)) == []
    # Without the background rule, a patch is always drawn.
    assert sample_nsa_patches(black, black, np.random.default_rng(0), object_threshold=None)


# --- DRAEM ----------------------------------------------------------------------------------


def test_draem_probability_of_no_anomaly() -> None:
    image = brain(64, 0)
    out, label = draem(image, np.random.default_rng(0), p_anomaly=0.0)
    assert np.array_equal(out, image) and not label.any()
    hits = [draem(image, np.random.default_rng(s))[1].any() for s in range(60)]
    assert 15 <= sum(hits) <= 45  # p_anomaly = 0.5 by default


def test_draem_blend_with_a_constant_texture() -> None:
    image = brain(128, 0)
    texture = np.full((40, 50, 3), 0.9, dtype=np.float32)  # any size and channel count
    for seed in range(10):
        out, label = draem(
            image, np.random.default_rng(seed), texture=texture, p_anomaly=1.0, augment=False
        )
        assert set(np.unique(label)) <= {0.0, 1.0}
        m = (label == 1) & (np.abs(image - 0.9) > 0.2)
        if not m.any():
            continue
        beta = (out[m].astype(np.float64) - 0.9) / (image[m] - 0.9)
        assert np.ptp(beta) < 1e-4 and -1e-6 <= beta.mean() <= 0.8 + 1e-6


def test_draem_accepts_a_list_of_textures_and_rgb() -> None:
    image = brain(64, 0, 3)
    textures = [
        np.random.default_rng(i).uniform(0, 1, (30, 30, 3)).astype(np.float32) for i in range(3)
    ]
    out, label = draem(image, np.random.default_rng(1), texture=textures, p_anomaly=1.0)
    assert out.shape == image.shape and label.any()
    gray_tex = np.full((20, 20), 0.5, dtype=np.float32)
    assert (
        draem(image, np.random.default_rng(1), texture=gray_tex, p_anomaly=1.0)[0].shape
        == image.shape
    )


def test_perlin_noise_and_mask() -> None:
    rng = np.random.default_rng(0)
    for res in [(1, 1), (4, 2), (7, 3), (32, 32)]:
        noise = perlin_noise((64, 96), res, rng)
        assert noise.shape == (64, 96) and np.abs(noise).max() <= 1 + 1e-9
    # Lattice nodes have zero noise (pixel 0 sits on a node).
    assert perlin_noise((64, 64), (4, 4), rng)[::16, ::16] == pytest.approx(0, abs=1e-12)
    mask = perlin_mask((64, 64), np.random.default_rng(3))
    assert mask.dtype == bool and mask.shape == (64, 64)


def test_procedural_textures() -> None:
    for seed in range(10):
        tex = procedural_texture((48, 40), np.random.default_rng(seed))
        assert tex.shape == (48, 40, 3) and tex.dtype == np.float32
        assert 0 <= tex.min() and tex.max() <= 1 and tex.std() > 0.01
        again = procedural_texture((48, 40), np.random.default_rng(seed))
        assert np.array_equal(tex, again)
    assert procedural_texture((16, 16), np.random.default_rng(0), channels=1).shape == (16, 16)


def test_load_texture_folder(tmp_path) -> None:
    folder = tmp_path / "dtd" / "images"
    (folder / "banded").mkdir(parents=True)
    rgb = np.random.default_rng(0).integers(0, 256, (40, 30, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(folder / "banded" / "a.png")
    Image.fromarray(rgb[..., 0]).save(folder / "banded" / "b.jpg")
    (folder / "notes.txt").write_text("not an image")
    textures = load_texture_folder(folder, size=None)
    assert len(textures) == 2
    assert textures[0].dtype == np.float32 and textures[0].shape == (40, 30, 3)
    np.testing.assert_allclose(textures[0], rgb / 255, atol=1e-6)
    assert textures[1].shape == (40, 30, 3)
    assert load_texture_folder(folder, size=16, limit=1)[0].shape == (16, 16, 3)

    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(MedadError, match=re.escape(str(empty))):
        load_texture_folder(empty)
    with pytest.raises(MedadError, match=re.escape(str(tmp_path / "missing"))):
        load_texture_folder(tmp_path / "missing")


# --- AnatPaste and Otsu ---------------------------------------------------------------------


def brute_force_otsu_mask(values: np.ndarray) -> np.ndarray:
    """Upper class of the split of the sorted distinct values maximising between-class variance."""
    v = values.ravel().astype(np.float64)
    best, best_split = -1.0, None
    for t in np.unique(v)[:-1]:
        low, high = v[v <= t], v[v > t]
        w0, w1 = low.size / v.size, high.size / v.size
        between = w0 * w1 * (low.mean() - high.mean()) ** 2
        if between > best:
            best, best_split = between, t
    return values > best_split


def test_otsu_matches_brute_force() -> None:
    for seed in range(20):
        rng = np.random.default_rng(seed)
        n = 500
        levels = np.concatenate(
            [
                rng.normal(rng.uniform(30, 110), rng.uniform(5, 30), n // 2),
                rng.normal(rng.uniform(140, 220), rng.uniform(5, 30), n - n // 2),
                [0, 255],  # so the histogram range is exactly [0, 1]: one bin per 8-bit level
            ]
        )
        values = (np.clip(np.round(levels), 0, 255) / 255).reshape(-1, 2)
        t = otsu_threshold(values)
        np.testing.assert_array_equal(values > t, brute_force_otsu_mask(values))
    assert otsu_threshold(np.full((4, 4), 0.3)) == pytest.approx(0.3)


def chest(size: int) -> np.ndarray:
    """A chest-X-ray-like test image: bright body on black air, two dark lungs inside it."""
    y, x = np.mgrid[0:size, 0:size] / size
    body = ((y - 0.55) / 0.5) ** 2 + ((x - 0.5) / 0.42) ** 2 < 1
    lungs = np.zeros_like(body)
    for cx in (0.32, 0.68):
        lungs |= ((y - 0.5) / 0.28) ** 2 + ((x - cx) / 0.12) ** 2 < 1
    img = np.where(body, 0.7 + 0.05 * np.sin(25 * x), 0.0)
    img = np.where(lungs, 0.25 + 0.03 * np.cos(30 * y), img)
    return img.astype(np.float32), lungs


def test_foreground_mask_polarity() -> None:
    image = brain(64, 0)
    bright = foreground_mask(image, "bright")
    assert not bright[0, 0] and bright[32, 18]  # background corner, tissue beside the ventricle
    assert np.array_equal(foreground_mask(image, "dark"), ~bright)
    with pytest.raises(MedadError, match="bright"):
        foreground_mask(image, "middle")


def test_anatpaste_default_foreground_is_the_lungs() -> None:
    """The study's (and Sato et al.'s) rule: the dark Otsu class without the regions touching
    the border, so the lungs of a chest X-ray and not the air around the body."""
    from medad.methods.base import build_config, method_class

    image, lungs = chest(128)
    inner = foreground_mask(image)
    assert (inner & lungs).sum() > 0.95 * lungs.sum()
    assert not (inner & ~ndimage.binary_dilation(lungs, iterations=2)).any()
    assert foreground_mask(image, "dark")[0, 0]  # the whole dark class includes the air
    for seed in range(10):
        out, label = make_anomaly("anatpaste", image, np.random.default_rng(seed))
        assert label.any() and not label[~inner].any()
    assert build_config(method_class("anatpaste"), {}).foreground == "dark-inner"


@pytest.mark.parametrize("channels", [1, 3])
def test_anatpaste_label_stays_inside_the_otsu_foreground(channels: int) -> None:
    image = brain(128, 0, channels)
    for polarity in ("dark-inner", "bright"):
        fg = foreground_mask(image, polarity)
        assert fg.any()
        for seed in range(10):
            out, label = make_anomaly(
                "anatpaste", image, np.random.default_rng(seed), foreground=polarity
            )
            assert np.all(label[~fg] == 0)
            assert np.array_equal(out[~fg], image[~fg])
            assert label.max() <= 1.0
    # no foreground at all: the patch goes anywhere, as in the authors' code
    flat = np.zeros((64, 64), dtype=np.float32)
    flat[:, 32:] = 0.5
    out, label = make_anomaly("anatpaste", flat, np.random.default_rng(1), foreground="dark-inner")
    assert not foreground_mask(flat).any() and label.any()


def test_nsa_half_widths_follow_the_studys_medical_setting() -> None:
    """MedIAnomaly's NSA draws half-widths 0.05 + Gamma(2, 0.03) of the side (3-40 %): sides
    of 10-80 % with mean about 22 %, where the full-width draw gives 3-40 %, median under 20 %."""
    from medad.methods.base import build_config, method_class

    params = build_config(method_class("nsa"), {}).anomaly_params
    assert params["width_gamma"] == (2.0, 0.03, 0.05) and params["half_widths"]
    assert params["object_threshold"] == pytest.approx(20 / 255)
    image = brain(128, 0)
    study = {k: params[k] for k in ("width_bounds", "width_gamma", "half_widths")}
    widths = [
        p.source_box.width / 128
        for seed in range(300)
        for p in sample_nsa_patches(
            image, image, np.random.default_rng(seed), object_threshold=None, **study
        )
    ]
    assert min(widths) >= 0.09 and max(widths) <= 0.8
    assert 0.19 < np.mean(widths) < 0.25
    # without resizing the target box keeps the source's size
    for seed in range(20):
        for p in sample_nsa_patches(image, image, np.random.default_rng(seed), resize_bounds=None):
            assert p.target_box[2:] == p.source_box[2:]
