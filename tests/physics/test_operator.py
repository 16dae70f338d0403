import numpy as np
import pytest
import torch

from tests.conftest import multicoil_slice, smooth_coil_maps
from vnrecon.physics.masks import regular_mask
from vnrecon.physics.operator import SenseOperator, center_crop_readout, zero_pad_readout


def random_complex(shape, dtype, generator):
    real_dtype = torch.float64 if dtype == torch.complex128 else torch.float32
    return torch.complex(
        torch.randn(shape, generator=generator, dtype=real_dtype),
        torch.randn(shape, generator=generator, dtype=real_dtype),
    )


@pytest.mark.parametrize("dtype,tolerance", [(torch.complex64, 1e-5), (torch.complex128, 1e-12)])
def test_adjoint_identity(dtype, tolerance):
    generator = torch.Generator().manual_seed(0)
    batch, coils, full_readout, phase, readout = 2, 5, 40, 24, 20
    maps = random_complex((batch, coils, full_readout, phase), dtype, generator)
    mask = torch.from_numpy(regular_mask(phase, 4, 6))
    operator = SenseOperator(maps, mask, readout=readout)
    image = random_complex((batch, readout, phase), dtype, generator)
    kspace = random_complex((batch, coils, full_readout, phase), dtype, generator)
    lhs = torch.vdot(operator.forward(image).flatten(), kspace.flatten())
    rhs = torch.vdot(image.flatten(), operator.adjoint(kspace).flatten())
    assert abs(lhs - rhs) / abs(lhs) < tolerance


def test_crop_and_pad_are_adjoint():
    generator = torch.Generator().manual_seed(1)
    small = random_complex((3, 10, 7), torch.complex128, generator)
    large = random_complex((3, 21, 7), torch.complex128, generator)
    lhs = torch.vdot(zero_pad_readout(small, 21).flatten(), large.flatten())
    rhs = torch.vdot(small.flatten(), center_crop_readout(large, 10).flatten())
    assert abs(lhs - rhs) < 1e-12 * abs(lhs)


def test_gram_operator_is_identity_for_full_sampling_with_normalised_maps():
    readout, phase = 32, 24
    maps = torch.from_numpy(smooth_coil_maps(6, (2 * readout, phase)))[None]
    operator = SenseOperator(maps, torch.ones(phase), readout=readout)
    generator = torch.Generator().manual_seed(2)
    image = random_complex((1, readout, phase), torch.complex128, generator)
    torch.testing.assert_close(operator.normal(image), image, atol=1e-12, rtol=0)


def test_adjoint_of_simulated_data_is_the_object():
    kspace, maps, obj = multicoil_slice()
    operator = SenseOperator(torch.from_numpy(maps)[None], torch.ones(kspace.shape[-1]), readout=obj.shape[0])
    combined = operator.adjoint(torch.from_numpy(kspace)[None])[0].numpy()
    np.testing.assert_allclose(combined, obj, atol=1e-12)


def test_mask_zeroes_unsampled_lines_in_every_coil():
    generator = torch.Generator().manual_seed(3)
    maps = random_complex((1, 3, 16, 12), torch.complex128, generator)
    mask = regular_mask(12, 4, 2)
    operator = SenseOperator(maps, torch.from_numpy(mask), readout=8)
    kspace = operator.forward(random_complex((1, 8, 12), torch.complex128, generator))
    assert torch.all(kspace[..., ~mask] == 0)
    assert torch.all(kspace[..., mask].abs() > 0)


def test_mask_that_does_not_fit_is_rejected():
    maps = torch.zeros(1, 2, 8, 10, dtype=torch.complex64)
    with pytest.raises(ValueError, match="phase-encoding lines"):
        SenseOperator(maps, torch.ones(12))
