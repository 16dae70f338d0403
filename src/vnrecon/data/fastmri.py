"""Read and write fastMRI multi-coil HDF5 files in their published layout.

One file holds one volume (one patient, one sequence)::

    kspace              (slices, coils, H, W) complex64   H = readout (x, 2x oversampled
                                                          in the knee data), W = phase encoding (y)
    reconstruction_rss  (slices, rh, rw) float32          RSS of the coil images, centre-cropped
                                                          to the recon matrix (320 x 320 in fastMRI);
                                                          absent in undersampled test files
    mask                (W,) bool                         only in undersampled (test-set style) files
    ismrmrd_header      scalar string                     ISMRMRD XML (vnrecon.data.ismrmrd_header)
    maps                (M, coils, H, W) complex64        optional (vnrecon): coil sensitivity maps at
                                                          the full k-space FOV, used instead of ESPIRiT
    maps_index          (slices,) integer                 optional: slice s uses maps[maps_index[s]];
                                                          without it M == slices and slice s uses maps[s]
    noise_covariance    (coils, coils) complex            optional (vnrecon): receiver noise covariance
                                                          E[n n^H]; loaders prewhiten k-space and maps

    attrs: acquisition (CORPD_FBK / CORPDFS_FBK), patient_id, and when a
    reconstruction is stored max / norm (its maximum and l2 norm); files with a
    mask also carry acceleration / num_low_frequency as in the fastMRI test set.

fastMRI's own loader derives the phase-encoding zero padding from the header as
``padding_left = enc_y // 2 - center`` and ``padding_right = padding_left +
maximum + 1`` (``center`` / ``maximum`` of encodingLimits/kspace_encoding_step_1)
and takes the target crop from reconSpace/matrixSize. The files written here
hold fully encoded phase lines, so they carry ``minimum = 0``, ``maximum = W - 1``,
``center = W // 2``, i.e. padding_left = 0 and padding_right = W (no padding).

Coil maps: fastMRI files carry none (every loader estimates them with ESPIRiT
from the ACS lines). A file may carry its own in ``maps`` (the original VN
data's per-slice ``espirit<k>.mat`` in one dataset, BART ``ecalib`` output,
vendor maps, or the maps a simulator made the data with); every vnrecon
loader then uses them as they are. ``maps_index`` lets many slices share one
map set (a synthetic set draws its maps from a small pool), so each set is
stored once. Maps are validated (shape, complex, finite) like the k-space.

Noise covariance: a file may carry its receivers' noise covariance
(``noise_covariance``, see :mod:`vnrecon.physics.whitening`, e.g. from a noise
scan); the training, evaluation and recon loaders then prewhiten the k-space
and any stored maps with it before anything else. It must be Hermitian
positive definite (checked when read).

Reconstruction for small simulated matrices: ``reconstruction_rss`` is the RSS
image centre-*fitted* to the recon matrix: each axis is centre-cropped when
the image is larger (exactly fastMRI's centre crop for the real sizes, e.g.
640 x 368 -> 320 x 320) and centre-embedded in zeros when it is smaller (which
fastMRI's crop cannot do), so the centre pixel (N // 2) lands on index
recon // 2. The header's reconSpace always equals the stored shape, and its
readout over the encoded readout is the file's readout oversampling
(:func:`~vnrecon.data.ismrmrd_header.readout_oversampling`): fastMRI's 640 x 368 k-space with a 320 x 320
recon matrix is 2x oversampled, the simulators store the readout-cropped
matrix (H // 2, W), and a file written without a recon matrix gets (H, W), no
oversampling, so no command crops away part of its image.

ISMRMRD raw data files (``dataset/xml`` + ``dataset/data``) are read too, through
:mod:`vnrecon.data.ismrmrd_raw`, so every command and data selection takes them
as they are; each is read whole (the last two are kept in memory), so
``vnrecon convert`` them once for repeated training on large data.

Every read error raises :class:`vnrecon.errors.InputError` whose message
starts with the file path.
"""

from __future__ import annotations

import functools
import xml.etree.ElementTree as ET  # ParseError of a damaged header
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Sequence

import h5py
import numpy as np
import torch

