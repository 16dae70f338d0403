"""ISMRMRD raw data in: files from ISMRMRD's own generator and from its Python API, against what they hold."""

import re
import shutil
import subprocess

import h5py
import numpy as np
import pytest
import torch

from tests.conftest import multicoil_slice
from vnrecon.cli import main
from vnrecon.data.dataset import SliceDataset
from vnrecon.data.selection import Selection
from vnrecon.data.fastmri import read_volume
from vnrecon.data.ismrmrd_header import build_ismrmrd_header
from vnrecon.data.ismrmrd_raw import read_ismrmrd
from vnrecon.errors import InputError
from vnrecon.physics.fft import ifft2c
from vnrecon.physics.noise import estimate_noise_sigma
from vnrecon.physics.whitening import prewhiten, whitening_matrix

ismrmrd = pytest.importorskip("ismrmrd", reason="the ismrmrd package is a dependency of vnrecon (pip install -e .)")
GENERATOR = shutil.which("ismrmrd_generate_cartesian_shepp_logan")
needs_generator = pytest.mark.skipif(
    GENERATOR is None, reason="ismrmrd_generate_cartesian_shepp_logan not installed (Debian 'ismrmrd-tools'; .ci/run installs it as root)"
)


def generate(folder, name, *options):
    path = folder / name
    subprocess.run([GENERATOR, "-m", "64", "-c", "4", "-o", str(path), *map(str, options)], check=True, capture_output=True)
    return path


def stored(path, name):
    with h5py.File(path) as h5:
        value = h5[f"dataset/{name}"][()]
    return value["real"] + 1j * value["imag"]


@needs_generator
def test_generated_fully_sampled_file_gives_its_stored_coil_images(tmp_path):
    path = generate(tmp_path, "full.h5", "-n", 0)
    assert main(["convert", str(path), "--to", str(tmp_path / "full_fastmri.h5")]) == 0
    volume = read_volume(tmp_path / "full_fastmri.h5")
    assert volume.kspace.shape == (1, 4, 128, 64) and volume.mask is None and volume.oversampling == 2
    coil_images = stored(path, "coil_images")[0].transpose(0, 2, 1)  # stored (coils, y, x); ours (coils, x, y)
    ours = ifft2c(torch.from_numpy(volume.kspace[0])).numpy()
    np.testing.assert_allclose(ours, coil_images, atol=1e-6 * np.abs(coil_images).max())


@needs_generator
def test_generated_accelerated_file_with_noise_scan(tmp_path):
    path = generate(tmp_path, "acc.h5", "-a", 2, "-w", 16, "-C", "-r", 2, "-n", 0.05)
    # The generator interleaves: repetitions sample alternate lines, so one mask needs one repetition.
    assert main(["convert", str(path), "--to", str(tmp_path / "all.h5")]) == 2
    volume = read_ismrmrd(path, repetition=0)
    expected = np.zeros(64, bool)
    expected[::2] = True
    expected[24:40] = True  # the 16 calibration lines, measured in every repetition
    np.testing.assert_array_equal(volume.mask, expected)
    assert not np.abs(volume.kspace[..., ~expected]).any()
    # The noise scan's covariance against the noise in the imaging data's oversampled readout margins
    # (two independent looks at the generator's noise): white, and the same level.
    covariance = volume.noise_covariance
    diagonal = np.real(np.diag(covariance))
    correlation = np.abs(covariance) / np.sqrt(np.outer(diagonal, diagonal))
    assert (correlation[~np.eye(4, dtype=bool)] < 0.3).all()
    margin_sigma = float(estimate_noise_sigma(torch.from_numpy(volume.kspace[..., expected]), 2).mean())
    assert diagonal.mean() / 2 == pytest.approx(margin_sigma**2, rel=0.25)
    assert read_ismrmrd(path, repetition=1).mask[1]  # the odd lines


