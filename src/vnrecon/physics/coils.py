"""Receive-coil sensitivities of a loop-array knee coil, from the Biot-Savart law.

Model
-----
A knee coil is a cylinder around the leg with its axis along B0. Here the
receive array is made of flat circular loops lying tangent to a cylinder of
radius ``coil_radius_mm``; the loops sit on ``n_rings`` rings stacked along
the cylinder axis, each ring's loops evenly spread around the circumference
(neighbouring rings rotated by half a loop spacing). The loop normals point
radially, so each loop mainly "sees" the tissue beneath it.

Scanner frame (mm), the one used throughout ``vnrecon.data.knee``:

* ``z``: superior-inferior, along B0 and the coil axis; image **rows** run
  along -z (row 0 is the most superior row, as in fastMRI knee images);
* ``x``: left-right, image **columns** (increasing x with the column index);
* ``y``: anterior-posterior, the slice direction of a coronal stack.

Pixel ``(r, c)`` of a ``(rows, cols)`` grid covering ``fov_mm`` sits at
``z = (rows // 2 - r) * fov_mm[0] / rows`` and
``x = (c - cols // 2) * fov_mm[1] / cols``: the pixel at index N // 2 is the
FOV centre, matching the centred FFT of ``physics.fft``.

Field of one loop
-----------------
The magnetic field of a circular current loop (radius ``a``, current ``I``)
follows from the Biot-Savart law in closed form with the complete elliptic
integrals K and E (parameter ``m = k^2``). With ``rho`` the distance from the
loop axis and ``z`` the position along it::

    alpha^2 = a^2 + rho^2 + z^2 - 2 a rho,   beta^2 = a^2 + rho^2 + z^2 + 2 a rho
    m = 1 - alpha^2 / beta^2,                C = mu0 I / pi
    B_z   = C / (2 alpha^2 beta)       * ((a^2 - rho^2 - z^2) E(m) + alpha^2 K(m))
    B_rho = C z / (2 alpha^2 beta rho) * ((a^2 + rho^2 + z^2) E(m) - alpha^2 K(m))

On the axis (rho = 0, K = E = pi/2) this reduces to the textbook
``B_z = mu0 I a^2 / (2 (a^2 + z^2)^(3/2))``; the tests check both that limit
and a direct numerical Biot-Savart line integral off the axis.

Receive sensitivity
-------------------
By reciprocity a coil's receive sensitivity is proportional to the
counter-rotating transverse component of the field it would produce with unit
current, ``B1- ~ Bx - i By`` (x, y transverse to B0 = z). These physical
(unnormalised) maps are what the data are made with: the centre of the knee
sees every loop weakly, so its signal, and its SNR, are lower than near the
skin. ``loop_coil_maps(normalize=True)`` instead scales them to unit
root-sum-of-squares over coils at every pixel (``sum_c |S_c(r)|^2 = 1``), the
normalisation of *estimated* (ESPIRiT) maps. Each channel additionally gets a
fixed receive-chain phase offset (cable length), deterministic per channel
index.

Receiver noise
--------------
``array_noise_covariance`` is the stated noise model of the array (see its
docstring): unequal channel noise levels and a correlation between channels
that decays with the distance of their loops, as mutual inductance and shared
sample losses couple neighbouring loops (Roemer et al., MRM 1990).
"""

from __future__ import annotations

import math

import numpy as np
from scipy.special import ellipe, ellipk

MU0 = 4e-7 * math.pi  # vacuum permeability, T m / A (SI; lengths cancel in the maps)

#: Default geometry of the 15-channel knee coil model (mm).
DEFAULT_COIL_RADIUS_MM = 85.0
DEFAULT_LOOP_RADIUS_MM = 45.0
DEFAULT_RING_SPACING_MM = 70.0


