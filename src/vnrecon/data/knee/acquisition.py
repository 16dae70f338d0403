"""Acquisition of the numerical knee: receive coils, k-space, receiver noise, SNR calibration.

The object (:mod:`.contrast`) is evaluated on a grid ``FINE`` times finer than
the image grid, multiplied with the coils' *physical* receive sensitivities
(Biot-Savart, :mod:`vnrecon.physics.coils`; not normalised: only estimated
maps are), embedded in the 2x readout-oversampled FOV, Fourier transformed
(orthonormal, centred) and the centre of k-space cropped to the target matrix
(no inverse crime). K-space is scaled by ``sqrt(N_fine / N)`` so image
intensities do not depend on the matrix.

Coils
-----
The 15-loop array (:func:`vnrecon.physics.coils.loop_geometry`: loops on a
cylinder of radius 85 mm, i.e. 25-35 mm from the skin of an average knee) is
placed with a small per-patient offset and rotation. The sensitivities are
``B1-`` per unit current divided by one constant per patient, the
root-sum-of-squares at the centre of the array, so ``sum_c |S_c|^2`` is ~1 in
the middle of the knee and grows towards the skin: the centre of the knee has
the lowest SNR, as in a real knee coil. The object is tapered to zero at the
S-I edge of the imaged FOV (``readout_window``), so the oversampled readout
margins hold only noise, where the noise estimate of
:mod:`vnrecon.physics.noise` looks (a real leg continues there; keeping the
margins empty keeps that estimate usable on every simulated file).

Noise
-----
Receiver noise is complex Gaussian with the covariance
``Psi = 2 sigma_k^2 R`` over channels, ``R`` the array model of
:func:`vnrecon.physics.coils.array_noise_covariance` (unequal channel levels,
neighbour correlation ~0.3), ``mean(diag R) = 1``; the files store ``Psi``
(``noise_covariance``) and every loader prewhitens with it. ``sigma_k`` is
``NOISE_SIGMA`` for both sequences.

SNR calibration
---------------
SPEC section 2 reads the paper's ``SNR = mu / sigma`` (PDw ~ 80, PDw-FS ~ 20)
in orthonormal terms as ``rms(f) / sigma_k``. That figure cannot be reproduced
as the paper's own: it depends on how much of the FOV the object fills, on
the number of coils and on the FFT scaling, and at 80 / 20 with normalised
coils it meant an image-domain tissue SNR near 500 / 145, far cleaner than a
clinical 3 T knee. The calibration is therefore on the image-domain quantity:

* **tissue SNR** = mean over the pure-muscle pixels of the central
  ``SNR_CENTRAL_SLICES`` slices of ``|u| / sigma``, where ``u`` is the
  optimally (Roemer) combined fully sampled image and ``sigma`` the std of
  the real part of its noise; equivalently, with prewhitened coil images
  ``c_w``, ``||c_w(r)|| / sigma_k`` (the SNR of the reference image that an
  ESPIRiT combination of the prewhitened data gives). Muscle is the usual
  ROI of knee SNR measurements and exists in every coronal slice.
* PDw-FS is calibrated to ``PDFS_MUSCLE_SNR`` (below) and PDw so that the
  paper-style SNR, measured as :func:`vnrecon.physics.noise.estimate_snr`
  does (margin noise estimate, including the object's small Gibbs leakage into
  the margins), is ``PAPER_SNR_RATIO`` (4, the paper's 80 : 20) times that of
  PDw-FS. One ``sigma_k`` for both, a gain per sequence (the scanner's receiver
  scaling differs between protocols).

``PDFS_MUSCLE_SNR = 25`` is an estimate, not a quoted measurement: this
project found no published absolute muscle SNR of 2-D coronal PD-FS TSE at
3 T (studies report ratios: 3 T gives about twice the SNR of 1.5 T for
fat-saturated intermediate-weighted FSE, Wong et al., Skeletal Radiol 2009).
It is read off the appearance of the seed's and fastMRI's CORPDFS_FBK
root-sum-of-squares images, where muscle is about 4-5 times as bright as the
noise floor of the background. With N = 15 whitened channels that floor is
``sigma sqrt(2 N - 1/2) = 5.4 sigma``, so muscle SNR ~ 4.6 x 5.4 ~ 25 (at 12,
muscle is only twice the floor and marrow sinks into it). It is one named
constant; ``benchmarks/data_regime.py --muscle-snr`` shows how the regime
moves with it. The image SNR does not depend on the matrix (the cpu size is
the paper's data at lower resolution with the same per-pixel SNR, not a
faster low-resolution scan, which would have more).
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import scipy.fft
import torch
from scipy.interpolate import CubicSpline

from ...physics import coils as coil_model
from ...physics.whitening import correlated_noise, whitening_matrix
from .anatomy import (
    _STREAM_NOISE,
    _STREAM_TEXTURE,
    DEFAULT_FOV_MM,
    DEFAULT_MATRIX,
    FINE,
    READOUT_OVERSAMPLING,
    KneeParams,
    _Grid,
    _plane,
    _rng,
    _seed_sequence,
    _slab_fractions,
    check_matrix,
    patient_params,
    slice_positions,
)
from .contrast import SEQUENCES, object_images

#: k-space noise std sigma_k of the real and of the imaginary part (mean over channels; both sequences).
NOISE_SIGMA = 1e-5
#: Muscle SNR of the fully sampled PDw-FS image (see the module docstring: an estimate).
PDFS_MUSCLE_SNR = 25.0
#: Paper-style SNR of PDw over that of PDw-FS (paper: 80 / 20).
PAPER_SNR_RATIO = 4.0
#: Number of central slices over which the SNR is calibrated (paper: 20).
SNR_CENTRAL_SLICES = 20
#: A pixel of the image grid counts as muscle when this much of it is muscle.
PURE_TISSUE = 0.9
#: Slices simulated together (memory / speed trade-off).
_CHUNK = 4


def readout_window(z_scanner, half_fov_mm):
    """1 inside the imaged S-I FOV, a cos^2 taper to 0 over its outer 8 %: the oversampled margins stay empty."""
    start, stop = 0.92 * half_fov_mm, 1.0 * half_fov_mm
    t = np.clip((np.abs(z_scanner) - start) / (stop - start), 0.0, 1.0)
    return np.cos(0.5 * math.pi * t) ** 2


def label_maps(
    patient_index: int,
    seed: int,
    n_slices: int,
    matrix: tuple[int, int] = DEFAULT_MATRIX,
    fov_mm: tuple[float, float] = DEFAULT_FOV_MM,
) -> np.ndarray:
    """Dominant tissue per pixel (values index ``LABELS``), (slices, full readout, phase) uint8.

    On the grid of the coil images of :func:`simulate_patient` (``ifft2c`` of
    its k-space, full oversampled readout; the margins are background). A pixel
    whose fractions sum to less than one half is background.
    """
    grid = _Grid(check_matrix(matrix), tuple(fov_mm))
    params = patient_params(patient_index, seed)
    zz, xx = _plane(grid.image_shape, grid.fov_mm)
    window = readout_window(zz, 0.5 * grid.fov_mm[0])
    out = np.zeros((n_slices, *grid.matrix), dtype=np.uint8)
    start = (grid.matrix[0] - grid.image_shape[0]) // 2
    width = float(np.mean(grid.pixel_mm))
    for index, y_pos in enumerate(slice_positions(params, n_slices)):
        frac = _slab_fractions(params, zz, xx, float(y_pos), width)
        labels = np.argmax(frac[1:], axis=0).astype(np.uint8) + 1
        labels[frac.sum(axis=0) * window < 0.5] = 0
        out[index, start : start + grid.image_shape[0]] = labels
    return out


def _spline_matrix(coarse: np.ndarray, fine: np.ndarray) -> np.ndarray:
    """(len(fine), len(coarse)) matrix of cubic-spline interpolation from ``coarse`` to ``fine`` positions."""
    order = np.argsort(coarse)
    spline = CubicSpline(coarse[order], np.eye(len(coarse))[order])
    return spline(fine).astype(np.float32)


def _interpolate_separable(values: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """``rows @ values @ cols.T`` over the last two axes of complex64 ``values``, with real float32 BLAS."""
    lead = values.shape[:-2]
    n_rows, n_cols = values.shape[-2:]
    parts = values.view(np.float32).reshape(-1, n_rows, n_cols, 2)  # (batch, nz, nx, re/im)
    step = rows @ np.moveaxis(parts, 1, 0).reshape(n_rows, -1)  # (FH, batch * nx * 2)
    step = step.reshape(rows.shape[0], -1, n_cols, 2)
    step = np.ascontiguousarray(np.moveaxis(step, 2, 3)).reshape(-1, n_cols) @ cols.T  # (FH * batch * 2, FW)
    step = step.reshape(rows.shape[0], -1, 2, cols.shape[0])
    out = np.ascontiguousarray(np.moveaxis(step, (0, 2), (1, 3)))  # (batch, FH, FW, 2)
    return out.view(np.complex64)[..., 0].reshape(*lead, rows.shape[0], cols.shape[0])


def coil_array(params: KneeParams, n_coils: int) -> tuple[np.ndarray, np.ndarray]:
    """Loop centres and normals (mm) of the patient's receive array (placed with its offset and rotation)."""
    return coil_model.loop_geometry(n_coils, center_mm=params.coil_offset, rotation_rad=params.coil_rotation)


