"""Choose which images of a raw dataset go to train, test normal and test abnormal.

Split sizes follow the paper (PAPER.md, "Datasets", via `medad.data.catalog`). When the source
holds fewer images than the paper used, all three sizes are scaled by one factor
``f = min(1, normal / (train + test_normal), abnormal / test_abnormal)`` (rounded down, at least
one image each), so the paper's proportions are kept; ``--counts`` sets them explicitly. Both are
recorded in ``prepare.json``.

Images come in *groups* (a patient, a slide): a group never has images in both train and test.
Groups are visited in a seeded random order; a group goes to test while the test split still
needs what it holds (normal or abnormal images), otherwise to train. The test images and the
training images (normal images of training groups) are then drawn at random from those pools.
When every image is its own group this is plain random sampling. Everything is deterministic for
a given seed and source, independent of the order files are listed in.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from medad.data.catalog import SplitCounts
from medad.errors import MedadError


@dataclass(frozen=True)
class Candidate:
    """One image the source offers."""

    #: 0 normal, 1 abnormal
    label: int
    #: output file name without extension, unique in the dataset
    name: str
    #: patient, study or slide: a group never straddles train and test
    group: str
    #: the raw file (image, DICOM or NIfTI volume)
    source: Path
    #: axial slice index in a NIfTI volume, None for 2-D files
    index: int | None = None
    #: the source's class (e.g. ``glioma``), counted in prepare.json
    kind: str = ""


@dataclass
class Selection:
    """The chosen images and how their numbers were decided."""

    train: list[Candidate]
    test_normal: list[Candidate]
    test_abnormal: list[Candidate]
    targets: SplitCounts
    rule: str
    scale: float
    available: dict[str, int]

    def all(self) -> list[Candidate]:
        return [*self.train, *self.test_normal, *self.test_abnormal]

    def counts(self) -> SplitCounts:
        return SplitCounts(len(self.train), len(self.test_normal), len(self.test_abnormal))

    def manifest(self, paper: SplitCounts) -> dict[str, Any]:
        kinds = {
            split: dict(sorted(Counter(c.kind for c in cands if c.kind).items()))
            for split, cands in (
                ("train", self.train),
                ("test_normal", self.test_normal),
                ("test_abnormal", self.test_abnormal),
            )
        }
        fields: dict[str, Any] = {
            "counts": self.counts().as_dict(),
            "paper_counts": paper.as_dict(),
            "counts_rule": self.rule,
            "scale": round(self.scale, 6),
            "available": self.available,
            "groups": {
                "train": len({c.group for c in self.train}),
                "test": len({c.group for c in self.test_normal + self.test_abnormal}),
            },
        }
        if any(kinds.values()):
            fields["classes"] = kinds
        return fields


def choose_targets(
    paper: SplitCounts, n_normal: int, n_abnormal: int, requested: SplitCounts | None
) -> tuple[SplitCounts, str, float]:
    """The split sizes to aim for, the rule that gave them and the scale factor (see module)."""
    if n_normal < 2 or n_abnormal < 1:
        raise MedadError(
            f"the source holds {n_normal} normal and {n_abnormal} abnormal images; at least 2 "
            "normal (train and test) and 1 abnormal image are needed"
        )
    if requested is not None:
        if min(requested.train, requested.test_normal, requested.test_abnormal) < 1:
            raise MedadError(f"--counts must all be at least 1, got {_text(requested)}")
        if requested.train + requested.test_normal > n_normal or (
            requested.test_abnormal > n_abnormal
        ):
            raise MedadError(
                f"--counts {_text(requested)} asks for more than the source holds "
                f"({n_normal} normal, {n_abnormal} abnormal images)"
            )
        return requested, "--counts", 1.0
    scale = min(1.0, n_normal / (paper.train + paper.test_normal), n_abnormal / paper.test_abnormal)
    if scale >= 1.0:
        return paper, "paper", 1.0
    train, normal, abnormal = (
        max(1, math.floor(n * scale)) for n in (paper.train, paper.test_normal, paper.test_abnormal)
    )
    train = max(1, min(train, n_normal - normal))
    return SplitCounts(train, normal, min(abnormal, n_abnormal)), "scaled to the source", scale


def _text(c: SplitCounts) -> str:
    return f"{c.train},{c.test_normal},{c.test_abnormal}"


def parse_counts(text: str) -> SplitCounts:
    """``"TRAIN,NORMAL,ABNORMAL"`` (e.g. ``3851,1000,1000``) → SplitCounts."""
    parts = [p.strip() for p in text.split(",")]
    try:
        values = [int(p) for p in parts]
    except ValueError:
        values = []
    if len(values) != 3:
        raise MedadError(
            f"--counts {text!r}: expected TRAIN,TEST_NORMAL,TEST_ABNORMAL, e.g. 3851,1000,1000"
        )
    return SplitCounts(*values)


def split_candidates(
    candidates: Iterable[Candidate],
    paper: SplitCounts,
    *,
    seed: int,
    requested: SplitCounts | None = None,
) -> Selection:
    """Pick train / test normal / test abnormal images (see the module docs)."""
    cands = sorted(candidates, key=lambda c: (c.group, c.name))
    n_normal = sum(c.label == 0 for c in cands)
    n_abnormal = len(cands) - n_normal
    targets, rule, scale = choose_targets(paper, n_normal, n_abnormal, requested)
    groups: dict[str, list[Candidate]] = {}
    for c in cands:
        groups.setdefault(c.group, []).append(c)
    keys = list(groups)
    rng = np.random.default_rng(seed)
    need_normal, need_abnormal = targets.test_normal, targets.test_abnormal
    test_pool: list[Candidate] = []
    train_pool: list[Candidate] = []
    for i in rng.permutation(len(keys)):
        group = groups[keys[i]]
        g_abnormal = sum(c.label for c in group)
        g_normal = len(group) - g_abnormal
        if (need_abnormal > 0 and g_abnormal) or (need_normal > 0 and g_normal):
            test_pool += group
            need_normal -= g_normal
            need_abnormal -= g_abnormal
        else:
            train_pool += group

    def draw(pool: list[Candidate], label: int, k: int) -> list[Candidate]:
        items = [c for c in pool if c.label == label]
        picked = [items[j] for j in rng.permutation(len(items))[:k]]
        return sorted(picked, key=lambda c: c.name)

    test_normal = draw(test_pool, 0, targets.test_normal)
    test_abnormal = draw(test_pool, 1, targets.test_abnormal)
    train = draw(train_pool, 0, targets.train)
    if not train:
        raise MedadError(
            f"no normal image is left for training once the test split took its "
            f"{len({c.group for c in test_pool})} group(s) (patients/slides): the source has "
            f"{len(groups)} group(s); add data or ask for fewer test images with --counts"
        )
    available = {"normal": n_normal, "abnormal": n_abnormal, "groups": len(groups)}
    return Selection(train, test_normal, test_abnormal, targets, rule, scale, available)


def unique_names(
    candidates: list[Candidate], prefix: Callable[[Candidate], str], where: Path
) -> list[Candidate]:
    """Keep the candidates' names when they are unique; otherwise prefix every name.

    Raw datasets name files per class folder, so two classes may reuse a name; the output
    folder is flat, so names must be unique. When the raw names already are, they are kept as
    they are (the paper's release kept the original names); else each gets ``prefix(c)``.
    """
    if len({c.name for c in candidates}) == len(candidates):
        return candidates
    renamed = [
        Candidate(c.label, prefix(c) + c.name, c.group, c.source, c.index, c.kind)
        for c in candidates
    ]
    counts = Counter(c.name for c in renamed)
    dup = next((n for n, k in counts.items() if k > 1), None)
    if dup is not None:
        clash = [str(c.source) for c in renamed if c.name == dup]
        raise MedadError(f"{where}: two source files would both be written as {dup}: {clash}")
    return renamed
