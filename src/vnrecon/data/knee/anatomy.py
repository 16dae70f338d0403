"""Anatomy of the numerical knee: seeded 3-D shapes, partial-volume tissue fractions, microstructure.

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

Structure below the millimetre (:func:`add_microstructure`: trabecular struts,
fat septa in muscle and fat, small vessels, muscle fibre striation) is drawn
from band-pass noise on the fine grid of the simulation, and every patient's
shapes are bent by a smooth seeded deformation (``_warp``) and a medial /
lateral asymmetry of the soft tissue, so no outline is symmetric.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import scipy.fft
from scipy.interpolate import PchipInterpolator

from ...physics import coils as coil_model

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
    "deep_cartilage",
    "meniscus",
    "ligament",
    "fluid",
    "vessel",
)
LABEL_INDEX = {name: index for index, name in enumerate(LABELS)}


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
    trabecular_volume: float  # bone volume fraction BV/TV of the epiphyseal trabecular network
    coil_offset: tuple[float, float, float]
    coil_rotation: float
    phase_coefficients: tuple[float, ...]
    warp: tuple[float, ...]  # amplitudes (mm) and phases of the smooth shape deformation
    asymmetry: float  # medial / lateral difference of the soft-tissue envelope


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
        trabecular_volume=float(u(0.15, 0.25)),
        coil_offset=(float(u(-4, 4)), float(u(-4, 4)), float(u(-12, 12))),
        coil_rotation=float(u(-0.3, 0.3)),
        phase_coefficients=tuple(float(v) for v in rng.normal(0.0, 1.0, size=10)),
        warp=tuple(float(v) for v in np.concatenate([u(1.0, 3.0, size=4), u(0.0, 2.0 * math.pi, size=4)])),
        asymmetry=float(u(-0.08, 0.08)),
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


def _warp(params: KneeParams, x, y, z):
    """A smooth, patient-specific deformation (a few mm over 3-6 cm) of the knee frame: no two knees,
    and no knee's two sides, have the same shapes."""
    a, phi = params.warp[:4], params.warp[4:]
    x2 = x + a[0] * np.sin(z / 38.0 + phi[0]) + 0.5 * a[1] * np.sin(y / 29.0 + phi[1])
    z2 = z + a[2] * np.sin(x / 43.0 + phi[2])
    y2 = y + a[3] * np.sin(z / 51.0 + phi[3]) * np.cos(x / 60.0)
    return x2.astype(np.float32), y2.astype(np.float32), z2.astype(np.float32)


def _fractions(params: KneeParams, x, y, z, width_mm: float) -> np.ndarray:
    """Partial-volume fractions (len(LABELS), ...) at scanner points; they sum to <= 1.

    ``width_mm`` is the (fine) pixel size: the occupancy ramp width. The anatomy
    is written in a knee frame (mm): origin at the centre of the joint line,
    x lateral, y anterior, z superior; the patient's scale, side, rotation and
    position map it into the scanner frame.
    """
    p = params
    x, y, z = _warp(p, *(np.asarray(v, dtype=np.float32) for v in _to_knee_frame(p, x, y, z)))
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
    fem_deep = occ(femur - 0.4 * fc) * (fc > 0.05)
    tc = tc0 * _smoothstep(tibia_top - 6.0, tibia_top - 1.5, z) * _smoothstep(6.0, 10.0, np.abs(x))
    tc = tc * (1.0 - _smoothstep(29.0 * pw, 36.0 * pw, np.abs(x)))
    tib_cart = occ(tibia - tc) * (tc > 0.05)
    tib_deep = occ(tibia - 0.4 * tc) * (tc > 0.05)
    pc = 3.2 * (1.0 - _smoothstep(31.0, 35.0, y))
    pat_cart = occ(patella - pc) * (pc > 0.05)
    pat_deep = occ(patella - 0.4 * pc) * (pc > 0.05)
    cartilage_occ = np.maximum(np.maximum(fem_cart, tib_cart), pat_cart)
    deep_cartilage_occ = np.maximum(np.maximum(fem_deep, tib_deep), pat_deep)

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
    half_x = half_x * (1.0 + p.asymmetry * np.tanh(x / 20.0))  # medial and lateral sides differ
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
    paint("deep_cartilage", deep_cartilage_occ)
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


