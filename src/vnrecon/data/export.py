"""Reconstructed images out, for viewers and other tools: ``write_images(path, format, images, volume)``.

``images`` are complex (slices, readout, phase) on the readout-cropped grid (as
``vnrecon recon`` makes them), ``volume`` the raw data they came from (its
header gives the geometry). Formats:

* ``h5``     fastMRI-style: ``reconstruction`` magnitude on the header's recon
  matrix (as in fastMRI submissions), ``reconstruction_complex``, the ``mask``.
* ``cfl``    BART pair of the complex images, ``[readout, phase, 1, ..., slices (dim 13)]``.
* ``nifti``  magnitude, float32, one 3-D image (readout, phase, slice) through
  ``nibabel``; the affine scales voxels by the pixel size (encoded FOV / matrix
  per axis) and the slice thickness (encoded FOV z) and centres the volume at
  the origin. fastMRI files record no patient orientation, so the axes are
  the array's (i = readout, j = phase, k = slice), not RAS anatomy.
* ``dicom``  one MR Image Storage series (a folder of one file per slice) through
  ``pydicom``: 16-bit unsigned magnitude scaled to 0..4095, window on the
  99.5th percentile, pixel spacing, slice thickness, image position and
  orientation (the same world positions as the NIfTI export, in DICOM's LPS),
  TR / TE / field strength from the header, fresh UIDs per study, series,
  frame of reference and image. The folder is replaced whole.
* ``png``    all slices in one grid (``eval.figures.save_image_grid``).

Every file is written through ``files.atomic_write`` (the DICOM folder as a whole).
"""

from __future__ import annotations

import datetime
import gzip
import os
from pathlib import Path

import numpy as np

from ..files import atomic_write
from .fastmri import Volume, center_fit

FORMATS = ("h5", "cfl", "nifti", "dicom", "png")
DICOM_MAX = 4095  # 12 significant bits, the usual range of MR magnitude images
MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4"


def output_paths(path: Path, format: str) -> list[Path]:
    """The files or folder ``write_images`` will create (checked before any work)."""
    if format == "cfl":
        from .cfl import cfl_pair

        return list(cfl_pair(path))
    return [path]


def pixel_spacing_mm(volume: Volume) -> tuple[float, float, float]:
    """(readout, phase, slice) voxel size in mm from the header: encoded FOV / encoded matrix; 1 mm where absent."""
    header = volume.header
    if "fov_mm" not in header or "encoded_shape" not in header:
        return (1.0, 1.0, 1.0)
    fov, shape = header["fov_mm"], header["encoded_shape"]
    return (fov[0] / shape[0], fov[1] / shape[1], fov[2] if fov[2] > 0 else 1.0)


def write_images(
    path: str | Path, format: str, images: np.ndarray, volume: Volume, mask: np.ndarray, model: str, source: str = ""
) -> Path:
    """Write ``images`` in ``format`` (``FORMATS``) to ``path``; returns what was written (file or folder).

    ``model`` (the checkpoint) is recorded in the h5 output; ``source`` (the raw-data file) names the
    images in the PNG title and the DICOM series description."""
    path = Path(path)
    name = Path(source).name or volume.patient_id or "raw data"
    if format == "h5":
        return _write_h5(path, images, volume, mask, model)
    if format == "cfl":
        from .cfl import images_to_bart, write_cfl

        return write_cfl(path, images_to_bart(images))
    if format == "nifti":
        return _write_nifti(path, np.abs(images), volume)
    if format == "dicom":
        return _write_dicom(path, np.abs(images), volume, name)
    if format == "png":
        from ..eval.figures import save_image_grid

        return save_image_grid([np.abs(image) for image in images], [f"slice {index}" for index in range(len(images))],
                               path, title=f"{name}: VN reconstruction")  # fmt: skip
    raise ValueError(f"unknown format {format!r}")


def _write_h5(path: Path, images: np.ndarray, volume: Volume, mask: np.ndarray, model: str) -> Path:
    import h5py

    recon_shape = tuple(volume.header.get("recon_shape", (images.shape[-2], images.shape[-1])))[:2]
    magnitude = np.stack([center_fit(np.abs(image), recon_shape) for image in images]).astype(np.float32)
    with atomic_write(path) as temporary, h5py.File(temporary, "w") as h5:
        h5.create_dataset("reconstruction", data=magnitude)
        h5.create_dataset("reconstruction_complex", data=images.astype(np.complex64))
        h5.create_dataset("mask", data=mask.astype(bool))
        h5.attrs["acquisition"] = volume.acquisition
        h5.attrs["patient_id"] = volume.patient_id
        h5.attrs["model"] = model
        h5.attrs["max"] = float(magnitude.max())
        h5.attrs["norm"] = float(np.linalg.norm(magnitude))
    return path


