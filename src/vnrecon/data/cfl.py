"""BART's ``.cfl`` / ``.hdr`` file pair, and the mapping between BART's dimensions and ours.

A BART array ``NAME`` is two files: ``NAME.hdr``, text with a line ``# Dimensions``
followed by one line of sizes (BART writes 16), and ``NAME.cfl``, the raw
samples as little-endian complex64 in column-major (Fortran) order, the first
dimension fastest. BART's dimension names (``misc/mri.h``) that matter here:

    0 READ  readout          3 COIL  receive channel     13 SLICE  2-D slice
    1 PHS1  phase encoding   4 MAPS  ESPIRiT map set
    2 PHS2  second phase encoding (3-D k-space)

Our multi-coil k-space (slices, coils, readout, phase) is BART's
``[readout, phase, 1, coils, 1, ..., slices (dim 13)]``; coil maps are the same
with one map set in dim 4; images (slices, readout, phase) are
``[readout, phase, 1, 1, ..., slices]``. BART's centred unitary FFT
(``bart fft -u``) equals our ``fft2c`` on these arrays (tested with the real
``bart``), so k-space moves between the two without any reordering.

Errors name the file: a missing half of the pair, a header without
dimensions, a ``.cfl`` whose size does not match its header, NaN, and arrays
that are not 2-D multi-slice multi-coil data (3-D k-space, several echoes or
maps) each give one ``InputError``.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..files import atomic_write

BART_DIMS = 16
READ_DIM, PHS1_DIM, PHS2_DIM, COIL_DIM, MAPS_DIM, SLICE_DIM = 0, 1, 2, 3, 4, 13
_DIM_NAMES = {
    0: "READ", 1: "PHS1", 2: "PHS2", 3: "COIL", 4: "MAPS", 5: "TE", 6: "COEFF", 7: "COEFF2", 8: "ITER",
    9: "CSHIFT", 10: "TIME", 11: "TIME2", 12: "LEVEL", 13: "SLICE", 14: "AVG", 15: "BATCH",
}  # fmt: skip
_SAMPLE = np.dtype("<c8")


def cfl_pair(path: str | Path) -> tuple[Path, Path]:
    """(NAME.hdr, NAME.cfl) for NAME, NAME.cfl or NAME.hdr (BART's own commands take NAME)."""
    path = Path(path)
    stem = path.with_suffix("") if path.suffix in (".cfl", ".hdr") else path
    return stem.with_name(stem.name + ".hdr"), stem.with_name(stem.name + ".cfl")


def is_cfl(path: str | Path) -> bool:
    """A path that names a BART array (by suffix, or a NAME whose NAME.hdr exists)."""
    path = Path(path)
    return path.suffix in (".cfl", ".hdr") or (not path.suffix and cfl_pair(path)[0].is_file())


def read_dims(path: str | Path) -> list[int]:
    """The dimensions in a ``.hdr`` (padded with 1 to BART's 16)."""
    header, _ = cfl_pair(path)
    if not header.is_file():
        raise InputError(f"{header}: file not found (a BART array is NAME.hdr plus NAME.cfl)")
    try:
        lines = header.read_text().splitlines()
    except UnicodeDecodeError:
        raise InputError(f"{header}: not a BART header (not text)") from None
    try:
        values = lines[[line.strip() for line in lines].index("# Dimensions") + 1].split()
        dims = [int(value) for value in values]
    except (ValueError, IndexError):
        raise InputError(f"{header}: not a BART header (no '# Dimensions' line followed by integer sizes)") from None
    if not dims or len(dims) > BART_DIMS or min(dims) < 1:
        raise InputError(f"{header}: dimensions {dims} are not 1 to {BART_DIMS} positive sizes")
    return dims + [1] * (BART_DIMS - len(dims))


def read_cfl(path: str | Path) -> np.ndarray:
    """The array of a BART file pair, shape = its 16 dimensions, complex64."""
    dims = read_dims(path)
    _, data = cfl_pair(path)
    if not data.is_file():
        raise InputError(f"{data}: file not found (a BART array is NAME.hdr plus NAME.cfl)")
    expected = math.prod(dims) * _SAMPLE.itemsize
    size = data.stat().st_size
    if size != expected:
        raise InputError(
            f"{data}: holds {size} bytes but its header's dimensions {dims[:_last_used(dims) + 1]} need {expected} "
            "(complex64): truncated, or the .hdr belongs to other data"
        )
    array = np.fromfile(data, dtype=_SAMPLE).reshape(dims, order="F")
    if not np.isfinite(array).all():
        raise InputError(f"{data}: contains NaN or Inf")
    return array.astype(np.complex64, copy=False)


def write_cfl(path: str | Path, array: np.ndarray) -> Path:
    """Write ``array`` (up to 16 dimensions, BART order) as NAME.cfl + NAME.hdr, each atomically; returns NAME.cfl.

    The data are written before the header: an overwrite interrupted between the two leaves new
    data under the old header, which ``read_cfl`` refuses when the sizes differ (an array of the
    same number of samples in another shape would pass: the pair is two files, not one).
    """
    array = np.asarray(array)
    if array.ndim > BART_DIMS:
        raise ValueError(f"BART arrays have at most {BART_DIMS} dimensions, got {array.ndim}")
    header, data = cfl_pair(path)
    with atomic_write(data) as temporary:
        array.astype(_SAMPLE).ravel(order="F").tofile(temporary)
    dims = list(array.shape) + [1] * (BART_DIMS - array.ndim)
    with atomic_write(header) as temporary:
        Path(temporary).write_text("# Dimensions\n" + " ".join(str(size) for size in dims) + " \n")
    return data


def _last_used(dims: list[int]) -> int:
    return max([index for index, size in enumerate(dims) if size > 1], default=0)


# --------------------------------------------------------------------------- our layouts <-> BART's


def kspace_to_bart(kspace: np.ndarray) -> np.ndarray:
    """(slices, coils, readout, phase) -> BART [readout, phase, 1, coils, 1, ..., slices]."""
    slices, coils, readout, phase = kspace.shape
    singletons = (1,) * (SLICE_DIM - MAPS_DIM)  # dims 4..12
    return np.transpose(kspace, (2, 3, 1, 0)).reshape(readout, phase, 1, coils, *singletons, slices)


def images_to_bart(images: np.ndarray) -> np.ndarray:
    """(slices, readout, phase) -> BART [readout, phase, 1, 1, ..., slices]."""
    return kspace_to_bart(images[:, None])


def kspace_from_bart(array: np.ndarray, where: str | Path) -> np.ndarray:
    """BART [readout, phase, 1, coils, 1, ..., slices] -> (slices, coils, readout, phase) complex64.

    Refuses what is not 2-D multi-slice Cartesian k-space, with the way out where there is one."""
    dims = list(array.shape) + [1] * (BART_DIMS - array.ndim)
    if dims[PHS2_DIM] > 1:
        raise InputError(
            f"{where}: 3-D k-space ({dims[PHS2_DIM]} partitions in dim 2): vnrecon reconstructs 2-D slices; "
            "inverse-FFT along dim 2 and move it to the slice dim first (bart fft -i -u 4, then bart transpose 2 13)"
        )
    extra = [f"{_DIM_NAMES[index]} (dim {index}) = {size}" for index, size in enumerate(dims)
             if size > 1 and index not in (READ_DIM, PHS1_DIM, COIL_DIM, SLICE_DIM)]  # fmt: skip
    if extra:
        raise InputError(f"{where}: not single-echo multi-coil k-space: {', '.join(extra)}; select one with bart slice")
    flat = np.reshape(array, (dims[READ_DIM], dims[PHS1_DIM], dims[COIL_DIM], dims[SLICE_DIM]))  # drops size-1 dims only
    return np.ascontiguousarray(np.transpose(flat, (3, 2, 0, 1))).astype(np.complex64, copy=False)
