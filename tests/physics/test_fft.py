import numpy as np
import torch

from vnrecon.physics.fft import fft2c, ifft2c


def numpy_fft2c(x):
    axes = (-2, -1)
    return np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(x, axes=axes), norm="ortho"), axes=axes)


def random_complex(shape, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal(shape) + 1j * rng.standard_normal(shape)


def test_fft2c_matches_numpy_on_even_and_odd_sizes():
    for shape in [(3, 16, 12), (2, 15, 9)]:
        x = random_complex(shape)
        np.testing.assert_allclose(fft2c(torch.from_numpy(x)).numpy(), numpy_fft2c(x), atol=1e-12)


def test_ifft2c_inverts_fft2c_and_is_its_adjoint():
    x = torch.from_numpy(random_complex((4, 10, 14), 1))
    y = torch.from_numpy(random_complex((4, 10, 14), 2))
    torch.testing.assert_close(ifft2c(fft2c(x)), x, atol=1e-12, rtol=0)
    lhs = torch.vdot(fft2c(x).flatten(), y.flatten())
    rhs = torch.vdot(x.flatten(), ifft2c(y).flatten())
    assert abs(lhs - rhs) / abs(lhs) < 1e-12


def test_dc_sits_at_the_centre_and_norm_is_preserved():
    image = torch.ones(8, 6, dtype=torch.complex128)
    kspace = fft2c(image)
    assert torch.argmax(kspace.abs()).item() == 4 * 6 + 3
    assert torch.isclose(kspace.abs().square().sum(), image.abs().square().sum())
