"""Noise-aware stages: the balance of data term and regulariser as a function of the input's noise level.

The paper's VN has one data weight lambda_t per stage, whatever the noise of
the data it is given: trained at one SNR it is wrong at every other (the
paper's strongest mismatch). A noise-aware VN (``noise_aware=True``) measures
the noise of its input itself and lets each stage t rescale its two terms by
power laws of that level:

    s = log(sigma / sigma_ref)
    lambda_t(sigma)  = lambda_t exp(a_t s)                     data weight
    R_t(u; sigma)    = exp(c_t s) K_t^T phi_t(K_t exp(-d_t s) u)  regulariser

``sigma`` is the noise std of the k-space relative to the slice normalisation
(``s = max |A^H f|``), estimated from the readout margins of the sampled lines
(``physics.noise.estimate_noise_sigma_sampled``), never given from outside:
at test time the network sees what it would see on a scanner. ``d_t`` moves
the activation's input scale, i.e. its shrinkage thresholds, with the noise
(thresholds proportional to sigma are what denoisers want); ``c_t`` scales its
output; ``a_t`` the data term (a MAP weight goes as sigma^-2). All three start
at zero, so an untrained noise-aware VN is the paper's VN, and they form the
optimiser block ``noise``. ``sigma_ref`` (``noise_reference``) only centres
``s`` so that the exponents start near the data's range; it is not learned.

The power laws are fitted on the noise levels of the training data only. The
training loop records their range (buffer ``trained_levels``, saved with the
network), and input *cleaner* than the cleanest training slice is conditioned
as that slice: ``s`` is clamped from below at the lowest trained level.
Measured on the SNR family (README, *The SNR map*), extrapolating the power
laws towards less noise under-regularised and collapsed (SSIM 0.974 at the
top of the range, 0.723 one octave above it), while a network applied to
cleaner data than it was trained on loses little (every fixed-SNR network's
row in the map). Noisier input than trained is extrapolated: there no
trained level is safe, and the power laws measured better than any of them.
Networks saved before the range was recorded load with it unknown: no clamp,
also after further training (``--resume``, ``--init``).
"""

import math

import torch
from torch import nn

from ..errors import InputError
from ..physics.noise import estimate_noise_sigma_sampled

#: Default sigma_ref: the normalised noise of the cpu-size simulated knee's PDw at the paper's SNR 20
#: (measured: 0.096 at SNR 5, 0.026 at 20, 0.0065 at 80), the middle of the SNR family's range.
DEFAULT_NOISE_REFERENCE = 0.025
#: |s| is clamped here (a factor 1000 either side of sigma_ref).
LEVEL_LIMIT = math.log(1000.0)
#: ``trained_levels`` of a network trained on nothing yet, and of one saved before the range was kept
#: (every level: recording cannot narrow it, the clamp at -LEVEL_LIMIT does nothing).
EMPTY, UNKNOWN = [LEVEL_LIMIT, -LEVEL_LIMIT], [-LEVEL_LIMIT, LEVEL_LIMIT]
#: Index of a_t, c_t, d_t in each stage's ``noise_exponents``.
DATA, OUTPUT, INPUT = 0, 1, 2


class NoiseConditioning(nn.Module):
    """The exponents (a_t, c_t, d_t) of every stage as a (stages, 3) parameter, and the noise estimate."""

    def __init__(self, stages: int, reference: float = DEFAULT_NOISE_REFERENCE):
        super().__init__()
        if not (reference > 0 and math.isfinite(reference)):
            raise InputError(f"noise_reference must be positive, got {reference!r}")
        self.reference = float(reference)
        self.exponents = nn.Parameter(torch.zeros(stages, 3))
        # [lowest, highest] log level the network was trained on; EMPTY before any
        self.register_buffer("trained_levels", torch.tensor(EMPTY))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # networks saved before the trained range was recorded: UNKNOWN, also after further training (no clamp)
        state_dict.setdefault(prefix + "trained_levels", torch.tensor(UNKNOWN))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def log_level(self, kspace: torch.Tensor, mask: torch.Tensor, readout: int | None, scale: torch.Tensor) -> torch.Tensor:
        """s = log(sigma / (scale sigma_ref)) per slice, (batch,): sigma in the data's units, relative to ``scale``."""
        full_readout = kspace.shape[-2]
        if readout is None or full_readout % readout or full_readout // readout < 2:
            raise InputError(
                f"a noise-aware VN estimates the noise from the readout margins: it needs 2x (or more) readout "
                f"oversampling, got {full_readout} k-space rows for a {readout}-row image"
            )
        sigma = estimate_noise_sigma_sampled(kspace, mask, full_readout // readout)
        relative = sigma.to(scale.dtype) / (scale.reshape(-1) * self.reference)
        # noise-free input (sigma 0) must not send exp(a_t s) to 0 or inf: s is kept within +-LEVEL_LIMIT
        return torch.log(relative.clamp_min(1e-30)).clamp(-LEVEL_LIMIT, LEVEL_LIMIT)

    @torch.no_grad()
    def record(self, level: torch.Tensor) -> None:
        """Widen the trained range to the log levels (batch,) of a training batch."""
        low, high = self.trained_levels
        self.trained_levels.copy_(torch.stack([torch.minimum(low, level.min()), torch.maximum(high, level.max())]))

    def trained_range(self) -> tuple[float, float] | None:
        """(lowest, highest) normalised sigma the network was trained on; None if none was recorded."""
        low, high = self.trained_levels.tolist()
        if low > high or (low <= -LEVEL_LIMIT and high >= LEVEL_LIMIT):  # EMPTY or UNKNOWN
            return None
        return self.reference * math.exp(low), self.reference * math.exp(high)

    def conditioned(self, level: torch.Tensor) -> torch.Tensor:
        """The log levels the stages are conditioned on: never below the lowest trained level."""
        low, high = self.trained_levels.to(level)
        return torch.where(low <= high, level.clamp_min(low), level)  # no host sync on the forward path

    def factors(self, stage: int, level: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(data, output, input) factors of ``stage`` at conditioned log levels (batch,), each (batch, 1, 1)."""
        exponents = self.exponents[stage]
        shape = (-1, 1, 1)
        data = torch.exp(exponents[DATA] * level).view(shape)
        output = torch.exp(exponents[OUTPUT] * level).view(shape)
        inputs = torch.exp(-exponents[INPUT] * level).view(shape)
        return data, output, inputs

    @torch.no_grad()
    def curves(self, lambdas: torch.Tensor, sigmas: torch.Tensor) -> dict[str, torch.Tensor]:
        """What every stage applies at normalised noise levels ``sigmas`` (the trained range's clamp included):
        the data weight lambda_t(sigma), the regulariser's output and input scales, each (len(sigmas), stages)."""
        exponents = self.exponents.detach().to(sigmas)
        level = self.conditioned(torch.log(sigmas / self.reference)).view(-1, 1)
        return {
            "data": lambdas.to(sigmas).view(1, -1) * torch.exp(level * exponents[:, DATA].view(1, -1)),
            "output": torch.exp(level * exponents[:, OUTPUT].view(1, -1)),
            "input": torch.exp(-level * exponents[:, INPUT].view(1, -1)),
        }
