"""Raw-data formats in and out, through one in-memory type (``fastmri.Volume``).

``read_raw(path)`` recognises a file by what it holds, not only by its name:

* fastMRI multi-coil HDF5 (a ``kspace`` dataset): :mod:`vnrecon.data.fastmri`;
* ISMRMRD raw data (HDF5 with ``dataset/xml`` and ``dataset/data``):
  :mod:`vnrecon.data.ismrmrd_raw`, with its noise scans as the noise covariance;
* the seed paper's MATLAB layout (a patient folder of ``rawdata<k>.mat`` /
  ``espirit<k>.mat``): :mod:`vnrecon.data.seed_mat`, with the stored maps;
* BART ``NAME.cfl`` / ``NAME.hdr``: :mod:`vnrecon.data.cfl`; BART arrays carry no
  header, so the readout oversampling is an option (default 1: the image fills
  the readout FOV).

``write_raw(path, volume)`` picks the format by suffix: ``.h5`` writes our
fastMRI layout (with the volume's maps and noise covariance), ``.cfl`` writes
BART's k-space (prewhitened first when the volume has a noise covariance,
since BART's reconstructions assume white channel noise) and, when the volume
stores coil maps, ``NAME_maps.cfl`` beside it, in BART's ``ecalib`` layout.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

from ..errors import InputError
from . import cfl
from .fastmri import Volume, read_volume, write_volume
from .ismrmrd_raw import is_ismrmrd, read_ismrmrd
from .seed_mat import is_patient_folder, is_seed_layout, read_seed_patient

RAW_FORMATS = ("fastMRI HDF5 (.h5)", "ISMRMRD (.h5)", "BART (.cfl/.hdr)", "the seed data's <patient>/rawdata<k>.mat folders")
OUTPUT_SUFFIXES = (".h5", ".cfl")


def raw_format(path: str | Path) -> str:
    """'cfl', 'seed', 'ismrmrd' or 'fastmri' for a raw-data input; an InputError naming the file for anything else."""
    path = Path(path)
    if cfl.is_cfl(path):
        return "cfl"
    if is_seed_layout(path):
        return "seed"
    if not path.exists():
        raise InputError(f"{path}: file not found")
    if path.is_file() and h5py.is_hdf5(path):
        if is_ismrmrd(path):
            return "ismrmrd"
        return "fastmri"  # read_volume names what is missing from an HDF5 file that is not ours
    raise InputError(f"{path}: not a raw-data file vnrecon reads ({', '.join(RAW_FORMATS)})")


def read_raw(
    path: str | Path, oversampling: int = 1, acquisition: str = "", patient_id: str = "", repetition: int | None = None
) -> Volume:
    """The volume in ``path`` (any format of ``RAW_FORMATS``). ``oversampling``, ``acquisition`` and
    ``patient_id`` describe formats that do not record them (BART; an ISMRMRD file without a protocol
    name or patient id takes the given ones); ``repetition`` picks one repetition of an ISMRMRD file."""
    path = Path(path)
    kind = raw_format(path)
    if kind == "fastmri":
        return read_volume(path)
    if kind == "seed":
        if not is_patient_folder(path):
            raise InputError(f"{path}: holds several patients; convert it into a folder (--to DIR)")
        return read_seed_patient(path)
    if kind == "ismrmrd":
        volume = read_ismrmrd(path, repetition)
        volume.acquisition = volume.acquisition or acquisition
        volume.patient_id = patient_id or volume.patient_id
        return volume
    kspace = cfl.kspace_from_bart(cfl.read_cfl(path), cfl.cfl_pair(path)[1])
    readout, phase = kspace.shape[-2:]
    if oversampling < 1 or readout % oversampling:
        raise InputError(f"{path}: --oversampling {oversampling} does not divide the readout of {readout} samples")
    header = {"encoded_shape": (readout, phase, 1), "recon_shape": (readout // oversampling, phase, 1)}
    mask = None
    sampled = np.abs(kspace).sum(axis=(0, 1, 2)) > 0
    if not sampled.any():
        raise InputError(f"{cfl.cfl_pair(path)[1]}: the k-space is all zero")
    first, last = np.flatnonzero(sampled)[[0, -1]]
    if (first, last + 1) != (0, phase):  # zero-filled edge columns: fastMRI-style padding
        header.update(pe_min=0, pe_max=int(last - first), pe_center=int(phase // 2 - first),
                      padding_left=int(first), padding_right=int(last + 1))  # fmt: skip
    if not sampled[first : last + 1].all():  # zero lines inside: an undersampled acquisition, as BART stores one
        mask = sampled
    return Volume(kspace=kspace, acquisition=acquisition, patient_id=patient_id or path.stem, mask=mask, header=header)


def write_raw(path: str | Path, volume: Volume) -> list[Path]:
    """Write ``volume`` in the format of ``path``'s suffix (``OUTPUT_SUFFIXES``); returns the files written."""
    path = Path(path)
    if path.suffix == ".h5":
        return [write_volume(path, volume)]
    if path.suffix != ".cfl":
        raise InputError(f"{path}: unknown output format; name a .h5 (fastMRI layout) or .cfl (BART) file")
    white = volume.prewhitened()
    written = [cfl.write_cfl(path, cfl.kspace_to_bart(white.kspace))]
    maps = white.slice_maps()
    if maps is not None:
        written.append(cfl.write_cfl(path.with_name(path.stem + "_maps.cfl"), cfl.kspace_to_bart(maps)))
    return written
