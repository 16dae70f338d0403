"""comparison_figure: layout, shared scales, the SSIM it prints, and the default ROI."""

import matplotlib.image
import numpy as np
import pytest
import torch
from matplotlib.patches import Rectangle
from scipy import ndimage
from skimage.data import shepp_logan_phantom
from skimage.metrics import structural_similarity
from skimage.transform import resize

from vnrecon.errors import InputError
from vnrecon.eval.figures import build_comparison_figure, comparison_figure, default_roi, ssim_label


def _skimage_ssim(image, reference):
    image, reference = np.abs(image), np.abs(reference)
    return structural_similarity(reference, image, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                 data_range=reference.max() - reference.min())


@pytest.fixture
def images():
    """A complex phantom, a blurred and a noisy version (numpy complex, torch complex)."""
    rng = np.random.default_rng(0)
    magnitude = resize(shepp_logan_phantom(), (48, 40), anti_aliasing=True)
    reference = magnitude * np.exp(0.4j)
    blurred = ndimage.gaussian_filter(magnitude, 1.0) * np.exp(0.4j)
    noisy = torch.from_numpy(reference + 0.05 * (rng.standard_normal(reference.shape) + 1j * rng.standard_normal(reference.shape)))
    return reference, {"blurred": blurred, "noisy": noisy}


def test_ssim_label_is_the_tables_ssim(images):
    reference, reconstructions = images
    for image in reconstructions.values():
        expected = _skimage_ssim(np.asarray(image), reference)
        assert ssim_label(image, reference) == f"SSIM {expected:.3f}"
        assert ssim_label(np.abs(np.asarray(image)), np.abs(reference)) == f"SSIM {expected:.3f}"


def test_layout_scales_and_labels(images):
    reference, reconstructions = images
    roi = (10, 30, 5, 25)
    figure = build_comparison_figure(reference, reconstructions, title="t", roi=roi, pixel_aspect=1.5)
    image_axes, colorbars = figure.axes[:9], figure.axes[9:]
    assert len(image_axes) == 3 * 3 and len(colorbars) == 1
    grid = np.array(image_axes).reshape(3, 3)
    assert [axis.get_title() for axis in grid[0]] == ["reference", "blurred", "noisy"]

    grey_max = np.percentile(np.abs(reference), 99.5)
    for column, image in enumerate([reference, *reconstructions.values()]):
        top, zoom = grid[0, column].images[0], grid[1, column].images[0]
        assert top.get_clim() == pytest.approx((0, grey_max)) and zoom.get_clim() == top.get_clim()
        np.testing.assert_allclose(zoom.get_array(), np.abs(np.asarray(image))[10:30, 5:25])
    errors = [np.abs(np.abs(np.asarray(image)) - np.abs(reference)) for image in reconstructions.values()]
    error_max = max(np.percentile(error, 99.5) for error in errors)
    for column, error in enumerate(errors, start=1):
        shown = grid[2, column].images[0]
        assert shown.get_clim() == pytest.approx((0, error_max))
        np.testing.assert_allclose(shown.get_array(), error)
        corner = [text.get_text() for text in grid[0, column].texts]
        assert corner == [f"SSIM {_skimage_ssim(np.asarray(list(reconstructions.values())[column - 1]), reference):.3f}"]
    assert f"{error_max:.3g}" in grid[2, 0].texts[0].get_text()
    assert not grid[0, 0].texts  # the reference gets no SSIM

    (outline,) = [patch for patch in grid[0, 0].patches if isinstance(patch, Rectangle)]
    assert outline.get_xy() == (4.5, 9.5) and (outline.get_width(), outline.get_height()) == (20, 20)
    assert grid[0, 0].get_aspect() == 1.5


def test_comparison_figure_writes_a_png(images, tmp_path):
    reference, reconstructions = images
    path = comparison_figure(torch.from_numpy(reference), reconstructions, tmp_path / "f" / "cmp.png", title="x")
    pixels = matplotlib.image.imread(path)
    height, width = pixels.shape[:2]
    # 2.4-inch panels at 100 dpi: 3 columns; 3 rows, two of them 1.2 panels high (48 x 40 pixels).
    assert 3 * 200 < width < 3 * 240 + 100 and 3 * 200 < height < 3.4 * 240 + 100
    assert list(tmp_path.joinpath("f").iterdir()) == [path]


def test_default_roi_is_a_third_around_the_centre_of_mass():
    image = np.zeros((60, 90))
    image[40:44, 70:74] = 1.0  # mass centred at (41.5, 71.5)
    row0, row1, col0, col1 = default_roi(image)
    assert (row1 - row0, col1 - col0) == (20, 30)
    assert (row0 + row1) / 2 == pytest.approx(41.5, abs=1) and (col0 + col1) / 2 == pytest.approx(71.5, abs=1)
    image[:] = 0
    image[0, 0] = 1.0  # near a corner the window is shifted inside the image
    assert default_roi(torch.from_numpy(image).to(torch.complex64)) == (0, 20, 0, 30)


def test_bad_input_is_reported(images, tmp_path):
    reference, reconstructions = images
    with pytest.raises(InputError, match="differs"):
        build_comparison_figure(reference, {"small": reference[:-1]})
    with pytest.raises(InputError, match="roi"):
        build_comparison_figure(reference, reconstructions, roi=(10, 5, 0, 10))
    with pytest.raises(InputError, match="2-D"):
        build_comparison_figure(reference[None], reconstructions)
