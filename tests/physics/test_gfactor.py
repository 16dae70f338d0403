"""g-factor against the noise of a dense SENSE least-squares solve (independent linear algebra)."""

import numpy as np
import pytest
import torch

from vnrecon.errors import InputError
from vnrecon.physics import coils
from vnrecon.physics.fft import fft2c
from vnrecon.physics.gfactor import g_factor
from vnrecon.physics.masks import regular_mask


def _dense_g(maps: np.ndarray, acceleration: int) -> np.ndarray:
    """sqrt(diag((E^H E)^-1) * sum_c |S_c|^2 / R) with E = M F S built column by column (float64)."""
    n_coils, rows, cols = maps.shape
    mask = regular_mask(cols, acceleration, acs_lines=1)  # the centre line is on the lattice anyway
    columns = []
    for index in range(rows * cols):
        image = np.zeros(rows * cols, dtype=np.complex128)
        image[index] = 1.0
        coil_kspace = fft2c(torch.from_numpy(maps * image.reshape(rows, cols))).numpy()
        columns.append(coil_kspace[..., mask].ravel())
    encoding = np.stack(columns, axis=1)
    noise = np.linalg.inv(encoding.conj().T @ encoding).diagonal().real
    full = np.sum(np.abs(maps) ** 2, axis=0).ravel()
    return np.sqrt(noise * full / acceleration).reshape(rows, cols)


@pytest.mark.parametrize("acceleration", [2, 4])
def test_g_factor_matches_dense_sense_noise(acceleration):
    maps = coils.loop_coil_maps(8, (12, 16), (120.0, 160.0), normalize=False, dtype=np.complex128)
    expected = _dense_g(maps, acceleration)
    got = g_factor(torch.from_numpy(maps), acceleration).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-8)
    assert got.min() >= 1.0 - 1e-12


def test_g_factor_is_one_without_undersampling_and_nan_without_signal():
    maps = torch.from_numpy(coils.loop_coil_maps(4, (8, 8), (100.0, 100.0)))
    assert torch.allclose(g_factor(maps, 1), torch.ones(8, 8, dtype=torch.float64))
    maps[:, 0, 0] = 0
    assert torch.isnan(g_factor(maps, 2)[0, 0])


def test_g_factor_rejects_bad_acceleration():
    with pytest.raises(InputError, match="divide"):
        g_factor(torch.ones(2, 4, 6, dtype=torch.complex64), 4)