def _coil_maps_fine(params: KneeParams, grid: _Grid, n_coils: int, y_positions) -> np.ndarray:
    """Physical coil sensitivities (slices, coils, fine rows, fine cols) complex64 over the object region.

    Biot-Savart on a ~2.5 mm grid spanning exactly the fine grid (same first
    and last sample positions), interpolated with cubic splines (the maps are
    smooth on the scale of centimetres), times the receive-chain phases,
    divided by the root-sum-of-squares at the array centre (one constant).
    """
    z_f, x_f = coil_model.pixel_coordinates(grid.fine_shape, grid.fov_mm)
    n_z = max(8, int(round((z_f[0] - z_f[-1]) / 2.5)) + 1)
    n_x = max(8, int(round((x_f[-1] - x_f[0]) / 2.5)) + 1)
    z_c = np.linspace(z_f[0], z_f[-1], n_z)
    x_c = np.linspace(x_f[0], x_f[-1], n_x)
    zz, xx = np.meshgrid(z_c, x_c, indexing="ij")
    centres, normals = coil_array(params, n_coils)
    phases = np.exp(1j * coil_model.channel_phases(n_coils)).reshape(-1, 1, 1)
    centre = np.asarray(params.coil_offset, dtype=np.float64).reshape(1, 3)
    scale = 1.0 / float(np.linalg.norm(coil_model.sensitivity_at(centre, centres, normals)))
    coarse = np.empty((len(y_positions), n_coils, n_z, n_x), dtype=np.complex64)
    for index, y_pos in enumerate(y_positions):
        points = np.stack([xx, np.full_like(xx, float(y_pos)), zz], axis=-1)
        coarse[index] = coil_model.sensitivity_at(points, centres, normals) * (phases * scale)
    return _interpolate_separable(coarse, _spline_matrix(z_c, z_f), _spline_matrix(x_c, x_f))