#: Band-pass fields of the microstructure: (name, wavelength mm, relative bandwidth, z stretch).
#: A z stretch > 1 elongates the pattern along the leg (z): trabeculae follow the load axis,
#: muscle fibres and their fat septa run along the muscle.
MICROSTRUCTURE_FIELDS = (
    ("trabecular_fine", 1.2, 0.3, 1.7),  # struts ~0.6 mm apart (zero crossings every half wavelength)
    ("trabecular_coarse", 1.7, 0.3, 1.2),
    ("fibre", 1.5, 0.4, 6.0),  # fascicles across the muscle, long along it
    ("muscle_septa", 8.0, 0.4, 4.0),  # perimysial fat septa between fascicle bundles
    ("fat_septa", 7.0, 0.4, 1.0),  # fibrous septa of the subcutaneous and deep fat
    ("vessels", 2.5, 0.4, 1.5),  # small vessels (genicular branches) in fat
)


def microstructure_fields(white: np.ndarray, spacing_mm) -> dict[str, np.ndarray | None]:
    """Zero-mean unit-std band-pass fields of one white-noise field (rows, cols) on a grid of ``spacing_mm``.

    A field whose wavelength the grid cannot carry (under 2.5 pixels) is None:
    its structure is below the pixel and only its mean volume fraction shows.
    """
    kz = np.fft.fftfreq(white.shape[0], d=spacing_mm[0])[:, None]
    kx = np.fft.rfftfreq(white.shape[1], d=spacing_mm[1])[None, :]
    spectrum = scipy.fft.rfft2(white, workers=1)
    fields: dict[str, np.ndarray | None] = {}
    for name, wavelength, bandwidth, stretch_z in MICROSTRUCTURE_FIELDS:
        if wavelength < 2.5 * max(spacing_mm):
            fields[name] = None
            continue
        k0 = 1.0 / wavelength
        radius = np.sqrt((kz * stretch_z) ** 2 + kx * kx)
        ring = np.exp(-0.5 * ((radius - k0) / (bandwidth * k0)) ** 2).astype(np.float32)
        field = scipy.fft.irfft2(spectrum * ring, s=white.shape, workers=1)
        fields[name] = field / max(float(field.std()), 1e-12)
    return fields


def _lines(field: np.ndarray | None, width: float, mean: float) -> np.ndarray | float:
    """Thin lines where a band-pass field crosses zero, scaled to the area fraction ``mean``; ``mean`` if None."""
    if field is None:
        return mean
    lines = np.exp(-((field / width) ** 2))
    return np.minimum(lines * (mean / max(float(lines.mean()), 1e-12)), 1.0)


def _move(frac: np.ndarray, source: str, target: str, share) -> None:
    """Give ``share`` (0..1, per pixel) of the ``source`` tissue's fraction to ``target``."""
    moved = frac[LABEL_INDEX[source]] * share
    frac[LABEL_INDEX[source]] -= moved
    frac[LABEL_INDEX[target]] += moved


def add_microstructure(params: KneeParams, frac: np.ndarray, fields: dict[str, np.ndarray | None]) -> np.ndarray:
    """Sub-millimetre anatomy, as exchange of volume fraction between tissues (in place; returns ``frac``).

    * Trabecular bone: two strut networks (~0.6 and ~0.85 mm apart, oriented
      along the leg) take the patient's bone volume fraction BV/TV (0.15-0.25,
      the range of distal femur / proximal tibia epiphyses) from the marrow:
      signal-free struts in bright (PDw) or grey (PDw-FS) marrow.
    * Muscle: perimysial fat septa (~5 % of the muscle volume, bright in PDw,
      dark with fat saturation) along the fibres, and fascicle striation
      (+-5 % signal).
    * Fat: fibrous septa (collagen, short T2: dark in both contrasts, ~6 % of
      the fat) and small vessels with slow flow (~1 %, fluid-like).
    Structure finer than the grid keeps only its mean fraction (see
    :func:`microstructure_fields`), so every matrix sees the same tissue mix.
    """
    volume = params.trabecular_volume
    struts = 0.5 * (_lines(fields["trabecular_fine"], 0.35, volume) + _lines(fields["trabecular_coarse"], 0.35, volume))
    _move(frac, "marrow", "cortical_bone", struts)
    _move(frac, "muscle", "fat", _lines(fields["muscle_septa"], 0.12, 0.05))
    fibre = fields["fibre"]
    if fibre is not None:
        frac[LABEL_INDEX["muscle"]] *= 1.0 + 0.05 * np.clip(fibre, -2.0, 2.0)
    for fat in ("fat", "subcutaneous_fat"):
        _move(frac, fat, "ligament", _lines(fields["fat_septa"], 0.12, 0.06))
        vessels = fields["vessels"]
        # Vessels where the field exceeds 2.3 sd; their mean share E[(f - 2.3)+] = 0.0037 below the pixel.
        share = 0.0037 if vessels is None else np.clip(vessels - 2.3, 0.0, 1.0)
        _move(frac, fat, "fluid", share)
    return frac


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


def check_matrix(matrix) -> tuple[int, int]:
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