def loop_field(
    points: np.ndarray,
    center: np.ndarray,
    normal: np.ndarray,
    radius: float,
    current: float = 1.0,
) -> np.ndarray:
    """Magnetic flux density of a circular current loop at ``points``.

    points: (..., 3) positions; center: (3,) loop centre; normal: (3,) loop axis
    (right-hand rule with the current); radius: loop radius, in the same length
    unit as the points. Returns (..., 3) B in tesla when lengths are in metres
    (for other units the result scales by 1/unit; only relative maps matter).
    Exact closed form (elliptic integrals) of the Biot-Savart integral; the
    field on the wire itself is regularised (finite, very large).
    """
    points = np.asarray(points, dtype=np.float64)
    center = np.asarray(center, dtype=np.float64)
    normal = np.asarray(normal, dtype=np.float64)
    normal = normal / np.linalg.norm(normal)
    rel = points - center
    z = rel @ normal
    radial = rel - z[..., None] * normal
    rho = np.linalg.norm(radial, axis=-1)
    a = float(radius)

    r2 = a * a + rho * rho + z * z
    alpha2 = np.maximum(r2 - 2.0 * a * rho, (1e-6 * a) ** 2)
    beta2 = r2 + 2.0 * a * rho
    beta = np.sqrt(beta2)
    m = np.clip(1.0 - alpha2 / beta2, 0.0, 1.0 - 1e-15)
    k_int = ellipk(m)
    e_int = ellipe(m)
    c = MU0 * current / math.pi

    b_axial = c / (2.0 * alpha2 * beta) * ((a * a - rho * rho - z * z) * e_int + alpha2 * k_int)
    on_axis = rho < 1e-9 * a
    safe_rho = np.where(on_axis, 1.0, rho)
    b_rho = c * z / (2.0 * alpha2 * beta * safe_rho) * (r2 * e_int - alpha2 * k_int)
    b_rho = np.where(on_axis, 0.0, b_rho)
    unit_radial = radial / safe_rho[..., None]
    unit_radial = np.where(on_axis[..., None], 0.0, unit_radial)
    return b_axial[..., None] * normal + b_rho[..., None] * unit_radial