from vnrecon.errors import InputError
from vnrecon.files import atomic_write
from vnrecon.physics.fft import ifft2c
from vnrecon.physics.masks import count_acs_lines, effective_acceleration
from vnrecon.physics.whitening import prewhiten, whitening_matrix

from .ismrmrd_header import acquired_columns, build_ismrmrd_header, parse_ismrmrd_header, pe_limits, readout_oversampling

FASTMRI_RECON_SHAPE = (320, 320)
DEFAULT_FIELD_STRENGTH_T = 3.0  # the paper's knee data: 3 T
DEFAULT_READOUT_FOV_MM = 280.0  # readout FOV incl. 2x oversampling (140 mm imaged)
DEFAULT_SLICE_THICKNESS_MM = 3.0

SliceSelection = int | slice | Sequence[int] | None


@dataclass
class Volume:
    """One fastMRI volume in memory.

    kspace: (slices, coils, H, W) complex64, H readout, W phase encoding.
    reconstruction_rss: (slices, rh, rw) float32 or None (computed on write for
        fully sampled data, see :func:`write_volume`).
    mask: (W,) bool or None (undersampled, test-set style file).
    header: parsed ISMRMRD fields, see :func:`parse_ismrmrd_header`; on write its
        sequence fields are used unless overridden by keyword.
    maps: (M, coils, H, W) complex64 coil maps or None (estimate them with ESPIRiT).
    maps_index: (slices,) int64, the map set of each slice, or None (M == slices, one set
        per slice).
    noise_covariance: (coils, coils) complex128 receiver noise covariance or None (white noise).
    """

    kspace: np.ndarray
    acquisition: str = ""
    patient_id: str = ""
    reconstruction_rss: np.ndarray | None = None
    mask: np.ndarray | None = None
    header: dict[str, Any] = field(default_factory=dict)
    maps: np.ndarray | None = None
    maps_index: np.ndarray | None = None
    noise_covariance: np.ndarray | None = None

    @property
    def n_slices(self) -> int:
        return int(self.kspace.shape[0])

    @property
    def n_coils(self) -> int:
        return int(self.kspace.shape[1])

    @property
    def oversampling(self) -> int:
        """Readout oversampling from the header (:func:`~vnrecon.data.ismrmrd_header.readout_oversampling`; 1 without one)."""
        return readout_oversampling(self.header, int(self.kspace.shape[-2]))

    @property
    def acquired(self) -> tuple[int, int]:
        """[first, stop) of the acquired phase-encoding columns (:func:`~vnrecon.data.ismrmrd_header.acquired_columns`)."""
        return acquired_columns(self.header, int(self.kspace.shape[-1]))

    def prewhitened(self) -> "Volume":
        """This volume with k-space and stored maps prewhitened by its noise covariance (itself without one).

        The result carries no covariance (its noise is white): prewhitening twice is a no-op.
        """
        if self.noise_covariance is None:
            return self
        whitening = whitening_matrix(torch.from_numpy(self.noise_covariance))
        kspace = prewhiten(torch.from_numpy(self.kspace), whitening).numpy()
        maps = None if self.maps is None else prewhiten(torch.from_numpy(self.maps), whitening).numpy()
        return replace(self, kspace=kspace, maps=maps, noise_covariance=None)

    def slice_maps(self) -> np.ndarray | None:
        """(slices, coils, H, W) coil maps of every slice (a view per set), or None without stored maps."""
        if self.maps is None:
            return None
        return self.maps if self.maps_index is None else self.maps[self.maps_index]


@dataclass(frozen=True)
class VolumeInfo:
    """Cheap metadata of a file (see :func:`read_header`); k-space is not loaded.

    shape is the k-space shape (slices, coils, H, W); mask (W,) bool is
    included when present since it is tiny; attrs holds all file attributes.
    """

    path: Path
    shape: tuple[int, int, int, int]
    dtype: np.dtype
    acquisition: str
    patient_id: str
    header: dict[str, Any]
    has_mask: bool
    has_rss: bool
    mask: np.ndarray | None
    attrs: dict[str, Any]
    #: Number of stored coil map sets (0: none, maps are estimated).
    n_maps: int = 0
    has_noise_covariance: bool = False
    #: Readout oversampling from the header (:func:`~vnrecon.data.ismrmrd_header.readout_oversampling`).
    oversampling: int = 1

    @property
    def has_maps(self) -> bool:
        return self.n_maps > 0

    @property
    def n_slices(self) -> int:
        return self.shape[0]

    @property
    def n_coils(self) -> int:
        return self.shape[1]

    @property
    def readout(self) -> int:
        return self.shape[2]

    @property
    def phase(self) -> int:
        return self.shape[3]

    @property
    def acquired(self) -> tuple[int, int]:
        """[first, stop) of the acquired phase-encoding columns (:func:`~vnrecon.data.ismrmrd_header.acquired_columns`)."""
        return acquired_columns(self.header, self.phase)


