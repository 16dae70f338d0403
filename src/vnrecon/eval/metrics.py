"""Image quality metrics: NRMSE, PSNR and SSIM, batched and differentiable.

All metrics take ``image`` (the reconstruction) and ``reference`` of the same
shape, (H, W) or (batch, H, W), real or complex, and return one value per
image: a 0-d tensor for (H, W) input, a (batch,) tensor otherwise. They are
plain torch operations, so they run on any device and gradients flow through
them (training may use them as losses).

Definitions
-----------
* ``nrmse = ||reference - image||_2 / ||reference||_2`` over the pixels, on the
  complex images (the paper's "RMSE").
* PSNR and SSIM compare magnitudes: complex inputs are reduced to ``|.|``; real
  inputs are used as given (pass magnitudes).
* ``psnr = 10 log10(data_range**2 / mean((x - x_ref)**2))`` with, by default,
  ``data_range = max |x_ref|`` per image, i.e. ``20 log10(max|ref| / rmse of
  magnitudes)`` (the fastMRI convention). It equals
  ``skimage.metrics.peak_signal_noise_ratio(x_ref, x, data_range=max|x_ref|)``;
  pass ``data_range`` to use another, e.g. ``max - min``.
* ``ssim`` is Wang et al. (2004) exactly as
  ``skimage.metrics.structural_similarity(x_ref, x, gaussian_weights=True,
  sigma=1.5, use_sample_covariance=False, data_range=...)`` computes it:
  Gaussian window sigma 1.5 truncated at 3.5 sigma (radius 5, 11 taps,
  normalised to sum 1, as scipy.ndimage), applied separably with scipy's
  'reflect' border (edge sample repeated: ``d c b a | a b c d | d c b a``),
  K1 = 0.01, K2 = 0.03, population (co)variances, and the SSIM map averaged
  over the interior after cropping the window radius (5 pixels) from every
  border. ``data_range`` defaults to ``max - min`` of the reference magnitude,
  per image.
"""

import torch
import torch.nn.functional as F

from ..errors import InputError

SSIM_SIGMA = 1.5
SSIM_TRUNCATE = 3.5
SSIM_K1 = 0.01
SSIM_K2 = 0.03


def _check_pair(image: torch.Tensor, reference: torch.Tensor) -> None:
    for name, value in (("image", image), ("reference", reference)):
        if not isinstance(value, torch.Tensor):
            raise InputError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
        if value.ndim not in (2, 3):
            raise InputError(f"{name} must be (H, W) or (batch, H, W), got shape {tuple(value.shape)}")
    if image.shape != reference.shape:
        raise InputError(
            f"image and reference shapes differ: {tuple(image.shape)} vs {tuple(reference.shape)}"
        )


