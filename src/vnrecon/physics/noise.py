"""Noise level, SNR and noise augmentation of fully sampled multi-coil k-space.

SNR definition (orthonormal terms)
----------------------------------
The paper (Knoll et al., MRM 2019, Methods) writes ``SNR = mu / sigma`` with
``mu = ||f||_2 / length(f)`` over the stacked multi-coil k-space ``f`` and
``sigma`` the mean of ``std(Re)`` and ``std(Im)`` of background-only coil
images. Read literally with an orthonormal FFT that ratio is off by a factor
``sqrt(length(f))``: it is only consistent with MATLAB's FFT scaling, where
``ifft2`` divides by ``N`` so that image-domain noise is ``sigma_k / sqrt(N)``.
This toolkit uses orthonormal transforms throughout (``physics.fft``), under
which the noise std is the same in k-space and in the coil images, so the
paper's SNR becomes::

    SNR = rms(f) / sigma_k,     rms(f) = ||f||_2 / sqrt(length(f))

where ``length(f)`` counts every complex sample of every coil of the slice and
``sigma_k`` is the std of the real (and of the imaginary) part of the k-space
noise, equal to the noise std of the orthonormal coil images. ``rms(f)``
includes the noise, as the paper's ``mu`` does. With it the paper's figures
(PDw ~ 80, PDw-FS ~ 20) are meaningful.

Noise estimate
--------------
``sigma_k`` is estimated from background: with readout oversampling the outer
``(1 - 1/oversampling) / 2`` of the readout FOV at each end of every coil image
holds no object (the same rows ``center_crop_readout`` removes). As the paper
does, the estimate is the average of ``std(Re)`` and ``std(Im)``, each pooled
over the margin pixels of all coils.

A little object signal may leak into the margins (anatomy that extends past
the nominal FOV, e.g. along the leg). Each std is therefore an explicit
*trimmed* estimate: per coil, samples farther than ``TRIM_SIGMAS`` (= 5)
robust standard deviations (median absolute deviation x 1.4826) from that
coil's median are dropped, and the plain population std (numpy's default,
``ddof=0``) of the remaining samples of all coils is returned. For pure
Gaussian noise essentially nothing is dropped (probability 5.7e-7 per sample),
so the estimate is the plain std of the margin pixels; strong leakage is
removed, while weak leakage of a few sigma still biases the estimate upwards.
Trimming per coil keeps coils with different noise levels (un-whitened data)
from trimming each other's tails.

All functions take fully sampled k-space (noise is added before masks are
applied), shaped (coils, readout, phase) for one slice or (slices, coils,
readout, phase) for a stack; statistics are computed per slice.
"""

import math
from collections.abc import Sequence

import torch

from ..errors import InputError
from .fft import ifft2c

#: Samples beyond this many robust standard deviations from a coil's median are trimmed.
TRIM_SIGMAS = 5.0
#: Median absolute deviation -> standard deviation for a Gaussian (1 / Phi^-1(3/4)).
MAD_TO_STD = 1.482602218505602


def _check_kspace(kspace: torch.Tensor) -> None:
    if not isinstance(kspace, torch.Tensor):
        raise InputError(f"k-space must be a torch.Tensor, got {type(kspace).__name__}")
    if not torch.is_complex(kspace):
        raise InputError(f"k-space must be a complex tensor, got dtype {kspace.dtype}")
    if kspace.ndim not in (3, 4):
        raise InputError(
            "k-space must be (coils, readout, phase) or (slices, coils, readout, phase), "
            f"got shape {tuple(kspace.shape)}"
        )
    if kspace.numel() == 0:
        raise InputError(f"k-space is empty (shape {tuple(kspace.shape)})")
    if not bool(torch.isfinite(kspace).all()):
        raise InputError("k-space contains NaN or infinite values")


def _check_oversampling(oversampling: int) -> None:
    if isinstance(oversampling, bool) or not isinstance(oversampling, int):
        raise InputError(f"oversampling must be an integer, got {oversampling!r}")
    if oversampling < 2:
        raise InputError(
            f"cannot estimate noise from readout margins with oversampling={oversampling}; "
            "need oversampling >= 2 or an explicit noise sigma"
        )


def _slices(kspace: torch.Tensor) -> torch.Tensor:
    """View as (slices, coils, readout, phase)."""
    return kspace.unsqueeze(0) if kspace.ndim == 3 else kspace


def _per_slice(values: torch.Tensor, kspace: torch.Tensor) -> torch.Tensor:
    """Undo ``_slices`` on a (slices,) result: scalar for 3-D input."""
    return values[0] if kspace.ndim == 3 else values


def signal_rms(kspace: torch.Tensor) -> torch.Tensor:
    """``||f||_2 / sqrt(length(f))`` over all coils and samples of each slice.

    (coils, readout, phase) -> scalar tensor; (slices, coils, readout, phase) ->
    (slices,) tensor. Real dtype matching the input's precision.
    """
    _check_kspace(kspace)
    stack = _slices(kspace)
    flat = stack.reshape(stack.shape[0], -1)
    rms = torch.linalg.vector_norm(flat, dim=1) / math.sqrt(flat.shape[1])
    return _per_slice(rms, kspace)


