"""The seed paper's own knee data (Knoll et al. 2019; Hammernik et al. 2018): MATLAB files per slice.

Layout, as the original VN code (VLOGroup/mri-variationalnetwork) reads it::

    <sequence>/<patient>/rawdata<k>.mat   'rawdata' (readout, phase, coils) complex k-space of slice k
                                          (k = 1, 2, ...), 2x readout oversampled; optional scalars
                                          'padlength_left' / 'padlength_right': zero-filled phase
                                          columns at each edge (phase-encoding oversampling)
    <sequence>/<patient>/espirit<k>.mat   'sensitivities' (readout, phase, coils) ESPIRiT maps,
                                          'reference' (readout, phase) the coil-combined image
    <sequence>/masks/*.mat                'mask' (readout, phase) sampling masks

Files are MATLAB v5 (read with scipy.io) or v7.3 (HDF5, read with h5py: the
arrays come back with their dimensions reversed, complex numbers as a compound
of ``real`` / ``imag``). ``read_seed_patient`` gives one ``Volume`` per
patient: k-space (slices, coils, readout, phase), the stored maps as the
file's ``maps`` (so no ESPIRiT runs, exactly the paper's maps), the padding as
fastMRI-style encoding limits (``ismrmrd_header.acquired_columns``), and the 2x
readout oversampling in its header. Sequence folders of the paper's two
protocols take the acquisition names the study uses (``coronal_pd`` ->
CORPD_FBK, ``coronal_pd_fs`` -> CORPDFS_FBK); others keep their folder name.
"""

from __future__ import annotations

import re
from pathlib import Path

import h5py
import numpy as np

from ..errors import InputError
from .fastmri import Volume

ACQUISITIONS = {"coronal_pd": "CORPD_FBK", "coronal_pd_fs": "CORPDFS_FBK"}
OVERSAMPLING = 2  # the knee raw data of the seed paper: 2x readout oversampling
_RAWDATA = re.compile(r"rawdata(\d+)\.mat$")


def is_seed_layout(path: str | Path) -> bool:
    """A patient folder (rawdata<k>.mat files), a sequence folder of them, or a folder of sequence folders."""
    path = Path(path)
    return path.is_dir() and any(any(path.glob(pattern)) for pattern in ("rawdata*.mat", "*/rawdata*.mat", "*/*/rawdata*.mat"))


def is_patient_folder(path: str | Path) -> bool:
    return Path(path).is_dir() and any(Path(path).glob("rawdata*.mat"))


def sequence_folders(path: str | Path) -> list[Path]:
    """The sequence folders under ``path`` (``path`` itself when it is one, or a patient folder)."""
    path = Path(path)
    if any(path.glob("rawdata*.mat")) or any(path.glob("*/rawdata*.mat")):
        return [path]
    folders = sorted(folder for folder in path.iterdir() if folder.is_dir() and any(folder.glob("*/rawdata*.mat"))) if path.is_dir() else []
    if not folders:
        raise InputError(f"{path}: no <sequence>/<patient>/rawdata<k>.mat files (the seed data's layout)")
    return folders


def convert_seed_folder(source: str | Path, target: str | Path, say=None) -> list[Path]:
    """Every patient of every sequence under ``source`` as one fastMRI file ``target/<sequence>_<patient>.h5``
    (with the stored maps); files already there are kept (each was written whole), so a rerun continues."""
    from .fastmri import write_volume

    target = Path(target)
    written = []
    for sequence in sequence_folders(source):
        for patient in patient_folders(sequence):
            path = target / f"{sequence.name if patient != sequence else patient.parent.name}_{patient.name}.h5"
            if not path.is_file():
                if say is not None:
                    say(f"converting {patient} -> {path}")
                write_volume(path, read_seed_patient(patient))
            written.append(path)
    return written


def patient_folders(path: str | Path) -> list[Path]:
    """The patient folders of a sequence folder (or the patient folder itself), in natural order."""
    path = Path(path)
    if any(path.glob("rawdata*.mat")):
        return [path]
    folders = sorted({file.parent for file in path.glob("*/rawdata*.mat")}, key=lambda folder: _natural(folder.name))
    if not folders:
        raise InputError(f"{path}: no <patient>/rawdata<k>.mat files (the seed data's layout)")
    return folders


def _natural(name: str):
    return (0, int(name), "") if name.isdigit() else (1, 0, name)


