"""Synthetic multi-coil k-space from natural images (the paper's transfer-learning data).

Knoll et al. (MRM 2019, Methods) generated synthetic k-space from 200 natural
images (BSDS): each image cropped to the k-space matrix *including* readout
oversampling, modulated with a sinusoidal phase of random frequencies,
multiplied with coil maps estimated from the knee training data, Fourier
transformed, and complex Gaussian noise added at the knee noise level, with
the SNR of the PDw data ("high"), of the PDw-FS data ("low") or a random SNR
between the two per image ("variable"). :func:`simulate_natural_dataset`
implements that recipe; the choices the paper leaves open are these.

Images
------
``images=None`` uses the default photographs of :mod:`vnrecon.data.photos`:
the 121 GCompris photographs when Debian's ``gcompris-qt-data`` is installed,
else the 10 photographs that ship inside scikit-image. ``images=FOLDER`` uses
every PNG / JPEG / TIFF / BMP file in the folder (not recursive; e.g. the
BSDS500 images). All are grey float images.

There are fewer source images than synthetic ones, so every synthetic image
is a random view of a source image: a rotation by a multiple of 90 degrees,
a random left-right flip, a random scale (log-uniform between the smallest
scale at which the rotated image still covers the matrix, ``s_cover``, and
``1.25 * max(1, s_cover)``: from "the whole image" to "native resolution,
slightly magnified") and a random crop position. The crop is resampled
(bilinear, anti-aliased when shrinking) to exactly the k-space matrix
*including* the readout oversampling, ``(readout, phase)`` of the knee files
(e.g. 256 x 96), and normalised to [0, 1] (min-max). Sources are used in turn:
synthetic images ``b*n .. (b+1)*n - 1`` use each of the ``n`` sources once,
in a random order per block ``b``.

Phase
-----
Each image ``m`` is modulated as ``m * exp(i phi)`` with::

    phi(x, y) = a * sin(2 pi (fx * x / H + fy * y / W) + p)

``x = 0..H-1`` the readout row, ``y = 0..W-1`` the phase-encoding column
(``H x W`` the full oversampled matrix), so ``(fx, fy)`` are cycles per FOV
along each axis. Per image: the frequency vector has a uniform random
direction and a length uniform in ``PHASE_CYCLES`` = [0.5, 2.5] cycles per
FOV; the amplitude ``a`` is uniform in ``PHASE_AMPLITUDE`` = [0.5, pi] rad;
the offset ``p`` uniform in [0, 2 pi). Low frequencies keep the phase smooth
like an MR background phase, while its amplitude (up to pi) makes the real
and imaginary parts carry comparable structure.

Coil maps
---------
ESPIRiT maps (:func:`vnrecon.physics.espirit.espirit_maps`, ``acs_lines`` ACS
lines) estimated from single slices of the knee files in ``maps_from``
(prewhitened with their noise covariance when they carry one, so the maps and
the white synthetic noise live in the same channel space): both
acquisitions (CORPD_FBK and CORPDFS_FBK), the central 20 slices of each file
(``data.selection.SNR_SLICES``; the paper's knee training data are those
slices of both sequences). A pool of up to ``MAP_POOL`` (= 20) of those
slices is drawn at random per seed; every synthetic image uses a random
member of the pool, and each member's maps are estimated once per run (on
first use) and cached.

The maps are used *without* ESPIRiT's eigenvalue crop (``crop=0``): they have
unit norm over coils (``sum_c |S_c|^2 = 1``) over the whole FOV, so the
natural image fills the whole oversampled FOV as in the paper, instead of
being cut to the outline of the knee. Inside the knee the maps equal the
(cropped) maps a default ESPIRiT call returns; outside it, mostly in the
readout margins, they are ESPIRiT's smooth extrapolation of the coil profiles,
whose common per-pixel phase (defined only up to a phase) may jump there.
That phase cancels in the coil-combined image ``sum_c conj(S_c) u_c = m
exp(i phi)``, and the margin rows are cropped away by the reconstruction
operator anyway. ``map_crop`` sets a different crop.

**The generating maps are stored with the data** (``maps`` + ``maps_index``,
see :mod:`vnrecon.data.fastmri`; each file holds the pool members its slices
use, once), and every loader uses them instead of ESPIRiT. Re-estimating maps
from this k-space does not give them back: the image fills the FOV up to the
phase-encoding edges, where the coil profiles wrap around, which one ESPIRiT
map set cannot describe (the second eigenvalue is large over most of the
FOV), so the data would not be in the range of the operator the network
trains with. With the stored maps the fully sampled data are explained to
the noise level.

Noise and SNR
-------------
The SNR is the toolkit's definition (:mod:`vnrecon.physics.noise`)
``SNR = rms(f) / sigma_k`` with the noise included in ``rms(f)``. The two
reference SNRs are *measured* on ``maps_from`` rather than assumed: over the
central 20 slices of all CORPD_FBK files (``high``) and of all CORPDFS_FBK
files (``low``), ``mean(rms) / mean(sigma)`` with ``sigma`` estimated from
the readout margins (:func:`vnrecon.physics.noise.estimate_noise_sigma`),
as ``vnrecon info`` and the paper do. The knee noise level ``sigma_k`` is the
mean estimate over all those slices of both acquisitions (the paper found
one sigma for both). Every synthetic slice gets noise of exactly that
``sigma_k`` (same noise level as the knee data, as in the paper), and the
image is scaled so that its SNR is the target: with ``c`` the noise-free coil
k-space of the unit-range image, ``scale = sigma_k sqrt(SNR^2 - 2) /
rms(c)``, since complex noise adds ``2 sigma_k^2`` to ``rms(f)^2``.
``snr='high'`` / ``'low'`` use the PDw / PDw-FS reference for every image,
``'variable'`` a uniform random SNR between the two per image.

Output
------
fastMRI-layout files (:func:`vnrecon.data.fastmri.write_volume`) of
``slices_per_file`` (default ``SLICES_PER_FILE`` = 100: the map sets are
stored once per file, so large files keep them a small part of it) images each: ``natural_<snr>_NNN.h5``,
``acquisition`` ``SYNTHETIC_HIGH`` / ``SYNTHETIC_LOW`` / ``SYNTHETIC_VARIABLE``,
``patient_id`` ``natNNN``, the knee files' FOV in the header and a
``reconstruction_rss`` on the readout-cropped matrix. Extra file attributes
record the ground truth, since the readout margins hold image signal and the
margin-based noise estimate (and so the SNR that ``vnrecon info`` prints) is
*not* meaningful for these files (it overestimates sigma and underestimates
the SNR; nothing fails): ``noise_sigma`` (the true sigma_k), ``snr`` (true
SNR per slice), ``snr_setting``, ``snr_reference_high`` / ``_low``, ``seed``,
and per slice ``source_image``, ``map_source`` (``file.h5:slice``),
``phase_amplitude``, ``phase_frequency`` ((fx, fy) cycles per FOV) and
``phase_offset``. Output is deterministic per seed, and image ``i`` (its
source, view, phase, maps and noise) does not depend on ``count``. A PNG
beside ``out_dir`` (``<out_dir>_montage.png``, so the folder stays all HDF5) shows the magnitude and phase of the
coil-combined image (``sum_c conj(S_c) ifft2c(f_c)``, full oversampled FOV)
of the first few images. Existing files of the same name are overwritten;
other files are left alone.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import torch

from ..errors import InputError
from ..files import atomic_write
from ..physics.espirit import espirit_maps
from ..physics.fft import fft2c, ifft2c
from ..physics.noise import add_complex_noise, estimate_noise_sigma
from .fastmri import Volume, read_header, read_volume, write_volume
from .simulation_folder import SIMULATION_ATTR, claim_simulation_folder, montage_path
from .photos import default_images, load_images
from .selection import SNR_SLICES, central_slices

SNR_SETTINGS = ("high", "low", "variable")
#: Acquisition attributes of the knee files: (high-SNR PDw, low-SNR PDw-FS).
KNEE_HIGH, KNEE_LOW = "CORPD_FBK", "CORPDFS_FBK"
#: At most this many knee slices supply coil maps (each estimated once per run).
MAP_POOL = 20
#: Range of the length of the phase frequency vector (cycles per FOV).
PHASE_CYCLES = (0.5, 2.5)
#: Range of the phase amplitude (radians).
PHASE_AMPLITUDE = (0.5, math.pi)
#: Largest magnification relative to native resolution (or to s_cover when that is larger).
MAX_ZOOM = 1.25
#: Readout oversampling of the knee data (the margins used for the noise estimate).
OVERSAMPLING = 2
#: Synthetic slices per output file (each file stores the map sets its slices use).
SLICES_PER_FILE = 100
#: Images shown in montage.png.
MONTAGE_IMAGES = 6

# Independent random streams (the second SeedSequence word).
_STREAM_IMAGE, _STREAM_ORDER, _STREAM_POOL = 0, 1, 2


# --------------------------------------------------------------------------- views of the source images


def random_view(image: np.ndarray, shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """Random rotation (k * 90 deg), flip, scale and crop of ``image`` resampled to ``shape``, in [0, 1].

    See the module docstring for the distributions. Up to 20 crops are drawn
    until one is not constant; the whole image is used otherwise.
    """
    from skimage.transform import resize

    rows, cols = shape
    view = np.rot90(image, int(rng.integers(4)))
    if rng.random() < 0.5:
        view = view[:, ::-1]
    height, width = view.shape
    cover = max(rows / height, cols / width)
    scale = math.exp(rng.uniform(math.log(cover), math.log(MAX_ZOOM * max(1.0, cover))))
    crop_h = min(height, max(1, round(rows / scale)))
    crop_w = min(width, max(1, round(cols / scale)))
    for _ in range(20):
        top = int(rng.integers(height - crop_h + 1))
        left = int(rng.integers(width - crop_w + 1))
        region = view[top : top + crop_h, left : left + crop_w]
        if np.ptp(region) > 0:
            break
    else:
        region = view
    out = resize(np.ascontiguousarray(region), shape, order=1, anti_aliasing=region.shape[0] > rows or region.shape[1] > cols)
    low, high = float(out.min()), float(out.max())
    if high <= low:  # a constant view of a non-constant image cannot happen for a full view; guard anyway
        return np.zeros(shape)
    return (out - low) / (high - low)


# --------------------------------------------------------------------------- phase


@dataclass(frozen=True)
class SinusoidalPhase:
    """``phi(x, y) = amplitude * sin(2 pi (fx x / H + fy y / W) + offset)`` (see the module docstring)."""

    amplitude: float
    frequency: tuple[float, float]  # (fx, fy) cycles per FOV along readout, phase
    offset: float

    @classmethod
    def random(cls, rng: np.random.Generator) -> "SinusoidalPhase":
        direction = rng.uniform(0.0, 2.0 * math.pi)
        cycles = rng.uniform(*PHASE_CYCLES)
        amplitude = rng.uniform(*PHASE_AMPLITUDE)
        offset = rng.uniform(0.0, 2.0 * math.pi)
        return cls(amplitude, (cycles * math.cos(direction), cycles * math.sin(direction)), offset)

    def __call__(self, shape: tuple[int, int]) -> np.ndarray:
        x = np.arange(shape[0])[:, None] / shape[0]
        y = np.arange(shape[1])[None, :] / shape[1]
        fx, fy = self.frequency
        return self.amplitude * np.sin(2.0 * math.pi * (fx * x + fy * y) + self.offset)


# --------------------------------------------------------------------------- knee reference


def _rms(kspace: torch.Tensor) -> torch.Tensor:
    """``noise.signal_rms`` (float64): ``||f||_2 / sqrt(length(f))`` per slice of (..., coils, H, W).

    Computed on the real view: torch's complex norm reduction is slow on CPU.
    """
    real = torch.view_as_real(kspace).to(torch.float64)
    return real.square().sum(dim=(-4, -3, -2, -1)).div(kspace.shape[-3] * kspace.shape[-2] * kspace.shape[-1]).sqrt()


@dataclass(frozen=True)
class KneeReference:
    """SNR and noise level measured on a folder of fully sampled knee files.

    ``files`` maps each used .h5 path to its acquisition; ``matrix`` is the k-space
    (readout, phase) and ``n_coils`` the coil count shared by all of them.
    """

    folder: Path
    snr_high: float
    snr_low: float
    sigma: float
    snr: dict[str, float]
    sigma_by_acquisition: dict[str, float]
    files: dict[Path, str]
    slices: dict[Path, list[int]]
    matrix: tuple[int, int]
    n_coils: int
    fov_mm: tuple[float, float, float] | None


def measure_knee_reference(folder: str | Path, files: Sequence[str | Path] | None = None) -> KneeReference:
    """Measure the PDw / PDw-FS SNR and the noise sigma of a folder of knee files.

    Uses the fully sampled (no ``mask``) ``*.h5`` files of ``folder`` (or only
    ``files``, when given) with acquisition CORPD_FBK or CORPDFS_FBK (others
    are ignored), their central up-to-20 slices: per acquisition ``SNR =
    mean(rms(f)) / mean(sigma_k)`` over all those slices, ``sigma_k`` from the
    readout margins; ``sigma`` is the mean ``sigma_k`` over the slices of both
    acquisitions. Raises InputError if the folder is missing, holds neither or
    only one acquisition, or the files do not share one matrix and coil count.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{folder}: knee data folder not found")
    paths = sorted(folder.glob("*.h5")) if files is None else sorted(Path(path) for path in files)
    if not paths:
        raise InputError(f"{folder}: no .h5 files (expected fastMRI knee files with {KNEE_HIGH} and {KNEE_LOW})")
    used: dict[Path, str] = {}
    shapes = {}
    fov = None
    for path in paths:
        info = read_header(path)
        if info.acquisition not in (KNEE_HIGH, KNEE_LOW) or info.has_mask:
            continue
        used[path] = info.acquisition
        shapes[path] = (info.n_coils, info.readout, info.phase)
        if fov is None and "fov_mm" in info.header:
            fov = tuple(float(value) for value in info.header["fov_mm"])
    missing = [name for name in (KNEE_HIGH, KNEE_LOW) if name not in used.values()]
    if missing:
        raise InputError(
            f"{folder}: no fully sampled {' or '.join(missing)} file; the natural-image data need both "
            f"{KNEE_HIGH} (PDw, high SNR) and {KNEE_LOW} (PDw-FS, low SNR) knee files"
        )
    if len(set(shapes.values())) > 1:
        listing = ", ".join(f"{path.name}: {c} coils x {r} x {p}" for path, (c, r, p) in list(shapes.items())[:4])
        raise InputError(f"{folder}: the knee files differ in coils or matrix ({listing}, ...)")
    n_coils, readout, phase = next(iter(shapes.values()))

    rms: dict[str, list[float]] = {KNEE_HIGH: [], KNEE_LOW: []}
    sigmas: dict[str, list[float]] = {KNEE_HIGH: [], KNEE_LOW: []}
    slices: dict[Path, list[int]] = {}
    for path, acquisition in used.items():
        n_slices = read_header(path).n_slices
        chosen = list(central_slices(n_slices, min(SNR_SLICES, n_slices)))
        slices[path] = chosen
        for start in range(0, len(chosen), 4):  # a few slices at a time (paper-size files are large)
            part = chosen[start : start + 4]
            kspace = torch.from_numpy(read_volume(path, slices=part).prewhitened().kspace)
            rms[acquisition].extend(_rms(kspace).tolist())
            sigmas[acquisition].extend(estimate_noise_sigma(kspace, OVERSAMPLING).double().tolist())
    snr = {}
    for acquisition in (KNEE_HIGH, KNEE_LOW):
        sigma = float(np.mean(sigmas[acquisition]))
        if not sigma > 0:
            raise InputError(f"{folder}: {acquisition} files have no measurable noise (sigma 0); cannot set the SNR")
        snr[acquisition] = float(np.mean(rms[acquisition])) / sigma
    sigma_all = float(np.mean(sigmas[KNEE_HIGH] + sigmas[KNEE_LOW]))
    return KneeReference(
        folder=folder,
        snr_high=snr[KNEE_HIGH],
        snr_low=snr[KNEE_LOW],
        sigma=sigma_all,
        snr=snr,
        sigma_by_acquisition={name: float(np.mean(values)) for name, values in sigmas.items()},
        files=used,
        slices=slices,
        matrix=(readout, phase),
        n_coils=n_coils,
        fov_mm=fov,  # type: ignore[arg-type]
    )


