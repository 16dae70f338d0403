"""Synthetic k-space from natural images: layout, determinism, phase, SNR, coil maps, image folders, errors."""

import h5py
import numpy as np
import pytest
import torch
from skimage import io

from vnrecon.data import knee
from vnrecon.data.fastmri import read_header, read_volume
from vnrecon.data.natural import (
    SinusoidalPhase,
    measure_knee_reference,
    random_view,
    simulate_natural_dataset,
)
from vnrecon.data.photos import default_images, load_images
from vnrecon.errors import InputError
from vnrecon.physics.espirit import espirit_maps
from vnrecon.physics.fft import ifft2c
from vnrecon.physics.noise import estimate_noise_sigma, estimate_snr

MATRIX = (64, 48)
COILS = 4
PER_FILE = 4


pytestmark = pytest.mark.usefixtures("single_torch_thread")


@pytest.fixture(scope="module")
def knee_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("knee")
    knee.simulate_knee_dataset(folder, 1, 3, seed=0, matrix=MATRIX, n_coils=COILS, montage=False)
    return folder


@pytest.fixture(scope="module")
def knee_snr(knee_dir):
    """Independent measurement: estimate_snr over all (= central) slices of each prewhitened acquisition."""
    return {
        name: estimate_snr(torch.from_numpy(read_volume(knee_dir / f"knee_p000_{name}.h5").prewhitened().kspace))
        for name in ("CORPD_FBK", "CORPDFS_FBK")
    }


def simulate(out, knee_dir, **kwargs):
    options = dict(count=6, snr="high", seed=0, slices_per_file=PER_FILE)
    options.update(kwargs)
    return simulate_natural_dataset(out, knee_dir, **options)


@pytest.fixture(scope="module")
def high(tmp_path_factory, knee_dir):
    return simulate(tmp_path_factory.mktemp("high"), knee_dir)


@pytest.fixture(scope="module")
def variable(tmp_path_factory, knee_dir):
    return simulate(tmp_path_factory.mktemp("variable"), knee_dir, snr="variable", count=8, seed=3)


def load(paths):
    """(kspace (n, coils, H, W), per-slice attrs dict of arrays, file attrs of the first file)."""
    kspace, per_slice = [], {}
    with h5py.File(paths[0]) as h5:
        first = dict(h5.attrs)
    for path in paths:
        kspace.append(read_volume(path).kspace)
        with h5py.File(path) as h5:
            for key in ("snr", "source_image", "map_source", "phase_amplitude", "phase_frequency", "phase_offset"):
                per_slice.setdefault(key, []).extend(list(h5.attrs[key]))
    return np.concatenate(kspace), {key: np.array(value) for key, value in per_slice.items()}, first


def knee_maps(knee_dir, map_source, crop=0.0):
    """ESPIRiT maps of the prewhitened knee slice a synthetic slice borrows."""
    name, index = str(map_source).rsplit(":", 1)
    kspace = torch.from_numpy(read_volume(knee_dir / name, slices=[int(index)]).prewhitened().kspace[0])
    return espirit_maps(kspace, acs_lines=24, crop=crop).numpy()


def rms(kspace):
    return np.sqrt(np.mean(np.abs(kspace.astype(np.complex128)) ** 2))


# ---------------------------------------------------------------- layout