def _batched(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.unsqueeze(0) if tensor.ndim == 2 else tensor


def _unbatch(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return values[0] if like.ndim == 2 else values


def _magnitude(tensor: torch.Tensor) -> torch.Tensor:
    """|tensor| for complex input, the values themselves (as floating point) for real input."""
    if torch.is_complex(tensor):
        return tensor.abs()
    return tensor if tensor.is_floating_point() else tensor.double()


def _data_range(data_range, batch: int, like: torch.Tensor) -> torch.Tensor:
    """User data_range (number, 0-d or (batch,) tensor) -> (batch,) tensor."""
    value = torch.as_tensor(data_range, dtype=like.dtype, device=like.device)
    if value.ndim == 0:
        return value.expand(batch)
    if value.shape != (batch,):
        raise InputError(f"data_range must be a scalar or have one value per image ({batch})")
    return value


def nrmse(image: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """``||reference - image||_2 / ||reference||_2`` per image (complex or real)."""
    _check_pair(image, reference)
    u, ref = _batched(image), _batched(reference)
    u, ref = (t if t.is_floating_point() or t.is_complex() else t.double() for t in (u, ref))
    error = torch.linalg.vector_norm(ref - u, dim=(-2, -1))
    norm = torch.linalg.vector_norm(ref, dim=(-2, -1))
    return _unbatch(error / norm, image)


def psnr(
    image: torch.Tensor, reference: torch.Tensor, data_range: float | torch.Tensor | None = None
) -> torch.Tensor:
    """PSNR in dB of the magnitudes: ``10 log10(data_range**2 / MSE)``, data_range = max|ref| by default."""
    _check_pair(image, reference)
    x, ref = _magnitude(_batched(image)), _magnitude(_batched(reference))
    mse = torch.mean((x - ref) ** 2, dim=(-2, -1))
    if data_range is None:
        peak = ref.abs().amax(dim=(-2, -1))
    else:
        peak = _data_range(data_range, ref.shape[0], mse)
    return _unbatch(10.0 * torch.log10(peak**2 / mse), image)


def _gaussian_taps(dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """scipy.ndimage's 1-D Gaussian: radius int(truncate * sigma + 0.5), normalised to sum 1."""
    radius = int(SSIM_TRUNCATE * SSIM_SIGMA + 0.5)
    x = torch.arange(-radius, radius + 1, dtype=torch.float64)
    taps = torch.exp(-0.5 * x**2 / SSIM_SIGMA**2)
    return (taps / taps.sum()).to(dtype=dtype, device=device)


def _symmetric_index(length: int, radius: int, device: torch.device) -> torch.Tensor:
    """Indices padding an axis by ``radius`` with scipy 'reflect' (numpy 'symmetric'); needs length >= radius."""
    inner = torch.arange(length, device=device)
    return torch.cat([inner[:radius].flip(0), inner, inner[length - radius :].flip(0)])


def _gaussian_filter(maps: torch.Tensor, taps: torch.Tensor) -> torch.Tensor:
    """Separable Gaussian filter of (N, H, W) real maps, same size out, scipy 'reflect' border."""
    radius = (taps.numel() - 1) // 2
    height, width = maps.shape[-2:]
    padded = maps[:, _symmetric_index(height, radius, maps.device)]
    padded = padded[:, :, _symmetric_index(width, radius, maps.device)]
    out = F.conv2d(padded.unsqueeze(1), taps.reshape(1, 1, -1, 1))
    out = F.conv2d(out, taps.reshape(1, 1, 1, -1))
    return out.squeeze(1)


def ssim(
    image: torch.Tensor, reference: torch.Tensor, data_range: float | torch.Tensor | None = None
) -> torch.Tensor:
    """Mean SSIM of the magnitudes per image, matching skimage (see the module docstring).

    ``data_range``: a number or per-image tensor; default ``max - min`` of the
    reference magnitude of each image. Images must be at least 11 x 11.
    """
    _check_pair(image, reference)
    x, y = _magnitude(_batched(image)), _magnitude(_batched(reference))
    taps = _gaussian_taps(x.dtype, x.device)
    window = taps.numel()
    pad = (window - 1) // 2
    if min(x.shape[-2:]) < window:
        raise InputError(f"SSIM needs images of at least {window} x {window}, got {tuple(x.shape[-2:])}")
    batch = x.shape[0]
    if data_range is None:
        value_range = y.amax(dim=(-2, -1)) - y.amin(dim=(-2, -1))
    else:
        value_range = _data_range(data_range, batch, x)
    value_range = value_range.reshape(batch, 1, 1)

    stacked = torch.cat([x, y, x * x, y * y, x * y], dim=0)
    filtered = _gaussian_filter(stacked, taps)
    mean_x, mean_y, mean_xx, mean_yy, mean_xy = filtered.split(batch, dim=0)
    var_x = mean_xx - mean_x * mean_x
    var_y = mean_yy - mean_y * mean_y
    cov_xy = mean_xy - mean_x * mean_y

    c1 = (SSIM_K1 * value_range) ** 2
    c2 = (SSIM_K2 * value_range) ** 2
    numerator = (2 * mean_x * mean_y + c1) * (2 * cov_xy + c2)
    denominator = (mean_x**2 + mean_y**2 + c1) * (var_x + var_y + c2)
    ssim_map = numerator / denominator
    interior = ssim_map[:, pad : ssim_map.shape[-2] - pad, pad : ssim_map.shape[-1] - pad]
    return _unbatch(interior.mean(dim=(-2, -1)), image)


__all__ = ["nrmse", "psnr", "ssim"]
