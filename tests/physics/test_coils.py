"""Biot-Savart loop coils: closed-form limits, an independent line integral, map normalisation."""

import math

import numpy as np
import pytest

from vnrecon.physics import coils
from vnrecon.physics.coils import MU0, loop_coil_maps, loop_field, ring_layout, sensitivity_at


def biot_savart_sum(points, center, normal, radius, current=1.0, n_segments=2000):
    """Direct numerical Biot-Savart line integral over a polygonal loop (midpoint rule)."""
    normal = np.asarray(normal, float) / np.linalg.norm(normal)
    helper = np.array([1.0, 0.0, 0.0]) if abs(normal[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
    u = np.cross(normal, helper)
    u /= np.linalg.norm(u)
    v = np.cross(normal, u)  # (u, v, normal) right-handed: current runs u -> v
    angles = (np.arange(n_segments) + 0.5) * 2 * np.pi / n_segments
    wire = center + radius * (np.cos(angles)[:, None] * u + np.sin(angles)[:, None] * v)
    dl = radius * 2 * np.pi / n_segments * (-np.sin(angles)[:, None] * u + np.cos(angles)[:, None] * v)
    r = points[:, None, :] - wire[None]
    dist = np.linalg.norm(r, axis=-1, keepdims=True)
    return MU0 * current / (4 * np.pi) * np.sum(np.cross(dl[None], r) / dist**3, axis=1)


@pytest.mark.parametrize("radius, current", [(0.05, 1.0), (0.02, 3.5)])
def test_on_axis_field_matches_closed_form(radius, current):
    z = np.linspace(-0.2, 0.2, 41)
    centre = np.array([0.01, -0.02, 0.03])
    normal = np.array([0.0, 0.0, 1.0])
    points = centre + z[:, None] * normal
    field = loop_field(points, centre, normal, radius, current)
    expected = MU0 * current * radius**2 / (2 * (radius**2 + z**2) ** 1.5)
    np.testing.assert_allclose(field[:, 2], expected, rtol=1e-12)
    np.testing.assert_allclose(field[:, :2], 0.0, atol=1e-12 * expected.max())


def test_centre_field_and_tilted_axis():
    # B at the centre of a loop: mu0 I / (2 R), along the (tilted) normal.
    normal = np.array([1.0, 2.0, -0.5])
    unit = normal / np.linalg.norm(normal)
    field = loop_field(np.zeros((1, 3)), np.zeros(3), normal, 0.1, 2.0)[0]
    np.testing.assert_allclose(field, MU0 * 2.0 / (2 * 0.1) * unit, rtol=1e-12)


def test_off_axis_field_matches_line_integral():
    rng = np.random.default_rng(3)
    centre = np.array([0.02, -0.01, 0.04])
    normal = np.array([0.3, -0.6, 0.74])
    radius = 0.045
    points = centre + rng.normal(scale=0.06, size=(50, 3))
    closed = loop_field(points, centre, normal, radius)
    numeric = biot_savart_sum(points, centre, normal, radius)
    np.testing.assert_allclose(closed, numeric, rtol=1e-6, atol=1e-9 * np.abs(numeric).max())


def test_far_field_is_a_dipole():
    radius, current = 0.01, 1.0
    moment = current * np.pi * radius**2
    r = 2.0
    on_axis = loop_field(np.array([[0.0, 0.0, r]]), np.zeros(3), [0, 0, 1], radius, current)[0, 2]
    equator = loop_field(np.array([[r, 0.0, 0.0]]), np.zeros(3), [0, 0, 1], radius, current)[0, 2]
    np.testing.assert_allclose(on_axis, MU0 * 2 * moment / (4 * np.pi * r**3), rtol=1e-4)
    np.testing.assert_allclose(equator, -MU0 * moment / (4 * np.pi * r**3), rtol=1e-4)


def test_field_is_finite_on_the_wire():
    field = loop_field(np.array([[0.05, 0.0, 0.0]]), np.zeros(3), [0, 0, 1], 0.05)
    assert np.isfinite(field).all()


def test_sensitivity_is_bx_minus_i_by():
    # A loop whose normal is x gives a real (Bx) sensitivity on its axis; normal y gives -i By.
    points = np.array([[0.0, 0.0, 0.0]])
    s_x = sensitivity_at(points, np.array([[-30.0, 0.0, 0.0]]), np.array([[1.0, 0.0, 0.0]]), 20.0)
    s_y = sensitivity_at(points, np.array([[0.0, -30.0, 0.0]]), np.array([[0.0, 1.0, 0.0]]), 20.0)
    assert s_x[0, 0].real > 0 and abs(s_x[0, 0].imag) < 1e-12 * abs(s_x[0, 0])
    assert s_y[0, 0].imag < 0 and abs(s_y[0, 0].real) < 1e-12 * abs(s_y[0, 0])
    np.testing.assert_allclose(abs(s_x[0, 0]), abs(s_y[0, 0]), rtol=1e-12)


def test_ring_layout():
    assert ring_layout(15) == [5, 5, 5]
    assert ring_layout(8) == [4, 4]
    assert sum(ring_layout(7)) == 7
    assert ring_layout(1) == [1]
    with pytest.raises(ValueError):
        ring_layout(0)


def test_loop_geometry_on_the_cylinder():
    centres, normals = coils.loop_geometry(15, coil_radius_mm=85.0, ring_spacing_mm=70.0)
    assert centres.shape == normals.shape == (15, 3)
    np.testing.assert_allclose(np.hypot(centres[:, 0], centres[:, 1]), 85.0)
    np.testing.assert_allclose(np.linalg.norm(normals, axis=1), 1.0)
    assert sorted(set(np.round(centres[:, 2], 6))) == [-70.0, 0.0, 70.0]


def test_maps_shape_dtype_and_unit_rss():
    maps = loop_coil_maps(15, (64, 40), (320.0, 160.0), slice_position_mm=12.0)
    assert maps.shape == (15, 64, 40) and maps.dtype == np.complex64
    assert np.isfinite(maps).all()
    rss = np.sqrt(np.sum(np.abs(maps) ** 2, axis=0))
    np.testing.assert_allclose(rss, 1.0, atol=1e-5)


def test_maps_are_spatially_varying_and_differ_between_coils_and_slices():
    maps = loop_coil_maps(15, (48, 32), (320.0, 160.0), 0.0)
    other = loop_coil_maps(15, (48, 32), (320.0, 160.0), 20.0)
    magnitude = np.abs(maps)
    # Each coil sees mostly the tissue near it: strong contrast across the FOV.
    assert np.all(magnitude.max(axis=(1, 2)) > 3 * np.median(magnitude, axis=(1, 2)))
    gram = np.abs(np.einsum("cij,dij->cd", maps.conj().astype(complex), maps))
    correlation = gram / np.sqrt(np.outer(gram.diagonal(), gram.diagonal()))
    assert correlation[~np.eye(15, dtype=bool)].max() < 0.9  # no two channels alike
    assert np.abs(maps - other).max() > 0.05


def test_unnormalised_maps_follow_the_field():
    raw = loop_coil_maps(15, (32, 32), (320.0, 160.0), 0.0, normalize=False, channel_phase=False, dtype=np.complex128)
    centres, normals = coils.loop_geometry(15)
    z, x = coils.pixel_coordinates((32, 32), (320.0, 160.0))
    point = np.array([[x[5], 0.0, z[7]]])
    direct = sensitivity_at(point, centres, normals)[:, 0]
    np.testing.assert_allclose(raw[:, 7, 5], direct, rtol=1e-10)


def test_pixel_coordinates_centre_convention():
    z, x = coils.pixel_coordinates((8, 6), (80.0, 60.0))
    assert z[4] == 0.0 and x[3] == 0.0  # index N // 2 is the FOV centre
    assert z[0] > 0  # row 0 is superior
    assert math.isclose(x[4] - x[3], 10.0)


def test_array_noise_covariance_model():
    centres, _ = coils.loop_geometry(15)
    model = coils.array_noise_covariance(centres)
    assert np.allclose(model, model.conj().T)
    assert np.linalg.eigvalsh(model).min() > 0  # positive definite
    assert np.mean(np.diag(model).real) == pytest.approx(1.0)
    levels = np.sqrt(np.diag(model).real)
    assert levels.max() / levels.min() > 1.1  # unequal channels
    correlation = np.abs(model) / np.outer(levels, levels)
    distance = np.linalg.norm(centres[:, None] - centres[None], axis=-1)
    np.fill_diagonal(distance, np.inf)
    nearest = correlation[np.arange(15), np.argmin(distance, axis=1)]
    np.testing.assert_allclose(nearest, np.exp(-distance.min(axis=1) / coils.NOISE_CORRELATION_LENGTH_MM), rtol=1e-12)
    assert 0.1 < nearest.min() and nearest.max() < 0.4