def test_files_shapes_and_attributes(high):
    assert [path.name for path in high] == ["natural_high_000.h5", "natural_high_001.h5"]
    folder = high[0].parent
    assert (folder.parent / f"{folder.name}_montage.png").stat().st_size > 10_000
    assert sorted(folder.iterdir()) == high
    for index, (path, n_slices) in enumerate(zip(high, (PER_FILE, 6 - PER_FILE))):
        info = read_header(path)
        assert info.shape == (n_slices, COILS, *MATRIX)
        assert info.acquisition == "SYNTHETIC_HIGH"
        assert info.patient_id == f"nat{index:03d}"
        assert info.has_rss and not info.has_mask
        assert info.header["recon_shape"][:2] == (MATRIX[0] // 2, MATRIX[1])
        volume = read_volume(path)
        assert volume.kspace.dtype == np.complex64 and np.isfinite(volume.kspace).all()
        assert volume.reconstruction_rss.shape == (n_slices, MATRIX[0] // 2, MATRIX[1])
        assert info.attrs["snr"].shape == (n_slices,)
        assert info.attrs["phase_frequency"].shape == (n_slices, 2)
        assert len(info.attrs["source_image"]) == n_slices
    _, per_slice, _ = load(high)
    sources = {str(name) for name in per_slice["source_image"]}
    assert len(sources) == 6  # 6 images from 10 or more sources: each used once before any repeats
    assert sources <= {name for name, _ in default_images()}


def test_deterministic_per_seed_and_independent_of_count(tmp_path, knee_dir, high):
    again = simulate(tmp_path / "again", knee_dir)
    fewer = simulate(tmp_path / "fewer", knee_dir, count=3)
    other = simulate(tmp_path / "other", knee_dir, seed=1, count=3)
    reference, attrs, _ = load(high)
    repeated, attrs_again, _ = load(again)
    np.testing.assert_array_equal(repeated, reference)
    for key in attrs:
        np.testing.assert_array_equal(attrs_again[key], attrs[key])
    np.testing.assert_array_equal(load(fewer)[0], reference[:3])
    assert not np.allclose(load(other)[0], reference[:3])


# ---------------------------------------------------------------- coil maps, phase


def test_coil_images_are_knee_maps_times_one_image(knee_dir, high):
    """u_c = S_c m exp(i phi) + noise with S the ESPIRiT maps of the knee slice named in map_source."""
    kspace, attrs, first = load(high)
    sigma = first["noise_sigma"]
    for index in range(len(kspace)):
        maps = knee_maps(knee_dir, attrs["map_source"][index])
        cropped = knee_maps(knee_dir, attrs["map_source"][index], crop=0.95)
        inside = np.sqrt(np.sum(np.abs(cropped) ** 2, axis=0)) > 0.5
        rss = np.sqrt(np.sum(np.abs(maps) ** 2, axis=0))
        assert inside.mean() > 0.2
        np.testing.assert_allclose(rss[inside], 1.0, atol=1e-4)  # the maps used: RSS 1 where the knee maps are
        assert np.abs(rss - 1).max() < 1e-4  # and (crop 0) over the whole FOV: the image fills it
        images = ifft2c(torch.from_numpy(kspace[index])).numpy().astype(np.complex128)
        combined = np.sum(maps.conj() * images, axis=0)
        residual = images - maps * combined
        # Only noise is left, in the (coils - 1)-dimensional complement of the maps.
        expected = sigma * np.sqrt(2 * (COILS - 1) / COILS)
        assert np.sqrt(np.mean(np.abs(residual) ** 2)) == pytest.approx(expected, rel=0.1)
        # Maps of a different geometry (flipped) do not explain the coil images.
        flipped = maps[::-1]
        wrong = images - flipped * np.sum(flipped.conj() * images, axis=0)
        assert np.sqrt(np.mean(np.abs(wrong) ** 2)) > 5 * expected


def test_stored_maps_are_the_generating_maps_and_explain_the_data(knee_dir, high):
    """Each file carries the pool maps its slices used; they explain the coil images to the noise level,
    while maps re-estimated with ESPIRiT from the synthetic k-space (full-FOV content) do not."""
    kspace, attrs, first = load(high)
    maps = np.concatenate([read_volume(path).slice_maps() for path in high])
    expected = first["noise_sigma"] * np.sqrt(2 * (COILS - 1) / COILS)
    for index in range(len(kspace)):
        np.testing.assert_allclose(maps[index], knee_maps(knee_dir, attrs["map_source"][index]), atol=1e-5)
        images = ifft2c(torch.from_numpy(kspace[index])).numpy().astype(np.complex128)

        def residual(coil_maps):
            return np.sqrt(np.mean(np.abs(images - coil_maps * np.sum(coil_maps.conj() * images, axis=0)) ** 2))

        assert residual(maps[index].astype(np.complex128)) == pytest.approx(expected, rel=0.05)
        estimated = espirit_maps(torch.from_numpy(kspace[index]), acs_lines=24, crop=0.0).numpy().astype(np.complex128)
        assert residual(estimated) > 1.2 * expected  # (1.4x on this 4-coil matrix)
    for path in high:  # each set once per file
        info = read_header(path)
        assert info.n_maps == len(set(h5py.File(path).attrs["map_source"]))


def test_sinusoidal_phase(knee_dir, high):
    kspace, attrs, _ = load(high)
    frequencies = attrs["phase_frequency"]
    assert len({tuple(np.round(row, 6)) for row in frequencies}) == len(frequencies)  # different per image
    for index in range(len(kspace)):
        maps = knee_maps(knee_dir, attrs["map_source"][index])
        images = ifft2c(torch.from_numpy(kspace[index])).numpy().astype(np.complex128)
        combined = np.sum(maps.conj() * images, axis=0)
        strong = np.abs(combined) > 0.3 * np.abs(combined).max()
        phase = np.angle(combined)
        model = SinusoidalPhase(
            attrs["phase_amplitude"][index], tuple(frequencies[index]), attrs["phase_offset"][index]
        )(MATRIX)
        x = np.arange(MATRIX[0])[:, None] / MATRIX[0]
        y = np.arange(MATRIX[1])[None, :] / MATRIX[1]
        fx, fy = frequencies[index]
        expected = attrs["phase_amplitude"][index] * np.sin(2 * np.pi * (fx * x + fy * y) + attrs["phase_offset"][index])
        np.testing.assert_allclose(model, expected)
        error = np.angle(np.exp(1j * (phase - model)))[strong]
        assert np.median(np.abs(error)) < 0.05  # phase = the sinusoid, up to noise
        assert np.std(phase[strong]) > 0.2  # and not constant
        assert 0.5 <= np.hypot(fx, fy) <= 2.5 and 0.5 <= attrs["phase_amplitude"][index] <= np.pi
        # The combined magnitude is the [0, 1] image times the signal scale: its range spans ~[0, max].
        assert np.abs(combined).min() < 0.1 * np.abs(combined).max()


# ---------------------------------------------------------------- SNR


def test_reference_matches_the_knee_folder(knee_dir, knee_snr):
    reference = measure_knee_reference(knee_dir)
    assert reference.snr_high == pytest.approx(knee_snr["CORPD_FBK"], rel=1e-6)
    assert reference.snr_low == pytest.approx(knee_snr["CORPDFS_FBK"], rel=1e-6)
    # The paper's 4 : 1 (the knee calibration's ratio, here on prewhitened data, so only roughly).
    assert reference.snr_high / reference.snr_low == pytest.approx(4.0, rel=0.2)
    sigmas = [
        estimate_noise_sigma(torch.from_numpy(read_volume(knee_dir / f"knee_p000_{name}.h5").prewhitened().kspace)).double()
        for name in ("CORPD_FBK", "CORPDFS_FBK")
    ]
    assert reference.sigma == pytest.approx(float(torch.cat(sigmas).mean()), rel=1e-6)
    # The margin estimate includes a little Gibbs leakage of the knee (more on this tiny matrix).
    assert reference.sigma == pytest.approx(knee.NOISE_SIGMA, rel=0.25)
    assert reference.matrix == MATRIX and reference.n_coils == COILS


@pytest.mark.parametrize("setting,name", [("high", "CORPD_FBK"), ("low", "CORPDFS_FBK")])
def test_fixed_snr_matches_the_knee_data(tmp_path, knee_dir, knee_snr, high, setting, name):
    paths = high if setting == "high" else simulate(tmp_path, knee_dir, snr="low")
    kspace, attrs, first = load(paths)
    assert first["snr_setting"] == setting
    sigma = first["noise_sigma"]
    assert sigma == pytest.approx(measure_knee_reference(knee_dir).sigma, rel=1e-9)  # the knee noise level
    np.testing.assert_allclose(attrs["snr"], knee_snr[name], rtol=1e-6)
    for index in range(len(kspace)):
        assert rms(kspace[index]) / sigma == pytest.approx(knee_snr[name], rel=0.1)


def test_variable_snr_between_the_two(knee_dir, knee_snr, variable):
    kspace, attrs, first = load(variable)
    assert first["acquisition"] == "SYNTHETIC_VARIABLE"
    low, high = knee_snr["CORPDFS_FBK"], knee_snr["CORPD_FBK"]
    snr = attrs["snr"]
    assert np.all((snr >= low * 0.999) & (snr <= high * 1.001))
    assert np.std(snr) > 5 and len(set(np.round(snr, 3))) == len(snr)
    for index in range(len(kspace)):
        assert rms(kspace[index]) / first["noise_sigma"] == pytest.approx(snr[index], rel=0.1)


# ---------------------------------------------------------------- images


def test_random_view_range_and_shape():
    rng = np.random.default_rng(0)
    image = np.random.default_rng(1).random((30, 50))
    for _ in range(10):
        view = random_view(image, (64, 24), rng)
        assert view.shape == (64, 24)
        assert view.min() == 0.0 and view.max() == 1.0


def test_image_folder(tmp_path, knee_dir):
    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(0)
    rows, cols = np.meshgrid(np.linspace(0, 1, 40), np.linspace(0, 1, 70), indexing="ij")
    grey = (255 * (0.5 + 0.5 * np.sin(9 * rows) * np.cos(5 * cols))).astype(np.uint8)
    io.imsave(folder / "grey.png", grey, check_contrast=False)
    io.imsave(folder / "colour.png", rng.integers(0, 256, (50, 60, 3), dtype=np.uint8), check_contrast=False)
    io.imsave(folder / "alpha.PNG", rng.integers(0, 256, (45, 45, 4), dtype=np.uint8), check_contrast=False)
    io.imsave(folder / "photo.jpg", rng.integers(0, 256, (48, 64, 3), dtype=np.uint8), check_contrast=False)
    (folder / "broken.png").write_bytes(b"not an image")
    io.imsave(folder / "flat.png", np.full((20, 20), 7, np.uint8), check_contrast=False)
    (folder / "notes.txt").write_text("ignored")
    loaded = load_images(folder)
    assert [name for name, _ in loaded] == ["alpha.PNG", "colour.png", "grey.png", "photo.jpg"]
    assert all(image.ndim == 2 and image.dtype == np.float64 for _, image in loaded)

    paths = simulate(tmp_path / "out", knee_dir, images=folder, count=4, snr="low")
    kspace, attrs, _ = load(paths)
    assert kspace.shape == (4, COILS, *MATRIX)
    assert set(attrs["source_image"]) == {"alpha.PNG", "colour.png", "grey.png", "photo.jpg"}


# ---------------------------------------------------------------- errors


def test_errors(tmp_path, knee_dir):
    empty = tmp_path / "empty"
    empty.mkdir()
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "a.png").write_bytes(b"\x89PNG broken")
    (junk / "b.txt").write_text("x")
    with pytest.raises(InputError, match="no readable images"):
        simulate(tmp_path / "o1", knee_dir, images=empty)
    with pytest.raises(InputError, match="no readable images"):
        simulate(tmp_path / "o2", knee_dir, images=junk)
    with pytest.raises(InputError, match="image folder not found"):
        simulate(tmp_path / "o3", knee_dir, images=tmp_path / "missing")
    with pytest.raises(InputError, match="no .h5 files"):
        simulate(tmp_path / "o4", empty)
    with pytest.raises(InputError, match="knee data folder not found"):
        simulate(tmp_path / "o5", tmp_path / "missing")
    pdw_only = tmp_path / "pdw_only"
    pdw_only.mkdir()
    (pdw_only / "a.h5").write_bytes((knee_dir / "knee_p000_CORPD_FBK.h5").read_bytes())
    with pytest.raises(InputError, match="CORPDFS_FBK"):
        simulate(tmp_path / "o6", pdw_only)
    for bad in (0, -3, 2.5, True):
        with pytest.raises(InputError, match="count must be a positive integer"):
            simulate(tmp_path / "o7", knee_dir, count=bad)
    with pytest.raises(InputError, match="snr must be one of"):
        simulate(tmp_path / "o8", knee_dir, snr="medium")
    assert not any((tmp_path / name).exists() for name in ("o1", "o2", "o3", "o4", "o5", "o6", "o7", "o8"))
