"""The variational network (Hammernik et al. MRM 2018) as used by Knoll et al. MRM 2019.

T stages, each with its own parameters, update the image (SPEC section 3):

    u_{t+1} = P [u_t - (1/Nk) sum_i kbar_i * phi_i(k_i * u_t) - lambda_t A^H (A u_t - f)]

with ``P`` the sensitivity support of the coil maps (below).

* ``k_i``: Nk real filters (kernel_size x kernel_size) acting on the 2-channel
  real image [Re u, Im u] (conv2d weight ``(Nk, 2, k, k)``, real output).
* ``kbar_i *``: the exact transpose of ``k_i *`` *including the boundary
  handling*. The image is padded symmetrically (numpy ``mode='symmetric'``,
  edge sample repeated; not torch's 'reflect') by ``kernel_size`` on each side
  and convolved 'valid'; the transpose is ``conv_transpose2d`` followed by the
  adjoint of that padding, which folds (adds) the padded border back onto the
  samples it was copied from. So ``<K u, y> = <u, K^T y>`` holds exactly and
  the regulariser term is the gradient of ``sum_i rho_i(k_i * u)`` with
  ``rho_i' = phi_i``, as in the original VN (it is tested).
* ``phi_i``: trainable Gaussian-RBF activation (``vnrecon.models.activations``).
* ``A = M F S`` with the readout crop: ``vnrecon.physics.operator.SenseOperator``;
  the data term uses ``A^H(A u - f) = A^H A u - u_0`` with ``u_0 = A^H f`` and
  applies ``A^H A`` through ``GramOperator`` (same operator, centring shifts
  moved onto the maps and the mask once per forward pass).

Sensitivity support: every stage's update is multiplied by the support mask
``P`` of the coil maps (``SenseOperator.support``: pixels where some map is
non-zero), i.e. the image lives where the operator sees it, as it does for
the classical baselines (TV, wavelet) and the reference. ``u_0 = A^H f`` and
the data term are zero outside it anyway (``A P = A``); what ``P`` removes is
the regulariser's response there. Without it a regulariser trained on images
that fill the FOV (the synthetic natural-image data, whose maps cover the
whole FOV) paints signal into the background of knee data, whose ESPIRiT
maps are cropped to the anatomy, and the reference is exactly zero there.
It belongs in every stage rather than on the output only, so that the next
stage's filters see the background the data have (zero) rather than what
the previous regulariser put there; with maps that are non-zero everywhere
``P`` is the identity. The projection is part of the update, so training
and inference see the same network.

Input normalisation: each slice is divided by ``s = max |u_0|`` (so is f, i.e.
``u_0``), and the output is multiplied back by ``s``; the network is therefore
exactly positively homogeneous: ``net(c f) = c net(f)`` for ``c > 0``.

Activation variants (``activation=``):

``'rbf'`` (default)
    The fused regulariser ``K^T phi(K u)`` (``_Regulariser``): a custom
    autograd function that keeps the padded input image and the filter
    responses ``x = K u`` per stage, never ``phi(x)`` (the RBF backward kernel
    recomputes it on the way) nor anything of size Nw x Nk x H x W. With
    ``recompute=True`` it keeps only the image and recomputes ``x`` in the
    backward pass (one extra 2 -> Nk convolution per stage): O(H W) instead
    of O(Nk H W) memory per stage, O(Nk Nw H W) for naive autograd.
    Transposed convolutions (Nk -> 2 channels, oneDNN's slowest case) run as a
    polyphase convolution with 4x the channels and half the kernel size
    (``transpose_conv``; exact, about 3x faster on CPU for odd kernels).
``'naive'``
    The same network with plain autograd: ``conv2d -> rbf_naive ->
    conv_transpose2d``. Reference for tests and the speed benchmark only.
``'identity'``
    ``phi(x) = x`` through the same fused function: the cost floor of the
    convolutions and FFTs, for the benchmark. No activation parameters.

Constraints (``project_``, after every optimiser step): each filter zero-mean
over each input channel (real and imaginary part separately) and inside the
unit L2 ball; ``lambda_t >= 0``; activation weights free.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from ..errors import InputError
from ..physics.operator import SenseOperator, center_crop_readout, zero_pad_readout
from .activations import RBFActivation, RBFGrid, rbf_backward_kernel, rbf_forward_kernel
from .noise_conditioning import DEFAULT_NOISE_REFERENCE, NoiseConditioning

ACTIVATIONS = ("rbf", "naive", "identity")
#: The parameter blocks of ``VariationalNetwork.parameter_blocks``, in iPALM's update order.
PARAMETER_BLOCKS = ("filters", "activations", "lambda", "noise")


# ---------------------------------------------------------------------------
# symmetric padding and its adjoint


def symmetric_index(n: int, pad: int, device=None) -> torch.Tensor:
    """Source index of each sample of a length-n axis padded by ``pad`` (numpy 'symmetric', any pad)."""
    index = torch.arange(-pad, n + pad, device=device) % (2 * n)
    return torch.where(index >= n, 2 * n - 1 - index, index)


def _pad(x: torch.Tensor, pad: int, dims) -> torch.Tensor:
    for dim in dims:
        x = x.index_select(dim, symmetric_index(x.shape[dim], pad, x.device))
    return x


def _pad_adjoint(y: torch.Tensor, pad: int, dims) -> torch.Tensor:
    for dim in reversed(dims):
        n = y.shape[dim] - 2 * pad
        if n < 1:
            raise ValueError(f"cannot un-pad an axis of {y.shape[dim]} by {pad}")
        shape = list(y.shape)
        shape[dim] = n
        y = y.new_zeros(shape).index_add_(dim, symmetric_index(n, pad, y.device), y)
    return y


class _SymmetricPad(torch.autograd.Function):
    """Symmetric padding whose backward is its adjoint; keeps nothing for backward."""

    @staticmethod
    def forward(ctx, x, pad, dims):
        ctx.pad, ctx.dims = pad, dims
        return _pad(x, pad, dims)

    @staticmethod
    def backward(ctx, grad):
        return _SymmetricPadAdjoint.apply(grad, ctx.pad, ctx.dims), None, None


class _SymmetricPadAdjoint(torch.autograd.Function):
    """Adjoint of symmetric padding (folds the border back); backward is the padding."""

    @staticmethod
    def forward(ctx, y, pad, dims):
        ctx.pad, ctx.dims = pad, dims
        return _pad_adjoint(y, pad, dims)

    @staticmethod
    def backward(ctx, grad):
        return _SymmetricPad.apply(grad, ctx.pad, ctx.dims), None, None


def symmetric_pad(x: torch.Tensor, pad: int, dims=(-2, -1)) -> torch.Tensor:
    """Pad ``dims`` of ``x`` by ``pad`` on both sides as numpy.pad(mode='symmetric')."""
    dims = tuple(d % x.ndim for d in dims)
    return _SymmetricPad.apply(x, pad, dims)


def symmetric_pad_adjoint(y: torch.Tensor, pad: int, dims=(-2, -1)) -> torch.Tensor:
    """Adjoint of ``symmetric_pad``: add each padded sample back onto the sample it copies."""
    dims = tuple(d % y.ndim for d in dims)
    return _SymmetricPadAdjoint.apply(y, pad, dims)


# ---------------------------------------------------------------------------
# the fused regulariser K^T phi(K u)


def _weight_grad(grad, inp, weight, transposed: bool) -> torch.Tensor:
    """Gradient wrt the weight of conv2d / conv_transpose2d(inp, weight) (stride 1, no padding)."""
    return torch.ops.aten.convolution_backward(
        grad, inp, weight, None, [1, 1], [0, 0], [1, 1], transposed, [0, 0], 1, [False, True, False]
    )[1]


def polyphase_kernel(kernel: torch.Tensor) -> torch.Tensor:
    """Weight of ``conv2d(pixel_unshuffle(y, 2), ., padding=(k-1)/2)`` equal to conv_transpose2d(y, kernel).

    ``kernel``: (Nk, C, k, k) with k odd -> (4C, 4Nk, k//2+1, k//2+1). The
    transposed convolution is a full convolution, i.e. a 'valid' correlation of
    y zero-padded by k-1 with the flipped, transposed kernel; splitting input and
    output into their 2x2 polyphase components turns it into a correlation with
    4x the channels and half the kernel size, which oneDNN runs several times
    faster than the 2-output-channel original (Nk -> 2 is its worst case).
    """
    filters, channels, k, _ = kernel.shape
    half = k // 2 + 1
    flipped = kernel.flip(2, 3).transpose(0, 1)  # (C, Nk, k, k)
    padded = F.pad(flipped, (1, 2 * half - k, 1, 2 * half - k))  # tap j sits at j + 1, j in [-1, 2 half - 1)
    out = kernel.new_zeros(channels, 2, 2, filters, 2, 2, half, half)
    for r in range(2):
        for rho in range(2):
            rows = slice(rho - r + 1, rho - r + 1 + 2 * half, 2)
            for c in range(2):
                for sigma in range(2):
                    cols = slice(sigma - c + 1, sigma - c + 1 + 2 * half, 2)
                    out[:, r, c, :, rho, sigma] = padded[:, :, rows, cols]
    return out.reshape(4 * channels, 4 * filters, half, half)


def transpose_conv(y: torch.Tensor, kernel: torch.Tensor, poly: torch.Tensor | None = None) -> torch.Tensor:
    """conv_transpose2d(y, kernel) (stride 1, no padding), by polyphase decomposition for odd kernels."""
    k = kernel.shape[-1]
    if k % 2 == 0 or kernel.shape[-2] != k:
        return F.conv_transpose2d(y, kernel)
    height, width = y.shape[-2:]
    if height % 2 or width % 2:
        y = F.pad(y, (0, width % 2, 0, height % 2))
    poly = polyphase_kernel(kernel) if poly is None else poly
    z = F.pixel_shuffle(F.conv2d(F.pixel_unshuffle(y, 2), poly, padding=(k - 1) // 2), 2)
    return z[..., : height + k - 1, : width + k - 1]


class _Regulariser(torch.autograd.Function):
    """z = conv_transpose2d(phi(conv2d(u, K)), K) with a lean backward (no autograd graph inside).

    ``act_weight is None`` means phi = identity. Saves ``u`` (the padded 2-channel
    image), the weights and, unless ``recompute``, the filter responses
    x = conv2d(u, K); phi(x) is never kept: the RBF backward kernel returns it.
    Transposed convolutions (forward, and the input gradient of the first
    convolution) run through ``transpose_conv``.
    """

    @staticmethod
    def forward(ctx, u, kernel, act_weight, grid, tol, recompute):
        poly = polyphase_kernel(kernel) if kernel.shape[-1] % 2 else None
        x = F.conv2d(u, kernel)
        y = x if act_weight is None else rbf_forward_kernel(x, act_weight, grid, tol)
        z = transpose_conv(y, kernel, poly)
        ctx.grid, ctx.tol, ctx.identity = grid, tol, act_weight is None
        if act_weight is None:
            act_weight = kernel.new_zeros(0)
        ctx.save_for_backward(u, kernel, act_weight, *(() if recompute else (x,)))
        return z

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_z):
        u, kernel, act_weight, *stored = ctx.saved_tensors
        need_u, need_kernel, need_act = ctx.needs_input_grad[:3]
        x = stored[0] if stored else F.conv2d(u, kernel)
        grad_y = F.conv2d(grad_z, kernel)  # adjoint of z = K^T y
        grad_act = None
        if ctx.identity:
            y, grad_x = x, grad_y
        else:
            grad_x, grad_act, y = rbf_backward_kernel(
                x, act_weight, grad_y, ctx.grid, ctx.tol, need_x=True, need_weight=need_act, values=need_kernel
            )
        grad_kernel = None
        if need_kernel:
            grad_kernel = _weight_grad(grad_z, y, kernel, transposed=True) + _weight_grad(grad_x, u, kernel, transposed=False)
        grad_u = transpose_conv(grad_x, kernel) if need_u else None
        return grad_u, grad_kernel, grad_act, None, None, None


# ---------------------------------------------------------------------------
# data term


def _roll(x: torch.Tensor, dims, inverse: bool) -> torch.Tensor:
    """fftshift (or ifftshift) over ``dims`` by gathering with a permutation (cheaper than torch.roll)."""
    for dim in dims:
        n = x.shape[dim]
        shift = -(n // 2) if inverse else n // 2
        x = x.index_select(dim, (torch.arange(n, device=x.device) - shift) % n)
    return x


class GramOperator:
    """A^H A of a ``SenseOperator``, the data-term Hessian applied every stage; equals ``operator.normal``.

    ``fft2c`` shifts before and after every FFT. For the Gram operator the inner
    shifts cancel against the mask and the outer ones commute with the coil
    maps, so with S' = ifftshift(S) and M' = ifftshift(M), prepared once,

        A^H A u = crop(fftshift(sum_c conj(S'_c) F^-1 M' F (S'_c ifftshift(pad(u))))).

    With the usual phase-encoding mask (the same for every readout sample) the
    readout FFT pair cancels too: F^H M F = I (x) (F_pe^H M F_pe), the rows no
    longer mix, the zero-padded readout margins stay zero, and

        A^H A u = fftshift_pe(sum_c conj(S'_c) F_pe^-1 M' F_pe (S'_c ifftshift_pe(u)))

    with S' the maps on the cropped readout grid: 1-D FFTs over the image rows
    only (a quarter of the 2-D FFT work on 2x oversampled data) and shifts of
    one coil-combined image instead of 4 x C coil images. Masks that vary along
    the readout use the 2-D form. Equal to ``SenseOperator.normal`` up to
    rounding (tested).
    """

    def __init__(self, operator: SenseOperator):
        mask = operator.mask.to(operator.maps.real.dtype)
        self.operator = operator
        self.full_readout, self.readout = operator.full_readout, operator.readout
        self.separable = mask.shape[-2] == 1
        if self.separable:
            self.dims = (-1,)
            maps = center_crop_readout(operator.maps, self.readout)
        else:
            self.dims = (-2, -1)
            maps = operator.maps
        self.maps = _roll(maps, self.dims, inverse=True)
        self.mask = _roll(mask, self.dims, inverse=True)
        self.support = operator.support().to(operator.maps.real.dtype)

    def __call__(self, u: torch.Tensor) -> torch.Tensor:
        dims = self.dims
        if not self.separable:
            u = zero_pad_readout(u, self.full_readout)
        x = self.maps * _roll(u, dims, inverse=True).unsqueeze(1)
        if self.separable:
            kspace = torch.fft.fft(x, dim=-1, norm="ortho")
            coil_images = torch.fft.ifft(self.mask * kspace, dim=-1, norm="ortho")
        else:
            kspace = torch.fft.fft2(x, dim=dims, norm="ortho")
            coil_images = torch.fft.ifft2(self.mask * kspace, dim=dims, norm="ortho")
        combined = _roll(torch.linalg.vecdot(self.maps, coil_images, dim=1), dims, inverse=False)
        return combined if self.separable else center_crop_readout(combined, self.readout)

    def adjoint(self, kspace: torch.Tensor) -> torch.Tensor:
        """A^H f, equal to ``operator.adjoint`` (shifts by gathering, once per coil array)."""
        dims = (-2, -1)
        op = self.operator
        coil_images = torch.fft.ifft2(_roll(op.mask * kspace, dims, inverse=True), dim=dims, norm="ortho")
        combined = torch.linalg.vecdot(_roll(op.maps, dims, inverse=True), coil_images, dim=1)
        return center_crop_readout(_roll(combined, dims, inverse=False), self.readout)


# ---------------------------------------------------------------------------
# network


class VNStage(nn.Module):
    """One gradient step: filters (Nk, 2, k, k), activation, data weight lambda."""

    def __init__(
        self,
        filters: int,
        kernel_size: int,
        activation: str,
        grid: RBFGrid,
        lambda_init: float,
        init_scale: float,
        recompute: bool,
        tol: float | None,
    ):
        super().__init__()
        self.kernel_size = kernel_size
        self.activation_kind = activation
        self.recompute = recompute
        self.tol = tol
        kernel = torch.randn(filters, 2, kernel_size, kernel_size) / math.sqrt(kernel_size * kernel_size)
        self.filters = nn.Parameter(kernel)
        self.activation = (
            None if activation == "identity" else RBFActivation(filters, grid, init_scale, naive=activation == "naive", tol=tol)
        )
        self.lam = nn.Parameter(torch.tensor(float(lambda_init)))
        self.project_filters_()

    @torch.no_grad()
    def project_filters_(self) -> None:
        kernel = self.filters
        kernel.sub_(kernel.mean(dim=(2, 3), keepdim=True))
        norms = kernel.flatten(1).norm(dim=1).clamp_min(1.0)
        kernel.div_(norms.view(-1, 1, 1, 1))

    @torch.no_grad()
    def project_lambda_(self) -> None:
        self.lam.clamp_(min=0.0)

    def pad_image(self, u: torch.Tensor) -> torch.Tensor:
        """Complex (B, H, W) -> symmetric-padded real (B, 2, H+2k, W+2k), contiguous (NCHW)."""
        real = torch.view_as_real(u.contiguous())  # (B, H, W, 2)
        return symmetric_pad(real, self.kernel_size, dims=(1, 2)).permute(0, 3, 1, 2).contiguous()

    def unpad_image(self, z: torch.Tensor) -> torch.Tensor:
        """Real (B, 2, H+2k, W+2k) -> adjoint of ``pad_image`` -> complex (B, H, W)."""
        real = symmetric_pad_adjoint(z.permute(0, 2, 3, 1), self.kernel_size, dims=(1, 2))
        return torch.view_as_complex(real.contiguous())

    def regulariser(self, u: torch.Tensor) -> torch.Tensor:
        """sum_i kbar_i * phi_i(k_i * u), complex (B, H, W) -> complex (B, H, W)."""
        padded = self.pad_image(u)
        if self.activation_kind == "naive":
            x = F.conv2d(padded, self.filters)
            z = F.conv_transpose2d(self.activation(x), self.filters)
        else:
            weight = None if self.activation is None else self.activation.weight
            grid = None if self.activation is None else self.activation.grid
            z = _Regulariser.apply(padded, self.filters, weight, grid, self.tol, self.recompute)
        return self.unpad_image(z)

    def forward(self, u: torch.Tensor, gram: GramOperator, u0: torch.Tensor, noise=None) -> torch.Tensor:
        """One stage: P (u - (1/Nk) K^T phi(K u) - lambda (A^H A u - u0)), P the sensitivity support.

        ``noise``: (data, output, input) factors per slice of a noise-aware network
        (``noise_conditioning``): lambda and the regulariser's output and input scaled by them.
        """
        if noise is None:
            regulariser = self.regulariser(u)
            lam = self.lam
        else:
            data_factor, output_factor, input_factor = noise
            regulariser = output_factor * self.regulariser(input_factor * u)
            lam = self.lam * data_factor
        data = gram(u) - u0
        return gram.support * (u - regulariser / self.filters.shape[0] - lam * data)


class VariationalNetwork(nn.Module):
    """Variational network for multi-coil Cartesian MRI.

    Parameters
    ----------
    stages: T, number of gradient steps (10).
    filters: Nk, filters per stage (24).
    kernel_size: filter size (11); also the symmetric padding width.
    rbf_centres: Nw, RBF centres per activation (31), evenly on [-rbf_range, rbf_range].
    rbf_range: half width of the activation domain (1.0; images are normalised to max |u_0| = 1).
    rbf_sigma: RBF width (None: 2 * rbf_range / rbf_centres, the original 2/31).
    lambda_init: initial data-term weight lambda_t (1.0).
    activation: 'rbf' (default), 'naive' (same function, plain autograd) or 'identity'
        (no activation; cost floor for benchmarks).
    init_scale: activation weights start at init_scale * mu_j (0.04).
    recompute: recompute the filter responses in the backward pass instead of keeping them
        (saves Nk x H x W floats per stage for one extra 2->Nk convolution; default False).
    rbf_tol: truncation tolerance of the fast RBF (None: machine epsilon of the dtype).
    noise_aware: estimate each input's noise level from its readout margins and scale every
        stage's data weight and regulariser by learned power laws of it (``noise_conditioning``;
        default False: the paper's network).
    noise_reference: the normalised noise level at which those factors start at 1 (centring only).

    ``forward(kspace, maps, mask, readout)`` -> complex image (B, readout, PE).
    """

    def __init__(
        self,
        stages: int = 10,
        filters: int = 24,
        kernel_size: int = 11,
        rbf_centres: int = 31,
        rbf_range: float = 1.0,
        rbf_sigma: float | None = None,
        lambda_init: float = 1.0,
        activation: str = "rbf",
        init_scale: float = 0.04,
        recompute: bool = False,
        rbf_tol: float | None = None,
        noise_aware: bool = False,
        noise_reference: float = DEFAULT_NOISE_REFERENCE,
    ):
        super().__init__()
        if activation not in ACTIVATIONS:
            raise InputError(f"activation must be one of {', '.join(ACTIVATIONS)}, got {activation!r}")
        for name, value in (("stages", stages), ("filters", filters), ("kernel_size", kernel_size)):
            if int(value) != value or value < 1:
                raise InputError(f"{name} must be a positive integer, got {value!r}")
        if not rbf_range > 0:
            raise InputError(f"rbf_range must be positive, got {rbf_range!r}")
        if lambda_init < 0:
            raise InputError(f"lambda_init must be >= 0, got {lambda_init!r}")
        self.config = {
            "stages": int(stages),
            "filters": int(filters),
            "kernel_size": int(kernel_size),
            "rbf_centres": int(rbf_centres),
            "rbf_range": float(rbf_range),
            "rbf_sigma": None if rbf_sigma is None else float(rbf_sigma),
            "lambda_init": float(lambda_init),
            "activation": activation,
            "init_scale": float(init_scale),
            "recompute": bool(recompute),
            "rbf_tol": None if rbf_tol is None else float(rbf_tol),
            "noise_aware": bool(noise_aware),
            "noise_reference": float(noise_reference),
        }
        self.grid = RBFGrid(int(rbf_centres), -float(rbf_range), float(rbf_range), rbf_sigma)
        self.stages = nn.ModuleList(
            VNStage(int(filters), int(kernel_size), activation, self.grid, lambda_init, init_scale, recompute, rbf_tol)
            for _ in range(int(stages))
        )
        self.noise = NoiseConditioning(int(stages), noise_reference) if noise_aware else None

    @classmethod
    def from_config(cls, config: dict) -> "VariationalNetwork":
        """Rebuild an (untrained) network from ``model.config``; load the state dict afterwards."""
        unknown = set(config) - set(_CONFIG_KEYS)
        if unknown:
            raise InputError(f"unknown variational network settings: {', '.join(sorted(unknown))}")
        return cls(**config)

    # -- constraints and optimiser blocks ---------------------------------

    def parameter_blocks(self) -> dict[str, list[nn.Parameter]]:
        """Parameter blocks of iPALM, in update order (``PARAMETER_BLOCKS``): filters, activation weights, lambda."""
        return {
            "filters": [stage.filters for stage in self.stages],
            "activations": [stage.activation.weight for stage in self.stages if stage.activation is not None],
            "lambda": [stage.lam for stage in self.stages],
            "noise": [self.noise.exponents] if self.noise is not None else [],
        }

    def block_projections(self) -> dict:
        """In-place projection of each block onto its constraint set (activation weights are free)."""
        return {
            "filters": self.project_filters_, "activations": _no_projection, "lambda": self.project_lambda_,
            "noise": _no_projection,
        }

    @torch.no_grad()
    def project_filters_(self) -> None:
        for stage in self.stages:
            stage.project_filters_()

    @torch.no_grad()
    def project_lambda_(self) -> None:
        for stage in self.stages:
            stage.project_lambda_()

    @torch.no_grad()
    def project_(self) -> None:
        """Apply every constraint in place: zero-mean unit-ball filters, lambda >= 0."""
        self.project_filters_()
        self.project_lambda_()

    # -- reconstruction ---------------------------------------------------

    def _complex_dtype(self) -> torch.dtype:
        return torch.complex128 if self.stages[0].filters.dtype == torch.float64 else torch.complex64

    def _prepare(self, kspace, maps, mask, readout):
        """(Gram operator, u0 = A^H f, its per-slice max |u0| as (batch, 1, 1)) in the network's precision."""
        dtype = self._complex_dtype()
        kspace, maps = kspace.to(dtype), maps.to(dtype)
        gram = GramOperator(SenseOperator(maps, mask, readout))
        u0 = gram.adjoint(kspace)
        scale = u0.detach().abs().amax(dim=(-2, -1))
        scale = torch.where(scale > 0, scale, torch.ones_like(scale)).view(-1, 1, 1)
        return gram, u0, scale

    def forward(
        self, kspace: torch.Tensor, maps: torch.Tensor, mask: torch.Tensor, readout: int | None = None,
        record_noise_levels: bool = False,
    ) -> torch.Tensor:
        """Reconstruct masked multi-coil k-space (B, C, FE, PE) -> complex image (B, readout, PE).

        ``record_noise_levels`` (training steps only): a noise-aware network adds the noise levels
        of this batch to the range it was trained on (``NoiseConditioning.record``).
        """
        if kspace.ndim != 4 or maps.shape != kspace.shape:
            raise InputError(
                f"k-space and maps must both be (batch, coils, readout, phase); got {tuple(kspace.shape)} and {tuple(maps.shape)}"
            )
        gram, u0, scale = self._prepare(kspace, maps, mask, readout)
        level = None
        if self.noise is not None:
            level = self.noise.log_level(kspace, mask, readout, scale)
            if record_noise_levels:
                self.noise.record(level)
            level = self.noise.conditioned(level)
        u0 = u0 / scale
        u = u0
        for index, stage in enumerate(self.stages):
            u = stage(u, gram, u0, None if level is None else self.noise.factors(index, level))
        return u * scale

    def noise_level(self, kspace: torch.Tensor, maps: torch.Tensor, mask: torch.Tensor, readout: int | None) -> torch.Tensor:
        """The normalised noise level sigma / max |A^H f| per slice (batch,) that a noise-aware network estimates
        from its input (before the clamp to its trained range, ``NoiseConditioning.conditioned``)."""
        if self.noise is None:
            raise InputError("this network is not noise-aware (model setting noise_aware: false)")
        with torch.no_grad():
            _, _, scale = self._prepare(kspace, maps, mask, readout)
            return torch.exp(self.noise.log_level(kspace, mask, readout, scale)) * self.noise.reference

    def extra_repr(self) -> str:
        return ", ".join(f"{key}={value}" for key, value in self.config.items())


_CONFIG_KEYS = (
    "stages",
    "filters",
    "kernel_size",
    "rbf_centres",
    "rbf_range",
    "rbf_sigma",
    "lambda_init",
    "activation",
    "init_scale",
    "recompute",
    "rbf_tol",
    "noise_aware",
    "noise_reference",
)


def _no_projection() -> None:
    """Activation weights are unconstrained."""