# --------------------------------------------------------------------------- coil maps


class _MapPool:
    """A seeded pool of knee slices whose ESPIRiT maps are estimated on first use and cached."""

    def __init__(self, reference: KneeReference, seed: int, acs_lines: int, crop: float) -> None:
        candidates = [(path, index) for path in sorted(reference.files) for index in reference.slices[path]]
        rng = np.random.default_rng([seed, _STREAM_POOL])
        chosen = rng.choice(len(candidates), size=min(MAP_POOL, len(candidates)), replace=False)
        self.members = [candidates[int(i)] for i in chosen]
        self.acs_lines = acs_lines
        self.crop = crop
        self._cache: dict[int, torch.Tensor] = {}

    def __len__(self) -> int:
        return len(self.members)

    def label(self, index: int) -> str:
        path, slice_index = self.members[index]
        return f"{path.name}:{slice_index}"

    def maps(self, index: int) -> torch.Tensor:
        if index not in self._cache:
            path, slice_index = self.members[index]
            kspace = torch.from_numpy(read_volume(path, slices=[slice_index]).prewhitened().kspace[0])
            self._cache[index] = espirit_maps(kspace, acs_lines=self.acs_lines, crop=self.crop)
        return self._cache[index]


# --------------------------------------------------------------------------- one image


