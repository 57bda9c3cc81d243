"""The seven benchmark datasets of the MedIAnomaly study: one table of facts used everywhere.

The loaders (`medad.data.official`), `medad prepare` (`medad.data.prepare`), `medad check-data`
and the CLI help all read this table, so a split size or a folder name is written once. Facts
from PAPER.md ("Datasets"): the split sizes are the paper's Table 1 (train normal; test normal +
abnormal), the folder names those of the paper's data release. This module imports nothing heavy,
so the CLI can list the datasets without loading DICOM or NIfTI libraries.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

#: the file `medad prepare` writes beside a prepared dataset (source, seed, counts, rules)
MANIFEST_NAME = "prepare.json"

#: how a release folder is organised (see `medad.data.official`)
Layout = Literal["datajson", "isic2018", "good-ungood", "brats"]


@dataclass(frozen=True)
class SplitCounts:
    """Images per split: normal training images; normal and abnormal test images."""

    train: int
    test_normal: int
    test_abnormal: int

    def as_dict(self) -> dict[str, int]:
        return {
            "train": self.train,
            "test_normal": self.test_normal,
            "test_abnormal": self.test_abnormal,
        }


@dataclass(frozen=True)
class Benchmark:
    """One dataset of the study: its name in medad, its release folder and its defaults."""

    #: registry name, e.g. ``rsna``
    name: str
    #: human name, e.g. ``RSNA Pneumonia``
    title: str
    #: the folder name in the paper's release, under the data root
    folder: str
    modality: str
    layout: Layout
    #: the paper's split sizes (PAPER.md, "Datasets")
    counts: SplitCounts
    #: where the official raw data comes from (for help texts and docs/datasets.md)
    source: str
    #: other folder names accepted under the data root (e.g. the release's archive name)
    aliases: tuple[str, ...] = ()
    #: channels the paper trains on: grayscale everywhere except Camelyon16 (PAPER.md)
    channels: int = 1
    has_masks: bool = False

    @property
    def folders(self) -> tuple[str, ...]:
        return (self.folder, *self.aliases)


BENCHMARKS: dict[str, Benchmark] = {
    b.name: b
    for b in (
        Benchmark(
            "rsna",
            "RSNA Pneumonia Detection",
            "RSNA",
            "chest X-ray",
            "datajson",
            SplitCounts(3851, 1000, 1000),
            "Kaggle competition rsna-pneumonia-detection-challenge (stage 2 training set)",
        ),
        Benchmark(
            "vincxr",
            "VinDr-CXR",
            "VinCXR",
            "chest X-ray",
            "datajson",
            SplitCounts(4000, 1000, 1000),
            "Kaggle competition vinbigdata-chest-xray-abnormalities-detection, or PhysioNet "
            "vindr-cxr 1.0.0 (training set)",
            aliases=("VinDr-CXR",),
        ),
        Benchmark(
            "brain-tumor",
            "Brain Tumor MRI",
            "BrainTumor",
            "brain MRI",
            "datajson",
            SplitCounts(1000, 600, 600),
            "Kaggle dataset masoudnickparvar/brain-tumor-mri-dataset",
        ),
        Benchmark(
            "lag",
            "LAG (large-scale attention-based glaucoma)",
            "LAG",
            "retinal fundus",
            "datajson",
            SplitCounts(1500, 811, 811),
            "LAG database (github.com/smilell/AG-CNN; on request from the authors)",
        ),
        Benchmark(
            "isic2018",
            "ISIC 2018 Task 3",
            "ISIC2018",
            "dermatoscopy",
            "isic2018",
            SplitCounts(6705, 909, 603),
            "ISIC 2018 challenge, Task 3 (challenge.isic-archive.com/data/#2018)",
            aliases=("ISIC2018_Task3",),
        ),
        Benchmark(
            "camelyon16",
            "Camelyon16 patches",
            "Camelyon16",
            "histopathology",
            "good-ungood",
            SplitCounts(5088, 1120, 1113),
            "patches of the Camelyon16 slides (camelyon17.grand-challenge.org), e.g. BMAD's "
            "Histopathology_AD release",
            channels=3,
        ),
        Benchmark(
            "brats2021",
            "BraTS 2021 (FLAIR axial slices)",
            "BraTS2021",
            "brain MRI (FLAIR)",
            "brats",
            SplitCounts(4211, 828, 1948),
            "BraTS 2021 Task 1 training data (synapse.org, or Kaggle "
            "dschettler8845/brats-2021-task1)",
            has_masks=True,
        ),
    )
}


def benchmark(name: str) -> Benchmark:
    """The catalogue entry of `name`; a clear error listing the known names otherwise."""
    from medad.errors import MedadError

    if name not in BENCHMARKS:
        raise MedadError(f"unknown benchmark dataset {name!r}; known: {', '.join(BENCHMARKS)}")
    return BENCHMARKS[name]
