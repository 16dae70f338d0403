"""Tissue contrast of the numerical knee: protocols, relaxation, the signal equation, the object image.

Per-tissue proton density and 3 T relaxation times (``TISSUES``, with source
notes) in the spin-echo signal equation ``S = PD (1 - exp(-TR/T1)) exp(-TE/T2)``
with the paper's protocols (PDw: TR 2750 ms, TE 27 ms; PDw-FS: TR 2870 ms,
TE 33 ms). Fat suppression multiplies the fat component of every tissue (pure
fat, and the fat part of marrow) by ``FAT_SUPPRESSION_RESIDUAL``. The image of
a slice is the sum over tissues of volume fraction (:mod:`.anatomy`, with its
microstructure) times signal, times a smooth background phase (random
low-order polynomial in x, y, z, a few radians across the FOV; the same for
both sequences).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .anatomy import (
    FINE,
    LABEL_INDEX,
    LABELS,
    KneeParams,
    _Grid,
    _plane,
    _slab_fractions,
    _to_knee_frame,
    add_microstructure,
    microstructure_fields,
)

#: Fraction of the fat signal left by the fat saturation pulse.
FAT_SUPPRESSION_RESIDUAL = 0.06


@dataclass(frozen=True)
class Sequence:
    """A TSE protocol: effective TE, TR and fat saturation."""

    name: str
    tr_ms: float
    te_ms: float
    fat_suppression: bool
    description: str


#: The paper's two coronal knee protocols (fastMRI acquisition names).
SEQUENCES: dict[str, Sequence] = {
    "CORPD_FBK": Sequence("CORPD_FBK", 2750.0, 27.0, False, "coronal PDw TSE"),
    "CORPDFS_FBK": Sequence("CORPDFS_FBK", 2870.0, 33.0, True, "coronal PDw TSE, fat saturated"),
}


@dataclass(frozen=True)
class Tissue:
    """Relative proton density and 3 T relaxation of a tissue's water and fat components.

    ``fat_fraction`` of the proton density relaxes with the fat times
    (``FAT_T1_MS`` / ``FAT_T2_MS``) and is suppressed by fat saturation; the
    rest relaxes with ``t1_ms`` / ``t2_ms``.
    """

    pd: float
    t1_ms: float
    t2_ms: float
    fat_fraction: float = 0.0
    source: str = ""


# Fat at 3 T: T1 ~ 370 ms, T2 ~ 130 ms (the range Gold et al., AJR 2004, report
# for fat / fatty marrow); the long apparent T2 is what makes fat bright in TSE
# (J-coupling is broken up by the echo train).
FAT_T1_MS = 371.0
FAT_T2_MS = 133.0


#: Tissue properties per label: approximate, rounded literature values at 3 T
#: (quoted from memory, not re-checked against the papers): Gold GE et al.,
#: "Musculoskeletal MRI at 3.0 T: relaxation times and image contrast", AJR
#: 2004 (fat, muscle, cartilage, synovial fluid, marrow); Stanisz GJ et al.,
#: MRM 2005 (cartilage, muscle); meniscus / ligament / tendon T2 of a few to
#: ~15 ms from UTE and multi-echo studies; cortical bone T2* ~ 0.4 ms, i.e. no
#: signal at TE 27-33 ms. PDs are relative proton densities, rounded estimates.
#: Resulting signals (PDw / PDw-FS): fat 0.78 / 0.04, marrow 0.69 / 0.09,
#: fluid 0.51 / 0.52, cartilage 0.34 / 0.30, muscle 0.28 / 0.23,
#: meniscus 0.02 / 0.01, ligament 0.003 / 0.001.
TISSUES: dict[str, Tissue] = {
    "background": Tissue(0.0, 1000.0, 1.0, 0.0, "air"),
    "skin": Tissue(0.65, 1000.0, 40.0, 0.1, "estimate (dermis: collagen-rich, intermediate)"),
    "subcutaneous_fat": Tissue(0.95, FAT_T1_MS, FAT_T2_MS, 1.0, "~370 / 130 ms (Gold 2004 range)"),
    "fat": Tissue(0.95, FAT_T1_MS, FAT_T2_MS, 1.0, "as subcutaneous fat (Hoffa's pad, popliteal fat)"),
    "muscle": Tissue(0.75, 1420.0, 32.0, 0.02, "~1420 / 32 ms (Gold 2004)"),
    "cortical_bone": Tissue(0.05, 1000.0, 0.5, 0.0, "T2* ~ 0.4 ms: no signal at TE ~ 30 ms"),
    # Yellow marrow: mostly fat plus ~15 % water.
    "marrow": Tissue(0.9, 1100.0, 40.0, 0.85, "fat component as fat; water part estimate"),
    # Cartilage T2 rises from the radial (deep) zone to the surface; ~37 ms over the full thickness (Gold 2004).
    "cartilage": Tissue(0.8, 1240.0, 44.0, 0.0, "transitional / superficial zones, ~1240 / 44 ms"),
    "deep_cartilage": Tissue(0.75, 1240.0, 26.0, 0.0, "radial zone, shorter T2 ~26 ms"),
    "meniscus": Tissue(0.6, 1000.0, 8.0, 0.0, "short T2 ~ 5-10 ms (UTE studies)"),
    "ligament": Tissue(0.6, 1050.0, 5.0, 0.0, "short T2 ~ 2-8 ms (ligament/tendon, UTE studies)"),
    "fluid": Tissue(1.0, 3620.0, 767.0, 0.0, "synovial fluid ~3600 / 770 ms (Gold 2004)"),
    "vessel": Tissue(0.05, 1900.0, 250.0, 0.0, "arterial flow void in TSE"),
}


def tissue_signal(tissue: Tissue, sequence: Sequence) -> float:
    """``PD [(1-ff) E(T1w, T2w) + ff r E(T1fat, T2fat)]`` with E = (1 - e^-TR/T1) e^-TE/T2.

    ``r`` is ``FAT_SUPPRESSION_RESIDUAL`` with fat saturation, else 1.
    """

    def spin_echo(t1: float, t2: float) -> float:
        return (1.0 - math.exp(-sequence.tr_ms / t1)) * math.exp(-sequence.te_ms / t2)

    residual = FAT_SUPPRESSION_RESIDUAL if sequence.fat_suppression else 1.0
    water = (1.0 - tissue.fat_fraction) * spin_echo(tissue.t1_ms, tissue.t2_ms)
    fat = tissue.fat_fraction * residual * spin_echo(FAT_T1_MS, FAT_T2_MS)
    return tissue.pd * (water + fat)


def _background_phase(params: KneeParams, x, y, z):
    """Smooth phase (rad): random quadratic polynomial in normalised x, y, z, a few rad across the FOV."""
    c = params.phase_coefficients
    u, v, w = x / 80.0, y / 60.0, z / 80.0
    return (
        math.pi * c[0]
        + 1.2 * c[1] * u
        + 1.2 * c[2] * w
        + 0.5 * c[3] * v
        + 0.6 * c[4] * u * u
        + 0.6 * c[5] * w * w
        + 0.6 * c[6] * u * w
        + 0.3 * c[7] * u * v
        + 0.3 * c[8] * w * v
        + 0.3 * c[9] * v * v
    )


def object_images(params: KneeParams, grid: _Grid, y_positions, whites) -> tuple[np.ndarray, np.ndarray]:
    """Complex object (sequences, slices, fine rows, fine cols) for the slices at ``y_positions``, and the
    muscle fraction (slices, rows, cols) of each image-grid pixel (the ROI of the tissue SNR).

    ``whites``: one white-noise field (fine rows, fine cols) per slice for the microstructure.
    """
    zz, xx = _plane(grid.fine_shape, grid.fov_mm)
    spacing = (grid.fov_mm[0] / grid.fine_shape[0], grid.fov_mm[1] / grid.fine_shape[1])
    width = float(np.mean(spacing))
    signals = np.array(
        [[tissue_signal(TISSUES[label], seq) for label in LABELS] for seq in SEQUENCES.values()], dtype=np.float32
    )
    out = np.empty((len(SEQUENCES), len(y_positions), *grid.fine_shape), dtype=np.complex64)
    muscle = np.empty((len(y_positions), *grid.image_shape), dtype=np.float32)
    for index, y_pos in enumerate(y_positions):
        frac = _slab_fractions(params, zz, xx, float(y_pos), width)
        # The SNR ROI is anatomical muscle, its septa included, as an ROI drawn on an image would be.
        blocks = frac[LABEL_INDEX["muscle"]].reshape(grid.image_shape[0], FINE, grid.image_shape[1], FINE)
        muscle[index] = blocks.mean(axis=(1, 3))
        add_microstructure(params, frac, microstructure_fields(whites[index], spacing))
        kx, _, kz = _to_knee_frame(params, xx, float(y_pos), zz)
        # Physeal scars: thin dark wavy lines across the distal femur and proximal tibia.
        wave = 1.5 * np.sin(kx / 9.0 + params.phase_coefficients[0])
        scar = np.exp(-0.5 * ((kz - 30.0 - wave) / 0.9) ** 2) + np.exp(-0.5 * ((kz + 22.0 + wave) / 0.9) ** 2)
        frac[LABEL_INDEX["marrow"]] *= 1.0 - 0.25 * scar
        magnitudes = (signals @ frac.reshape(len(LABELS), -1)).reshape(len(SEQUENCES), *grid.fine_shape)
        phase = _background_phase(params, xx, float(y_pos), zz)
        out[:, index] = magnitudes * (np.cos(phase) + 1j * np.sin(phase)).astype(np.complex64)
    return out, muscle
