"""Receiver noise covariance and prewhitening of multi-coil data.

Real receive arrays do not have white, independent channel noise: channels
differ in noise level and neighbouring coils are correlated (typically 0.1-0.4
in magnitude). The noise is described by its covariance over coils

    Psi = E[n n^H]    (coils x coils, Hermitian, positive definite),

the complex covariance, as ISMRMRD and the Gadgetron define it: for white
noise with per-component std ``sigma_k`` (the toolkit's ``sigma_k``, see
``physics.noise``) ``Psi = 2 sigma_k^2 I``. It is estimated from noise-only
samples (a noise scan, or background) by ``noise_covariance``.

Prewhitening multiplies the coil axis of k-space (and of coil maps, which live
in the same channel space: ``W f = F (W S) u + W n``) by

    W = c L^{-1},    Psi = L L^H (Cholesky),    c = sqrt(mean(diag Psi)),

after which the noise is white and independent across channels with the
*mean* channel variance of the original (``W Psi W^H = c^2 I``): the data keep
their units, and the margin-based ``sigma_k`` and SNR of ``physics.noise``
stay meaningful (Roemer et al., MRM 1990; Pruessmann et al., MRM 1999, use
``L^{-1}`` without ``c``, which changes only the overall scale). ESPIRiT on
whitened data gives maps of the whitened channels, consistent with it.
"""

import torch

from ..errors import InputError

#: Relative tolerance on the Hermitian symmetry of a stored covariance.
HERMITIAN_TOLERANCE = 1e-5


def noise_covariance(noise: torch.Tensor) -> torch.Tensor:
    """Sample covariance ``E[n n^H]`` (coils, coils) complex128 of noise-only samples (coils, ...).

    The mean is not removed: receiver noise has zero mean, and removing a
    sample mean from a short noise scan would bias the estimate.
    """
    if noise.ndim < 2 or not noise.is_complex():
        raise InputError(f"noise samples must be complex (coils, ...), got {tuple(noise.shape)} {noise.dtype}")
    samples = noise.reshape(noise.shape[0], -1).to(torch.complex128)
    if samples.shape[1] < samples.shape[0]:
        raise InputError(f"{samples.shape[1]} noise samples cannot estimate a {samples.shape[0]}-coil covariance")
    return samples @ samples.conj().T / samples.shape[1]


def whitening_matrix(covariance: torch.Tensor) -> torch.Tensor:
    """``W = sqrt(mean diag Psi) L^{-1}`` (coils, coils) complex128; InputError unless Psi is Hermitian positive definite."""
    covariance = torch.as_tensor(covariance).to(torch.complex128)
    if covariance.ndim != 2 or covariance.shape[0] != covariance.shape[1]:
        raise InputError(f"noise covariance must be square (coils, coils), got shape {tuple(covariance.shape)}")
    if not torch.isfinite(torch.view_as_real(covariance)).all():
        raise InputError("noise covariance contains NaN or Inf")
    scale = covariance.diagonal().real.abs().max()
    if not scale > 0 or (covariance - covariance.conj().T).abs().max() > HERMITIAN_TOLERANCE * scale:
        raise InputError("noise covariance is not Hermitian (or is zero)")
    factor, info = torch.linalg.cholesky_ex((covariance + covariance.conj().T) / 2)
    if info != 0:
        raise InputError("noise covariance is not positive definite")
    identity = torch.eye(covariance.shape[0], dtype=torch.complex128)
    inverse = torch.linalg.solve_triangular(factor, identity, upper=False)
    return covariance.diagonal().real.mean().sqrt() * inverse


def prewhiten(data: torch.Tensor, whitening: torch.Tensor, coil_dim: int = -3) -> torch.Tensor:
    """``W`` applied along the coil axis of k-space or coil maps (default (..., coils, readout, phase)), same dtype."""
    moved = data.movedim(coil_dim, -1)
    whitened = moved @ whitening.to(data.dtype).T
    return whitened.movedim(-1, coil_dim).contiguous()


def correlated_noise(shape, covariance: torch.Tensor, generator: torch.Generator, coil_dim: int = -3) -> torch.Tensor:
    """Complex Gaussian noise of ``shape`` with covariance ``Psi`` over ``coil_dim`` (complex128): ``L z``, z white."""
    covariance = torch.as_tensor(covariance).to(torch.complex128)
    factor = torch.linalg.cholesky(covariance)
    real = torch.randn((*shape, 2), dtype=torch.float64, generator=generator) / 2**0.5  # E|z|^2 = 1
    white = torch.view_as_complex(real)
    return (white.movedim(coil_dim, -1) @ factor.T).movedim(-1, coil_dim)
