"""Speed and agreement of vnrecon's ESPIRiT against SigPy's EspiritCalib.

    python benchmarks/espirit_speed.py [--repeats 5] [--threads 2]

Simulates one knee-sized slice (15 coils, 640 x 368 k-space with 2x readout
oversampling, smooth object and smooth RSS-normalised coil maps, complex Gaussian
noise at SNR ~ 40 in the rms(f) / sigma_k sense of SPEC section 2), then times
``vnrecon.physics.espirit.espirit_maps`` and ``sigpy.mri.app.EspiritCalib`` with
the same calibration width (24), kernel (6), threshold (0.02) and crop (0.95), and
prints the median times, their ratio and the agreement of the two map sets:
the mean over object pixels of |<s_ours(x), s_sigpy(x)>| (inner product over
coils, each normalised; 1 means identical up to a per-pixel phase).
"""

import argparse
import statistics
import time

import numpy as np
import torch

from vnrecon.physics.espirit import espirit_maps

ACS, KERNEL, THRESHOLD, CROP = 24, 6, 0.02, 0.95


def simulate(n_coils: int = 15, readout: int = 320, n_phase: int = 368, snr: float = 40.0, seed: int = 0):
    """(kspace (coils, 2*readout, phase) complex64, object mask on the full grid)."""
    rng = np.random.default_rng(seed)
    full_readout = 2 * readout
    rows, cols = np.meshgrid(
        np.linspace(-1, 1, full_readout), np.linspace(-1, 1, n_phase), indexing="ij"
    )
    # Object on the central half of the readout FOV: a smooth-edged ellipse with
    # a few smooth blobs inside and a slow background phase.
    r2 = (rows / 0.45) ** 2 + (cols / 0.85) ** 2
    envelope = 1.0 / (1.0 + np.exp((r2 - 1.0) / 0.02))
    blobs = sum(
        rng.uniform(0.2, 0.6)
        * np.exp(-((rows - rng.uniform(-0.3, 0.3)) ** 2 / 0.01 + (cols - rng.uniform(-0.6, 0.6)) ** 2 / 0.05))
        for _ in range(8)
    )
    image = envelope * (0.5 + blobs) * np.exp(1j * 0.5 * np.pi * (0.7 * rows + 0.3 * cols))
    # Coils on an ellipse around the object, Gaussian profiles, slow phase ramps.
    maps = []
    for index in range(n_coils):
        angle = 2 * np.pi * index / n_coils
        centre = (0.6 * np.cos(angle), 1.1 * np.sin(angle))
        magnitude = np.exp(-((rows - centre[0]) ** 2 / 0.3 + (cols - centre[1]) ** 2 / 0.8))
        phase = rng.uniform(-1, 1) * rows + rng.uniform(-1, 1) * cols + rng.uniform(-np.pi, np.pi)
        maps.append(magnitude * np.exp(1j * phase))
    maps = np.stack(maps)
    maps /= np.sqrt(np.sum(np.abs(maps) ** 2, axis=0, keepdims=True))
    coil_images = maps * image
    kspace = np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(coil_images, axes=(-2, -1)), norm="ortho"), axes=(-2, -1))
    sigma = np.sqrt(np.mean(np.abs(kspace) ** 2)) / snr
    kspace = kspace + sigma * (rng.standard_normal(kspace.shape) + 1j * rng.standard_normal(kspace.shape))
    return kspace.astype(np.complex64), np.abs(image) > 0.1 * np.abs(image).max()


def agreement(ours: np.ndarray, theirs: np.ndarray, mask: np.ndarray) -> float:
    """Mean over mask pixels of |<a, b>| / (|a| |b|) over coils (0 where either map is cropped)."""
    norm_a = np.linalg.norm(ours, axis=0)
    norm_b = np.linalg.norm(theirs, axis=0)
    inner = np.abs(np.sum(ours.conj() * theirs, axis=0))
    cosine = np.where((norm_a > 0) & (norm_b > 0), inner / np.maximum(norm_a * norm_b, 1e-30), 0.0)
    return float(cosine[mask].mean())


def timed(function, repeats: int) -> tuple[float, object, float]:
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result, min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed runs of ours (median reported)")
    parser.add_argument("--sigpy-repeats", type=int, default=3, help="timed runs of SigPy")
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from sigpy.mri.app import EspiritCalib

    kspace, mask = simulate()
    tensor = torch.from_numpy(kspace)
    espirit_maps(tensor, ACS, KERNEL, THRESHOLD, CROP)  # warm-up (allocator, MKL/LAPACK initialisation)

    # SigPy's patch extraction is JIT-compiled by numba on first use: compile outside the timing.
    EspiritCalib(kspace[:, :64, :64], calib_width=ACS, kernel_width=KERNEL, show_pbar=False).run()

    ours_time, ours, ours_min = timed(lambda: espirit_maps(tensor, ACS, KERNEL, THRESHOLD, CROP), args.repeats)
    sigpy_time, theirs, sigpy_min = timed(
        lambda: EspiritCalib(
            kspace, calib_width=ACS, kernel_width=KERNEL, thresh=THRESHOLD, crop=CROP, show_pbar=False
        ).run(),
        args.sigpy_repeats,
    )
    ours, theirs = ours.numpy(), np.asarray(theirs)
    agree = agreement(ours, theirs, mask)
    coverage = float((np.linalg.norm(ours, axis=0) > 0)[mask].mean())

    print(f"ESPIRiT, {kspace.shape[0]} coils, {kspace.shape[1]} x {kspace.shape[2]}, {kspace.dtype}, "
          f"torch threads {torch.get_num_threads()}")
    print(f"{'':24s}{'median s':>10s}{'min s':>10s}")
    print(f"{'vnrecon espirit_maps':24s}{ours_time:10.3f}{ours_min:10.3f}")
    print(f"{'sigpy EspiritCalib':24s}{sigpy_time:10.3f}{sigpy_min:10.3f}")
    print(f"{'speed-up (sigpy/ours)':24s}{sigpy_time / ours_time:10.1f}{sigpy_min / ours_min:10.1f}")
    print(f"agreement (mean |<s_ours, s_sigpy>| over object pixels): {agree:.6f}")
    print(f"object pixels kept by our crop: {coverage:.4f}")


if __name__ == "__main__":
    main()