def _trimmed_pooled_std(samples: torch.Tensor) -> torch.Tensor:
    """Population std of (coils, n) real samples after per-coil trimming at TRIM_SIGMAS robust sigmas."""
    median = samples.median(dim=1, keepdim=True).values
    deviation = (samples - median).abs()
    robust_std = deviation.median(dim=1, keepdim=True).values * MAD_TO_STD
    keep = (deviation <= TRIM_SIGMAS * robust_std) | (robust_std == 0)
    return samples[keep].std(correction=0)


def _margin_rows(full_readout: int, oversampling: int) -> tuple[int, int]:
    """(start, stop) of the object rows; the margins are [0, start) and [stop, full_readout)."""
    readout = full_readout // oversampling
    start = (full_readout - readout) // 2  # same convention as operator.center_crop_readout
    return start, start + readout


def _margin_sigma(images: torch.Tensor, start: int, stop: int) -> torch.Tensor:
    """(std(Re) + std(Im)) / 2 of the readout rows outside [start, stop) of (coils, readout, ...) images, trimmed."""
    margins = torch.cat([images[:, :start], images[:, stop:]], dim=1)
    margins = margins.reshape(margins.shape[0], -1).to(torch.complex128)
    return 0.5 * (_trimmed_pooled_std(margins.real) + _trimmed_pooled_std(margins.imag))


def estimate_noise_sigma(kspace: torch.Tensor, oversampling: int = 2) -> torch.Tensor:
    """Estimate sigma_k (std of Re and of Im of the k-space noise) from the readout margins.

    The coil images (orthonormal inverse FFT) are cut to the outer
    ``(1 - 1/oversampling) / 2`` of the readout at each end; the estimate is
    ``(std(Re) + std(Im)) / 2`` over those pixels of all coils, each std
    trimmed as described in the module docstring (equal to the plain std for
    Gaussian noise). Scalar tensor for one slice, (slices,) for a stack.
    """
    _check_kspace(kspace)
    _check_oversampling(oversampling)
    stack = _slices(kspace)
    full_readout = stack.shape[-2]
    start, stop = _margin_rows(full_readout, oversampling)
    if start < 1 or stop >= full_readout:
        raise InputError(
            f"readout of {full_readout} samples is too short for margins at oversampling={oversampling}"
        )
    sigma = torch.stack([_margin_sigma(ifft2c(slice_kspace), start, stop) for slice_kspace in stack])
    sigma = sigma.to(kspace.real.dtype)
    return _per_slice(sigma, kspace)


def estimate_noise_sigma_sampled(kspace: torch.Tensor, mask: torch.Tensor, oversampling: int) -> torch.Tensor:
    """sigma_k of undersampled k-space (batch, coils, readout, phase) from the readout margins of its sampled lines.

    The same estimate as ``estimate_noise_sigma``, but on the data a reconstruction gets: each
    sampled phase-encoding line is transformed along the readout only (centred, orthonormal),
    where the object occupies the same central rows as in the image and the outer rows hold
    noise of std sigma_k; unsampled lines (zeros) are left out. ``mask`` is (phase,) or (batch,
    phase), the same for every readout sample. Returns (batch,) in the data's units: on
    normalised k-space, sigma relative to the normalisation. No gradient flows through it.
    """
    _check_oversampling(oversampling)
    if kspace.ndim != 4:
        raise InputError(f"k-space must be (batch, coils, readout, phase), got shape {tuple(kspace.shape)}")
    batch, _, full_readout, n_phase = kspace.shape
    if mask.numel() not in (n_phase, batch * n_phase):
        raise InputError(
            f"the noise estimate needs a phase-encoding mask ({n_phase} or {batch} x {n_phase} values), "
            f"got shape {tuple(mask.shape)}"
        )
    masks = mask.detach().reshape(-1, n_phase).expand(batch, n_phase)
    start, stop = _margin_rows(full_readout, oversampling)
    if start < 1 or stop >= full_readout:
        raise InputError(f"readout of {full_readout} samples is too short for margins at oversampling={oversampling}")
    sigmas = []
    with torch.no_grad():
        for slice_kspace, slice_mask in zip(kspace.detach(), masks):
            lines = slice_kspace[..., slice_mask > 0]
            if lines.shape[-1] == 0:
                raise InputError("the mask samples no phase-encoding line: no data to estimate the noise from")
            hybrid = torch.fft.fftshift(
                torch.fft.ifft(torch.fft.ifftshift(lines, dim=-2), dim=-2, norm="ortho"), dim=-2
            )
            sigmas.append(_margin_sigma(hybrid, start, stop))
    return torch.stack(sigmas).to(kspace.real.dtype)