@dataclass
class _Sample:
    kspace: np.ndarray  # (coils, readout, phase) complex64
    snr: float
    source: str
    pool_index: int
    phase: SinusoidalPhase
    combined: np.ndarray  # coil-combined noisy image (readout, phase), for the montage


def _source_index(index: int, n_sources: int, seed: int) -> int:
    block, position = divmod(index, n_sources)
    order = np.random.default_rng([seed, _STREAM_ORDER, block]).permutation(n_sources)
    return int(order[position])


def _simulate_one(
    index: int,
    seed: int,
    sources: list[tuple[str, np.ndarray]],
    pool: _MapPool,
    reference: KneeReference,
    snr_setting: str,
) -> _Sample:
    rng = np.random.default_rng([seed, _STREAM_IMAGE, index])
    source_name, source = sources[_source_index(index, len(sources), seed)]
    magnitude = random_view(source, reference.matrix, rng)
    phase = SinusoidalPhase.random(rng)
    pool_index = int(rng.integers(len(pool)))
    if snr_setting == "high":
        snr = reference.snr_high
    elif snr_setting == "low":
        snr = reference.snr_low
    else:
        snr = float(rng.uniform(min(reference.snr_low, reference.snr_high), max(reference.snr_low, reference.snr_high)))
    noise_seed = int(rng.integers(2**62))

    maps = pool.maps(pool_index).to(torch.complex128)
    image = torch.from_numpy(magnitude * np.exp(1j * phase(reference.matrix)))
    clean = fft2c(maps * image)
    clean_rms = float(_rms(clean))
    if clean_rms == 0.0:  # cannot happen for a [0, 1]-normalised view under unit-norm maps
        raise InputError(f"synthetic image {index}: no signal under the coil maps")
    sigma = reference.sigma
    scale = sigma * math.sqrt(snr * snr - 2.0) / clean_rms
    generator = torch.Generator().manual_seed(noise_seed)
    kspace = add_complex_noise((scale * clean).to(torch.complex64), sigma, generator)
    combined = (maps.to(torch.complex64).conj() * ifft2c(kspace)).sum(dim=0)
    return _Sample(
        kspace=kspace.numpy(),
        snr=snr,
        source=source_name,
        pool_index=pool_index,
        phase=phase,
        combined=combined.numpy(),
    )


