"""NIfTI volumes end to end: folder and data.json layouts listing volumes, slice records, the
volume-level evaluation, and the inverse of the slice geometry."""

from __future__ import annotations

import itertools
import json

import nibabel as nib
import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from medad.data.layouts import DataJsonDataset, FolderDataset
from medad.data.loading import Preprocess, decode_records
from medad.data.readers import nifti_axial_slices, nifti_depth, nifti_volume_from_axial
from medad.data.synthetic import generate_brain
from medad.errors import MedadError
from medad.evaluation import evaluate
from medad.metrics.volume import volume_score, volume_scores
from medad.predictions import Predictions
from medad.runs import RunSpec, execute

DEPTH, SIZE = 5, 32


def _volume(path, seed, stream, lesion_slices=(), mask_path=None):
    """A DEPTH-slice brain volume (display slices stacked on the RAS+ z axis, identity affine);
    `lesion_slices` hold planted lesions, written as a segmentation to `mask_path`."""
    normal, _ = generate_brain(DEPTH, size=SIZE, seed=seed, stream=stream)
    sick, masks = generate_brain(DEPTH, size=SIZE, seed=seed, stream=stream, abnormal=True)
    planes = np.array([sick[k] if k in lesion_slices else normal[k] for k in range(DEPTH)])
    seg = np.array(
        [masks[k] if k in lesion_slices else np.zeros_like(masks[k]) for k in range(DEPTH)]
    )

    def to_ras(stack):  # inverse of the reader's display transform
        return np.flip(stack, axis=(1, 2)).transpose(2, 1, 0).copy()

    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(to_ras(planes).astype(np.float32), np.eye(4)), path)
    if mask_path is not None:
        mask_path.parent.mkdir(parents=True, exist_ok=True)
        nib.save(nib.Nifti1Image(to_ras(seg).astype(np.uint8), np.eye(4)), mask_path)
    return planes


@pytest.fixture
def volume_folder(tmp_path):
    root = tmp_path / "vols"
    for i in range(6):
        _volume(root / "train" / "normal" / f"t{i}.nii.gz", 1, 100 + i)
    for i in range(3):
        _volume(root / "test" / "normal" / f"n{i}.nii.gz", 1, 200 + i)
        _volume(
            root / "test" / "abnormal" / f"a{i}.nii.gz",
            1,
            300 + i,
            lesion_slices=(1, 2, 3),
            mask_path=root / "test" / "masks" / f"a{i}_seg.nii.gz",
        )
    return root


def test_folder_of_volumes_lists_slices_with_labels_from_masks(volume_folder):
    ds = FolderDataset(volume_folder)
    train, test = ds.records("train"), ds.records("test")
    assert len(train) == 6 * DEPTH and {r.label for r in train} == {0}
    assert train[0].id == "train/t0.nii.gz#0" and train[0].slice == 0
    a0 = [r for r in test if r.id.startswith("abnormal/a0.nii.gz#")]
    assert [r.label for r in a0] == [0, 1, 1, 1, 0]  # slices without lesion voxels are normal
    split = decode_records(test, Preprocess(size=16), with_masks=True)
    assert split.images.shape == (6 * DEPTH, 1, 16, 16)
    assert split.masks[[i for i, r in enumerate(test) if r.label]].any(axis=(1, 2)).all()
    assert not split.masks[[i for i, r in enumerate(test) if not r.label]].any()
    # a slice record decodes to the very slice the reader gives
    k = 2
    direct = nifti_axial_slices(volume_folder / "test/abnormal/a0.nii.gz")[k]
    rec = next(r for r in test if r.id == f"abnormal/a0.nii.gz#{k}")
    one = decode_records([rec], Preprocess(size=SIZE), with_masks=False)
    np.testing.assert_array_equal(
        one.images[0, 0], np.uint8(np.clip(np.rint(direct * 255), 0, 255))
    )


def test_datajson_volumes_without_masks_label_every_slice_by_volume(tmp_path):
    root = tmp_path / "dj"
    _volume(root / "images" / "tr.nii.gz", 2, 1)
    _volume(root / "images" / "n.nii.gz", 2, 2)
    _volume(root / "images" / "a.nii.gz", 2, 3, lesion_slices=(2,))
    (root / "data.json").write_text(
        json.dumps({"train": {"0": ["tr.nii.gz"]}, "test": {"0": ["n.nii.gz"], "1": ["a.nii.gz"]}})
    )
    test = DataJsonDataset(root).records("test")
    assert [r.id for r in test[:2]] == ["n.nii.gz#0", "n.nii.gz#1"]
    assert [r.label for r in test] == [0] * DEPTH + [1] * DEPTH


