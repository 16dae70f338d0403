"""The multi-coil SENSE operator A = M F S and its adjoint.

Shapes (plain tensors, batch first):

* image ``u``:   (batch, readout, phase) complex, on the readout-cropped grid
* k-space ``f``: (batch, coils, full_readout, phase) complex
* maps ``S``:    (batch, coils, full_readout, phase) complex, at full FOV
* mask ``M``:    anything broadcastable to (batch, 1, full_readout, phase);
  a 1-D phase-encoding mask of shape (phase,) is the common case.

Knee raw data are 2x oversampled along the readout: the image lives on the
central half of the readout FOV, so ``A`` zero-pads it to the full FOV before
applying the maps and ``A^H`` crops it back. With no oversampling the crop and
pad are identities.
"""

import torch

from .fft import fft2c, ifft2c


def center_crop_readout(image: torch.Tensor, readout: int) -> torch.Tensor:
    """Central ``readout`` samples of axis -2 (the fastMRI convention for the start index)."""
    full = image.shape[-2]
    if readout > full:
        raise ValueError(f"cannot crop readout {full} to a larger {readout}")
    start = (full - readout) // 2
    return image[..., start : start + readout, :]


def zero_pad_readout(image: torch.Tensor, full_readout: int) -> torch.Tensor:
    """Adjoint of ``center_crop_readout``: embed axis -2 in zeros of length ``full_readout``."""
    readout = image.shape[-2]
    if readout > full_readout:
        raise ValueError(f"cannot pad readout {readout} to a smaller {full_readout}")
    start = (full_readout - readout) // 2
    padded = image.new_zeros(image.shape[:-2] + (full_readout, image.shape[-1]))
    padded[..., start : start + readout, :] = image
    return padded


def phase_mask_to_kspace(mask: torch.Tensor) -> torch.Tensor:
    """Reshape a (phase,) or (batch, phase) sampling mask to broadcast over (batch, coils, readout, phase)."""
    if mask.ndim == 1:
        return mask.reshape(1, 1, 1, -1)
    if mask.ndim == 2:
        return mask.reshape(mask.shape[0], 1, 1, mask.shape[1])
    return mask


class SenseOperator:
    """A = M F S with the readout crop; ``forward`` is A, ``adjoint`` is A^H.

    Parameters
    ----------
    maps: (batch, coils, full_readout, phase) complex coil sensitivities.
    mask: binary sampling mask, (phase,), (batch, phase) or broadcastable to k-space.
    readout: readout length of the image grid (default: the full readout, no crop).
    """

    def __init__(self, maps: torch.Tensor, mask: torch.Tensor, readout: int | None = None):
        if maps.ndim != 4:
            raise ValueError(f"maps must be (batch, coils, readout, phase), got shape {tuple(maps.shape)}")
        self.maps = maps
        self.mask = phase_mask_to_kspace(mask).to(device=maps.device, dtype=maps.real.dtype)
        self.full_readout = maps.shape[-2]
        self.readout = self.full_readout if readout is None else readout
        if self.mask.shape[-1] != maps.shape[-1]:
            raise ValueError(
                f"mask has {self.mask.shape[-1]} phase-encoding lines but the data have {maps.shape[-1]}"
            )

    def support(self) -> torch.Tensor:
        """(batch, readout, phase) bool: pixels where at least one coil map is non-zero.

        Outside it (ESPIRiT's eigenvalue crop) ``A`` does not see the image at
        all (``A P = A`` with ``P`` the support mask), ``A^H`` is zero, and so is
        the reference ``sum conj(S) F^-1 f``. The reconstructions constrain
        their image to it (the VN in every stage, TV and wavelet in every
        iteration; CG-SENSE and zero filling stay in the range of ``A^H``).
        """
        covered = self.maps.abs().square().sum(1) > 0
        return center_crop_readout(covered, self.readout)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return (self.maps.shape[0], self.readout, self.maps.shape[-1])

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """A u: image (batch, readout, phase) -> masked multi-coil k-space."""
        full = zero_pad_readout(image, self.full_readout)
        return self.mask * fft2c(self.maps * full.unsqueeze(1))

    def adjoint(self, kspace: torch.Tensor) -> torch.Tensor:
        """A^H f: masked multi-coil k-space -> coil-combined image on the cropped grid."""
        coil_images = ifft2c(self.mask * kspace)
        combined = torch.sum(self.maps.conj() * coil_images, dim=1)
        return center_crop_readout(combined, self.readout)

    def normal(self, image: torch.Tensor) -> torch.Tensor:
        """A^H A u (the Gram operator), used by gradient steps and CG."""
        return self.adjoint(self.forward(image))

    __call__ = forward