# --------------------------------------------------------------------------- reconstruction


def center_fit(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Centre-crop or zero-pad the last two axes to ``shape``; index N // 2 maps to shape // 2."""
    out = np.zeros(image.shape[:-2] + tuple(shape), dtype=image.dtype)
    src, dst = [], []
    for size, target in zip(image.shape[-2:], shape):
        if size >= target:  # crop: same start as fastMRI's center_crop for even sizes
            start = size // 2 - target // 2
            src.append(slice(start, start + target))
            dst.append(slice(0, target))
        else:  # embed in zeros
            start = target // 2 - size // 2
            src.append(slice(0, size))
            dst.append(slice(start, start + size))
    out[(..., *dst)] = image[(..., *src)]
    return out


def rss_reconstruction(kspace: np.ndarray, recon_shape: tuple[int, int] = FASTMRI_RECON_SHAPE) -> np.ndarray:
    """fastMRI's target: per coil centred orthonormal inverse FFT, RSS over coils, centre fit.

    kspace (slices, coils, H, W) -> (slices, *recon_shape) float32. One slice at a time.
    """
    out = np.empty((kspace.shape[0], *recon_shape), dtype=np.float32)
    for index in range(kspace.shape[0]):
        images = ifft2c(torch.from_numpy(np.ascontiguousarray(kspace[index])))
        rss = torch.sqrt(torch.sum(images.real**2 + images.imag**2, dim=0)).numpy()
        out[index] = center_fit(rss, recon_shape)
    return out


# --------------------------------------------------------------------------- writing


def _check_volume(volume: Volume) -> tuple[np.ndarray, np.ndarray | None]:
    kspace = np.asarray(volume.kspace)
    if kspace.ndim != 4:
        raise ValueError(f"kspace must be 4-D (slices, coils, readout, phase), got shape {kspace.shape}")
    if min(kspace.shape) == 0:
        raise ValueError(f"kspace is empty, shape {kspace.shape}")
    if not np.iscomplexobj(kspace):
        raise ValueError(f"kspace must be complex, got dtype {kspace.dtype}")
    if not np.isfinite(kspace).all():
        raise ValueError("kspace contains NaN or Inf")
    mask = None
    if volume.mask is not None:
        mask = np.asarray(volume.mask).reshape(-1)
        if mask.size != kspace.shape[-1] or np.asarray(volume.mask).ndim != 1:
            raise ValueError(f"mask must have shape ({kspace.shape[-1]},), got {np.shape(volume.mask)}")
        if not np.isin(mask, (0, 1)).all():
            raise ValueError("mask values must be 0 or 1")
        mask = mask.astype(bool)
    return kspace.astype(np.complex64, copy=False), mask


def _maps_layout_problem(shape, is_complex: bool, index, kspace_shape) -> str | None:
    """What is wrong with a ``maps`` of ``shape`` and a ``maps_index`` (None: absent) for k-space of
    ``kspace_shape``; None if the layout is right. One rule set for the writer and the reader."""
    n_slices, coils, readout, phase = kspace_shape
    if shape is None:
        return None if index is None else "'maps_index' without a 'maps' dataset"
    if not is_complex:
        return "'maps' must be a complex dataset (sets, coils, readout, phase)"
    if len(shape) != 4 or tuple(shape[1:]) != (coils, readout, phase) or shape[0] == 0:
        return (
            f"'maps' has shape {tuple(shape)} but must be (sets, {coils}, {readout}, {phase}) "
            "like the k-space (coil maps at the full readout FOV)"
        )
    if index is None:
        if shape[0] != n_slices:
            return f"'maps' holds {shape[0]} map sets for {n_slices} slices; add a 'maps_index' (slices,) naming each slice's set"
        return None
    index = np.asarray(index)
    if index.shape != (n_slices,) or index.dtype.kind not in "iu":
        return f"'maps_index' must be ({n_slices},) integers, one map set per slice"
    if index.min() < 0 or index.max() >= shape[0]:
        return f"'maps_index' points outside the {shape[0]} map sets"
    return None


def _check_maps(volume: Volume) -> tuple[np.ndarray | None, np.ndarray | None]:
    maps = None if volume.maps is None else np.asarray(volume.maps)
    index = None if volume.maps_index is None else np.asarray(volume.maps_index)
    problem = _maps_layout_problem(
        None if maps is None else maps.shape, maps is not None and np.iscomplexobj(maps), index, np.shape(volume.kspace)
    )
    if problem is not None:
        raise ValueError(problem)
    if maps is None:
        return None, None
    if not np.isfinite(maps).all():
        raise ValueError("'maps' contains NaN or Inf")
    return maps.astype(np.complex64, copy=False), None if index is None else index.astype(np.int64)


def write_volume(
    path: str | Path,
    volume: Volume,
    *,
    field_strength_T: float | None = None,
    TR_ms: float | None = None,
    TE_ms: float | None = None,
    TI_ms: float | None = None,
    flip_angle_deg: float | None = None,
    fov_mm: tuple[float, float, float] | None = None,
    recon_shape: tuple[int, int] | None = None,
    compute_rss: bool | None = None,
) -> Path:
    """Write ``volume`` as a fastMRI multi-coil file, atomically; returns the path.

    Sequence keywords default to ``volume.header``'s values, then to: 3 T, no
    TR/TE/TI/flip angle, fov_mm = (280, 280 * W / H, 3) (square pixels).
    recon_shape defaults to the shape of the given reconstruction, else
    ``volume.header['recon_shape']``, else (H, W) (no readout oversampling); its
    readout must divide H (the oversampling, :func:`~vnrecon.data.ismrmrd_header.readout_oversampling`). compute_rss defaults to
    "no reconstruction given and no mask" (test-set style files with a mask carry
    no reconstruction, as in fastMRI). The file is written to a temporary file in
    the same directory and moved over ``path`` only when complete; on any error
    the temporary file is removed and an existing ``path`` is left untouched.
    """
    path = Path(path)
    kspace, mask = _check_volume(volume)
    maps, maps_index = _check_maps(volume)
    n_slices, n_coils, readout, phase = kspace.shape
    covariance = None
    if volume.noise_covariance is not None:
        covariance = np.asarray(volume.noise_covariance).astype(np.complex128)
        if covariance.shape != (n_coils, n_coils):
            raise ValueError(f"noise_covariance must be ({n_coils}, {n_coils}), got shape {covariance.shape}")
    header = volume.header or {}

    rss = volume.reconstruction_rss
    if rss is not None:
        rss = np.asarray(rss, dtype=np.float32)
        if rss.ndim != 3 or rss.shape[0] != n_slices:
            raise ValueError(f"reconstruction_rss must be ({n_slices}, rh, rw), got shape {rss.shape}")
        if recon_shape is not None and tuple(recon_shape) != rss.shape[1:]:
            raise ValueError(f"recon_shape {tuple(recon_shape)} does not match reconstruction_rss {rss.shape[1:]}")
        recon_shape = rss.shape[1:]
    if recon_shape is None:
        recon_shape = tuple(header["recon_shape"][:2]) if "recon_shape" in header else (readout, phase)
    recon_shape = (int(recon_shape[0]), int(recon_shape[1]))
    readout_oversampling({"encoded_shape": (readout,), "recon_shape": recon_shape}, readout)  # ValueError if not whole
    if compute_rss is None:
        compute_rss = rss is None and mask is None
    if rss is None and compute_rss:
        rss = rss_reconstruction(kspace, recon_shape)

    def pick(value: Any, key: str, default: Any = None) -> Any:
        return value if value is not None else header.get(key, default)

    default_fov = (DEFAULT_READOUT_FOV_MM, DEFAULT_READOUT_FOV_MM * phase / readout, DEFAULT_SLICE_THICKNESS_MM)
    xml = build_ismrmrd_header(
        kspace.shape,
        recon_shape,
        fov_mm=tuple(float(v) for v in pick(fov_mm, "fov_mm", default_fov)),
        field_strength_T=float(pick(field_strength_T, "field_strength_T", DEFAULT_FIELD_STRENGTH_T)),
        sequence={
            "TR_ms": pick(TR_ms, "TR_ms"),
            "TE_ms": pick(TE_ms, "TE_ms"),
            "TI_ms": pick(TI_ms, "TI_ms"),
            "flip_angle_deg": pick(flip_angle_deg, "flip_angle_deg"),
        },
        pe_limits=pe_limits(header, phase),
    )

    with atomic_write(path) as temporary:
        with h5py.File(temporary, "w") as h5:
            h5.create_dataset("kspace", data=kspace)
            if rss is not None:
                h5.create_dataset("reconstruction_rss", data=rss)
            if mask is not None:
                h5.create_dataset("mask", data=mask)
            if maps is not None:
                h5.create_dataset("maps", data=maps)
            if maps_index is not None:
                h5.create_dataset("maps_index", data=maps_index)
            if covariance is not None:
                h5.create_dataset("noise_covariance", data=covariance)
            h5.create_dataset("ismrmrd_header", data=xml)
            h5.attrs["acquisition"] = str(volume.acquisition)
            h5.attrs["patient_id"] = str(volume.patient_id)
            if rss is not None:
                h5.attrs["max"] = float(rss.max())
                h5.attrs["norm"] = float(np.linalg.norm(rss.astype(np.float64)))
            if mask is not None:
                first, stop = acquired_columns(header, phase)
                h5.attrs["acceleration"] = int(round(effective_acceleration(mask[first:stop])))
                h5.attrs["num_low_frequency"] = count_acs_lines(mask)
    return path


# --------------------------------------------------------------------------- reading


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, np.ndarray) and value.shape == ():
        return _text(value[()])
    return str(value)