def load_mat(path: Path) -> dict[str, np.ndarray]:
    """The variables of a MATLAB file, v5 or v7.3, with MATLAB's dimension order."""
    if not path.is_file():
        raise InputError(f"{path}: file not found")
    if h5py.is_hdf5(path):  # v7.3
        try:
            with h5py.File(path, "r") as h5:
                return {name: _from_hdf5(h5[name][()]) for name in h5 if isinstance(h5[name], h5py.Dataset)}
        except OSError as error:
            raise InputError(f"{path}: cannot read as MATLAB v7.3 ({' '.join(str(error).split())})") from None
    from scipy.io import loadmat

    try:
        return {name: value for name, value in loadmat(path).items() if not name.startswith("__")}
    except Exception as error:  # scipy's MAT parser fails in many ways (MatReadError, IndexError, ...) on damaged files
        raise InputError(f"{path}: cannot read as a MATLAB file ({' '.join(str(error).split())})") from None


def _from_hdf5(value: np.ndarray) -> np.ndarray:
    if value.dtype.names is not None and {"real", "imag"} <= set(value.dtype.names):
        value = value["real"] + 1j * value["imag"]
    return np.asarray(value).T  # HDF5 stores MATLAB's column-major arrays with reversed dimensions


def _variable(variables: dict, name: str, path: Path, ndim: int) -> np.ndarray:
    if name not in variables:
        raise InputError(f"{path}: no variable '{name}'")
    value = np.asarray(variables[name])
    if value.ndim != ndim:
        raise InputError(f"{path}: '{name}' has shape {value.shape}, expected {ndim} dimensions")
    if not np.isfinite(value).all():
        raise InputError(f"{path}: '{name}' contains NaN or Inf")
    return value


def _count(variables: dict, name: str, path: Path) -> int:
    """A non-negative integer scalar such as 'padlength_left' (0 when absent)."""
    value = np.asarray(variables.get(name, 0)).reshape(-1)
    if value.size != 1 or not np.isfinite(value[0]) or value[0] < 0 or value[0] != int(value[0]):
        raise InputError(f"{path}: '{name}' must be one non-negative integer, got {value.tolist()}")
    return int(value[0])


def read_seed_patient(folder: str | Path) -> Volume:
    """One patient folder of the seed data as a volume with its stored ESPIRiT maps."""
    folder = Path(folder)
    numbered = sorted((int(match.group(1)), file) for file in folder.glob("rawdata*.mat") if (match := _RAWDATA.search(file.name)))
    if not numbered:
        raise InputError(f"{folder}: no rawdata<k>.mat files")
    kspace, maps, padding = [], [], set()
    for number, path in numbered:
        raw = load_mat(path)
        data = _variable(raw, "rawdata", path, 3)
        padding.add(tuple(_count(raw, key, path) for key in ("padlength_left", "padlength_right")))
        sensitivities_path = folder / f"espirit{number}.mat"
        sensitivities = _variable(load_mat(sensitivities_path), "sensitivities", sensitivities_path, 3)
        if sensitivities.shape != data.shape:
            raise InputError(f"{sensitivities_path}: 'sensitivities' has shape {sensitivities.shape}, the k-space {data.shape}")
        first = numbered[0]
        if kspace and data.shape != np.transpose(kspace[0], (1, 2, 0)).shape:
            raise InputError(f"{path}: 'rawdata' has shape {data.shape}, {first[1].name} has {np.transpose(kspace[0], (1, 2, 0)).shape}")
        kspace.append(np.transpose(data, (2, 0, 1)).astype(np.complex64))
        maps.append(np.transpose(sensitivities, (2, 0, 1)).astype(np.complex64))
    if len(padding) != 1:
        raise InputError(f"{folder}: slices have different padlength_left / padlength_right {sorted(padding)}")
    left, right = padding.pop()
    readout, phase = kspace[0].shape[1:]
    if readout % OVERSAMPLING:
        raise InputError(f"{numbered[0][1]}: a readout of {readout} samples cannot be {OVERSAMPLING}x oversampled")
    header = {"encoded_shape": (readout, phase, 1), "recon_shape": (readout // OVERSAMPLING, phase, 1)}
    if left or right:
        header.update(pe_min=0, pe_max=phase - right - left - 1, pe_center=phase // 2 - left,
                      padding_left=left, padding_right=phase - right)  # fmt: skip
    sequence = folder.parent.name
    return Volume(
        kspace=np.stack(kspace),
        acquisition=ACQUISITIONS.get(sequence, sequence),
        patient_id=f"{int(folder.name):03d}" if folder.name.isdigit() else folder.name,  # sorts as numbers
        header=header,
        maps=np.stack(maps),
    )
