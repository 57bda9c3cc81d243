"""Camelyon16 patches → ``Camelyon16/train/good``, ``test/good``, ``test/Ungood``.

Camelyon16 itself distributes whole-slide images (``.tif``) and tumour outlines; anomaly
detection uses patches cut from them. ``prepare`` starts from patches, in one of two forms:

1. BMAD's ``Histopathology_AD`` release (github.com/DorisBao/BMAD): ``train/good``,
   ``valid/{good,Ungood}``, ``test/{good,Ungood}``. Its split is kept: ``train/good`` trains and
   valid + test test. Its sizes, 5088 train and 236 valid + 1997 test, are exactly the paper's 5088
   and 1120 + 1113 (a match we infer from the counts). Validation files are renamed
   ``valid_<name>`` so that they cannot clash with test files. ``--counts`` does not apply.
2. Patch folders you cut yourself: ``normal/`` and ``tumor/`` (also accepted: ``good``/``Ungood``,
   ``negative``/``positive``, ``0``/``1``). Patches may sit directly in them or in one subfolder
   per slide (``normal/<slide>/*.png``); with subfolders, patches of one slide (normal and tumour
   alike) never straddle train and test. Split sizes follow the paper (5088, 1120 + 1113), scaled
   to the source (see `medad.data.prepare.splits`).

Patches are copied unchanged (RGB) unless ``--size`` is given, which writes resized RGB PNGs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from medad.data.catalog import benchmark
from medad.data.inventory import file_stem
from medad.data.official import scan_good_ungood
from medad.data.prepare.base import PrepareOptions, register_preparer
from medad.data.prepare.class_folders import subfolders
from medad.data.prepare.output import export_image
from medad.data.prepare.splits import Candidate, split_candidates
from medad.data.readers import is_image_file
from medad.errors import MedadError

NORMAL_NAMES = ("normal", "good", "negative", "0")
TUMOUR_NAMES = ("tumor", "tumour", "ungood", "abnormal", "positive", "1")
BMAD_FOLDER = "Histopathology_AD"


def _is_bmad_release(path: Path) -> bool:
    return (path / "train" / "good").is_dir() and (path / "test").is_dir()


def _write(cands: list[Candidate], folder: Path, options: PrepareOptions) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for c in cands:
        export_image(c.source, folder, c.name, size=options.size, gray=False)


def _from_bmad(root: Path, out: Path, options: PrepareOptions) -> dict[str, Any]:
    if options.counts is not None:
        raise MedadError(f"{root}: BMAD's split is kept as it is; --counts does not apply")
    parts = {"test": scan_good_ungood(root), "valid": scan_good_ungood(root, eval_split="valid")}
    parts["test"].raise_problems()
    if (root / "valid").is_dir():
        parts["valid"].raise_problems()
    train = [Candidate(0, file_stem(r.image), "", r.image) for r in parts["test"].records["train"]]
    test: dict[int, list[Candidate]] = {0: [], 1: []}
    for split, inv in parts.items():
        if split == "valid" and not (root / "valid").is_dir():
            continue
        prefix = "valid_" if split == "valid" else ""
        for r in inv.records["test"]:
            test[r.label].append(Candidate(r.label, prefix + file_stem(r.image), "", r.image))
    _write(train, out / "train" / "good", options)
    _write(test[0], out / "test" / "good", options)
    _write(test[1], out / "test" / "Ungood", options)
    return {
        "rule": "BMAD Histopathology_AD split kept: train/good trains; valid + test test "
        "(valid files renamed valid_<name>)",
        "counts": {"train": len(train), "test_normal": len(test[0]), "test_abnormal": len(test[1])},
        "paper_counts": benchmark("camelyon16").counts.as_dict(),
        "counts_rule": "BMAD split",
    }


def _patch_candidates(source: Path) -> list[Candidate]:
    classes: dict[int, Path] = {}
    for folder in subfolders(source):
        name = folder.name.lower()
        label = 0 if name in NORMAL_NAMES else 1 if name in TUMOUR_NAMES else None
        if label is None:
            continue
        if label in classes:
            raise MedadError(
                f"{source}: two {'tumour' if label else 'normal'} folders: "
                f"{classes[label].name} and {folder.name}"
            )
        classes[label] = folder
    for label, names in ((0, NORMAL_NAMES), (1, TUMOUR_NAMES)):
        if label not in classes:
            raise MedadError(
                f"{source}: no {'tumour' if label else 'normal'} patch folder; expected "
                f"{' or '.join(n + '/' for n in names[:2])} (or BMAD's train/, valid/, test/)"
            )
    candidates = []
    for label, folder in sorted(classes.items()):
        patches = sorted(p for p in folder.rglob("*") if p.is_file() and is_image_file(p))
        if not patches:
            raise MedadError(f"{folder}: no image files in this folder or its subfolders")
        for p in patches:
            rel = p.relative_to(folder)
            nested = len(rel.parts) > 1
            group = f"slide:{rel.parts[0]}" if nested else f"{folder.name}/{rel.as_posix()}"
            name = "_".join((*rel.parts[:-1], file_stem(p)))
            candidates.append(Candidate(label, name, group, p, kind=folder.name))
    return candidates


@register_preparer(
    "camelyon16",
    source_layout="patch folders normal/ and tumor/ (optionally one subfolder per slide), "
    "or BMAD's Histopathology_AD release (train/, valid/, test/)",
)
def build(source: Path, out: Path, options: PrepareOptions) -> dict[str, Any]:
    for root in (source / BMAD_FOLDER, source):
        if _is_bmad_release(root):
            return _from_bmad(root, out, options)
    paper = benchmark("camelyon16").counts
    selection = split_candidates(
        _patch_candidates(source), paper, seed=options.seed, requested=options.counts
    )
    c = selection.counts()
    options.log(f"camelyon16: writing {c.train} train, {c.test_normal} + {c.test_abnormal} test")
    _write(selection.train, out / "train" / "good", options)
    _write(selection.test_normal, out / "test" / "good", options)
    _write(selection.test_abnormal, out / "test" / "Ungood", options)
    rule = "normal: patches of the normal folder; abnormal: patches of the tumour folder"
    return {"rule": rule, **selection.manifest(paper)}
