"""Noise covariance and prewhitening against numpy / closed forms; files that carry a covariance."""

import h5py
import numpy as np
import pytest
import torch

from tests.conftest import multicoil_slice, oversampled_by_two
from vnrecon.data.dataset import SliceDataset
from vnrecon.data.fastmri import Volume, read_header, read_volume, write_volume
from vnrecon.data.selection import Selection
from vnrecon.errors import InputError
from vnrecon.physics.whitening import correlated_noise, noise_covariance, prewhiten, whitening_matrix


def model_covariance(coils=6, rho=0.3, seed=0):
    """Unequal channel levels and neighbour correlation rho**|i-j| with random phases (Hermitian PD)."""
    rng = np.random.default_rng(seed)
    levels = rng.uniform(0.6, 1.6, coils)
    index = np.arange(coils)
    phase = np.exp(1j * rng.uniform(-np.pi, np.pi, coils))
    correlation = rho ** np.abs(index[:, None] - index[None, :]) * phase[:, None] * phase[None, :].conj()
    return levels[:, None] * correlation * levels[None, :]


def test_simulated_noise_has_the_model_covariance_and_whitening_makes_it_white():
    psi = model_covariance()
    noise = correlated_noise((6, 200, 100), torch.from_numpy(psi), torch.Generator().manual_seed(1))
    samples = noise.numpy().reshape(6, -1)
    sample = samples @ samples.conj().T / samples.shape[1]  # numpy, independent of noise_covariance
    assert np.linalg.norm(sample - psi) / np.linalg.norm(psi) < 3 / np.sqrt(samples.shape[1]) * 6
    np.testing.assert_allclose(noise_covariance(noise).numpy(), sample, rtol=1e-10, atol=1e-12)
    whitening = whitening_matrix(torch.from_numpy(psi))
    c2 = np.mean(np.diag(psi).real)
    # closed form: W Psi W^H = c^2 I
    np.testing.assert_allclose(whitening.numpy() @ psi @ whitening.numpy().conj().T, c2 * np.eye(6), atol=1e-12)
    white = prewhiten(noise, whitening, coil_dim=0)
    measured = noise_covariance(white).numpy()
    assert np.abs(measured - c2 * np.eye(6)).max() < 0.03 * c2
    # white noise is left as it is up to its level
    np.testing.assert_allclose(whitening_matrix(torch.eye(4, dtype=torch.complex128) * 3).numpy(), np.eye(4), atol=1e-12)


@pytest.mark.parametrize(
    "covariance, message",
    [
        (np.ones((3, 2)), "square"),
        (np.array([[1, 0.5j], [0.5j, 1]]), "not Hermitian"),
        (np.array([[1, 2], [2, 1]]), "not positive definite"),
        (np.full((2, 2), np.nan), "NaN"),
    ],
)
def test_bad_covariances_are_input_errors(covariance, message):
    with pytest.raises(InputError, match=message):
        whitening_matrix(torch.from_numpy(np.asarray(covariance, dtype=np.complex128)))


def test_files_carry_the_covariance_and_loaders_prewhiten_kspace_and_maps(tmp_path):
    kspace, maps, obj = multicoil_slice(6, 32, 24, seed=3)
    psi = model_covariance(6)
    noise = correlated_noise(kspace.shape, torch.from_numpy(psi * 1e-6), torch.Generator().manual_seed(2)).numpy()
    volume = Volume((kspace + noise)[None].astype(np.complex64), "CORPD_FBK", "p0", maps=maps[None].astype(np.complex64),
                    noise_covariance=psi * 1e-6)
    path = write_volume(tmp_path / "p0.h5", volume, recon_shape=oversampled_by_two(volume))
    assert read_header(path).has_noise_covariance
    read = read_volume(path)
    np.testing.assert_allclose(read.noise_covariance, psi * 1e-6)
    whitened = read.prewhitened()
    w = np.sqrt(np.mean(np.diag(psi * 1e-6).real)) * np.linalg.inv(np.linalg.cholesky(psi * 1e-6))
    np.testing.assert_allclose(whitened.kspace[0], np.einsum("ij,jxy->ixy", w, read.kspace[0]), rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(whitened.maps[0], np.einsum("ij,jxy->ixy", w, read.maps[0]), rtol=1e-4, atol=1e-6)
    assert whitened.noise_covariance is None and whitened.prewhitened() is whitened
    # The dataset sees the whitened data; SENSE with the whitened maps still gives the object.
    item = SliceDataset([Selection(data=str(tmp_path), acs_lines=12)], cache_dir=tmp_path / "cache")[0]
    np.testing.assert_allclose(item["maps"].numpy(), whitened.maps[0], rtol=1e-6)
    reference = (item["reference"] * item["scale"]).numpy()
    gain = np.sum(np.abs(np.einsum("ij,jxy->ixy", w, maps)) ** 2, axis=0)[16:48]  # sum |W S|^2 on the image rows
    np.testing.assert_allclose(reference, gain * obj, rtol=0, atol=0.05 * np.abs(obj).max() * gain.max())


def test_a_damaged_covariance_in_a_file_is_one_line_naming_it(tmp_path):
    path = write_volume(tmp_path / "f.h5", Volume(np.ones((1, 2, 8, 8), np.complex64)))
    with h5py.File(path, "a") as h5:
        h5.create_dataset("noise_covariance", data=np.array([[1, 2], [2, 1]], np.complex64))
    with pytest.raises(InputError, match="not positive definite") as error:
        read_volume(path)
    assert str(path) in str(error.value)
    with h5py.File(path, "a") as h5:
        del h5["noise_covariance"]
        h5.create_dataset("noise_covariance", data=np.eye(3, dtype=np.complex64))
    with pytest.raises(InputError, match=r"must be \(2, 2\)"):
        read_header(path)