def _open(path: Path) -> h5py.File:
    if not path.exists():
        raise InputError(f"{path}: file not found")
    if not path.is_file():
        raise InputError(f"{path}: not a file")
    try:
        if not h5py.is_hdf5(path):
            raise InputError(f"{path}: not an HDF5 file")
        return h5py.File(path, "r")
    except InputError:
        raise
    except OSError as error:
        raise InputError(f"{path}: cannot open as HDF5 ({' '.join(str(error).split())})") from None


def _inspect(path: Path, h5: h5py.File) -> VolumeInfo:
    """Validate the layout of an open file and collect its metadata (no k-space read)."""
    kspace = h5.get("kspace")
    if not isinstance(kspace, h5py.Dataset):
        raise InputError(f"{path}: no 'kspace' dataset (not a fastMRI file?)")
    if kspace.ndim != 4:
        raise InputError(
            f"{path}: 'kspace' must be 4-D (slices, coils, readout, phase), got shape {kspace.shape}"
            + (" (single-coil files are not supported)" if kspace.ndim == 3 else "")
        )
    if kspace.dtype.kind != "c":
        raise InputError(f"{path}: 'kspace' must be complex, got dtype {kspace.dtype}")
    shape = tuple(int(size) for size in kspace.shape)
    if min(shape) == 0:
        raise InputError(f"{path}: 'kspace' is empty, shape {shape}")

    mask = None
    if "mask" in h5:
        raw = h5["mask"]
        if not isinstance(raw, h5py.Dataset):
            raise InputError(f"{path}: 'mask' is not a dataset")
        values = np.asarray(raw[()])
        if values.ndim != 1 or values.size != shape[3]:
            raise InputError(
                f"{path}: 'mask' has shape {values.shape} but k-space has {shape[3]} phase-encoding lines"
            )
        if not np.isin(values, (0, 1)).all():
            raise InputError(f"{path}: 'mask' values must be 0 or 1")
        mask = values.astype(bool)
        if not mask.any():
            raise InputError(f"{path}: 'mask' samples no lines")

    has_rss = isinstance(h5.get("reconstruction_rss"), h5py.Dataset)
    if has_rss:
        rss_shape = h5["reconstruction_rss"].shape
        if len(rss_shape) != 3 or rss_shape[0] != shape[0]:
            raise InputError(
                f"{path}: 'reconstruction_rss' has shape {rss_shape}, expected ({shape[0]}, rh, rw)"
            )

    n_maps = _inspect_maps(path, h5, shape)
    has_covariance = "noise_covariance" in h5
    if has_covariance:
        covariance = h5["noise_covariance"]
        if not isinstance(covariance, h5py.Dataset) or covariance.shape != (shape[1], shape[1]):
            raise InputError(
                f"{path}: 'noise_covariance' must be ({shape[1]}, {shape[1]}) for {shape[1]} coils, "
                f"got {getattr(covariance, 'shape', 'a group')}"
            )

    header: dict[str, Any] = {}
    if isinstance(h5.get("ismrmrd_header"), h5py.Dataset):
        try:
            header = parse_ismrmrd_header(h5["ismrmrd_header"][()])
        except (ET.ParseError, ValueError, TypeError) as error:
            raise InputError(f"{path}: 'ismrmrd_header' is not valid ISMRMRD XML ({error})") from None
    try:
        oversampling = readout_oversampling(header, shape[2])
    except ValueError as error:
        raise InputError(f"{path}: {error}") from None

    attrs = {key: h5.attrs[key] for key in h5.attrs}
    return VolumeInfo(
        path=path,
        shape=shape,  # type: ignore[arg-type]
        dtype=kspace.dtype,
        acquisition=_text(attrs.get("acquisition", "")),
        patient_id=_text(attrs.get("patient_id", "")),
        header=header,
        has_mask=mask is not None,
        has_rss=has_rss,
        mask=mask,
        attrs=attrs,
        n_maps=n_maps,
        has_noise_covariance=has_covariance,
        oversampling=oversampling,
    )


