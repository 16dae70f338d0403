"""The training loss: each slice's squared error, and how the slices' errors are combined.

``slice_loss: squared`` (the default, SPEC section 3) sums the slices' squared
errors. Over a training set whose slices span a wide SNR range (noise
augmentation, ``vnrecon.train.augment``) that sum is dominated by the noisiest
slices, whose errors are the largest by far: at SNR 5 a slice's error is ~20x
its error at SNR 80, so the network is fitted to the low end of the range and
the high end gets what is left. ``slice_loss: log`` takes the mean of
log(error) instead, i.e. minus the mean PSNR up to constants: its gradient is
each slice's gradient divided by that slice's own error, so every slice counts
by its relative improvement, whatever its noise level.
"""

import torch

SLICE_LOSSES = ("squared", "log")


def reconstruction_loss(output: torch.Tensor, reference: torch.Tensor, eps: float) -> torch.Tensor:
    """Per-slice squared error of smoothed magnitudes sqrt(|u|^2 + eps), summed over pixels (SPEC section 3)."""
    smooth_output = torch.sqrt(output.real**2 + output.imag**2 + eps)
    smooth_reference = torch.sqrt(reference.real**2 + reference.imag**2 + eps)
    return (smooth_output - smooth_reference).square().sum(dim=(-2, -1))


def slice_objective(squared_error: torch.Tensor, kind: str) -> torch.Tensor:
    """What each slice contributes to the loss, from its squared error (batch,)."""
    if kind == "squared":
        return squared_error
    if kind == "log":
        # a perfect slice (error 0) would give -inf: its error is floored far below any real one
        return torch.log(squared_error.clamp_min(torch.finfo(squared_error.dtype).tiny))
    raise ValueError(f"unknown slice_loss {kind!r}; choose one of {', '.join(SLICE_LOSSES)}")
