"""Write an RGB picture derived from a DICOM image as a DICOM Secondary Capture in its study.

What a radiologist expects from an AI result on a DICOM image is another image in the same
study, shown beside the original by the PACS viewer, not a PNG on a disk. The capture (SOP class
Secondary Capture Image Storage, DICOM PS3.3 A.8.1) keeps the source's patient and study, starts
its own series (``ImageType`` DERIVED\\SECONDARY, ``Modality`` OT), copies the geometry the source
states (frame of reference, pixel spacing, position and orientation) so the picture lies on it
pixel for pixel at the same size, and names the source in ``SourceImageSequence``. It makes no
claim of clinical validity: ``SeriesDescription`` says it is medad's anomaly overlay.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

from medad.errors import MedadError

#: tags copied from the source when it has them: who, which study, and where the pixels lie
COPIED = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "StudyInstanceUID",
    "StudyDate",
    "StudyTime",
    "StudyID",
    "AccessionNumber",
    "ReferringPhysicianName",
    "FrameOfReferenceUID",
    "PixelSpacing",
    "ImagePositionPatient",
    "ImageOrientationPatient",
    "SliceLocation",
    "InstanceNumber",
)


def write_secondary_capture(
    source: Path, rgb: np.ndarray, path: Path, description: str = "medad anomaly overlay"
) -> None:
    """Save `rgb` (uint8 [H, W, 3], the source's size) as a Secondary Capture of `source`."""
    src = pydicom.dcmread(source, stop_before_pixels=True, force=True)
    rows, cols = int(getattr(src, "Rows", 0)), int(getattr(src, "Columns", 0))
    if rgb.shape != (rows, cols, 3) or rgb.dtype != np.uint8:
        raise MedadError(
            f"{source}: overlay of shape {rgb.shape} does not match the image's {rows}x{cols}"
        )
    ds = Dataset()
    for keyword in COPIED:
        if keyword in src:
            setattr(ds, keyword, src.data_element(keyword).value)
    if "StudyInstanceUID" not in ds:
        ds.StudyInstanceUID = generate_uid()
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.Modality = "OT"
    ds.ConversionType = "WSD"  # workstation
    ds.ImageType = ["DERIVED", "SECONDARY"]
    ds.SeriesDescription = description
    ds.SeriesNumber = 9000 + int(getattr(src, "SeriesNumber", 0) or 0) % 1000
    ds.BurnedInAnnotation = "NO"
    if "SOPInstanceUID" in src:
        ref = Dataset()
        ref.ReferencedSOPClassUID = src.get("SOPClassUID", SecondaryCaptureImageStorage)
        ref.ReferencedSOPInstanceUID = src.SOPInstanceUID
        ds.SourceImageSequence = Sequence([ref])
    ds.Rows, ds.Columns = rows, cols
    ds.SamplesPerPixel = 3
    ds.PhotometricInterpretation = "RGB"
    ds.PlanarConfiguration = 0
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    ds.PixelData = np.ascontiguousarray(rgb).tobytes()
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta = meta
    ds.save_as(path, enforce_file_format=True)
