"""Brain Tumor MRI (Kaggle, Masoud Nickparvar) → ``BrainTumor/images/*`` + ``data.json``.

Source: the Kaggle dataset ``masoudnickparvar/brain-tumor-mri-dataset``::

    Training/{glioma,meningioma,notumor,pituitary}/*.jpg
    Testing/{glioma,meningioma,notumor,pituitary}/*.jpg

(the class folders may also sit directly in ``--source``; the older ``no_tumor`` and
``<class>_tumor`` names are accepted). Rule: ``notumor`` is normal, the three tumour classes are
abnormal. As in the paper's guidance, Kaggle's Training and Testing images are pooled and split
anew (paper: 1000 train, 600 + 600 test); abnormal test images are drawn from the three tumour
classes together (prepare.json counts each class). Each image is its own group (the dataset has no
patient ids); if two folders reuse a file name, every name is prefixed with its folders
(``Training_glioma_``). Images are copied unchanged (the release kept the original JPEGs)
unless ``--size`` is given, which writes grayscale PNGs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from medad.data.prepare.base import PrepareOptions, build_datajson_release, register_preparer
from medad.data.prepare.class_folders import ClassFolder, class_folder_candidates, subfolders
from medad.errors import MedadError

NORMAL_FOLDERS = ("notumor", "no_tumor")
TUMOUR_FOLDERS = (
    "glioma",
    "meningioma",
    "pituitary",
    "glioma_tumor",
    "meningioma_tumor",
    "pituitary_tumor",
)
SPLIT_FOLDERS = ("Training", "Testing")


@register_preparer(
    "brain-tumor",
    source_layout="Training/ and Testing/, each with glioma/, meningioma/, notumor/, pituitary/",
)
def build(source: Path, out: Path, options: PrepareOptions) -> dict[str, Any]:
    roots = [source / s for s in SPLIT_FOLDERS if (source / s).is_dir()] or [source]
    folders: list[ClassFolder] = []
    for root in roots:
        for folder in subfolders(root):
            name = folder.name.lower()
            if name not in NORMAL_FOLDERS + TUMOUR_FOLDERS:
                raise MedadError(
                    f"{folder}: unknown class folder; expected notumor, glioma, meningioma "
                    f"and pituitary (in Training/ and Testing/)"
                )
            label = 0 if name in NORMAL_FOLDERS else 1
            kind = "notumor" if label == 0 else name.removesuffix("_tumor")
            prefix = f"{root.name}_{folder.name}_" if root != source else f"{folder.name}_"
            folders.append(ClassFolder(folder, label, kind, prefix))
    for label, what in ((0, "notumor"), (1, "glioma, meningioma or pituitary")):
        if not any(f.label == label for f in folders):
            raise MedadError(
                f"{source}: no {what} folder (expected Training/<class>/ and Testing/<class>/, "
                "or <class>/ folders)"
            )
    candidates = class_folder_candidates(source, folders)
    rule = "normal: notumor; abnormal: glioma, meningioma, pituitary (Training and Testing pooled)"
    return build_datajson_release("brain-tumor", candidates, out, options, gray=True, rule=rule)
