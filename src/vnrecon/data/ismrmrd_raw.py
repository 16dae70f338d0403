"""ISMRMRD raw data (the ISMRM raw data format, HDF5 with a ``dataset`` group) to a ``fastmri.Volume``.

Read with the ``ismrmrd`` Python package. What is taken from the file:

* **Header** (``dataset/xml``, parsed by ``ismrmrd_header.parse_ismrmrd_header``): the
  encoded and recon matrix (their readout ratio is the readout oversampling),
  FOV, field strength, TR / TE, the ``kspace_encoding_step_1`` limits and the
  trajectory, which must be ``cartesian`` and 2-D (encoded z = 1).
* **Acquisitions**, one readout each: placed at phase-encoding index
  ``kspace_encode_step_1 - center + W // 2`` (the header's limits; fastMRI's
  padding rule) and readout index ``H // 2 - (center_sample - discard_pre)``
  after dropping ``discard_pre`` / ``discard_post`` samples (asymmetric echoes
  keep their zeros), in frame ``repetition * slices + slice``.
* **Flags.** Noise measurements (``ACQ_IS_NOISE_MEASUREMENT``) give the
  receiver noise covariance ``E[n n^H]`` (sample covariance over all their
  samples), stored with the volume so every loader prewhitens with it
  (``physics.whitening``). Calibration lines of an ``embedded`` or
  ``interleaved`` calibration are measured lines of the same scan and join the
  k-space (and the mask); calibration-only lines of a ``separate`` or
  ``external`` calibration (another contrast or resolution) are left out.
  Navigator, phase-correction, dummy-scan and feedback readouts are skipped.
* **Mask.** The phase lines that were measured; None when every line inside
  the encoding limits was (a fully sampled file, usable for training; the
  columns outside are fastMRI's padding). Repetitions that sample
  different lines (interleaved acquisitions) cannot share one mask: choose one
  with ``repetition``.

Anything else (non-Cartesian or 3-D encoding, several contrasts / phases /
sets / averages, readouts that do not fit the encoded matrix, a truncated file)
is one ``InputError`` naming the file.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import h5py
import numpy as np
import torch

from ..errors import InputError
from ..physics.whitening import whitening_matrix
from .fastmri import Volume
from .ismrmrd_header import acquired_columns, parse_ismrmrd_header, readout_oversampling

DATASET = "dataset"
_SKIPPED_FLAGS = (
    "ACQ_IS_NAVIGATION_DATA", "ACQ_IS_PHASECORR_DATA", "ACQ_IS_DUMMYSCAN_DATA", "ACQ_IS_RTFEEDBACK_DATA",
    "ACQ_IS_HPFEEDBACK_DATA", "ACQ_IS_SURFACECOILCORRECTIONSCAN_DATA", "ACQ_IS_PHASE_STABILIZATION_REFERENCE",
    "ACQ_IS_PHASE_STABILIZATION",
)  # fmt: skip
_UNSUPPORTED_INDICES = ("kspace_encode_step_2", "contrast", "phase", "set", "average")


def holds_ismrmrd(h5: h5py.File) -> bool:
    """An open HDF5 file with ISMRMRD's ``dataset/xml`` and ``dataset/data`` (and no fastMRI ``kspace``)."""
    group = h5.get(DATASET)
    return "kspace" not in h5 and isinstance(group, h5py.Group) and "xml" in group and "data" in group


def is_ismrmrd(path: str | Path) -> bool:
    """A file that ``holds_ismrmrd``."""
    try:
        with h5py.File(path, "r") as h5:
            return holds_ismrmrd(h5)
    except OSError:
        return False


def _header(path: Path, dataset) -> dict:
    try:
        header = parse_ismrmrd_header(dataset.read_xml_header())
    except (ET.ParseError, ValueError, TypeError) as error:
        raise InputError(f"{path}: the ISMRMRD header is not valid XML ({error})") from None
    if "encoded_shape" not in header:
        raise InputError(f"{path}: the ISMRMRD header has no encodedSpace matrixSize")
    trajectory = header.get("trajectory", "cartesian")
    if trajectory != "cartesian":
        raise InputError(f"{path}: trajectory '{trajectory}': vnrecon reconstructs Cartesian data only")
    if header["encoded_shape"][2] != 1:
        raise InputError(f"{path}: 3-D encoding ({header['encoded_shape'][2]} partitions): vnrecon reconstructs 2-D slices")
    try:
        readout_oversampling(header, header["encoded_shape"][0])
    except ValueError as error:
        raise InputError(f"{path}: {error}") from None
    return header


