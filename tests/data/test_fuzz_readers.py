"""Fuzzing the data.json and folder readers: any entries, names and bytes load or give a
MedadError (with ``check-data`` listing problems instead), never another exception."""

from __future__ import annotations

import io
import json
import tempfile
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from medad.data.check import inspect_data
from medad.data.layouts import DataJsonDataset, FolderDataset
from medad.data.loading import Preprocess, load_split
from medad.errors import MedadError

FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _png(value: int, size: tuple[int, int] = (12, 10)) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full(size, value, np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


contents = st.one_of(
    st.integers(0, 255).map(_png),
    st.binary(max_size=40),
    st.integers(0, 255).map(lambda v: _png(v)[:30]),  # truncated
    st.just(_png(128, (7, 5))),  # another size
)
entries = st.one_of(
    st.sampled_from(["a.png", "b.png", "c.png", "../a.png", "/etc/passwd", "", ".", "x\0.png"]),
    st.sampled_from(["images/a.png", "../../outside.png", "sub/../a.png", "missing.png"]),
    st.text(max_size=12),
    st.integers(),
    st.none(),
    st.lists(st.just("a.png"), max_size=2),
)
labels = st.lists(entries, max_size=4)
specs = st.one_of(
    st.fixed_dictionaries(
        {"train": st.dictionaries(st.sampled_from(["0", "1", "unlabeled"]), labels, max_size=2),
         "test": st.dictionaries(st.sampled_from(["0", "1"]), labels, max_size=2)}
    ),
    st.dictionaries(st.text(max_size=5), labels, max_size=3),
    labels,
    st.none(),
)  # fmt: skip


def _expect_load_or_error(open_dataset) -> None:
    try:
        ds = open_dataset()
        for split in ("train", "test"):
            load_split(ds, split, Preprocess(size=16))
    except MedadError as exc:
        assert str(exc)


@FUZZ
@given(specs, st.dictionaries(st.sampled_from(["a.png", "b.png", "c.png"]), contents))
def test_datajson_reader(spec, files):
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "data"
        (root / "images").mkdir(parents=True)
        (Path(tmp) / "outside.png").write_bytes(_png(1))
        for name, data in files.items():
            (root / "images" / name).write_bytes(data)
        (root / "data.json").write_text(json.dumps(spec))
        _expect_load_or_error(lambda: DataJsonDataset(root))
        assert inspect_data(root).layout == "datajson"


names = st.sampled_from(["a.png", "b.png", "c.PNG", "d.jpg", "e.txt", "a_mask.png", "f.dcm"])
folders = st.sampled_from(["train/normal", "test/normal", "test/abnormal", "test/masks"])
folder_files = st.dictionaries(
    st.tuples(folders, names),
    contents,
    max_size=8,
)


@FUZZ
@given(folder_files, st.one_of(st.none(), st.floats(0, 2), st.integers(-1, 300)))
def test_folder_reader(files, mask_threshold):
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for (folder, name), data in files.items():
            (root / folder).mkdir(parents=True, exist_ok=True)
            (root / folder / name).write_bytes(data)
        (root / "train" / "normal").mkdir(parents=True, exist_ok=True)
        _expect_load_or_error(lambda: FolderDataset(root, mask_threshold=mask_threshold))
        report = inspect_data(root)
        assert report.ok or all(str(p) for p in report.problems)
