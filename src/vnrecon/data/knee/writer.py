"""Files of the numerical knee: one fastMRI-layout file per patient and protocol, and a montage."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import torch

from ...errors import InputError
from ...files import atomic_write, available_memory, check_free_space
from ..simulation_folder import SIMULATION_ATTR, claim_simulation_folder, montage_path
from ...physics.espirit import espirit_maps
from ...physics.masks import DEFAULT_ACS_LINES, matched_acs_lines
from ...physics.whitening import prewhiten, whitening_matrix

from .acquisition import acquire_patient, cropped_coil_images
from .anatomy import DEFAULT_FOV_MM, DEFAULT_MATRIX, READOUT_OVERSAMPLING, SLICE_THICKNESS_MM, check_matrix, _Grid
from .contrast import SEQUENCES

def _rss_image(kspace: np.ndarray) -> np.ndarray:
    """Readout-cropped RSS images (slices, readout / 2, phase) float32 of (slices, coils, readout, phase).

    fastMRI's ``reconstruction_rss`` for this matrix (centred orthonormal inverse
    FFT per coil, root-sum-of-squares, centre crop of the readout), computed with
    scipy in one thread, slice by slice.
    """
    images = [cropped_coil_images(slice_kspace) for slice_kspace in kspace]
    out = np.stack([np.sqrt(np.sum(item.real**2 + item.imag**2, axis=0)) for item in images]).astype(np.float32)
    return out


def save_montage(
    path: str | Path, panels: list[tuple[str, np.ndarray]], n_cols: int, pixel_aspect: float = 1.0
) -> Path:
    """Grid of titled grey-scale images as a PNG (see ``eval.figures.save_image_grid``)."""
    from ...eval.figures import save_image_grid

    titles, images = zip(*panels)
    return save_image_grid(list(images), list(titles), path, columns=n_cols, pixel_aspect=pixel_aspect)


def calibration_maps(kspace: np.ndarray, covariance: np.ndarray) -> np.ndarray:
    """Coil maps (slices, coils, readout, phase) complex64 from a separate calibration scan: ESPIRiT on the
    central ``DEFAULT_ACS_LINES`` (24) lines of the prewhitened data, returned in the unwhitened channel
    space (loaders prewhiten stored maps with the data, which gives the ESPIRiT maps back)."""
    whitening = whitening_matrix(torch.from_numpy(covariance))
    white = prewhiten(torch.from_numpy(kspace), whitening)
    maps = torch.stack([espirit_maps(item, acs_lines=DEFAULT_ACS_LINES) for item in white])
    return prewhiten(maps, torch.linalg.inv(whitening)).numpy().astype(np.complex64)


#: Peak memory of one patient's simulation per byte of its k-space (both protocols), measured at the cpu
#: matrix (~21 MB per slice of 256 x 96 x 15 coils), plus a fixed part (fine grids, libraries).
MEMORY_PER_KSPACE_BYTE = 4
MEMORY_BASE = 500 * 2**20


def check_size(out_dir: Path, n_patients: int, n_slices: int, matrix: tuple[int, int], n_coils: int) -> None:
    """Refuse a simulation that cannot fit in this machine's memory (one patient at a time) or on its disk,
    before anything is allocated or written."""
    kspace = 2 * n_slices * n_coils * matrix[0] * matrix[1] * np.dtype(np.complex64).itemsize  # per patient
    memory = MEMORY_PER_KSPACE_BYTE * kspace + MEMORY_BASE
    available = available_memory()
    if available is not None and memory > available:
        raise InputError(
            f"{out_dir}: {n_slices} slices of {matrix[0]} x {matrix[1]} x {n_coils} coils need ~{memory / 2**30:.1f} GiB "
            f"of memory per patient, {available / 2**30:.1f} GiB are available; simulate fewer slices or coils"
        )
    check_free_space(out_dir / "knee_p000_CORPD_FBK.h5", n_patients * kspace)  # all the files, on one disk


def simulate_knee_dataset(
    out_dir: str | Path,
    n_patients: int,
    n_slices: int,
    seed: int = 0,
    matrix: tuple[int, int] = DEFAULT_MATRIX,
    n_coils: int = 15,
    progress: Callable[[int, int], None] | None = None,
    *,
    fov_mm: tuple[float, float] = DEFAULT_FOV_MM,
    montage: bool = True,
    noise_scale: float = 1.0,
) -> list[Path]:
    """Simulate ``n_patients`` knees and write one fastMRI-layout file per patient and protocol.

    Files are ``out_dir/knee_p{k:03d}_{acquisition}.h5`` with attrs
    ``acquisition`` (CORPD_FBK / CORPDFS_FBK), ``patient_id`` ``sim{k:03d}``,
    ``tissue_snr`` (muscle SNR of the fully sampled image) and ``paper_snr``
    (``rms(f) / sigma_k``) over the central slices, the receiver
    ``noise_covariance`` and, on matrices whose matched ACS block
    (``physics.masks.matched_acs_lines``) is smaller than the 24 lines ESPIRiT
    needs, coil ``maps`` from a separate calibration scan
    (:func:`calibration_maps`, as a vendor SENSE reference scan),
    TR / TE / field strength / FOV in the ISMRMRD header, and a
    ``reconstruction_rss`` on the readout-cropped matrix (H / 2, W). ``progress(done,
    total)`` is called after each patient. With ``montage`` a PNG beside the folder
    (``simulation_folder.montage_path``: ``<out_dir>_montage.png``) shows RSS images of three central slices (3 apart)
    of the first two patients, one row per patient: PDw slices, then PDw-FS
    slices side by side. ``noise_scale`` multiplies the calibrated noise std
    (``acquire_patient``). Returns the written .h5 paths
    (patient-major, PDw first).
    """
    from ..fastmri import Volume, write_volume

    out_dir = Path(out_dir)
    grid = _Grid(check_matrix(matrix), (float(fov_mm[0]), float(fov_mm[1])))
    check_size(out_dir, n_patients, n_slices, grid.matrix, n_coils)
    record = claim_simulation_folder(
        out_dir,
        "knee",
        {
            "seed": seed, "matrix": list(grid.matrix), "coils": n_coils, "slices": n_slices, "fov_mm": list(grid.fov_mm),
            **({"noise_scale": float(noise_scale)} if noise_scale != 1.0 else {}),
        },
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    panels: list[tuple[str, np.ndarray]] = []
    show = sorted({n_slices // 2 - 3, n_slices // 2, n_slices // 2 + 3} & set(range(n_slices)))
    for patient in range(n_patients):
        acquisition = acquire_patient(
            patient, seed, n_slices, grid.matrix, n_coils, fov_mm=grid.fov_mm, noise_scale=noise_scale
        )
        patient_id = f"sim{patient:03d}"
        maps = None
        if matched_acs_lines(grid.matrix[1]) < DEFAULT_ACS_LINES:
            # One reference scan per patient serves both protocols, as on a scanner; the
            # sensitivities do not depend on the contrast, so the PDw data stand in for it.
            maps = calibration_maps(acquisition.kspace["CORPD_FBK"], acquisition.noise_covariance)
        for name, kspace in acquisition.kspace.items():
            sequence = SEQUENCES[name]
            path = out_dir / f"knee_p{patient:03d}_{name}.h5"
            rss = _rss_image(kspace)
            if montage and patient < 2:
                panels.extend((f"{patient_id} {name} sl {index}", rss[index]) for index in show)
            volume = Volume(
                kspace=kspace,
                acquisition=name,
                patient_id=patient_id,
                reconstruction_rss=rss,
                noise_covariance=acquisition.noise_covariance,
                maps=maps,
            )
            with atomic_write(path) as temporary:
                write_volume(
                    temporary,
                    volume,
                    field_strength_T=3.0,
                    TR_ms=sequence.tr_ms,
                    TE_ms=sequence.te_ms,
                    fov_mm=(READOUT_OVERSAMPLING * grid.fov_mm[0], grid.fov_mm[1], SLICE_THICKNESS_MM),
                    recon_shape=grid.image_shape,
                )
                with h5py.File(temporary, "a") as h5:
                    h5.attrs["tissue_snr"] = float(acquisition.tissue_snr[name])
                    h5.attrs["paper_snr"] = float(acquisition.paper_snr[name])
                    h5.attrs[SIMULATION_ATTR] = record
            paths.append(path)
        if progress is not None:
            progress(patient + 1, n_patients)
    if montage and panels:
        save_montage(
            montage_path(out_dir), panels, n_cols=2 * len(show), pixel_aspect=grid.pixel_mm[0] / grid.pixel_mm[1]
        )
    return paths