def _api_file(path, kspace, mask, noise, *, calibration=None, trajectory="cartesian", recon_readout=None, extra=None, pe_limits=None):
    """An ISMRMRD file written with the ismrmrd Python API: kspace (slices, coils, H, W), lines in ``mask``."""
    slices, coils, readout, phase = kspace.shape
    xml = build_ismrmrd_header(
        kspace.shape, (recon_readout or readout // 2, phase), fov_mm=(280.0, 140.0, 3.0), field_strength_T=3.0,
        sequence={"TR_ms": 2750.0, "TE_ms": 27.0}, pe_limits=pe_limits,
    ).replace("<trajectory>cartesian</trajectory>", f"<trajectory>{trajectory}</trajectory>")
    if calibration:
        xml = xml.replace("</encodingLimits>", f"</encodingLimits>\n    <parallelImaging><accelerationFactor><kspace_encoding_step_1>4"
                          f"</kspace_encoding_step_1><kspace_encoding_step_2>1</kspace_encoding_step_2></accelerationFactor>"
                          f"<calibrationMode>{calibration}</calibrationMode></parallelImaging>")
    ismrmrd.xsd.CreateFromDocument(xml)  # their schema accepts it
    dataset = ismrmrd.Dataset(str(path), "dataset", create_if_needed=True)
    dataset.write_xml_header(xml)
    for block in noise:
        acquisition = ismrmrd.Acquisition.from_array(block.astype(np.complex64))
        acquisition.set_flag(ismrmrd.ACQ_IS_NOISE_MEASUREMENT)
        dataset.append_acquisition(acquisition)
    for index in range(slices):
        for line in np.flatnonzero(mask):
            acquisition = ismrmrd.Acquisition.from_array(np.ascontiguousarray(kspace[index, :, :, line]).astype(np.complex64))
            acquisition.center_sample = readout // 2
            acquisition.idx.kspace_encode_step_1 = int(line) - (0 if pe_limits is None else phase // 2 - pe_limits[2])
            acquisition.idx.slice = index
            if calibration and abs(line - phase // 2) < 6:
                acquisition.set_flag(ismrmrd.ACQ_IS_PARALLEL_CALIBRATION)
            if extra is not None:
                extra(acquisition)
            dataset.append_acquisition(acquisition)
    dataset.close()
    return path


def test_api_written_file_places_lines_and_whitens_its_noise(tmp_path):
    rng = np.random.default_rng(5)
    kspace = np.stack([multicoil_slice(n_coils=4, readout=32, phase=24, seed=seed)[0] for seed in (1, 2)])
    mask = np.zeros(24, bool)
    mask[::3] = mask[8:16] = True
    mixing = np.array([[1, 0, 0, 0], [0.4, 1, 0, 0], [0, 0.3j, 1.2, 0], [0.1, 0, 0.5, 0.8]])  # a known receiver covariance
    covariance = mixing @ mixing.conj().T * 1e-4
    white = (rng.standard_normal((4, 64, 256)) + 1j * rng.standard_normal((4, 64, 256))) * np.sqrt(0.5e-4)
    noise = [mixing @ white[:, scan] for scan in range(64)]  # 64 noise readouts of 256 samples
    path = _api_file(tmp_path / "scan.h5", kspace, mask, noise)
    volume = read_ismrmrd(path)
    np.testing.assert_array_equal(volume.mask, mask)
    np.testing.assert_allclose(volume.kspace, (kspace * mask).astype(np.complex64), atol=1e-7)
    assert volume.oversampling == 2 and volume.header["TR_ms"] == 2750.0
    np.testing.assert_allclose(volume.noise_covariance, covariance, atol=0.05 * np.abs(covariance).max())  # 16384 samples
    # Loaders prewhiten with it: the noise scans, whitened, have (close to) identity covariance.
    assert main(["convert", str(path), "--to", str(tmp_path / "scan_fastmri.h5")]) == 0
    whitened = read_volume(tmp_path / "scan_fastmri.h5").prewhitened()
    assert whitened.noise_covariance is None and whitened.mask is not None
    transform = whitening_matrix(torch.from_numpy(volume.noise_covariance))
    samples = prewhiten(torch.from_numpy(np.concatenate(noise, axis=1)[:, :, None]), transform).numpy()[:, :, 0]
    identity = samples @ samples.conj().T / samples.shape[1] / np.mean(np.real(np.diag(volume.noise_covariance)))
    np.testing.assert_allclose(identity, np.eye(4), atol=1e-6)


def test_encoding_limits_narrower_than_the_matrix_are_padding_not_undersampling(tmp_path):
    kspace = multicoil_slice(n_coils=4, readout=32, phase=24, seed=4)[0][None]
    kspace[..., :2] = kspace[..., 22:] = 0
    mask = np.zeros(24, bool)
    mask[2:22] = True  # every encoded line: steps 0..19, centre 10 -> columns 2..21 (fastMRI: padding 2 and 22)
    volume = read_ismrmrd(_api_file(tmp_path / "padded.h5", kspace, mask, [], pe_limits=(0, 19, 10)))
    assert volume.mask is None and volume.acquired == (2, 22)  # fully sampled: usable for training
    np.testing.assert_allclose(volume.kspace, kspace.astype(np.complex64), atol=1e-7)


def test_separate_calibration_lines_are_left_out_embedded_ones_kept(tmp_path):
    kspace = multicoil_slice(n_coils=4, readout=32, phase=24, seed=3)[0][None]
    mask = np.ones(24, bool)
    embedded = read_ismrmrd(_api_file(tmp_path / "embedded.h5", kspace, mask, [], calibration="embedded"))
    assert embedded.mask is None  # every line is imaging data
    separate = read_ismrmrd(_api_file(tmp_path / "separate.h5", kspace, mask, [], calibration="separate"))
    assert not separate.mask[7:18].any() and separate.mask[:7].all()  # the 11 calibration-only lines are another scan


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"trajectory": "radial"}, "trajectory 'radial': vnrecon reconstructs Cartesian data only"),
        ({"extra": lambda acquisition: setattr(acquisition.idx, "contrast", 1)}, "contrast 1"),
        ({"recon_readout": 20}, "reconSpace readout \\(20\\) does not divide its encodedSpace readout \\(64\\)"),
    ],
)
def test_what_vnrecon_cannot_read_is_one_line(tmp_path, capsys, kwargs, message):
    kspace = multicoil_slice(n_coils=2, readout=32, phase=24, seed=0)[0][None]
    path = _api_file(tmp_path / "bad.h5", kspace, np.ones(24, bool), [], **kwargs)
    with pytest.raises(InputError, match=message):
        read_ismrmrd(path)
    for argv in (["convert", str(path), "--to", str(tmp_path / "o.h5")], ["info", str(path)]):
        assert main(argv) == 2
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and re.search(f"^vnrecon: error: {re.escape(str(path))}: .*{message}", lines[0]), lines
    assert not (tmp_path / "o.h5").exists()