def _inspect_maps(path: Path, h5: h5py.File, shape: tuple[int, ...]) -> int:
    """Check the optional ``maps`` / ``maps_index`` layout (values are checked on read); the number of sets."""
    maps, index = h5.get("maps"), h5.get("maps_index")
    if maps is not None and not isinstance(maps, h5py.Dataset):
        raise InputError(f"{path}: 'maps' must be a complex dataset (sets, coils, readout, phase)")
    if index is not None and not isinstance(index, h5py.Dataset):
        raise InputError(f"{path}: 'maps_index' must be ({shape[0]},) integers, one map set per slice")
    problem = _maps_layout_problem(
        None if maps is None else maps.shape, maps is not None and maps.dtype.kind == "c",
        None if index is None else index[()], shape,
    )
    if problem is not None:
        raise InputError(f"{path}: {problem}")
    return 0 if maps is None else int(maps.shape[0])


def _read_maps(path: Path, h5: h5py.File, indices: list[int]) -> tuple[np.ndarray | None, np.ndarray | None]:
    """The map sets the selected slices use, and each selected slice's position in them."""
    if "maps" not in h5:
        return None, None
    if "maps_index" in h5:
        wanted = h5["maps_index"][()][indices].astype(np.int64)
        sets, position = np.unique(wanted, return_inverse=True)
        maps = h5["maps"][sets.tolist()] if len(sets) else np.empty((0, *h5["maps"].shape[1:]), h5["maps"].dtype)
        index = position.astype(np.int64)
    else:
        maps, index = _read_rows(h5["maps"], indices), None
    maps = maps.astype(np.complex64, copy=False)
    if not np.isfinite(maps).all():
        raise InputError(f"{path}: 'maps' contains NaN or Inf")
    return maps, index


