"""Centred, orthonormal 2-D Fourier transforms on the last two axes.

"Centred" means the k-space centre (DC) sits at index N//2 of each axis, as in
scanner raw data and the fastMRI files; "orthonormal" means ``||F x|| = ||x||``,
so the adjoint of ``fft2c`` is ``ifft2c`` and noise keeps its standard deviation
between k-space and image space (the SNR definition in ``noise`` relies on it).
"""

import torch

_AXES = (-2, -1)


def fft2c(image: torch.Tensor) -> torch.Tensor:
    """Image -> k-space over the last two axes (centred, orthonormal)."""
    shifted = torch.fft.ifftshift(image, dim=_AXES)
    return torch.fft.fftshift(torch.fft.fft2(shifted, dim=_AXES, norm="ortho"), dim=_AXES)


def ifft2c(kspace: torch.Tensor) -> torch.Tensor:
    """K-space -> image over the last two axes (centred, orthonormal); adjoint of fft2c."""
    shifted = torch.fft.ifftshift(kspace, dim=_AXES)
    return torch.fft.fftshift(torch.fft.ifft2(shifted, dim=_AXES, norm="ortho"), dim=_AXES)
