import numpy as np
import pytest
import torch
from skimage import color, data, filters
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from vnrecon.errors import InputError
from vnrecon.eval.metrics import nrmse, psnr, ssim


def skimage_ssim(image, reference, data_range=None):
    if data_range is None:
        data_range = reference.max() - reference.min()
    return structural_similarity(
        reference, image, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
        data_range=data_range,
    )


def natural_images():
    return {
        "camera": data.camera() / 255.0,
        "astronaut": color.rgb2gray(data.astronaut()),
        "coins": data.coins() / 255.0,
        "moon_crop": data.moon()[100:331, 50:307] / 255.0,  # odd, non-square
    }


def distortions(image, rng):
    return {
        "noise": image + 0.05 * rng.standard_normal(image.shape),
        "blur": filters.gaussian(image, sigma=2.0),
        "blur_noise_shift": 0.8 * filters.gaussian(image, sigma=1.0) + 0.1
        + 0.02 * rng.standard_normal(image.shape),
    }


def test_ssim_matches_skimage_on_natural_images():
    rng = np.random.default_rng(0)
    worst = {torch.float64: 0.0, torch.float32: 0.0}
    for reference in natural_images().values():
        for image in distortions(reference, rng).values():
            expected = skimage_ssim(image, reference)
            for dtype in worst:
                ours = float(ssim(torch.tensor(image, dtype=dtype), torch.tensor(reference, dtype=dtype)))
                worst[dtype] = max(worst[dtype], abs(ours - expected))
    assert worst[torch.float64] < 1e-10
    assert worst[torch.float32] < 1e-4


def test_ssim_matches_skimage_on_pure_noise_pairs_and_small_images():
    rng = np.random.default_rng(1)
    for shape in [(64, 64), (11, 11), (11, 30), (37, 12)]:
        reference = rng.standard_normal(shape)
        image = rng.standard_normal(shape)
        assert float(ssim(torch.tensor(image), torch.tensor(reference))) == pytest.approx(
            skimage_ssim(image, reference), abs=1e-10
        )
        correlated = reference + 0.3 * image
        assert float(ssim(torch.tensor(correlated), torch.tensor(reference))) == pytest.approx(
            skimage_ssim(correlated, reference), abs=1e-10
        )


def test_ssim_batch_equals_single_and_respects_data_range():
    rng = np.random.default_rng(2)
    reference = data.camera()[::4, ::4] / 255.0
    images = np.stack([reference + s * rng.standard_normal(reference.shape) for s in (0.02, 0.1, 0.3)])
    references = np.stack([reference, 2.0 * reference + 1.0, 1e-4 * reference])
    images[1] = 2.0 * images[1] + 1.0
    images[2] = 1e-4 * images[2]
    batch = ssim(torch.tensor(images), torch.tensor(references))
    assert batch.shape == (3,)
    for index in range(3):
        expected = skimage_ssim(images[index], references[index])
        assert float(batch[index]) == pytest.approx(expected, abs=1e-10)
        single = ssim(torch.tensor(images[index]), torch.tensor(references[index]))
        assert single.ndim == 0 and float(single) == pytest.approx(float(batch[index]), abs=1e-12)
    explicit = ssim(torch.tensor(images), torch.tensor(references), data_range=torch.tensor([1.0, 3.0, 5e-4], dtype=torch.float64))
    for index, value in enumerate([1.0, 3.0, 5e-4]):
        expected = skimage_ssim(images[index], references[index], data_range=value)
        assert float(explicit[index]) == pytest.approx(expected, abs=1e-10)


def test_ssim_of_complex_images_uses_magnitudes():
    rng = np.random.default_rng(3)
    magnitude = data.camera()[::4, ::4] / 255.0
    reference = magnitude * np.exp(1j * rng.uniform(-np.pi, np.pi, magnitude.shape))
    image = (magnitude + 0.05 * rng.standard_normal(magnitude.shape)) * np.exp(1j * 0.3)
    expected = skimage_ssim(np.abs(image), np.abs(reference))
    assert float(ssim(torch.tensor(image), torch.tensor(reference))) == pytest.approx(expected, abs=1e-10)
    assert float(ssim(torch.tensor(reference), torch.tensor(reference))) == pytest.approx(1.0, abs=1e-12)