def noise_covariance(patient_index: int, seed: int, n_coils: int = 15, noise_sigma: float = NOISE_SIGMA) -> np.ndarray:
    """Complex receiver noise covariance ``Psi = 2 sigma_k^2 R`` (coils, coils) complex128 of a patient's data."""
    centres, _ = coil_array(patient_params(patient_index, seed), n_coils)
    return 2.0 * noise_sigma**2 * coil_model.array_noise_covariance(centres)


def _centered_dft_crop(x: np.ndarray, axis: int, n_full: int, n_out: int) -> np.ndarray:
    """Central ``n_out`` samples of the centred orthonormal DFT of length ``n_full`` along ``axis``.

    ``x`` holds the central ``L = x.shape[axis]`` samples of a length-``n_full``
    signal that is zero elsewhere (sample index N // 2 is the origin, as in
    ``physics.fft``). Equivalent to zero-padding, ``fft2c`` along that axis and
    cropping, without the padding and the shifts: sample ``i`` sits at position
    ``i - L // 2``, so output frequency ``q`` is ``FFT_n_full(x)[q mod n_full]``
    times ``exp(2 pi i q (L // 2) / n_full) / sqrt(n_full)``.
    """
    axis = axis % x.ndim
    length = x.shape[axis]
    spectrum = scipy.fft.fft(x, n=n_full, axis=axis, workers=1)
    q = np.arange(n_out) - n_out // 2
    spectrum = np.take(spectrum, np.remainder(q, n_full), axis=axis)
    ramp = np.exp(2j * math.pi * q * (length // 2) / n_full) / math.sqrt(n_full)
    shape = [1] * x.ndim
    shape[axis] = n_out
    return spectrum * ramp.astype(np.complex64).reshape(shape)


def _to_kspace(images: np.ndarray, maps: np.ndarray, grid: _Grid) -> np.ndarray:
    """Object (slices, fine rows, fine cols) x maps -> cropped k-space (slices, coils, *matrix).

    The fine object region is the central ``FINE * H`` rows of a fine grid that
    spans the whole oversampled readout FOV (``FINE * matrix[0]`` rows, empty
    margins) and all ``FINE * W`` columns.
    """
    full_rows, full_cols = grid.full_fine_shape
    coil_images = maps * images[:, None]
    kspace = _centered_dft_crop(coil_images, -1, full_cols, grid.matrix[1])
    kspace = _centered_dft_crop(kspace, -2, full_rows, grid.matrix[0])
    # Orthonormal DFTs: keeping N of N_fine samples scales image values by sqrt(N / N_fine).
    return kspace * np.float32(FINE)


def _central(n_slices: int, count: int = SNR_CENTRAL_SLICES) -> slice:
    count = min(count, n_slices)
    start = (n_slices - count) // 2
    return slice(start, start + count)


def _margin_leakage(kspace: np.ndarray) -> np.ndarray:
    """Per slice: mean of (Re^2 + Im^2) / 2 over the readout-margin pixels of the clean coil images.

    The object's Gibbs ringing that reaches the oversampled margins; a margin
    noise estimate sees it as extra variance (as it does in real data).
    """
    rows = kspace.shape[-2]
    start = (rows - rows // READOUT_OVERSAMPLING) // 2
    stop = start + rows // READOUT_OVERSAMPLING
    # By Parseval along the phase axis only the readout transform is needed; for
    # an even length the centring shifts only permute rows and flip signs, so the
    # margin rows of the unshifted transform are taken directly.
    lines = scipy.fft.ifft(kspace, axis=-2, norm="ortho", workers=1)
    margin_rows = (np.r_[0:start, stop:rows] - rows // 2) % rows
    margins = lines[..., margin_rows, :]
    power = margins.real.astype(np.float64) ** 2 + margins.imag.astype(np.float64) ** 2
    return 0.5 * power.reshape(power.shape[0], -1).mean(axis=1)


def _kspace_rms(kspace: np.ndarray) -> np.ndarray:
    flat = kspace.reshape(kspace.shape[0], -1)
    return np.sqrt(np.mean(flat.real.astype(np.float64) ** 2 + flat.imag.astype(np.float64) ** 2, axis=1))


def measured_paper_snr(gain: float, clean_rms: np.ndarray, leakage: np.ndarray, sigma: float) -> float:
    """The paper-style SNR ``estimate_snr`` measures on clean k-space scaled by ``gain`` plus noise of std ``sigma``.

    The mean over slices of ``rms(f) = sqrt(g^2 r_s^2 + 2 sigma^2)`` divided by
    the mean over slices of the margin noise estimate ``sqrt(sigma^2 + g^2 l_s)``
    (true noise plus the object's Gibbs leakage into the margins).
    """
    rms = np.mean(np.sqrt(gain * gain * clean_rms**2 + 2.0 * sigma * sigma))
    noise = np.mean(np.sqrt(sigma * sigma + gain * gain * leakage))
    return float(rms / noise)


def _gain_for_paper_snr(clean_rms: np.ndarray, leakage: np.ndarray, target_snr: float, sigma: float) -> float:
    """Gain g with ``measured_paper_snr(g) == target_snr`` (it grows with g: bisection)."""
    ceiling = float(np.mean(clean_rms) / max(np.mean(np.sqrt(leakage)), 1e-300))
    if target_snr >= 0.98 * ceiling:
        raise ValueError(
            f"SNR {target_snr:g} cannot be measured on this matrix: the object's ringing into the "
            f"readout margins alone limits the measured SNR to {ceiling:.3g}; use a larger matrix"
        )
    high = target_snr * sigma / float(np.mean(clean_rms))
    while measured_paper_snr(high, clean_rms, leakage, sigma) < target_snr:
        high *= 2.0
    low = 0.0
    for _ in range(100):
        mid = 0.5 * (low + high)
        low, high = (mid, high) if measured_paper_snr(mid, clean_rms, leakage, sigma) < target_snr else (low, mid)
    return 0.5 * (low + high)


def cropped_coil_images(slice_kspace: np.ndarray) -> np.ndarray:
    """Coil images (coils, readout / 2, phase) of one slice's k-space: centred orthonormal inverse FFT
    (scipy, one thread), centre crop of the oversampled readout."""
    rows = slice_kspace.shape[-2] // READOUT_OVERSAMPLING
    start = slice_kspace.shape[-2] // 2 - rows // 2
    shifted = np.fft.ifftshift(slice_kspace, axes=(-2, -1))
    images = np.fft.fftshift(scipy.fft.ifft2(shifted, norm="ortho", workers=1), axes=(-2, -1))
    return images[:, start : start + rows]


def _combined_magnitude(kspace: np.ndarray, whitening: np.ndarray) -> np.ndarray:
    """``||W c(r)||`` (slices, H, W) of the prewhitened, readout-cropped coil images of clean k-space.

    Divided by sigma_k it is the SNR of the optimally combined fully sampled image.
    """
    out = []
    for slice_kspace in kspace:
        white = np.tensordot(whitening, cropped_coil_images(slice_kspace), axes=(1, 0))
        out.append(np.sqrt(np.sum(white.real**2 + white.imag**2, axis=0)))
    return np.stack(out)


@dataclass(frozen=True)
class Acquisition:
    """One simulated patient: fully sampled k-space per protocol and what the calibration measured.

    kspace: ``{acquisition: (slices, coils, readout, phase) complex64}``;
    noise_covariance: ``Psi`` (coils, coils) complex128 (same for both);
    tissue_snr / paper_snr: per acquisition, over the central slices (muscle
    SNR of the fully sampled image; ``rms(f) / sigma_k`` as ``estimate_snr``
    measures it); tissue_roi: (slices, H, W) bool, the muscle pixels of the
    readout-cropped grid the tissue SNR averages over (central slices only).
    """

    kspace: dict[str, np.ndarray]
    noise_covariance: np.ndarray
    tissue_snr: dict[str, float]
    paper_snr: dict[str, float]
    tissue_roi: np.ndarray


def acquire_patient(
    patient_index: int,
    seed: int,
    n_slices: int,
    matrix: tuple[int, int] = DEFAULT_MATRIX,
    n_coils: int = 15,
    *,
    fov_mm: tuple[float, float] = DEFAULT_FOV_MM,
    noise_sigma: float = NOISE_SIGMA,
    add_noise: bool = True,
    noise_realisation: int = 0,
    noise_scale: float = 1.0,
) -> Acquisition:
    """Fully sampled multi-coil k-space of one simulated patient, both protocols, with its calibration.

    Each k-space is (n_slices, n_coils, matrix[0], matrix[1]) complex64:
    matrix[0] is the 2x oversampled readout (superior-inferior), matrix[1] the
    phase encoding (left-right). Identical for identical arguments; patient
    ``k`` of seed ``s`` never depends on how many patients are drawn. The noise
    has covariance ``noise_covariance`` (``2 noise_sigma^2 R``); the gains
    follow the calibration of the module docstring. ``noise_realisation``
    selects an independent noise draw of the same object (e.g. two of them for
    a difference-image SNR measurement); with ``add_noise=False`` the same
    k-space is returned without noise (gains still calibrated). ``noise_scale``
    multiplies the noise std after the calibration: the same object with
    ``noise_scale`` times the noise (0.25: the SNR 4 times the calibrated one,
    e.g. as the clean source of an SNR study).
    """
    if not noise_scale > 0:
        raise ValueError(f"noise_scale must be positive, got {noise_scale}")
    if not noise_sigma > 0:
        raise ValueError(f"noise_sigma must be positive (it sets the signal level), got {noise_sigma}")
    if n_slices < 1:
        raise ValueError(f"n_slices must be >= 1, got {n_slices}")
    if n_coils < 1:
        raise ValueError(f"n_coils must be >= 1, got {n_coils}")
    grid = _Grid(check_matrix(matrix), (float(fov_mm[0]), float(fov_mm[1])))
    params = patient_params(patient_index, seed)
    texture_rng = _rng(seed, patient_index, _STREAM_TEXTURE)
    positions = slice_positions(params, n_slices)
    names = list(SEQUENCES)
    whites = [texture_rng.standard_normal(grid.fine_shape, dtype=np.float32) for _ in range(n_slices)]
    zz, _ = _plane(grid.fine_shape, grid.fov_mm)
    window = readout_window(zz, 0.5 * grid.fov_mm[0]).astype(np.float32)

    def simulate_chunk(start: int) -> tuple[int, list[np.ndarray], np.ndarray]:
        chunk = positions[start : start + _CHUNK]
        images, muscle = object_images(params, grid, chunk, whites[start : start + _CHUNK])
        maps = _coil_maps_fine(params, grid, n_coils, chunk)
        return start, [_to_kspace(images[s] * window, maps, grid) for s in range(len(names))], muscle

    # Chunks of slices run in threads (numpy and scipy.fft release the GIL); the
    # result does not depend on the thread count: all random draws happen above.
    clean = {name: np.empty((n_slices, n_coils, *grid.matrix), dtype=np.complex64) for name in names}
    muscle = np.empty((n_slices, *grid.image_shape), dtype=np.float32)
    threads = max(1, min(torch.get_num_threads(), math.ceil(n_slices / _CHUNK)))
    with ThreadPoolExecutor(max_workers=threads) as pool:
        for start, kspaces, fractions in pool.map(simulate_chunk, range(0, n_slices, _CHUNK)):
            for name, kspace in zip(names, kspaces):
                clean[name][start : start + len(kspace)] = kspace
            muscle[start : start + len(fractions)] = fractions

    covariance = noise_covariance(patient_index, seed, n_coils, noise_sigma)
    whitening = whitening_matrix(torch.from_numpy(covariance)).numpy()
    central = _central(n_slices)
    roi = np.zeros(muscle.shape, dtype=bool)
    roi[central] = muscle[central] >= PURE_TISSUE
    if not roi.any():
        raise ValueError("the central slices hold no pure muscle pixel; cannot calibrate the tissue SNR")
    fs, pd = "CORPDFS_FBK", "CORPD_FBK"
    unit_snr = {
        name: float(np.mean(_combined_magnitude(clean[name][central], whitening)[roi[central]])) / noise_sigma
        for name in names
    }
    rms = {name: _kspace_rms(clean[name][central]) for name in names}
    leakage = {name: _margin_leakage(clean[name][central]) for name in names}
    gains = {fs: PDFS_MUSCLE_SNR / unit_snr[fs]}
    fs_paper = measured_paper_snr(gains[fs], rms[fs], leakage[fs], noise_sigma)
    gains[pd] = _gain_for_paper_snr(rms[pd], leakage[pd], PAPER_SNR_RATIO * fs_paper, noise_sigma)

    covariance = covariance * noise_scale**2
    kspaces: dict[str, np.ndarray] = {}
    for s, name in enumerate(names):
        kspace = clean.pop(name)
        kspace *= np.float32(gains[name])
        if add_noise:
            stream = _STREAM_NOISE * 16 + s + 64 * int(noise_realisation)
            state = _seed_sequence(seed, patient_index, stream).generate_state(1, np.uint64)[0]
            generator = torch.Generator().manual_seed(int(state >> np.uint64(1)))
            psi = torch.from_numpy(covariance)
            for index in range(n_slices):  # one slice at a time: small complex128 temporaries
                noise = correlated_noise(kspace.shape[1:], psi, generator, coil_dim=0)
                kspace[index] += noise.numpy().astype(np.complex64)
        kspaces[name] = kspace
    return Acquisition(
        kspace=kspaces,
        noise_covariance=covariance,
        tissue_snr={name: gains[name] * unit_snr[name] / noise_scale for name in names},
        paper_snr={
            name: measured_paper_snr(gains[name], rms[name], leakage[name], noise_sigma * noise_scale) for name in names
        },
        tissue_roi=roi,
    )


def simulate_patient(
    patient_index: int,
    seed: int,
    n_slices: int,
    matrix: tuple[int, int] = DEFAULT_MATRIX,
    n_coils: int = 15,
    **options,
) -> dict[str, np.ndarray]:
    """``{'CORPD_FBK': k, 'CORPDFS_FBK': k}``: the k-space of :func:`acquire_patient` (same arguments)."""
    return acquire_patient(patient_index, seed, n_slices, matrix, n_coils, **options).kspace