# --------------------------------------------------------------------------- output


def _write_file(
    path: Path,
    samples: list[_Sample],
    file_index: int,
    snr_setting: str,
    reference: KneeReference,
    pool: _MapPool,
    seed: int,
    record: str,
) -> Path:
    """write_volume (with the generating maps) to a temporary name in the same folder, add the ground-truth attrs, rename."""
    readout, phase = reference.matrix
    used = sorted({sample.pool_index for sample in samples})
    with atomic_write(path) as temporary:
        write_volume(
            temporary,
            Volume(
                kspace=np.stack([sample.kspace for sample in samples]),
                acquisition=f"SYNTHETIC_{snr_setting.upper()}",
                patient_id=f"nat{file_index:03d}",
                maps=np.stack([pool.maps(index).to(torch.complex64).numpy() for index in used]),
                maps_index=np.array([used.index(sample.pool_index) for sample in samples], dtype=np.int64),
            ),
            fov_mm=reference.fov_mm,
            recon_shape=(readout // OVERSAMPLING, phase),
        )
        with h5py.File(temporary, "a") as h5:
            attrs = h5.attrs
            attrs["noise_sigma"] = float(reference.sigma)
            attrs[SIMULATION_ATTR] = record
            attrs["snr"] = np.array([sample.snr for sample in samples], dtype=np.float64)
            attrs["snr_setting"] = snr_setting
            attrs["snr_reference_high"] = float(reference.snr_high)
            attrs["snr_reference_low"] = float(reference.snr_low)
            attrs["seed"] = int(seed)
            attrs["source_image"] = [sample.source for sample in samples]
            attrs["map_source"] = [pool.label(sample.pool_index) for sample in samples]
            attrs["phase_amplitude"] = np.array([sample.phase.amplitude for sample in samples], dtype=np.float64)
            attrs["phase_frequency"] = np.array([sample.phase.frequency for sample in samples], dtype=np.float64)
            attrs["phase_offset"] = np.array([sample.phase.offset for sample in samples], dtype=np.float64)
    return path


def _save_montage(path: Path, panels: list[tuple[str, np.ndarray]], pixel_aspect: float) -> Path:
    """Magnitude (grey, to the 99.5th percentile) above phase (cyclic, -pi..pi) of each image."""
    import matplotlib.pyplot as plt

    from ..eval.figures import save_figure

    n_cols = len(panels)
    height, width = panels[0][1].shape
    aspect = height * pixel_aspect / width
    fig, axes = plt.subplots(2, n_cols, figsize=(2.2 * n_cols, 2 * (2.2 * aspect + 0.4)), squeeze=False)
    for column, (title, image) in enumerate(panels):
        magnitude = np.abs(image)
        top, bottom = axes[0, column], axes[1, column]
        top.imshow(magnitude, cmap="gray", vmin=0.0, vmax=float(np.percentile(magnitude, 99.5)), aspect=pixel_aspect)
        top.set_title(title, fontsize=7)
        bottom.imshow(np.angle(image), cmap="twilight", vmin=-math.pi, vmax=math.pi, aspect=pixel_aspect)
        bottom.set_title("phase", fontsize=7)
        top.axis("off")
        bottom.axis("off")
    fig.tight_layout()
    return save_figure(fig, path, dpi=110)


def _check_count(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise InputError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def simulate_natural_dataset(
    out_dir: str | Path,
    maps_from: str | Path,
    count: int = 200,
    snr: str = "high",
    seed: int = 0,
    images: str | Path | None = None,
    acs_lines: int = 24,
    progress: Callable[[int, int], None] | None = None,
    *,
    slices_per_file: int = SLICES_PER_FILE,
    map_crop: float = 0.0,
    montage: bool = True,
) -> list[Path]:
    """Write ``count`` synthetic multi-coil k-space slices made from natural images.

    Parameters
    ----------
    out_dir: output folder (created); files ``natural_<snr>_NNN.h5``, and ``<out_dir>_montage.png`` beside it.
    maps_from: folder of fully sampled fastMRI-layout knee files with both CORPD_FBK
        and CORPDFS_FBK acquisitions (e.g. from :func:`vnrecon.data.knee.simulate_knee_dataset`):
        source of the coil maps, the matrix, the noise level and the two reference SNRs.
    count: number of synthetic slices (the paper: 200).
    snr: ``'high'`` (PDw SNR), ``'low'`` (PDw-FS SNR) or ``'variable'`` (uniform between).
    seed: random seed; the output is a deterministic function of the seed and the inputs.
    images: folder of PNG / JPEG images to use instead of scikit-image's sample photographs.
    acs_lines: ACS lines (square calibration block) for ESPIRiT on the knee slices.
    progress: called as ``progress(done, count)`` after each image.
    slices_per_file: images per output file (the last file may hold fewer).
    map_crop: ESPIRiT eigenvalue crop of the maps (0: maps over the whole FOV).
    montage: write the montage (``simulation_folder.montage_path``).

    Returns the written .h5 paths in order. Raises InputError for bad arguments,
    a knee folder without both acquisitions, or an image folder without images.
    See the module docstring for the recipe.
    """
    count = _check_count(count, "count")
    slices_per_file = _check_count(slices_per_file, "slices per file")
    if snr not in SNR_SETTINGS:
        raise InputError(f"snr must be one of {', '.join(SNR_SETTINGS)}, got {snr!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise InputError(f"seed must be a non-negative integer, got {seed!r}")
    if not 0.0 <= float(map_crop) <= 1.0:
        raise InputError(f"map crop must be in [0, 1], got {map_crop!r}")
    sources = load_images(images) if images is not None else default_images()
    reference = measure_knee_reference(maps_from)
    lowest = min(reference.snr_high, reference.snr_low)
    if lowest <= math.sqrt(2.0):
        raise InputError(
            f"{reference.folder}: knee SNR {lowest:.3g} is too low for synthetic data (need > sqrt(2): "
            "the noise alone has that SNR)"
        )
    readout, phase = reference.matrix
    if isinstance(acs_lines, bool) or not isinstance(acs_lines, int) or not 1 <= acs_lines <= phase:
        raise InputError(
            f"ACS lines must be an integer in [1, {phase}] (the knee files have {phase} phase-encoding lines), "
            f"got {acs_lines!r}"
        )

    out_dir = Path(out_dir)
    record = claim_simulation_folder(
        out_dir,
        "natural",
        {
            "snr": snr, "seed": int(seed), "count": count, "images": str(images) if images is not None else None,
            "acs_lines": acs_lines,
            "slices_per_file": slices_per_file, "map_crop": float(map_crop),
        },
    )  # fmt: skip
    out_dir.mkdir(parents=True, exist_ok=True)
    pool = _MapPool(reference, int(seed), acs_lines, float(map_crop))
    paths: list[Path] = []
    panels: list[tuple[str, np.ndarray]] = []
    batch: list[_Sample] = []
    for index in range(count):
        sample = _simulate_one(index, int(seed), sources, pool, reference, snr)
        batch.append(sample)
        if montage and len(panels) < min(MONTAGE_IMAGES, count):
            name = sample.source.removeprefix("skimage:")
            panels.append((f"#{index} {name}, SNR {sample.snr:.0f}", sample.combined))
        if len(batch) == slices_per_file or index == count - 1:
            file_index = len(paths)
            paths.append(
                _write_file(
                    out_dir / f"natural_{snr}_{file_index:03d}.h5", batch, file_index, snr, reference, pool, int(seed), record
                )
            )
            batch = []
        if progress is not None:
            progress(index + 1, count)
    if montage and panels:
        aspect = 1.0
        if reference.fov_mm is not None and reference.fov_mm[0] > 0 and reference.fov_mm[1] > 0:
            aspect = (reference.fov_mm[0] / readout) / (reference.fov_mm[1] / phase)
        _save_montage(montage_path(out_dir), panels, aspect)
    return paths
