"""The embedded synthetic datasets: determinism, anatomy, lesions, variety, dataset protocol."""

from __future__ import annotations

import time

import numpy as np
import pytest
from scipy import ndimage
from sklearn.metrics import roc_auc_score

from medad.data import synthetic
from medad.data.base import dataset_infos, get_dataset
from medad.data.synthetic import SyntheticDataset, generate, generate_brain, generate_chest
from medad.errors import MedadError

KINDS = ("brain", "chest")
GENERATORS = {"brain": generate_brain, "chest": generate_chest}
SIZE = 64  # small images keep the suite fast; the geometry is resolution-independent


@pytest.fixture(scope="module", params=KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture(scope="module")
def pairs(kind: str) -> tuple[synthetic.SyntheticBatch, synthetic.SyntheticBatch]:
    """40 abnormal images and their normal twins (same seed, stream and index)."""
    normal = generate(kind, 40, size=SIZE, stream=5)
    abnormal = generate(kind, 40, size=SIZE, stream=5, abnormal=True)
    return normal, abnormal


# --- the generators ----------------------------------------------------------------------------


@pytest.mark.parametrize("abnormal", [False, True])
def test_dtype_shape_and_range(kind: str, abnormal: bool) -> None:
    images, masks = GENERATORS[kind](4, size=SIZE, abnormal=abnormal)
    assert images.dtype == np.uint8 and images.shape == (4, SIZE, SIZE)
    assert masks.dtype == bool and masks.shape == (4, SIZE, SIZE)
    assert masks.any(axis=(1, 2)).all() if abnormal else not masks.any()
    for image in images:  # dark background or air, bright anatomy: a real dynamic range
        assert np.percentile(image, 5) < 40 and np.percentile(image, 99) > 150


def test_other_sizes(kind: str) -> None:
    images, masks = GENERATORS[kind](2, size=96, abnormal=True)
    assert images.shape == masks.shape == (2, 96, 96)
    assert masks.any(axis=(1, 2)).all()


def test_same_seed_gives_identical_bytes(kind: str) -> None:
    a = GENERATORS[kind](3, size=SIZE, seed=7, abnormal=True)
    b = GENERATORS[kind](3, size=SIZE, seed=7, abnormal=True)
    assert a[0].tobytes() == b[0].tobytes() and a[1].tobytes() == b[1].tobytes()
    c = GENERATORS[kind](3, size=SIZE, seed=8, abnormal=True)
    assert all(not np.array_equal(x, y) for x, y in zip(a[0], c[0], strict=True))


@pytest.mark.parametrize("abnormal", [False, True])
def test_image_does_not_depend_on_how_many_are_generated(kind: str, abnormal: bool) -> None:
    ten = GENERATORS[kind](10, size=SIZE, abnormal=abnormal)
    for k in (1, 4):
        first = GENERATORS[kind](k, size=SIZE, abnormal=abnormal)
        assert np.array_equal(first[0], ten[0][:k]) and np.array_equal(first[1], ten[1][:k])


def test_streams_share_no_image(kind: str) -> None:
    streams = [GENERATORS[kind](6, size=SIZE, stream=s)[0] for s in range(3)]
    for i, a in enumerate(streams):
        for b in streams[i + 1 :]:
            # no image of one stream is close to any image of another
            diff = np.abs(a[:, None].astype(int) - b[None].astype(int)).mean(axis=(2, 3))
            assert diff.min() > 3.0


def test_bad_arguments_raise() -> None:
    with pytest.raises(MedadError, match="size"):
        generate_brain(2, size=16)
    with pytest.raises(MedadError, match="seed"):
        generate_chest(2, seed=-1)
    with pytest.raises(MedadError, match="difficulty"):
        generate("brain", 2, difficulty=1.5)
    with pytest.raises(MedadError, match="kind"):
        generate("knee", 2)  # type: ignore[arg-type]
    assert generate_brain(0, size=SIZE)[0].shape == (0, SIZE, SIZE)


# --- anatomy and lesions -------------------------------------------------------------------------


def test_abnormal_image_is_its_normal_twin_plus_lesions(pairs) -> None:
    normal, abnormal = pairs
    for i in range(len(normal.images)):
        mask = abnormal.masks[i]
        diff = np.abs(abnormal.images[i].astype(int) - normal.images[i].astype(int))
        # lesions (and a brain lesion's mass effect) stay inside the anatomy, so far outside it
        # the two images are identical
        near = ndimage.binary_dilation(normal.regions[i] | mask, iterations=3)
        assert not diff[~near].any()
        # and the change concentrates on the lesion
        assert diff[mask].mean() > 3 * max(diff[~mask].mean(), 0.1)


def test_every_lesion_is_inside_the_anatomy(pairs) -> None:
    _, abnormal = pairs
    assert abnormal.masks.any(axis=(1, 2)).all()
    assert not (abnormal.masks & ~abnormal.regions).any()


def test_region_is_the_named_anatomy(kind: str, pairs) -> None:
    """The region lesions are confined to is what it claims: brain inside the head, or lungs."""
    normal, _ = pairs
    for image, region in zip(normal.images, normal.regions, strict=True):
        assert 0.1 < region.mean() < 0.6
        if kind == "brain":
            head = ndimage.binary_fill_holes(ndimage.gaussian_filter(image, 1.0) > 60)
            assert not (region & ~head).any()
            # the brain is surrounded by the bright scalp
            ring = ndimage.binary_dilation(region, iterations=6) & ~region
            assert image[ring].max() > image[region].mean()
        else:
            lungs, n = ndimage.label(region)
            sizes = ndimage.sum_labels(region, lungs, range(1, n + 1))
            big = [k + 1 for k in np.nonzero(sizes > 0.05 * region.sum())[0]]
            assert len(big) == 2  # two lungs (give or take a stray pixel at a sharp corner)
            xs = [np.nonzero(lungs == k)[1].mean() for k in big]
            assert min(xs) < SIZE / 2 < max(xs)  # one on each side of the mediastinum
            # aerated lungs are darker than the rest of the body
            body = ndimage.binary_erosion(ndimage.gaussian_filter(image, 1.0) > 60, iterations=2)
            assert image[region].mean() < image[body & ~region].mean() - 20


def test_normal_images_vary(kind: str) -> None:
    batch = generate(kind, 24, size=SIZE, stream=3)
    images = batch.images.astype(float)
    # every pair differs visibly
    diff = np.abs(images[:, None] - images[None]).mean(axis=(2, 3))
    assert diff[np.triu_indices(len(images), 1)].min() > 3.0
    # brightness, anatomy size and position vary
    assert images.mean(axis=(1, 2)).std() > 2.0
    areas = batch.regions.mean(axis=(1, 2))
    assert areas.max() / areas.min() > 1.15
    centres = np.array([ndimage.center_of_mass(r) for r in batch.regions])
    assert (centres.std(axis=0) > 0.5).all()


def test_lesions_vary_in_size_and_contrast(kind: str) -> None:
    normal = generate(kind, 60, size=SIZE, stream=6)
    abnormal = generate(kind, 60, size=SIZE, stream=6, abnormal=True)
    area = abnormal.masks.mean(axis=(1, 2))
    assert area.min() < 0.005 and area.max() > 0.04  # from a few pixels to large lesions
    contrast = np.array(
        [
            (a.astype(float) - n)[m].mean()
            for a, n, m in zip(abnormal.images, normal.images, abnormal.masks, strict=True)
        ]
    )
    assert (contrast > 0).mean() > 0.9  # hyperintense lesions, opacities
    low, high = np.percentile(contrast, [10, 90])
    assert low < 50 and high > 2.5 * low  # some subtle, some obvious


def test_difficulty_scales_conspicuity(kind: str) -> None:
    normal = generate(kind, 30, size=SIZE, stream=7)

    def mean_contrast(difficulty: float) -> float:
        ab = generate(kind, 30, size=SIZE, stream=7, abnormal=True, difficulty=difficulty)
        diff = ab.images.astype(float) - normal.images
        return float(np.mean([d[m].mean() for d, m in zip(diff, ab.masks, strict=True)]))

    easy, default, hard = mean_contrast(0.0), mean_contrast(0.5), mean_contrast(1.0)
    assert easy > 1.5 * default and default > 1.5 * hard


def _top_z2(images: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """Mean of the largest 1 % squared per-pixel z-scores of each image."""
    z2 = (((images - mean) / std) ** 2).reshape(len(images), -1)
    k = z2.shape[1] // 100
    return np.sort(z2, axis=1)[:, -k:].mean(axis=1)


def test_anomalies_are_detectable_but_not_trivially(kind: str) -> None:
    """A pixelwise Gaussian of the training normals ranks abnormal images above normal ones
    clearly better than chance, but far from perfectly (a neural net has room to do better)."""
    data = SyntheticDataset(kind, n_train=200, n_test_normal=100, n_test_abnormal=100, size=SIZE)
    train = np.stack([r.image for r in data.records("train")]).astype(float) / 255
    test = data.records("test")
    images = np.stack([r.image for r in test]).astype(float) / 255
    labels = np.array([r.label for r in test])
    mean, std = train.mean(axis=0), train.std(axis=0) + 0.02
    auroc = roc_auc_score(labels, _top_z2(images, mean, std))
    assert 0.6 < auroc < 0.95, auroc


def test_generation_is_fast() -> None:
    start = time.process_time()  # CPU time: robust to other jobs sharing the machine
    generate("brain", 50, abnormal=True)
    generate("chest", 50, abnormal=True)
    # about 4 ms an image (600 in 2.5 s); the bound leaves a wide margin for slow machines
    assert time.process_time() - start < 4.0


# --- the dataset source ------------------------------------------------------------------------


def test_records(kind: str) -> None:
    data = SyntheticDataset(kind, n_train=6, n_test_normal=3, n_test_abnormal=4, size=SIZE)
    assert data.name == f"synth-{kind}" and data.channels == 1 and data.has_masks
    assert data.modality.endswith("(synthetic)")
    train, test = data.records("train"), data.records("test")
    assert [r.id for r in train] == [f"train-{i:05d}" for i in range(6)]
    assert all(r.label == 0 and r.mask is None for r in train)
    assert [r.id for r in test] == [f"test-normal-{i:05d}" for i in range(3)] + [
        f"test-abnormal-{i:05d}" for i in range(4)
    ]
    assert [r.label for r in test] == [0] * 3 + [1] * 4
    for r in train + test:
        assert isinstance(r.image, np.ndarray) and r.image.dtype == np.uint8
        assert r.image.shape == (SIZE, SIZE)
    assert not train[0].image.flags.writeable  # the memoised arrays cannot be altered by users
    for r in test[:3]:
        assert r.mask is None
    for r in test[3:]:
        assert isinstance(r.mask, np.ndarray) and r.mask.dtype == bool and r.mask.any()
    # the parts of the dataset share no image
    images = [r.image for r in train + test]
    for i, a in enumerate(images):
        assert all(not np.array_equal(a, b) for b in images[i + 1 :])


def test_records_are_generated_once(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    original = synthetic.generate

    def counting(*args, **kwargs):
        calls.append(args)
        return original(*args, **kwargs)

    monkeypatch.setattr(synthetic, "generate", counting)
    data = SyntheticDataset("chest", n_train=3, n_test_normal=2, n_test_abnormal=2, size=SIZE)
    assert not calls  # lazy
    first = data.records("test")
    second = data.records("test")
    assert len(calls) == 2  # test normals + test abnormals, once
    assert all(a is b for a, b in zip(first, second, strict=True))
    data.records("train")
    data.records("train")
    assert len(calls) == 3


def test_fingerprint_tracks_every_option() -> None:
    base = dict(n_train=5, n_test_normal=2, n_test_abnormal=2, size=SIZE, seed=0)
    ref = SyntheticDataset("brain", **base).fingerprint()
    assert ref.startswith(f"synth-brain-v{synthetic.GENERATOR_VERSION}-")
    assert SyntheticDataset("brain", **base).fingerprint() == ref
    changes = dict(n_train=6, n_test_normal=3, n_test_abnormal=3, size=SIZE + 1, seed=1)
    others = {SyntheticDataset("brain", **{**base, k: v}).fingerprint() for k, v in changes.items()}
    others.add(SyntheticDataset("brain", **base, difficulty=0.7).fingerprint())
    others.add(SyntheticDataset("chest", **base).fingerprint())
    assert ref not in others and len(others) == len(changes) + 2


def test_registered_and_built_by_name() -> None:
    infos = {info.name: info for info in dataset_infos()}
    for kind in KINDS:
        info = infos[f"synth-{kind}"]
        assert not info.needs_root and info.modality.endswith("(synthetic)")
        data = get_dataset(f"synth-{kind}", n_train=2, n_test_normal=1, n_test_abnormal=1, size=32)
        assert isinstance(data, SyntheticDataset) and data.kind == kind
        assert len(data.records("test")) == 2


@pytest.mark.parametrize(
    ("options", "needle"),
    [
        ({"n_trian": 5}, "n_trian"),
        ({"n_train": 0}, "n_train"),
        ({"n_test_abnormal": 0}, "n_test_abnormal"),
        ({"n_train": 2.5}, "n_train"),
        ({"size": 16}, "size"),
        ({"seed": -3}, "seed"),
        ({"difficulty": -0.1}, "difficulty"),
        ({"size": True}, "size"),
    ],
)
def test_bad_options_raise(options: dict, needle: str) -> None:
    with pytest.raises(MedadError, match=needle) as info:
        get_dataset("synth-brain", **options)
    if needle == "n_trian":  # an unknown option lists the allowed ones
        for allowed in ("n_train", "n_test_normal", "n_test_abnormal", "size", "seed"):
            assert allowed in str(info.value)
