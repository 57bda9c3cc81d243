"""What a trained method produced on a test split: the input of every evaluation.

Saved per run as ``predictions.npz`` so that metrics can be recomputed later without retraining
(predicting and evaluating are separate stages). The file is uncompressed by default: zlib saves
about 13 % on float anomaly maps but writes them at ~10 MiB/s, which made saving a BraTS-sized test
set (2,776 maps of 256²) slower than training on a GPU; ``compress=True`` still writes the
compressed form, and both forms load alike.
"""

from __future__ import annotations

import os
import tempfile
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medad.errors import MedadError


@dataclass
class Predictions:
    ids: list[str]
    labels: np.ndarray  # int64 [N]
    image_scores: np.ndarray  # float64 [N]
    maps: np.ndarray | None = None  # float32 [N, H, W]
    masks: np.ndarray | None = None  # bool [N, H, W]

    def save(self, path: str | Path, *, compress: bool = False) -> None:
        """Write atomically (a temporary file renamed into place); `compress`: zlib (smaller,
        much slower to write)."""
        path = Path(path)
        payload: dict[str, np.ndarray] = {
            "ids": np.array(self.ids),
            "labels": self.labels,
            "image_scores": self.image_scores,
        }
        if self.maps is not None:
            payload["maps"] = self.maps
        if self.masks is not None:
            payload["masks"] = np.packbits(self.masks, axis=-1)
            payload["mask_width"] = np.array(self.masks.shape[-1])
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".npz.tmp")
        try:
            with os.fdopen(fd, "wb") as fh:
                (np.savez_compressed if compress else np.savez)(fh, **payload)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    @classmethod
    def load(cls, path: str | Path) -> Predictions:
        """Read a ``predictions.npz`` (a run folder's test-split scores, maps and masks)."""
        path = Path(path)
        if not path.is_file():
            raise MedadError(f"{path}: predictions file not found")
        try:
            with np.load(path, allow_pickle=False) as z:
                masks = None
                if "masks" in z.files:
                    width = int(z["mask_width"])
                    masks = np.unpackbits(z["masks"], axis=-1, count=width).astype(bool)
                return cls(
                    ids=[str(i) for i in z["ids"]],
                    labels=z["labels"],
                    image_scores=z["image_scores"],
                    maps=z["maps"] if "maps" in z.files else None,
                    masks=masks,
                )
        except (zipfile.BadZipFile, EOFError, zlib.error) as exc:  # truncated or overwritten
            raise MedadError(
                f"{path}: damaged predictions file ({exc}); "
                "train the run again with `medad run ... --force`"
            ) from exc
        except (OSError, ValueError, KeyError) as exc:
            raise MedadError(f"{path}: unreadable predictions file ({exc})") from exc