def test_a_truncated_file_is_one_line(tmp_path, capsys):
    kspace = multicoil_slice(n_coils=2, readout=32, phase=24, seed=0)[0][None]
    path = _api_file(tmp_path / "scan.h5", kspace, np.ones(24, bool), [])
    data = path.read_bytes()
    (tmp_path / "cut.h5").write_bytes(data[: len(data) // 2])
    assert main(["convert", str(tmp_path / "cut.h5"), "--to", str(tmp_path / "o.h5")]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("vnrecon: error: ") and "cut.h5" in lines[0]


@needs_generator
def test_commands_and_selections_take_ismrmrd_files_directly(tmp_path, capsys):
    raw, converted = tmp_path / "raw", tmp_path / "converted"
    raw.mkdir(), converted.mkdir()
    path = generate(raw, "scan.h5", "-C", "-n", 0.02)
    assert main(["convert", str(path), "--to", str(converted / "scan.h5")]) == 0
    assert main(["info", str(path)]) == 0
    printed = capsys.readouterr().out
    assert "readout oversampling 2x" in printed and "covariance stored" in printed
    direct = SliceDataset([Selection(data=str(raw), acs_lines=16)], cache_dir=tmp_path / "cache")[0]
    via_file = SliceDataset([Selection(data=str(converted), acs_lines=16)], cache_dir=tmp_path / "cache")[0]
    for key in ("kspace", "maps", "reference"):
        np.testing.assert_array_equal(direct[key].numpy(), via_file[key].numpy())
