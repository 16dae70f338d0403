"""A procedural numerical knee: coronal PDw / PDw-FS TSE multi-coil k-space.

This is the embedded stand-in for the paper's in-vivo data (Knoll et al., MRM
2019: coronal proton-density-weighted turbo spin echo with and without fat
suppression, 3 T, 15-channel knee coil, 2x readout oversampling).

Anatomy
-------
Every patient is a seeded 3-D knee built from smooth implicit shapes
(ellipsoids, capsules with elliptic cross-sections, elliptic cylinders whose
radii follow smooth profiles along the leg; approximately Euclidean signed
distances combined with smooth unions/subtractions):

* femur (shaft, flared metaphysis, two condyles, epicondyles, intercondylar
  notch) and tibia (plateau with a concave medial compartment, tibial spines,
  metaphysis, shaft), fibular head and shaft, patella; each bone is a cortical
  shell (no signal; thicker along the shafts, a thin subchondral plate at the
  joint) around fatty marrow with a trabecular texture and a physeal scar;
* articular cartilage on the femoral condyles, the tibial plateau and the
  patella; C-shaped wedge menisci (dark triangles at the joint-line edges in
  coronal slices, horns in the anterior/posterior slices);
* ACL, PCL, MCL, LCL, patellar and quadriceps tendons, iliotibial band (dark
  bands); popliteal artery (flow void) and vein;
* thigh and calf muscles, periarticular fat (Hoffa's pad, popliteal fossa),
  subcutaneous fat, skin; joint fluid in the joint space, the gutters and the
  suprapatellar recess, scaled by a per-patient effusion amount.

Patients differ (seeded): overall size, bone proportions, cartilage and fat
thickness, meniscus size, effusion, left/right knee, position and rotation in
the FOV, coil placement, texture and background phase. Slices are coronal
cuts through the 3-D object along the anterior-posterior axis (3 mm apart, each
the average of three sub-slices through its 3 mm thickness), so neighbouring
slices differ. Partial volume comes from evaluating the shapes on a grid finer
than the image grid with a linear occupancy ramp one fine pixel wide.

Image orientation (fastMRI knee convention): rows = readout = superior-inferior
(row 0 superior: femur on top, tibia at the bottom), columns = phase encoding =
left-right. Slice 0 is the most posterior slice. Coordinates are as in
:mod:`vnrecon.physics.coils` (x left-right, y anterior-posterior, z superior).

Contrast
--------
Per-tissue proton density and 3 T relaxation times (``TISSUES``, with source
notes) in the spin-echo signal equation ``S = PD (1 - exp(-TR/T1)) exp(-TE/T2)``
with the paper's protocols (PDw: TR 2750 ms, TE 27 ms; PDw-FS: TR 2870 ms,
TE 33 ms). Fat suppression multiplies the fat component of every tissue (pure
fat, and the fat part of marrow) by ``FAT_SUPPRESSION_RESIDUAL``. A smooth
background phase (random low-order polynomial in x, y, z, a few radians across
the FOV) multiplies the magnitude; it is the same for both sequences.

Acquisition (no inverse crime)
------------------------------
The object is evaluated on a grid ``FINE`` (= 2) times finer than the image
grid in both axes, multiplied with Biot-Savart loop-coil sensitivities
(:mod:`vnrecon.physics.coils`; evaluated on a 2.5 mm grid, spline-interpolated
and RSS-normalised, the array placed with a small per-patient offset and
rotation) at that grid,
embedded in the 2x readout-oversampled FOV (the object occupies the central
half of the readout; the signal is tapered to zero towards the readout edges of
the imaged FOV, as the knee coil's sensitive volume ends, so the oversampled
margins hold only noise), Fourier transformed (orthonormal, centred) and the
centre of k-space cropped to the target matrix. K-space is scaled by
``sqrt(N_fine / N)`` so image intensities do not depend on the matrix.

Noise and SNR: complex Gaussian k-space noise with the same ``NOISE_SIGMA``
(1e-5, as the paper estimated for both sequences) for both sequences; each
patient's per-sequence signal gain is calibrated so that the paper's SNR in
orthonormal terms, ``rms(f) / sigma_k`` (see :mod:`vnrecon.physics.noise`),
*as measured* over the central 20 slices (all slices if fewer) is 80 for PDw
and 20 for PDw-FS. "As measured" means with ``sigma_k`` estimated from the
readout margins like :func:`vnrecon.physics.noise.estimate_snr`: the object's
Gibbs ringing reaches the margins (as in real raw data) and adds a little to
that estimate (about 1 % at the default matrix, more on tiny matrices), and the
calibration accounts for it analytically, so ``estimate_snr`` returns the
target on every matrix while the true noise std stays ``NOISE_SIGMA``.

Public API: :func:`simulate_patient`, :func:`simulate_knee_dataset`,
:func:`label_maps`, ``LABELS``, ``TISSUES``, ``SEQUENCES``.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.fft
import torch
from scipy.interpolate import CubicSpline, PchipInterpolator

from ..physics import coils as coil_model
from ..physics.noise import add_complex_noise

# --------------------------------------------------------------------------- constants

#: Default k-space matrix for the CPU-sized data: (full oversampled readout, phase).
DEFAULT_MATRIX = (256, 96)
#: The paper / fastMRI knee k-space matrix.
PAPER_MATRIX = (640, 368)
#: Imaged FOV (S-I readout without oversampling, L-R phase) in mm. With the
#: paper matrix this gives 0.50 x 0.43 mm pixels (paper: 0.49 x 0.44 mm).
DEFAULT_FOV_MM = (160.0, 160.0)
READOUT_OVERSAMPLING = 2
SLICE_THICKNESS_MM = 3.0
SLICE_SPACING_MM = 3.0
#: Sub-slices averaged over the slice thickness (through-plane partial volume).
SUB_SLICES = 3
#: Object grid is FINE times finer than the image grid in each axis.
FINE = 2
#: k-space noise std of the real and of the imaginary part (paper: 1e-5, both sequences).
NOISE_SIGMA = 1e-5
#: Fraction of the fat signal left by the fat saturation pulse.
FAT_SUPPRESSION_RESIDUAL = 0.06
#: Number of central slices over which the SNR is calibrated (paper: 20).
SNR_CENTRAL_SLICES = 20
#: Slices simulated together (memory / speed trade-off).
_CHUNK = 4


@dataclass(frozen=True)
class Sequence:
    """A TSE protocol: effective TE, TR, fat saturation and the target SNR of the data."""

    name: str
    tr_ms: float
    te_ms: float
    fat_suppression: bool
    target_snr: float
    description: str


#: The paper's two coronal knee protocols (fastMRI acquisition names).
SEQUENCES: dict[str, Sequence] = {
    "CORPD_FBK": Sequence("CORPD_FBK", 2750.0, 27.0, False, 80.0, "coronal PDw TSE"),
    "CORPDFS_FBK": Sequence("CORPDFS_FBK", 2870.0, 33.0, True, 20.0, "coronal PDw TSE, fat saturated"),
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

#: Label names; the index in this tuple is the label value of :func:`label_maps`.
LABELS = (
    "background",
    "skin",
    "subcutaneous_fat",
    "fat",
    "muscle",
    "cortical_bone",
    "marrow",
    "cartilage",
    "meniscus",
    "ligament",
    "fluid",
    "vessel",
)
LABEL_INDEX = {name: index for index, name in enumerate(LABELS)}

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
    "cartilage": Tissue(0.8, 1240.0, 37.0, 0.0, "~1240 / 37 ms (Gold 2004)"),
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


# --------------------------------------------------------------------------- seeds


def _seed_sequence(seed: int, patient_index: int, stream: int) -> np.random.SeedSequence:
    """Independent streams per (dataset seed, patient, purpose): patient k never depends on n_patients."""
    return np.random.SeedSequence([int(seed) & 0xFFFFFFFF, int(patient_index), int(stream), 0x6B6E6565])


def _rng(seed: int, patient_index: int, stream: int) -> np.random.Generator:
    return np.random.default_rng(_seed_sequence(seed, patient_index, stream))


_STREAM_ANATOMY, _STREAM_TEXTURE, _STREAM_NOISE = 1, 2, 3


# --------------------------------------------------------------------------- patient parameters


@dataclass(frozen=True)
class KneeParams:
    """Seeded per-patient anatomy and placement (lengths in mm, angles in rad)."""

    scale: float
    side: float  # +1: lateral is +x (right knee seen from the front), -1 mirrored
    shift: tuple[float, float, float]  # knee centre (x, y, z) in the scanner frame
    angles: tuple[float, float, float]  # rotations about x (flexion), y (varus/valgus), z (axial)
    condyle_width: float
    condyle_height: float
    notch_width: float
    plateau_width: float
    femoral_cartilage: float
    tibial_cartilage: float
    meniscus_height: float
    meniscus_size: float
    effusion: float
    fat_thickness: float
    muscle_bulk: float
    fibula_offset: float
    acl_radius: float
    pcl_radius: float
    trabecular_contrast: float
    coil_offset: tuple[float, float, float]
    coil_rotation: float
    phase_coefficients: tuple[float, ...]


def patient_params(patient_index: int, seed: int) -> KneeParams:
    """The seeded anatomy of patient ``patient_index`` of dataset ``seed``."""
    rng = _rng(seed, patient_index, _STREAM_ANATOMY)
    u = rng.uniform
    return KneeParams(
        scale=float(u(0.9, 1.05)),
        side=float(rng.choice([-1.0, 1.0])),
        shift=(float(u(-3, 3)), float(u(-4, 4)), float(u(-8, 6))),
        angles=(float(u(-0.08, 0.08)), float(u(-0.07, 0.07)), float(u(-0.12, 0.12))),
        condyle_width=float(u(0.92, 1.08)),
        condyle_height=float(u(0.9, 1.1)),
        notch_width=float(u(8.0, 11.0)),
        plateau_width=float(u(0.94, 1.06)),
        femoral_cartilage=float(u(1.8, 2.8)),
        tibial_cartilage=float(u(1.6, 2.6)),
        meniscus_height=float(u(6.0, 8.5)),
        meniscus_size=float(u(0.92, 1.08)),
        effusion=float(rng.beta(1.3, 2.5)),
        fat_thickness=float(u(3.0, 10.0)),
        muscle_bulk=float(u(0.85, 1.15)),
        fibula_offset=float(u(-4, 4)),
        acl_radius=float(u(3.8, 5.0)),
        pcl_radius=float(u(4.8, 6.2)),
        trabecular_contrast=float(u(0.2, 0.35)),
        coil_offset=(float(u(-4, 4)), float(u(-4, 4)), float(u(-12, 12))),
        coil_rotation=float(u(-0.3, 0.3)),
        phase_coefficients=tuple(float(v) for v in rng.normal(0.0, 1.0, size=10)),
    )


# --------------------------------------------------------------------------- implicit shapes
# All take coordinate arrays (x, y, z) in the knee frame (mm) and return an
# approximate signed distance (negative inside) in mm.


def _length(*components):
    total = components[0] * components[0]
    for component in components[1:]:
        total = total + component * component
    return np.sqrt(total)


def _ellipsoid(x, y, z, centre, radii):
    qx = (x - centre[0]) / radii[0]
    qy = (y - centre[1]) / radii[1]
    qz = (z - centre[2]) / radii[2]
    k0 = _length(qx, qy, qz)
    k1 = _length(qx / radii[0], qy / radii[1], qz / radii[2])
    return k0 * (k0 - 1.0) / np.maximum(k1, 1e-6)


def _ellipse2(u, v, radii_u, radii_v):
    """2-D ellipse distance (approximate) around the origin; radii may be arrays."""
    qu, qv = u / radii_u, v / radii_v
    k0 = _length(qu, qv)
    k1 = _length(qu / radii_u, qv / radii_v)
    return k0 * (k0 - 1.0) / np.maximum(k1, 1e-6)


def _capsule(x, y, z, a, b, radius, flat_axis=None, flat_radius=None):
    """Segment a-b with radius; with ``flat_axis`` (unit 3-vector) the cross-section is an
    ellipse with ``flat_radius`` along that axis (projected perpendicular to the segment)."""
    a = [float(v) for v in a]
    ab = [float(bv) - av for av, bv in zip(a, b)]
    length2 = ab[0] * ab[0] + ab[1] * ab[1] + ab[2] * ab[2]
    px, py, pz = x - a[0], y - a[1], z - a[2]
    t = np.clip((px * (ab[0] / length2) + py * (ab[1] / length2) + pz * (ab[2] / length2)), 0.0, 1.0)
    wx, wy, wz = px - t * ab[0], py - t * ab[1], pz - t * ab[2]
    if flat_axis is None:
        return _length(wx, wy, wz) - radius
    axis = np.asarray(flat_axis, dtype=np.float64)
    direction = np.asarray(ab) / math.sqrt(length2)
    e1 = axis - (axis @ direction) * direction
    e1 /= np.linalg.norm(e1)
    e2 = np.cross(direction, e1)
    u = (wx * float(e1[0]) + wy * float(e1[1]) + wz * float(e1[2])) / flat_radius
    v = (wx * float(e2[0]) + wy * float(e2[1]) + wz * float(e2[2])) / radius
    s = (wx * float(direction[0]) + wy * float(direction[1]) + wz * float(direction[2])) / radius
    # Ellipsoidal cross-section and caps: the ellipsoid distance estimate around the nearest axis point.
    k0 = _length(u, v, s)
    k1 = _length(u / flat_radius, v / radius, s / radius)
    return k0 * (k0 - 1.0) / np.maximum(k1, 1e-6)


def _smin(a, b, k):
    """Smooth minimum (polynomial), blending over ~k mm: a smooth union."""
    h = np.maximum(k - np.abs(a - b), 0.0) / k
    return np.minimum(a, b) - h * h * k * 0.25


def _smax(a, b, k):
    return -_smin(-a, -b, k)


def _smoothstep(edge0, edge1, value):
    t = np.clip((value - edge0) / (edge1 - edge0), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def _occupancy(distance, width):
    """Partial-volume fraction of a pixel of size ``width`` at signed distance ``distance``."""
    return np.clip(0.5 - distance / width, 0.0, 1.0)


# --------------------------------------------------------------------------- anatomy


def _to_knee_frame(params: KneeParams, x, y, z):
    """Scanner coordinates (mm) -> knee frame (mm, unscaled anatomy, lateral = +x)."""
    px, py, pz = x - params.shift[0], y - params.shift[1], z - params.shift[2]
    ax, ay, az = params.angles
    rotation = (
        np.array([[math.cos(az), -math.sin(az), 0], [math.sin(az), math.cos(az), 0], [0, 0, 1]])
        @ np.array([[math.cos(ay), 0, math.sin(ay)], [0, 1, 0], [-math.sin(ay), 0, math.cos(ay)]])
        @ np.array([[1, 0, 0], [0, math.cos(ax), -math.sin(ax)], [0, math.sin(ax), math.cos(ax)]])
    )
    inverse = rotation.T / params.scale
    kx = inverse[0, 0] * px + inverse[0, 1] * py + inverse[0, 2] * pz
    ky = inverse[1, 0] * px + inverse[1, 1] * py + inverse[1, 2] * pz
    kz = inverse[2, 0] * px + inverse[2, 1] * py + inverse[2, 2] * pz
    return kx * params.side, ky, kz


@functools.lru_cache(maxsize=64)
def _pchip(knots_z: tuple, knots_r: tuple) -> PchipInterpolator:
    return PchipInterpolator(np.asarray(knots_z), np.asarray(knots_r))


def _profile(z, knots_z, knots_r):
    """Smooth monotone (PCHIP) radius profile along z through the knots, constant beyond (float32)."""
    spline = _pchip(tuple(knots_z), tuple(knots_r))
    return spline(np.clip(z, knots_z[0], knots_z[-1])).astype(np.float32)


def _fractions(params: KneeParams, x, y, z, width_mm: float) -> np.ndarray:
    """Partial-volume fractions (len(LABELS), ...) at scanner points; they sum to <= 1.

    ``width_mm`` is the (fine) pixel size: the occupancy ramp width. The anatomy
    is written in a knee frame (mm): origin at the centre of the joint line,
    x lateral, y anterior, z superior; the patient's scale, side, rotation and
    position map it into the scanner frame.
    """
    p = params
    x, y, z = (np.asarray(v, dtype=np.float32) for v in _to_knee_frame(p, x, y, z))
    w = width_mm / p.scale  # ramp width in knee-frame mm
    occ = lambda d: _occupancy(d, w)  # noqa: E731
    cw, ch, pw = p.condyle_width, p.condyle_height, p.plateau_width
    fc0, tc0 = p.femoral_cartilage, p.tibial_cartilage
    femur_bottom = fc0 + 0.3  # bone surfaces: cartilage + a thin film of joint fluid between
    tibia_top = -(tc0 + 0.3)

    # ---- femur: trumpet-shaped shaft/metaphysis, two condyles, epicondyles, notch
    rx = _profile(z, [5.0, 15.0, 25.0, 33.0, 42.0, 52.0, 64.0, 80.0, 120.0], [35.0, 38.0, 38.5, 36.0, 30.0, 23.5, 19.0, 16.5, 15.0])
    ry = _profile(z, [5.0, 25.0, 45.0, 60.0, 80.0, 120.0], [29.0, 29.0, 23.0, 17.5, 14.5, 14.0])
    cy = _profile(z, [10.0, 60.0], [-4.0, -1.0])
    trumpet = _smax(_ellipse2(x * (1.0 / cw), y - cy, rx, ry) * cw, 16.0 - z, 6.0)
    med_condyle = _ellipsoid(x, y, z, (-21.5 * cw, -6.0, femur_bottom + 19.0 * ch), (16.0 * cw, 30.0, 19.0 * ch))
    lat_condyle = _ellipsoid(x, y, z, (21.5 * cw, -4.0, femur_bottom + 20.0 * ch), (15.0 * cw, 29.0, 20.0 * ch))
    femur = _smin(trumpet, np.minimum(med_condyle, lat_condyle), 10.0)
    epicondyles = np.minimum(
        _ellipsoid(x, y, z, (-36.5 * cw, -4.0, 27.0), (6.0, 10.0, 8.0)),
        _ellipsoid(x, y, z, (35.5 * cw, -6.0, 28.0), (5.5, 10.0, 7.0)),
    )
    femur = _smin(femur, epicondyles, 5.0)
    # Intercondylar notch: open posteriorly and inferiorly, closed by the trochlea anteriorly.
    notch = _smax(_ellipse2(x, z - femur_bottom + 1.0, p.notch_width, 24.0 * ch), y - 8.0, 6.0)
    femur = _smax(femur, -notch, 3.0)
    femur = _smax(femur, -_ellipsoid(x, y, z, (0.0, 31.0, 24.0), (10.0, 7.0, 24.0)), 3.0)  # trochlear groove

    # ---- tibia: plateau (concave medially), spines, metaphysis flaring into the shaft
    trx = _profile(z, [-120.0, -80.0, -60.0, -50.0, -40.0, -30.0, -20.0, -10.0, 0.0], [14.0, 15.0, 16.5, 18.5, 22.0, 27.5, 33.5, 37.0, 37.5])
    try_ = _profile(z, [-120.0, -70.0, -40.0, -20.0, 0.0], [13.0, 14.0, 20.0, 25.5, 27.0])
    tcy = _profile(z, [-60.0, -10.0], [-1.0, -5.0])
    tibia = _smax(_ellipse2(x * (1.0 / pw), y - tcy, trx, try_) * pw, z - tibia_top, 4.0)
    tibia = _smax(tibia, -_ellipsoid(x, y, z, (-20.0 * pw, -5.0, tibia_top + 40.0 - 1.4), (15.0 * pw, 24.0, 40.0)), 2.0)
    tibia = _smax(tibia, -_ellipsoid(x, y, z, (20.0 * pw, -5.0, tibia_top + 60.0 - 0.6), (16.0 * pw, 24.0, 60.0)), 2.0)
    spines = np.minimum(
        _ellipsoid(x, y, z, (-5.0, -4.0, tibia_top - 1.0), (4.0, 8.0, 6.0)),
        _ellipsoid(x, y, z, (5.0, -5.0, tibia_top - 1.0), (3.5, 7.0, 5.5)),
    )
    tibia = _smin(tibia, spines, 2.5)
    tibia = _smin(tibia, _ellipsoid(x, y, z, (2.0, 17.0, -36.0), (12.0, 9.0, 14.0)), 6.0)  # tuberosity

    # ---- fibula (kept 1.5 mm off the tibia: proximal tibiofibular joint)
    fx = 42.0 * pw + 0.5 * p.fibula_offset
    fz = -36.0 + p.fibula_offset
    fib_head = _ellipsoid(x, y, z, (fx, -20.0, fz), (9.5, 10.0, 11.0))
    fib_shaft = _smax(_ellipse2(x - fx - 1.0, y + 21.0, 6.5, 6.5), z - fz + 5.0, 3.0)
    fibula = _smax(_smin(fib_head, fib_shaft, 8.0), -(tibia - 1.5), 1.0)

    # ---- patella
    patella = _ellipsoid(x, y, z, (0.0, 39.0, 30.0), (21.0, 9.5, 20.0))

    bone = np.minimum(np.minimum(femur, tibia), np.minimum(fibula, patella))
    # Cortex: thin subchondral plate at the joint, thick cortex along the shafts.
    cortex = 1.1 + 3.4 * _smoothstep(35.0, 90.0, np.abs(z))
    bone_occ = occ(bone)
    marrow_occ = occ(bone + cortex)

    # ---- cartilage (thickness tapers away from the articular surfaces)
    fc = fc0 * (1.0 - _smoothstep(6.0, 20.0, z))
    fc = fc * np.maximum(_smoothstep(p.notch_width - 1.0, p.notch_width + 4.0, np.abs(x)), _smoothstep(6.0, 12.0, y))
    troch = 2.4 * _smoothstep(14.0, 22.0, y) * (1.0 - _smoothstep(46.0, 54.0, z)) * (1.0 - _smoothstep(24.0, 30.0, np.abs(x)))
    fc = np.maximum(fc, troch)
    fem_cart = occ(femur - fc) * (fc > 0.05)
    tc = tc0 * _smoothstep(tibia_top - 6.0, tibia_top - 1.5, z) * _smoothstep(6.0, 10.0, np.abs(x))
    tc = tc * (1.0 - _smoothstep(29.0 * pw, 36.0 * pw, np.abs(x)))
    tib_cart = occ(tibia - tc) * (tc > 0.05)
    pc = 3.2 * (1.0 - _smoothstep(31.0, 35.0, y))
    pat_cart = occ(patella - pc) * (pc > 0.05)
    cartilage_occ = np.maximum(np.maximum(fem_cart, tib_cart), pat_cart)

    # ---- menisci: C-shaped wedges around each compartment, open towards the notch
    meniscus = np.full_like(x, 1e3)
    for sign, (mrx, mry, opening) in ((-1.0, (18.5, 22.0, -0.8)), (1.0, (16.5, 18.0, -0.93))):
        mrx, mry = mrx * p.meniscus_size * pw, mry * p.meniscus_size
        cx = sign * 21.0 * pw
        u, v = (x - cx) / mrx, (y + 5.0) / mry
        rho = np.sqrt(u * u + v * v)
        inner = 0.42
        radius = 0.5 * (mrx + mry)
        height = p.meniscus_height * np.clip((rho - inner) / (1.0 - inner), 0.0, 1.0)
        slope = p.meniscus_height / ((1.0 - inner) * radius)
        base = tibia_top - 0.3
        wedge = np.maximum(
            np.maximum(base - z, (z - base - height) / math.sqrt(1.0 + slope * slope)),
            np.maximum((rho - 1.0) * radius, (inner + 0.02 - rho) * radius),
        )
        cos_angle = sign * u / np.maximum(rho, 1e-6)
        meniscus = np.minimum(meniscus, np.maximum(wedge, (opening - cos_angle) * 20.0))
    meniscus_occ = occ(meniscus)

    # ---- ligaments and tendons
    ex = (1.0, 0.0, 0.0)
    lig = _capsule(x, y, z, (10.0, -15.0, 17.0), (1.0, 11.0, tibia_top + 1.0), p.acl_radius)  # ACL
    lig = np.minimum(lig, _capsule(x, y, z, (-9.5, 3.0, 15.0), (-1.0, -24.0, -10.0), p.pcl_radius))  # PCL
    mcl = [(-42.0 * cw, -2.0, 30.0), (-40.5 * pw, 0.0, 0.0), (-36.5 * pw, 1.0, -22.0), (-22.5, 2.0, -56.0)]
    for start, stop in zip(mcl[:-1], mcl[1:]):  # MCL: flat band hugging the medial side
        lig = np.minimum(lig, _capsule(x, y, z, start, stop, 9.0, ex, 1.8))
    lig = np.minimum(lig, _capsule(x, y, z, (41.0 * cw, -8.0, 27.0), (fx + 4.0, -19.0, fz + 4.0), 2.5))  # LCL
    lig = np.minimum(lig, _capsule(x, y, z, (0.0, 44.0, 12.0), (2.0, 25.0, -36.0), 2.6, ex, 13.0))  # patellar tendon
    lig = np.minimum(lig, _capsule(x, y, z, (0.0, 41.0, 46.0), (0.0, 34.0, 90.0), 3.2, ex, 15.0))  # quadriceps tendon
    itb = [(52.0, 2.0, 85.0), (45.0, 8.0, 20.0), (36.0, 13.0, -16.0)]
    for start, stop in zip(itb[:-1], itb[1:]):  # iliotibial band, to Gerdy's tubercle
        lig = np.minimum(lig, _capsule(x, y, z, start, stop, 8.0, ex, 1.5))
    ligament_occ = occ(lig)

    # ---- popliteal vessels (artery: flow void; vein: slow flow, partly fluid-like)
    artery_occ = occ(_ellipse2(x + 2.0, y + 31.0 + 0.05 * z, 3.0, 3.0))
    vein_occ = occ(_ellipse2(x - 4.5, y + 36.0 + 0.05 * z, 4.0, 3.5))

    # ---- joint fluid: joint space, gutters along the condyles, suprapatellar recess
    e = p.effusion
    cavity = _ellipsoid(x, y, z, (0.0, -4.0, 0.0), (35.0 + 4.0 * e, 26.0 + 3.0 * e, 0.9 + 1.6 * e))
    capsule = _ellipsoid(x, y, z, (0.0, -4.0, 16.0), (45.0, 33.0, 34.0))
    gutter = _smax(femur - (0.3 + 2.2 * e), capsule, 2.0)
    gutter = _smax(gutter, (p.notch_width + 4.0 - np.abs(x)) * (y < 8.0), 1.0)  # no fluid lining the notch
    recess = _ellipsoid(x, y, z, (0.0, 27.0, 48.0 + 8.0 * e), (25.0, 1.2 + 5.0 * e, 10.0 + 16.0 * e))
    fluid_occ = occ(np.minimum(np.minimum(cavity, gutter), recess))

    # ---- soft-tissue envelope: deep compartment, subcutaneous fat, skin
    half_x = _profile(z, [-90.0, -45.0, -10.0, 20.0, 55.0, 90.0], [53.0, 56.0, 49.5, 51.0, 57.0, 58.0])
    half_y = _profile(z, [-90.0, -40.0, 0.0, 40.0, 90.0], [55.0, 53.0, 50.0, 53.0, 58.0])
    deep = _ellipse2(x, y + 3.0, half_x, half_y)
    inner_occ = occ(deep)
    dermis_occ = occ(deep - p.fat_thickness)
    body_occ = occ(deep - p.fat_thickness - 1.8)

    # ---- muscles (inside the deep compartment); thin fat planes between neighbours
    mb = p.muscle_bulk
    muscles = [  # (centre, radii); they may reach into bone: the bones are painted first
        ((-40.0, 6.0, 62.0), (27.0 * mb, 30.0, 50.0)),  # vastus medialis
        ((42.0, 2.0, 82.0), (22.0 * mb, 30.0, 56.0)),  # vastus lateralis
        ((0.0, 20.0, 95.0), (28.0, 14.0 * mb, 50.0)),  # vastus intermedius
        ((34.0, -30.0, 80.0), (19.0 * mb, 20.0, 58.0)),  # biceps femoris
        ((-29.0, -32.0, 74.0), (19.0 * mb, 20.0, 54.0)),  # semimembranosus
        ((-48.0, -18.0, 62.0), (9.0 * mb, 11.0, 58.0)),  # sartorius / gracilis
        ((-24.0, -36.0, -40.0), (23.0 * mb, 19.0, 58.0)),  # medial gastrocnemius
        ((24.0, -36.0, -45.0), (20.0 * mb, 18.0, 56.0)),  # lateral gastrocnemius
        ((0.0, -26.0, -98.0), (36.0 * mb, 19.0, 60.0)),  # soleus
        ((27.0, 14.0, -82.0), (15.0 * mb, 15.0, 55.0)),  # tibialis anterior
        ((-30.0, 4.0, -95.0), (12.0 * mb, 14.0, 52.0)),  # flexor digitorum / tibialis posterior
        ((47.0, -4.0, -84.0), (12.0 * mb, 13.0, 54.0)),  # peroneus
    ]
    first = np.full_like(x, 1e3)  # nearest and second-nearest muscle distance
    second = np.full_like(x, 1e3)
    for centre, radii in muscles:
        d = _ellipsoid(x, y, z, centre, radii)
        second = np.minimum(second, np.maximum(first, d))
        first = np.minimum(first, d)
    popliteus = _capsule(x, y, z, (36.0, -18.0, -12.0), (-16.0, -25.0, -44.0), 7.0 * mb)
    second = np.minimum(second, np.maximum(first, popliteus))
    first = np.minimum(first, popliteus)
    # A fat plane ~1 mm wide where two muscles meet (|d1 - d2| small, both inside).
    plane = (1.0 - _smoothstep(0.0, 1.2, np.abs(first - second))) * (second < 0.5)
    muscle_occ = occ(first) * inner_occ * (1.0 - 0.85 * plane)

    # ---- painter's composition, highest priority first
    frac = np.zeros((len(LABELS),) + x.shape, dtype=np.float32)
    remaining = np.ones_like(x)

    def paint(label: str, occupancy) -> None:
        nonlocal remaining
        share = occupancy * remaining
        frac[LABEL_INDEX[label]] += share
        remaining = remaining - share

    paint("marrow", marrow_occ)
    paint("cortical_bone", bone_occ)
    paint("cartilage", cartilage_occ)
    paint("meniscus", meniscus_occ)
    paint("ligament", ligament_occ)
    paint("vessel", artery_occ)
    paint("fluid", 0.4 * vein_occ)
    paint("vessel", vein_occ)
    paint("fluid", fluid_occ)
    paint("muscle", muscle_occ)
    paint("fat", inner_occ)
    paint("subcutaneous_fat", dermis_occ)
    paint("skin", body_occ)
    return frac



# --------------------------------------------------------------------------- textures and phase


def _texture_filters(shape, spacing_mm) -> np.ndarray:
    """Band-pass filters (3, rows, cols // 2 + 1) for the trabecular, muscle and fat-septa textures.

    Each is a Gaussian ring around a spatial wavelength, with z (rows) frequencies
    stretched so that the texture is elongated along the leg (trabeculae and muscle
    fibres follow the load axis).
    """
    kz = np.fft.fftfreq(shape[0], d=spacing_mm[0])[:, None]
    kx = np.fft.rfftfreq(shape[1], d=spacing_mm[1])[None, :]
    filters = []
    for wavelength, bandwidth, stretch_z in ((2.4, 0.35, 1.8), (6.0, 0.6, 3.0), (9.0, 0.5, 1.0)):
        radius = np.sqrt((kz * stretch_z) ** 2 + kx * kx)
        k0 = 1.0 / wavelength
        filters.append(np.exp(-0.5 * ((radius - k0) / (bandwidth * k0)) ** 2))
    return np.stack(filters).astype(np.float32)


def _textures(white: np.ndarray, filters: np.ndarray) -> np.ndarray:
    """Three zero-mean unit-std band-pass noise fields (3, rows, cols) from one white-noise field."""
    spectrum = scipy.fft.rfft2(white, workers=1)[None] * filters
    fields = scipy.fft.irfft2(spectrum, s=white.shape, workers=1)
    std = fields.reshape(len(fields), -1).std(axis=1)
    return fields / np.maximum(std, 1e-12).reshape(-1, 1, 1)


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


def _readout_window(z_scanner, half_fov_mm):
    """Sensitive S-I extent of the knee coil: 1 in the middle, cos^2 taper to 0 at the FOV edge."""
    start, stop = 0.70 * half_fov_mm, 0.97 * half_fov_mm
    t = np.clip((np.abs(z_scanner) - start) / (stop - start), 0.0, 1.0)
    return np.cos(0.5 * math.pi * t) ** 2


# --------------------------------------------------------------------------- grids


@dataclass(frozen=True)
class _Grid:
    matrix: tuple[int, int]  # k-space (full readout, phase)
    fov_mm: tuple[float, float]  # imaged FOV (readout without oversampling, phase)

    @property
    def image_shape(self) -> tuple[int, int]:
        return (self.matrix[0] // READOUT_OVERSAMPLING, self.matrix[1])

    @property
    def fine_shape(self) -> tuple[int, int]:
        return (FINE * self.image_shape[0], FINE * self.image_shape[1])

    @property
    def full_fine_shape(self) -> tuple[int, int]:
        return (FINE * self.matrix[0], FINE * self.matrix[1])

    @property
    def pixel_mm(self) -> tuple[float, float]:
        return (self.fov_mm[0] / self.image_shape[0], self.fov_mm[1] / self.image_shape[1])


def _check_matrix(matrix) -> tuple[int, int]:
    matrix = (int(matrix[0]), int(matrix[1]))
    if matrix[0] < 16 or matrix[1] < 8:
        raise ValueError(f"matrix {matrix} is too small (need at least 16 x 8)")
    if matrix[0] % (2 * READOUT_OVERSAMPLING) or matrix[1] % 2:
        raise ValueError(f"matrix {matrix}: readout must be divisible by {2 * READOUT_OVERSAMPLING}, phase even")
    return matrix


def slice_positions(params: KneeParams, n_slices: int) -> np.ndarray:
    """A-P positions (mm) of the slice centres; slice 0 is the most posterior."""
    offsets = (np.arange(n_slices) - (n_slices - 1) / 2.0) * SLICE_SPACING_MM
    return offsets + params.shift[1] * 0.5


def _plane(shape, fov_mm):
    z, x = coil_model.pixel_coordinates(shape, fov_mm)
    return np.meshgrid(z, x, indexing="ij")


def _slab_fractions(params: KneeParams, zz, xx, y_centre: float, width_mm: float) -> np.ndarray:
    """Fractions averaged over the slice thickness (SUB_SLICES samples)."""
    offsets = (np.arange(SUB_SLICES) - (SUB_SLICES - 1) / 2.0) * (SLICE_THICKNESS_MM / SUB_SLICES)
    n = len(offsets)
    ys = np.concatenate([np.full_like(xx, y_centre + o)[None] for o in offsets])
    frac = _fractions(params, np.broadcast_to(xx, ys.shape), ys, np.broadcast_to(zz, ys.shape), width_mm)
    return frac.mean(axis=1) if n > 1 else frac[:, 0]


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
    grid = _Grid(_check_matrix(matrix), tuple(fov_mm))
    params = patient_params(patient_index, seed)
    zz, xx = _plane(grid.image_shape, grid.fov_mm)
    window = _readout_window(zz, 0.5 * grid.fov_mm[0])
    out = np.zeros((n_slices, *grid.matrix), dtype=np.uint8)
    start = (grid.matrix[0] - grid.image_shape[0]) // 2
    width = float(np.mean(grid.pixel_mm))
    for index, y_pos in enumerate(slice_positions(params, n_slices)):
        frac = _slab_fractions(params, zz, xx, float(y_pos), width)
        labels = np.argmax(frac[1:], axis=0).astype(np.uint8) + 1
        labels[frac.sum(axis=0) * window < 0.5] = 0
        out[index, start : start + grid.image_shape[0]] = labels
    return out


# --------------------------------------------------------------------------- simulation


def _object_images(params: KneeParams, grid: _Grid, y_positions, whites) -> np.ndarray:
    """Complex object (sequences, slices, fine rows, fine cols) for the slices at ``y_positions``.

    ``whites``: one white-noise field (fine rows, fine cols) per slice for the textures.
    """
    zz, xx = _plane(grid.fine_shape, grid.fov_mm)
    spacing = (grid.fov_mm[0] / grid.fine_shape[0], grid.fov_mm[1] / grid.fine_shape[1])
    width = float(np.mean(spacing))
    window = _readout_window(zz, 0.5 * grid.fov_mm[0]).astype(np.float32)
    signals = np.array(
        [[tissue_signal(TISSUES[label], seq) for label in LABELS] for seq in SEQUENCES.values()], dtype=np.float32
    )
    filters = _texture_filters(grid.fine_shape, spacing)
    out = np.empty((len(SEQUENCES), len(y_positions), *grid.fine_shape), dtype=np.complex64)
    for index, y_pos in enumerate(y_positions):
        frac = _slab_fractions(params, zz, xx, float(y_pos), width)
        # Texture: trabecular network in marrow (dark struts where a band-pass field
        # crosses zero), fibre striation in muscle, fine septa in fat.
        trab, soft, septa = _textures(whites[index], filters)
        struts = np.exp(-((trab / 0.45) ** 2))
        septa = np.exp(-((septa / 0.25) ** 2))
        kx, _, kz = _to_knee_frame(params, xx, float(y_pos), zz)
        # Physeal scars: thin dark wavy lines across the distal femur and proximal tibia.
        wave = 1.5 * np.sin(kx / 9.0 + params.phase_coefficients[0])
        scar = np.exp(-0.5 * ((kz - 30.0 - wave) / 0.9) ** 2) + np.exp(-0.5 * ((kz + 22.0 + wave) / 0.9) ** 2)
        fat_mod = 1.0 - 0.07 * septa + 0.03 * soft
        frac[LABEL_INDEX["marrow"]] *= 1.0 - params.trabecular_contrast * struts - 0.25 * scar
        frac[LABEL_INDEX["muscle"]] *= 1.0 + 0.06 * soft
        frac[LABEL_INDEX["fat"]] *= fat_mod
        frac[LABEL_INDEX["subcutaneous_fat"]] *= fat_mod
        magnitudes = (signals @ frac.reshape(len(LABELS), -1)).reshape(len(SEQUENCES), *grid.fine_shape)
        phase = _background_phase(params, xx, float(y_pos), zz)
        phasor = (np.cos(phase) + 1j * np.sin(phase)).astype(np.complex64)
        out[:, index] = magnitudes * (window * phasor)
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


def _coil_maps_fine(params: KneeParams, grid: _Grid, n_coils: int, y_positions) -> np.ndarray:
    """RSS-normalised coil maps (slices, coils, fine rows, fine cols) complex64 over the object region.

    Evaluated with Biot-Savart on a ~2.5 mm grid spanning exactly the fine grid
    (same first and last sample positions) and interpolated with cubic splines:
    the maps are smooth on the scale of centimetres. Then renormalised to RSS 1.
    """
    z_f, x_f = coil_model.pixel_coordinates(grid.fine_shape, grid.fov_mm)
    n_z = max(8, int(round((z_f[0] - z_f[-1]) / 2.5)) + 1)
    n_x = max(8, int(round((x_f[-1] - x_f[0]) / 2.5)) + 1)
    z_c = np.linspace(z_f[0], z_f[-1], n_z)
    x_c = np.linspace(x_f[0], x_f[-1], n_x)
    zz, xx = np.meshgrid(z_c, x_c, indexing="ij")
    centres, normals = coil_model.loop_geometry(n_coils, center_mm=params.coil_offset, rotation_rad=params.coil_rotation)
    phases = np.exp(1j * coil_model.channel_phases(n_coils)).reshape(-1, 1, 1)
    coarse = np.empty((len(y_positions), n_coils, n_z, n_x), dtype=np.complex64)
    for index, y_pos in enumerate(y_positions):
        points = np.stack([xx, np.full_like(xx, float(y_pos)), zz], axis=-1)
        coarse[index] = coil_model.normalize_rss(coil_model.sensitivity_at(points, centres, normals) * phases)
    maps = _interpolate_separable(coarse, _spline_matrix(z_c, z_f), _spline_matrix(x_c, x_f))
    rss = np.sqrt(np.sum(maps.real**2 + maps.imag**2, axis=1, keepdims=True))
    return maps / np.maximum(rss, 1e-12)


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


def _calibrated_gain(clean_rms: np.ndarray, leakage: np.ndarray, target_snr: float, sigma: float) -> float:
    """Gain g for which the paper's measured SNR of the noisy data equals ``target_snr``.

    Measured as :func:`vnrecon.physics.noise.estimate_snr` does: the mean over
    slices of ``rms(f) = sqrt(g^2 r_s^2 + 2 sigma^2)`` divided by the mean over
    slices of the margin noise estimate ``sqrt(sigma^2 + g^2 l_s)`` (true noise
    plus the object's Gibbs leakage into the margins). The ratio grows with g,
    so bisection finds g.
    """
    if np.all(clean_rms <= 0):
        raise ValueError("the simulated slices hold no signal; cannot calibrate the SNR")

    def measured(gain: float) -> float:
        rms = np.mean(np.sqrt(gain * gain * clean_rms**2 + 2.0 * sigma * sigma))
        noise = np.mean(np.sqrt(sigma * sigma + gain * gain * leakage))
        return float(rms / noise)

    ceiling = float(np.mean(clean_rms) / max(np.mean(np.sqrt(leakage)), 1e-300))
    if target_snr >= 0.98 * ceiling:
        raise ValueError(
            f"SNR {target_snr:g} cannot be measured on this matrix: the object's ringing into the "
            f"readout margins alone limits the measured SNR to {ceiling:.3g}; use a larger matrix"
        )
    low, high = 0.0, 1.0
    while measured(high * target_snr * sigma / float(np.mean(clean_rms))) < target_snr:
        high *= 2.0
    high *= target_snr * sigma / float(np.mean(clean_rms))
    for _ in range(100):
        mid = 0.5 * (low + high)
        low, high = (mid, high) if measured(mid) < target_snr else (low, mid)
    return 0.5 * (low + high)


def simulate_patient(
    patient_index: int,
    seed: int,
    n_slices: int,
    matrix: tuple[int, int] = DEFAULT_MATRIX,
    n_coils: int = 15,
    *,
    fov_mm: tuple[float, float] = DEFAULT_FOV_MM,
    noise_sigma: float = NOISE_SIGMA,
    add_noise: bool = True,
) -> dict[str, np.ndarray]:
    """Fully sampled multi-coil k-space of one simulated patient, both protocols.

    Returns ``{'CORPD_FBK': k, 'CORPDFS_FBK': k}``, each (n_slices, n_coils,
    matrix[0], matrix[1]) complex64: matrix[0] is the 2x oversampled readout
    (superior-inferior), matrix[1] the phase encoding (left-right). Identical
    for identical (patient_index, seed, n_slices, matrix, n_coils, fov_mm);
    patient ``k`` of seed ``s`` never depends on how many patients are drawn.
    Both sequences carry complex Gaussian noise of std ``noise_sigma`` (real
    and imaginary part each); their signal gains make the measured SNR
    (``noise.estimate_snr``) 80 (PDw) and 20 (PDw-FS) over the central 20
    slices (see the module docstring). With
    ``add_noise=False`` the same k-space is returned without the noise (the
    gains are still calibrated for ``noise_sigma``).
    """
    if not noise_sigma > 0:
        raise ValueError(f"noise_sigma must be positive (it sets the signal level), got {noise_sigma}")
    if n_slices < 1:
        raise ValueError(f"n_slices must be >= 1, got {n_slices}")
    if n_coils < 1:
        raise ValueError(f"n_coils must be >= 1, got {n_coils}")
    grid = _Grid(_check_matrix(matrix), (float(fov_mm[0]), float(fov_mm[1])))
    params = patient_params(patient_index, seed)
    texture_rng = _rng(seed, patient_index, _STREAM_TEXTURE)
    positions = slice_positions(params, n_slices)
    names = list(SEQUENCES)
    whites = [texture_rng.standard_normal(grid.fine_shape, dtype=np.float32) for _ in range(n_slices)]

    def simulate_chunk(start: int) -> tuple[int, list[np.ndarray]]:
        chunk = positions[start : start + _CHUNK]
        images = _object_images(params, grid, chunk, whites[start : start + _CHUNK])
        maps = _coil_maps_fine(params, grid, n_coils, chunk)
        return start, [_to_kspace(images[s], maps, grid) for s in range(len(names))]

    # Chunks of slices run in threads (numpy and scipy.fft release the GIL); the
    # result does not depend on the thread count: all random draws happen above.
    clean = {name: np.empty((n_slices, n_coils, *grid.matrix), dtype=np.complex64) for name in names}
    threads = max(1, min(torch.get_num_threads(), math.ceil(n_slices / _CHUNK)))
    with ThreadPoolExecutor(max_workers=threads) as pool:
        for start, kspaces in pool.map(simulate_chunk, range(0, n_slices, _CHUNK)):
            for name, kspace in zip(names, kspaces):
                clean[name][start : start + len(kspace)] = kspace

    central = _central(n_slices)
    out: dict[str, np.ndarray] = {}
    for s, name in enumerate(names):
        kspace = clean.pop(name)
        flat = kspace[central].reshape(kspace[central].shape[0], -1)
        rms = np.sqrt(np.mean(flat.real.astype(np.float64) ** 2 + flat.imag.astype(np.float64) ** 2, axis=1))
        gain = _calibrated_gain(rms, _margin_leakage(kspace[central]), SEQUENCES[name].target_snr, noise_sigma)
        kspace *= np.float32(gain)
        if not add_noise:
            out[name] = kspace
            continue
        state = _seed_sequence(seed, patient_index, _STREAM_NOISE * 16 + s).generate_state(1, np.uint64)[0]
        generator = torch.Generator().manual_seed(int(state >> np.uint64(1)))
        for start in range(0, n_slices, 8):  # a few slices at a time: small noise temporaries
            block = torch.from_numpy(kspace[start : start + 8])
            kspace[start : start + 8] = add_complex_noise(block, noise_sigma, generator).numpy()
        out[name] = kspace
    return out


# --------------------------------------------------------------------------- dataset


def _rss_image(kspace: np.ndarray) -> np.ndarray:
    """Readout-cropped RSS images (slices, readout / 2, phase) float32 of (slices, coils, readout, phase).

    fastMRI's ``reconstruction_rss`` for this matrix (centred orthonormal inverse
    FFT per coil, root-sum-of-squares, centre crop of the readout), computed with
    scipy in one thread, slice by slice.
    """
    rows = kspace.shape[-2] // READOUT_OVERSAMPLING
    start = kspace.shape[-2] // 2 - rows // 2
    out = np.empty((kspace.shape[0], rows, kspace.shape[-1]), dtype=np.float32)
    for index, slice_kspace in enumerate(kspace):
        shifted = np.fft.ifftshift(slice_kspace, axes=(-2, -1))
        images = np.fft.fftshift(scipy.fft.ifft2(shifted, norm="ortho", workers=1), axes=(-2, -1))
        power = np.sum(images.real**2 + images.imag**2, axis=0)
        out[index] = np.sqrt(power[start : start + rows])
    return out


def save_montage(
    path: str | Path, panels: list[tuple[str, np.ndarray]], n_cols: int, pixel_aspect: float = 1.0
) -> Path:
    """Grid of titled grey-scale images as a PNG (see ``eval.figures.save_image_grid``)."""
    from ..eval.figures import save_image_grid

    titles, images = zip(*panels)
    return save_image_grid(list(images), list(titles), path, columns=n_cols, pixel_aspect=pixel_aspect)


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
) -> list[Path]:
    """Simulate ``n_patients`` knees and write one fastMRI-layout file per patient and protocol.

    Files are ``out_dir/knee_p{k:03d}_{acquisition}.h5`` with attrs
    ``acquisition`` (CORPD_FBK / CORPDFS_FBK) and ``patient_id`` ``sim{k:03d}``,
    TR / TE / field strength / FOV in the ISMRMRD header, and a
    ``reconstruction_rss`` on the readout-cropped matrix (H / 2, W). ``progress(done,
    total)`` is called after each patient. With ``montage`` a PNG
    ``out_dir/montage.png`` shows RSS images of three central slices (3 apart)
    of the first two patients, one row per patient: PDw slices, then PDw-FS
    slices side by side. Returns the written .h5 paths
    (patient-major, PDw first).
    """
    from .fastmri import Volume, write_volume

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    grid = _Grid(_check_matrix(matrix), (float(fov_mm[0]), float(fov_mm[1])))
    paths: list[Path] = []
    panels: list[tuple[str, np.ndarray]] = []
    show = sorted({n_slices // 2 - 3, n_slices // 2, n_slices // 2 + 3} & set(range(n_slices)))
    for patient in range(n_patients):
        data = simulate_patient(patient, seed, n_slices, grid.matrix, n_coils, fov_mm=grid.fov_mm)
        patient_id = f"sim{patient:03d}"
        for name, kspace in data.items():
            sequence = SEQUENCES[name]
            path = out_dir / f"knee_p{patient:03d}_{name}.h5"
            rss = _rss_image(kspace)
            if montage and patient < 2:
                panels.extend((f"{patient_id} {name} sl {index}", rss[index]) for index in show)
            write_volume(
                path,
                Volume(kspace=kspace, acquisition=name, patient_id=patient_id, reconstruction_rss=rss),
                field_strength_T=3.0,
                TR_ms=sequence.tr_ms,
                TE_ms=sequence.te_ms,
                fov_mm=(READOUT_OVERSAMPLING * grid.fov_mm[0], grid.fov_mm[1], SLICE_THICKNESS_MM),
                recon_shape=grid.image_shape,
            )
            paths.append(path)
        if progress is not None:
            progress(patient + 1, n_patients)
    if montage and panels:
        save_montage(
            out_dir / "montage.png", panels, n_cols=2 * len(show), pixel_aspect=grid.pixel_mm[0] / grid.pixel_mm[1]
        )
    return paths