def test_ssim_is_differentiable():
    rng = np.random.default_rng(4)
    reference = torch.tensor(rng.random((13, 14)))
    image = torch.tensor(rng.random((2, 13, 14)), requires_grad=True)
    assert torch.autograd.gradcheck(lambda u: ssim(u, reference.expand(2, -1, -1)), (image,))
    complex_image = torch.tensor(
        rng.standard_normal((1, 16, 16)) + 1j * rng.standard_normal((1, 16, 16)),
        dtype=torch.complex64, requires_grad=True,
    )
    loss = 1 - ssim(complex_image, torch.tensor(rng.random((1, 16, 16)), dtype=torch.float32)).mean()
    loss.backward()
    assert complex_image.grad is not None and torch.isfinite(complex_image.grad).all()
    assert complex_image.grad.abs().sum() > 0


def test_psnr_matches_skimage():
    rng = np.random.default_rng(5)
    reference = data.camera() / 255.0 * 0.8
    image = reference + 0.03 * rng.standard_normal(reference.shape)
    # Default: data_range = max |reference| (fastMRI convention).
    expected = peak_signal_noise_ratio(reference, image, data_range=reference.max())
    assert float(psnr(torch.tensor(image), torch.tensor(reference))) == pytest.approx(expected, abs=1e-9)
    rmse = np.sqrt(np.mean((image - reference) ** 2))
    assert expected == pytest.approx(20 * np.log10(reference.max() / rmse), abs=1e-9)
    # Explicit data range, e.g. max - min as skimage's SSIM convention.
    shifted = reference + 0.1
    value_range = shifted.max() - shifted.min()
    expected = peak_signal_noise_ratio(shifted, image + 0.1, data_range=value_range)
    ours = psnr(torch.tensor(image + 0.1), torch.tensor(shifted), data_range=value_range)
    assert float(ours) == pytest.approx(expected, abs=1e-9)


def test_psnr_complex_and_batch():
    rng = np.random.default_rng(6)
    magnitudes = rng.random((3, 20, 24))
    reference = magnitudes * np.exp(1j * rng.uniform(-3, 3, magnitudes.shape))
    image = (magnitudes + 0.01 * rng.standard_normal(magnitudes.shape)) * np.exp(1j * 1.0)
    ours = psnr(torch.tensor(image), torch.tensor(reference))
    assert ours.shape == (3,)
    for index in range(3):
        ref_mag, img_mag = np.abs(reference[index]), np.abs(image[index])
        expected = peak_signal_noise_ratio(ref_mag, img_mag, data_range=ref_mag.max())
        assert float(ours[index]) == pytest.approx(expected, abs=1e-9)


def test_nrmse():
    rng = np.random.default_rng(7)
    reference = rng.standard_normal((4, 10, 12)) + 1j * rng.standard_normal((4, 10, 12))
    image = reference + 0.1 * (rng.standard_normal(reference.shape) + 1j * rng.standard_normal(reference.shape))
    ours = nrmse(torch.tensor(image), torch.tensor(reference))
    assert ours.shape == (4,)
    for index in range(4):
        expected = np.linalg.norm(reference[index] - image[index]) / np.linalg.norm(reference[index])
        assert float(ours[index]) == pytest.approx(expected, rel=1e-12)
    # Complex, not magnitude: a global phase flip is a 200 % error.
    assert float(nrmse(torch.tensor(-reference[0]), torch.tensor(reference[0]))) == pytest.approx(2.0)
    assert float(nrmse(torch.tensor(reference.real[0]), torch.tensor(reference.real[0]))) == 0.0
    image_t = torch.tensor(image, requires_grad=True)
    nrmse(image_t, torch.tensor(reference)).sum().backward()
    assert torch.isfinite(image_t.grad).all()


@pytest.mark.parametrize(
    "call",
    [
        lambda: nrmse(torch.zeros(4, 4), torch.zeros(4, 5)),
        lambda: psnr(torch.zeros(4), torch.zeros(4)),
        lambda: ssim(torch.zeros(1, 2, 16, 16), torch.zeros(1, 2, 16, 16)),
        lambda: ssim(torch.zeros(10, 16), torch.zeros(10, 16)),
        lambda: ssim(torch.zeros(2, 16, 16), torch.zeros(2, 16, 16), data_range=torch.ones(3)),
        lambda: nrmse(np.zeros((4, 4)), np.zeros((4, 4))),
    ],
)
def test_input_errors(call):
    with pytest.raises(InputError) as info:
        call()
    assert "\n" not in str(info.value)