def read_header(path: str | Path) -> VolumeInfo:
    """Metadata and layout checks only; k-space is not read (except from ISMRMRD files). Raises InputError."""
    from .ismrmrd_raw import holds_ismrmrd  # imports this module

    path = Path(path)
    with _open(path) as h5:
        if not holds_ismrmrd(h5):
            return _inspect(path, h5)
    volume = _ismrmrd_volume(path)
    return VolumeInfo(
        path=path, shape=volume.kspace.shape, dtype=volume.kspace.dtype, acquisition=volume.acquisition,
        patient_id=volume.patient_id, header=dict(volume.header), has_mask=volume.mask is not None, has_rss=False,
        mask=volume.mask, attrs={}, has_noise_covariance=volume.noise_covariance is not None,
        oversampling=volume.oversampling,
    )  # fmt: skip


def _ismrmrd_volume(path: Path) -> Volume:
    """An ISMRMRD file read as a volume (``ismrmrd_raw``), the last two kept: a dataset reads one slice at a time."""
    stat = path.stat()
    return _cached_ismrmrd(path.resolve(), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=2)
def _cached_ismrmrd(path: Path, mtime_ns: int, size: int) -> Volume:
    from .ismrmrd_raw import read_ismrmrd  # imports this module

    volume = read_ismrmrd(path)
    for array in (volume.kspace, volume.mask, volume.noise_covariance):
        if array is not None:
            array.setflags(write=False)  # shared by every later read: callers get copies or read-only views
    return volume