def test_check_data_accepts_a_folder_of_volumes(volume_folder):
    from medad.data.check import check_data

    assert check_data(volume_folder) == []


def test_volume_mask_must_share_the_grid(volume_folder):
    bad = volume_folder / "test" / "masks" / "a1_seg.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((SIZE, SIZE, DEPTH + 1), np.uint8), np.eye(4)), bad)
    with pytest.raises(MedadError, match="a1_seg.nii.gz.*same grid"):
        FolderDataset(volume_folder)


def test_volume_score_and_volume_metrics_match_a_brute_force():
    rng = np.random.default_rng(0)
    assert volume_score(np.array([0.1, 0.9, 0.3])) == pytest.approx(0.9)  # up to 10 slices: max
    s = rng.random(25)
    assert volume_score(s) == pytest.approx(np.sort(s)[-3:].mean())  # ceil(2.5) = 3 slices
    ids, labels, scores = [], [], []
    truth = {}
    for v in range(12):
        depth = int(rng.integers(3, 30))
        sick = v % 2
        slice_labels = (rng.random(depth) < 0.4).astype(int) * sick
        slice_scores = rng.normal(size=depth) + slice_labels
        ids += [f"p/v{v}.nii#{k}" for k in range(depth)]
        labels += list(slice_labels)
        scores += list(slice_scores)
        k = int(np.ceil(0.1 * depth))
        truth[f"p/v{v}.nii"] = (int(slice_labels.max()), np.sort(slice_scores)[-k:].mean())
    ids.append("plain.png")  # a 2-D image among them belongs to no volume
    labels.append(0)
    scores.append(0.0)
    pred = Predictions(ids, np.array(labels), np.array(scores))
    vol_ids, vol_labels, vol_scores = volume_scores(pred.ids, pred.labels, pred.image_scores)
    assert vol_ids == list(truth)
    np.testing.assert_allclose(vol_scores, [t[1] for t in truth.values()])
    m = evaluate(pred)
    y = [t[0] for t in truth.values()]
    s = [t[1] for t in truth.values()]
    assert m["volume_auroc"] == pytest.approx(roc_auc_score(y, s))
    assert m["volume_ap"] == pytest.approx(average_precision_score(y, s))
    assert "volume_auroc" not in evaluate(
        Predictions(["a.png", "b.png"], np.array([0, 1]), np.array([0.0, 1.0]))
    )


def test_run_on_volumes_reports_slice_and_volume_metrics(volume_folder, tmp_path):
    spec = RunSpec(
        "ae",
        "folder",
        overrides={"epochs": 2, "batch_size": 16, "image_size": 32},
    )
    res = execute(spec, tmp_path / "out", device="cpu", progress=False, data_root=volume_folder)
    pred = Predictions.load(res.run_dir / "predictions.npz")
    assert len(pred.ids) == 6 * DEPTH and pred.ids[0].endswith(".nii.gz#0")
    _, labels, scores = volume_scores(pred.ids, pred.labels, pred.image_scores)
    assert labels.tolist() == [0, 0, 0, 1, 1, 1]
    assert res.metrics["volume_auroc"] == pytest.approx(roc_auc_score(labels, scores))
    assert 0 <= res.metrics["image_auroc"] <= 1 and "pixel_auroc" in res.metrics


def test_axial_planes_go_back_to_the_files_voxel_grid(tmp_path):
    rng = np.random.default_rng(1)
    vol = rng.random((4, 5, 6)).astype(np.float32) + 1
    for perm in itertools.permutations(range(3)):
        for flips in ((1, 1, 1), (-1, 1, -1), (-1, -1, 1)):
            affine = np.eye(4)
            affine[:3, :3] = 0
            for axis, (p, f) in enumerate(zip(perm, flips, strict=True)):
                affine[p, axis] = f * (axis + 1.5)
            nib.save(nib.Nifti1Image(vol, affine), tmp_path / "v.nii.gz")
            planes = nifti_axial_slices(tmp_path / "v.nii.gz", percentiles=(0, 100))
            assert nifti_depth(tmp_path / "v.nii.gz") == planes.shape[0]
            back = nifti_volume_from_axial(planes, tmp_path / "v.nii.gz")
            expected = (vol - vol.min()) / (vol.max() - vol.min())
            np.testing.assert_allclose(back, expected, atol=1e-6)