def estimate_snr(kspace: torch.Tensor, oversampling: int = 2) -> float:
    """The paper's SNR in orthonormal terms: ``rms(f) / sigma_k``.

    For a stack, ``rms`` and ``sigma_k`` are each averaged over the slices
    before dividing, as the paper averages mu and sigma separately. Noise-free
    data give ``inf``.
    """
    rms = signal_rms(kspace).double().mean()
    sigma = estimate_noise_sigma(kspace, oversampling).double().mean()
    if float(sigma) == 0.0:
        return math.inf
    return float(rms / sigma)


def _as_per_slice(value, name: str, n_slices: int, device: torch.device) -> torch.Tensor:
    """float / scalar tensor / (slices,) tensor or sequence -> (n_slices,) float64 tensor."""
    if isinstance(value, bool):
        raise InputError(f"{name} must be a number or a tensor, got {value!r}")
    if isinstance(value, (int, float)):
        tensor = torch.full((n_slices,), float(value), dtype=torch.float64, device=device)
    elif isinstance(value, torch.Tensor) or (
        isinstance(value, Sequence) and not isinstance(value, str)
    ):
        tensor = torch.as_tensor(value).to(device=device, dtype=torch.float64)
        if tensor.ndim == 0:
            tensor = tensor.expand(n_slices)
        elif tensor.shape != (n_slices,):
            raise InputError(
                f"{name} must be a scalar or have one value per slice ({n_slices}), "
                f"got shape {tuple(tensor.shape)}"
            )
    else:
        raise InputError(f"{name} must be a number or a tensor, got {type(value).__name__}")
    if not bool(torch.isfinite(tensor).all()):
        raise InputError(f"{name} must be finite")
    return tensor


def add_complex_noise(
    kspace: torch.Tensor, sigma: float | torch.Tensor, generator: torch.Generator
) -> torch.Tensor:
    """Return ``kspace + sigma * (n_re + 1j n_im)`` with n_re, n_im standard normal.

    ``sigma`` is the std of the real and of the imaginary part each: a number,
    or for a stack a scalar or (slices,) tensor. The noise is drawn on the
    generator's device in the data's precision, so the result depends only on
    the generator state (not on the data's device).
    """
    _check_kspace(kspace)
    if not isinstance(generator, torch.Generator):
        raise InputError(f"generator must be a torch.Generator, got {type(generator).__name__}")
    stack = _slices(kspace)
    sigmas = _as_per_slice(sigma, "sigma", stack.shape[0], kspace.device)
    if bool((sigmas < 0).any()):
        raise InputError("noise sigma must be non-negative")
    real_dtype = kspace.real.dtype
    noise = torch.randn(
        tuple(kspace.shape) + (2,), generator=generator, dtype=real_dtype, device=generator.device
    )
    noise = torch.view_as_complex(noise).to(kspace.device)
    scale = sigmas.to(real_dtype).reshape(-1, 1, 1, 1)
    if kspace.ndim == 3:
        scale = scale[0]
    return kspace + scale * noise


def add_noise_to_snr(
    kspace: torch.Tensor,
    target_snr: float | torch.Tensor,
    generator: torch.Generator,
    present_sigma: float | torch.Tensor | None = None,
    oversampling: int = 2,
) -> torch.Tensor:
    """Add complex Gaussian noise so that each slice's SNR becomes ``target_snr``.

    ``sigma_target = rms(f) / target_snr`` (rms of the input slice) and the
    added noise has variance ``sigma_target**2 - present_sigma**2`` per real
    and imaginary part; ``present_sigma`` is estimated from the readout margins
    when not given. ``target_snr`` and ``present_sigma`` may be per slice for a
    stack. Since the added noise also raises ``rms(f)`` a little, the SNR
    measured afterwards exceeds the target by a factor ~ ``1 + 1/target_snr**2``
    (0.25 % at SNR 20). Raises ``InputError`` where the target SNR is above the
    present one (noise cannot be removed).
    """
    _check_kspace(kspace)
    stack = _slices(kspace)
    n_slices = stack.shape[0]
    targets = _as_per_slice(target_snr, "target SNR", n_slices, kspace.device)
    if bool((targets <= 0).any()):
        raise InputError("target SNR must be positive")
    if present_sigma is None:
        present = estimate_noise_sigma(kspace, oversampling).reshape(-1).to(torch.float64)
    else:
        present = _as_per_slice(present_sigma, "present sigma", n_slices, kspace.device)
        if bool((present < 0).any()):
            raise InputError("present noise sigma must be non-negative")
    rms = signal_rms(kspace).reshape(-1).to(torch.float64)
    target_sigma = rms / targets
    added_variance = target_sigma**2 - present**2
    too_high = added_variance < -1e-9 * target_sigma**2
    if bool(too_high.any()):
        index = int(torch.nonzero(too_high)[0])
        present_snr = float(rms[index] / present[index])
        where = f"slice {index}: " if kspace.ndim == 4 else ""
        raise InputError(
            f"{where}target SNR {float(targets[index]):.4g} is above the present SNR "
            f"{present_snr:.4g}; noise cannot be removed"
        )
    added_sigma = added_variance.clamp(min=0).sqrt()
    return add_complex_noise(kspace, added_sigma if kspace.ndim == 4 else added_sigma[0], generator)