def ring_layout(n_coils: int, n_rings: int | None = None) -> list[int]:
    """Number of loops per ring; by default 3 rings for 9+ coils divisible by 3 (15 -> 5, 5, 5)."""
    if n_coils < 1:
        raise ValueError(f"n_coils must be >= 1, got {n_coils}")
    if n_rings is None:
        if n_coils >= 9 and n_coils % 3 == 0:
            n_rings = 3
        elif n_coils >= 4 and n_coils % 2 == 0:
            n_rings = 2
        elif n_coils >= 9:
            n_rings = 3
        else:
            n_rings = 1
    n_rings = max(1, min(int(n_rings), n_coils))
    return [n_coils // n_rings + (1 if ring < n_coils % n_rings else 0) for ring in range(n_rings)]


def loop_geometry(
    n_coils: int,
    *,
    coil_radius_mm: float = DEFAULT_COIL_RADIUS_MM,
    ring_spacing_mm: float = DEFAULT_RING_SPACING_MM,
    n_rings: int | None = None,
    center_mm: tuple[float, float, float] = (0.0, 0.0, 0.0),
    rotation_rad: float = 0.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Centres (n_coils, 3) and unit normals (n_coils, 3) of the loops, as (x, y, z) in mm.

    Rings are centred on ``center_mm`` along z; loop ``j`` of ring ``i`` sits at
    azimuth ``rotation + 2 pi (j + i / 2) / n_i`` (measured from +x towards +y).
    """
    per_ring = ring_layout(n_coils, n_rings)
    centres, normals = [], []
    n = len(per_ring)
    for ring, count in enumerate(per_ring):
        z = (ring - (n - 1) / 2.0) * ring_spacing_mm
        for j in range(count):
            phi = rotation_rad + 2.0 * math.pi * (j + 0.5 * ring) / count
            direction = np.array([math.cos(phi), math.sin(phi), 0.0])
            centres.append(np.asarray(center_mm, dtype=np.float64) + coil_radius_mm * direction + [0.0, 0.0, z])
            normals.append(direction)
    return np.asarray(centres), np.asarray(normals)


def channel_phases(n_coils: int) -> np.ndarray:
    """Fixed receive-chain phase offset per channel (radians), deterministic per index."""
    golden = (math.sqrt(5.0) - 1.0) / 2.0
    return 2.0 * math.pi * ((np.arange(n_coils) * golden) % 1.0) - math.pi


#: Correlation of the noise of two loops falls as exp(-distance / length).
NOISE_CORRELATION_LENGTH_MM = 70.0
#: Log-normal spread of the per-channel noise amplitude (preamplifier noise figures, cable losses).
CHANNEL_NOISE_SPREAD = 0.15


def array_noise_covariance(
    centres: np.ndarray,
    correlation_length_mm: float = NOISE_CORRELATION_LENGTH_MM,
    channel_spread: float = CHANNEL_NOISE_SPREAD,
) -> np.ndarray:
    """Relative receiver noise covariance ``R`` (coils, coils) complex128 of loops at ``centres`` (mm).

    Model: ``R_ij = a_i a_j exp(-|c_i - c_j| / l) exp(i (p_i - p_j))``, where
    ``l`` is ``correlation_length_mm``, ``p`` are the receive-chain phases of
    :func:`channel_phases` (the chain rotates a channel's noise as it rotates
    its signal), and the amplitudes ``a_i = exp(channel_spread * q_i)``, with
    ``q_i`` a fixed zero-mean pattern per channel index (the same coil in every
    scan), are scaled so that ``mean(diag R) = 1``. The distance kernel
    ``exp(-d / l)`` is positive definite for points in 3-D, so ``R`` is too.
    With the default 15-loop knee array, nearest neighbours correlate by about
    0.3 and opposite loops by under 0.1 (typical arrays: 0.1-0.4 between
    neighbours). The complex noise covariance of the data is
    ``Psi = 2 sigma_k^2 R`` (``physics.whitening`` convention).
    """
    centres = np.asarray(centres, dtype=np.float64)
    n = len(centres)
    distance = np.linalg.norm(centres[:, None, :] - centres[None, :, :], axis=-1)
    pattern = np.sin(2.4 * np.arange(n) + 1.0)  # fixed per channel index, spread over [-1, 1]
    amplitude = np.exp(channel_spread * (pattern - pattern.mean()))
    phases = np.exp(1j * channel_phases(n))
    covariance = np.outer(amplitude * phases, np.conj(amplitude * phases)) * np.exp(-distance / correlation_length_mm)
    return covariance / np.mean(np.diag(covariance).real)


def pixel_coordinates(shape: tuple[int, int], fov_mm: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    """(z, x) positions in mm of the rows and columns of a grid (see module docstring)."""
    rows, cols = int(shape[0]), int(shape[1])
    z = (rows // 2 - np.arange(rows)) * (fov_mm[0] / rows)
    x = (np.arange(cols) - cols // 2) * (fov_mm[1] / cols)
    return z, x


def normalize_rss(maps: np.ndarray, eps: float = 1e-30) -> np.ndarray:
    """Scale (coils, ...) maps so that the root-sum-of-squares over coils is 1 at every pixel."""
    rss = np.sqrt(np.sum(np.abs(maps) ** 2, axis=0, keepdims=True))
    return maps / np.maximum(rss, eps)


def sensitivity_at(
    points: np.ndarray,
    centres: np.ndarray,
    normals: np.ndarray,
    loop_radius_mm: float = DEFAULT_LOOP_RADIUS_MM,
) -> np.ndarray:
    """Unnormalised complex receive sensitivities Bx - i By, (coils, ...) for points (..., 3) in mm."""
    out = np.empty((len(centres),) + points.shape[:-1], dtype=np.complex128)
    for index, (centre, normal) in enumerate(zip(centres, normals)):
        field = loop_field(points, centre, normal, loop_radius_mm)
        out[index] = field[..., 0] - 1j * field[..., 1]
    return out


def loop_coil_maps(
    n_coils: int,
    shape: tuple[int, int],
    fov_mm: tuple[float, float],
    slice_position_mm: float = 0.0,
    *,
    coil_radius_mm: float = DEFAULT_COIL_RADIUS_MM,
    loop_radius_mm: float = DEFAULT_LOOP_RADIUS_MM,
    ring_spacing_mm: float = DEFAULT_RING_SPACING_MM,
    n_rings: int | None = None,
    center_mm: tuple[float, float, float] = (0.0, 0.0, 0.0),
    rotation_rad: float = 0.0,
    channel_phase: bool = True,
    normalize: bool = True,
    dtype=np.complex64,
) -> np.ndarray:
    """Coil sensitivity maps of the loop-array knee coil in one coronal slice.

    n_coils: receive channels (15 for the knee coil); shape: (rows, cols) of the
    grid, rows = readout = superior-inferior, cols = phase = left-right; fov_mm:
    (readout, phase) extent of that grid in mm (give the full, oversampled
    readout FOV for maps "at full FOV"); slice_position_mm: y (anterior-
    posterior) of the slice plane. ``center_mm`` (x, y, z) and ``rotation_rad``
    move and turn the coil relative to the FOV centre.

    Returns (coils, rows, cols) complex maps ``Bx - i By`` per unit current
    (times a fixed per-channel phase when ``channel_phase``), normalised to
    root-sum-of-squares 1 over coils at every pixel when ``normalize``.
    """
    z, x = pixel_coordinates(shape, fov_mm)
    zz, xx = np.meshgrid(z, x, indexing="ij")
    points = np.stack([xx, np.full_like(xx, float(slice_position_mm)), zz], axis=-1)
    centres, normals = loop_geometry(
        n_coils,
        coil_radius_mm=coil_radius_mm,
        ring_spacing_mm=ring_spacing_mm,
        n_rings=n_rings,
        center_mm=center_mm,
        rotation_rad=rotation_rad,
    )
    maps = sensitivity_at(points, centres, normals, loop_radius_mm)
    if channel_phase:
        maps *= np.exp(1j * channel_phases(n_coils)).reshape(-1, 1, 1)
    if normalize:
        maps = normalize_rss(maps)
    return maps.astype(dtype)