def read_ismrmrd(path: str | Path, repetition: int | None = None) -> Volume:
    """The Cartesian 2-D multi-slice data of an ISMRMRD file (see the module docstring)."""
    import ismrmrd

    path = Path(path)
    try:
        dataset = ismrmrd.Dataset(str(path), DATASET, create_if_needed=False, mode="r")
    except (OSError, KeyError) as error:
        raise InputError(f"{path}: cannot open as ISMRMRD ({' '.join(str(error).split())})") from None
    try:
        header = _header(path, dataset)
        readout, phase = header["encoded_shape"][:2]
        shift = phase // 2 - header.get("pe_center", phase // 2)
        separate = header.get("calibration_mode") in ("separate", "external")
        lines: dict[tuple[int, int], dict[int, np.ndarray]] = {}
        noise: list[np.ndarray] = []
        try:
            count = dataset.number_of_acquisitions()
        except (OSError, KeyError) as error:
            raise InputError(f"{path}: cannot read the acquisitions ({' '.join(str(error).split())})") from None
        for number in range(count):
            try:
                acquisition = dataset.read_acquisition(number)
            except (OSError, ValueError) as error:
                raise InputError(f"{path}: acquisition {number} cannot be read ({' '.join(str(error).split())})") from None
            flag = acquisition.is_flag_set
            if flag(ismrmrd.ACQ_IS_NOISE_MEASUREMENT):
                noise.append(np.asarray(acquisition.data))
                continue
            if any(flag(getattr(ismrmrd, name)) for name in _SKIPPED_FLAGS):
                continue
            if separate and flag(ismrmrd.ACQ_IS_PARALLEL_CALIBRATION) and not flag(ismrmrd.ACQ_IS_PARALLEL_CALIBRATION_AND_IMAGING):
                continue
            index = acquisition.idx
            for name in _UNSUPPORTED_INDICES:
                if getattr(index, name) != 0:
                    raise InputError(f"{path}: acquisition {number} has {name} {getattr(index, name)}: vnrecon reads one contrast, phase, set and average")
            if repetition is not None and index.repetition != repetition:
                continue
            samples = np.asarray(acquisition.data)[:, acquisition.discard_pre : acquisition.number_of_samples - acquisition.discard_post]
            start = readout // 2 - (acquisition.center_sample - acquisition.discard_pre)
            line = index.kspace_encode_step_1 + shift
            if start < 0 or start + samples.shape[1] > readout or not 0 <= line < phase:
                raise InputError(
                    f"{path}: acquisition {number} (line {index.kspace_encode_step_1}, {samples.shape[1]} samples, centre "
                    f"{acquisition.center_sample}) does not fit the encoded matrix {readout} x {phase}"
                )
            row = np.zeros((samples.shape[0], readout), np.complex64)
            row[:, start : start + samples.shape[1]] = samples
            lines.setdefault((index.repetition, index.slice), {})[line] = row
    finally:
        dataset.close()
    if not lines:
        which = f" in repetition {repetition}" if repetition is not None else ""
        raise InputError(f"{path}: no imaging acquisitions{which}")
    return _volume(path, header, lines, noise)


def _volume(path: Path, header: dict, lines: dict, noise: list[np.ndarray]) -> Volume:
    readout, phase = header["encoded_shape"][:2]
    first, stop = acquired_columns(header, phase)
    frames = sorted(lines)
    coils = {row.shape[0] for frame in lines.values() for row in frame.values()}
    if len(coils) != 1:
        raise InputError(f"{path}: acquisitions have different channel counts {sorted(coils)}")
    n_coils = coils.pop()
    kspace = np.zeros((len(frames), n_coils, readout, phase), np.complex64)
    masks = np.zeros((len(frames), phase), bool)
    for position, frame in enumerate(frames):
        for line, row in lines[frame].items():
            kspace[position, :, :, line] = row
            masks[position, line] = True
    if not (masks == masks[0]).all():
        repetitions = sorted({frame[0] for frame in frames})
        raise InputError(
            f"{path}: repetitions {repetitions} sample different phase lines (an interleaved acquisition); "
            "convert one at a time with --repetition N"
        )
    covariance = None
    if noise:
        channels = sorted({block.shape[0] for block in noise})
        if channels != [n_coils]:
            raise InputError(f"{path}: noise scans have {channels} channels, the imaging data {n_coils}")
        samples = np.concatenate(noise, axis=1).astype(np.complex128)
        covariance = samples @ samples.conj().T / samples.shape[1]
        try:
            whitening_matrix(torch.from_numpy(covariance))  # Hermitian positive definite, or one line now
        except InputError as error:
            raise InputError(f"{path}: the noise scans' covariance: {error}") from None
    return Volume(
        kspace=kspace,
        acquisition=header.get("protocol", ""),
        patient_id=header.get("patient_id", path.stem),
        mask=None if masks[0][first:stop].all() else masks[0],  # every line inside the encoding limits: fully sampled
        header=header,
        noise_covariance=covariance,
    )