def _write_nifti(path: Path, magnitude: np.ndarray, volume: Volume) -> Path:
    import nibabel

    spacing = np.array(pixel_spacing_mm(volume))
    data = np.ascontiguousarray(np.transpose(magnitude, (1, 2, 0))).astype(np.float32)  # (readout, phase, slice)
    affine = np.diag([*spacing, 1.0])
    affine[:3, 3] = -spacing * (np.array(data.shape) - 1) / 2  # the volume's centre at the origin
    image = nibabel.Nifti1Image(data, affine)
    image.header.set_xyzt_units("mm")
    image.header["descrip"] = f"vnrecon {volume.acquisition or 'reconstruction'}"[:79].encode()
    data = image.to_bytes()  # a single-file .nii
    if path.name.endswith(".gz"):
        data = gzip.compress(data, mtime=0)
    with atomic_write(path) as temporary:
        temporary.write_bytes(data)
    return path


def _write_dicom(folder: Path, magnitude: np.ndarray, volume: Volume, name: str) -> Path:
    """The series goes into a temporary folder beside ``folder`` and replaces it whole: a rerun never
    leaves slices of an earlier series (other UIDs, another slice count) mixed into the new one."""
    import shutil

    temporary = folder.parent / f".{folder.name}.{os.getpid()}.tmp"
    shutil.rmtree(temporary, ignore_errors=True)
    temporary.mkdir(parents=True)
    try:
        _write_series(temporary, magnitude, volume, name)
        if folder.exists():
            previous = folder.parent / f".{folder.name}.{os.getpid()}.old"
            folder.rename(previous)
            temporary.rename(folder)
            shutil.rmtree(previous)
        else:
            temporary.rename(folder)
    finally:
        shutil.rmtree(temporary, ignore_errors=True)
    return folder


def _ds(value: float) -> str:
    """A DICOM decimal string (at most 16 characters)."""
    from pydicom.valuerep import format_number_as_ds

    return format_number_as_ds(float(value))


def _write_series(folder: Path, magnitude: np.ndarray, volume: Volume, name: str) -> None:
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    spacing = pixel_spacing_mm(volume)
    scale = DICOM_MAX / magnitude.max() if magnitude.max() > 0 else 1.0
    pixels = np.clip(np.rint(magnitude * scale), 0, DICOM_MAX).astype(np.uint16)
    top = float(np.percentile(pixels, 99.5)) or float(DICOM_MAX)
    study, series, frame = generate_uid(), generate_uid(), generate_uid()
    now = datetime.datetime.now()
    header = volume.header
    rows, columns = pixels.shape[1:]
    for index, image in enumerate(pixels):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = MR_IMAGE_STORAGE
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = FileDataset(None, {}, file_meta=meta, preamble=b"\0" * 128)
        ds.SOPClassUID, ds.SOPInstanceUID = MR_IMAGE_STORAGE, meta.MediaStorageSOPInstanceUID
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame
        ds.Modality, ds.Manufacturer = "MR", "vnrecon"
        ds.PatientName, ds.PatientID = f"{volume.patient_id or 'anonymous'}^", volume.patient_id or "anonymous"
        ds.PatientBirthDate, ds.PatientSex = "", ""
        ds.StudyDate = ds.SeriesDate = ds.ContentDate = now.strftime("%Y%m%d")
        ds.StudyTime = ds.SeriesTime = ds.ContentTime = now.strftime("%H%M%S")
        ds.StudyID, ds.AccessionNumber, ds.ReferringPhysicianName = "1", "", ""
        ds.SeriesNumber, ds.InstanceNumber, ds.AcquisitionNumber = 1, index + 1, 1
        ds.SeriesDescription = f"VN reconstruction of {name}"[:64]
        ds.ImageType = ["DERIVED", "SECONDARY", "OTHER"]
        ds.ScanningSequence, ds.SequenceVariant, ds.ScanOptions, ds.MRAcquisitionType = "SE", "SK", "", "2D"
        ds.RepetitionTime = header.get("TR_ms", "")
        ds.EchoTime = header.get("TE_ms", "")
        ds.EchoTrainLength = ""
        ds.MagneticFieldStrength = header.get("field_strength_T", "")
        ds.SliceThickness = _ds(spacing[2])
        ds.SpacingBetweenSlices = _ds(spacing[2])
        ds.PixelSpacing = [_ds(spacing[0]), _ds(spacing[1])]
        # The NIfTI export's world (RAS: i = readout -> +x, j = phase -> +y, k = slice -> +z) in DICOM's LPS:
        # along a row (j) is RAS +y = LPS (0, -1, 0), down a column (i) is RAS +x = LPS (-1, 0, 0).
        ds.ImageOrientationPatient = [0, -1, 0, -1, 0, 0]
        position = [-spacing[0] * (rows - 1) / 2, -spacing[1] * (columns - 1) / 2, spacing[2] * (index - (len(pixels) - 1) / 2)]
        ds.ImagePositionPatient = [_ds(-position[0]), _ds(-position[1]), _ds(position[2])]  # RAS -> LPS
        ds.SliceLocation = _ds(position[2])
        ds.PositionReferenceIndicator = ""
        ds.PatientPosition = ""  # not recorded in fastMRI files
        ds.Laterality = ""  # nor is which knee (dciodvfy: present, empty when unknown)
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.Rows, ds.Columns = rows, columns
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
        ds.WindowCenter, ds.WindowWidth = _ds(top / 2), _ds(top)
        ds.PixelData = np.ascontiguousarray(image).tobytes()
        ds.save_as(folder / f"IM{index + 1:04d}.dcm", enforce_file_format=True)