def _selection(path: Path, slices: SliceSelection, n_slices: int) -> list[int]:
    if slices is None:
        return list(range(n_slices))
    if isinstance(slices, slice):
        return list(range(*slices.indices(n_slices)))
    items = [slices] if isinstance(slices, (int, np.integer)) else list(slices)
    indices = []
    for item in items:
        if isinstance(item, bool) or not isinstance(item, (int, np.integer)):
            raise InputError(f"{path}: slice index must be an integer, got {item!r}")
        if not -n_slices <= item < n_slices:
            raise InputError(f"{path}: slice {item} out of range, the file has {n_slices} slices")
        indices.append(int(item) % n_slices)
    return indices


def _read_rows(dataset: h5py.Dataset, indices: list[int]) -> np.ndarray:
    """Read only the selected leading-axis rows (one contiguous hyperslab when possible)."""
    if not indices:
        return np.empty((0, *dataset.shape[1:]), dtype=dataset.dtype)
    if indices == list(range(indices[0], indices[-1] + 1)):
        return dataset[indices[0] : indices[-1] + 1]
    return np.stack([dataset[index] for index in indices])


def read_volume(path: str | Path, slices: SliceSelection = None) -> Volume:
    """Read a file; only the selected slices of k-space and reconstruction are loaded.

    ``slices``: None (all), an int, a slice or a sequence of ints (negative
    indices allowed, order kept). The result is always 4-D (an int gives one
    slice). Raises InputError for any problem with the file, including NaN/Inf in
    the selected k-space slices.
    """
    from .ismrmrd_raw import holds_ismrmrd  # imports this module

    path = Path(path)
    with _open(path) as h5:
        ismrmrd = holds_ismrmrd(h5)
    if ismrmrd:
        volume = _ismrmrd_volume(path)
        indices = _selection(path, slices, volume.n_slices)
        return replace(volume, kspace=volume.kspace[indices], header=dict(volume.header))
    with _open(path) as h5:
        info = _inspect(path, h5)
        indices = _selection(path, slices, info.n_slices)
        kspace = _read_rows(h5["kspace"], indices).astype(np.complex64, copy=False)
        finite = np.isfinite(kspace).reshape(len(indices), -1).all(axis=1)
        if not finite.all():
            bad = indices[int(np.flatnonzero(~finite)[0])]
            raise InputError(f"{path}: k-space contains NaN or Inf (slice {bad})")
        rss = None
        if info.has_rss:
            rss = _read_rows(h5["reconstruction_rss"], indices).astype(np.float32, copy=False)
        maps, maps_index = _read_maps(path, h5, indices)
        covariance = None
        if info.has_noise_covariance:
            covariance = h5["noise_covariance"][()].astype(np.complex128)
            try:
                whitening_matrix(torch.from_numpy(covariance))  # validates: Hermitian positive definite
            except InputError as error:
                raise InputError(f"{path}: 'noise_covariance': {error}") from None
    return Volume(
        kspace=kspace,
        acquisition=info.acquisition,
        patient_id=info.patient_id,
        reconstruction_rss=rss,
        mask=info.mask,
        header=info.header,
        maps=maps,
        maps_index=maps_index,
        noise_covariance=covariance,
    )
