"""vnrecon command line: top-level help/version, `info`, and one-line input errors (exit 2)."""

import re
import subprocess
import sys

import h5py
import numpy as np
import pytest

from vnrecon import __version__
from vnrecon.cli import main
from vnrecon.data.selection import central_slices
from vnrecon.data.fastmri import Volume, write_volume

NOISE_SIGMA = 0.05


def noisy_phantom_kspace(n_slices=24, n_coils=4, readout=64, phase=32, seed=0):
    """Disk object in the central half of the readout (2x oversampling), smooth coils, known noise."""
    rng = np.random.default_rng(seed)
    rows, cols = np.meshgrid(np.linspace(-2, 2, readout), np.linspace(-1, 1, phase), indexing="ij")
    disk = (rows**2 + cols**2 < 0.8).astype(float)
    coils = np.stack([np.exp(-((rows - np.cos(a)) ** 2 + (cols - np.sin(a)) ** 2) / 2) for a in
                      2 * np.pi * np.arange(n_coils) / n_coils]) * np.exp(1j * 0.3 * cols)
    images = np.broadcast_to(coils * disk, (n_slices, n_coils, readout, phase))
    kspace = np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(images, axes=(-2, -1)), norm="ortho"), axes=(-2, -1))
    noise = rng.standard_normal(kspace.shape) + 1j * rng.standard_normal(kspace.shape)
    return (kspace + NOISE_SIGMA * noise).astype(np.complex64)


@pytest.fixture
def valid_file(tmp_path):
    kspace = noisy_phantom_kspace()
    path = tmp_path / "knee.h5"
    write_volume(path, Volume(kspace, "CORPDFS_FBK", "patient-42"), recon_shape=(32, 32))
    central = kspace[2:22]
    expected_snr = np.sqrt(np.mean(np.abs(central) ** 2)) / NOISE_SIGMA
    return path, expected_snr


# ---------------------------------------------------------------- top level


def test_help_lists_the_commands(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "usage: vnrecon" in out
    assert re.search(r"^\s+info\s+\S", out, re.MULTILINE)


def test_version(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"vnrecon {__version__}"


@pytest.mark.parametrize("argv", [[], ["frobnicate"], ["info"]])
def test_usage_errors_exit_2(capsys, argv):
    assert main(argv) == 2
    assert "usage:" in capsys.readouterr().err


def test_central_slices():
    assert central_slices(40, 20) == range(10, 30)
    assert central_slices(24, 20) == range(2, 22)
    assert central_slices(21, 20) == range(0, 20)
    assert central_slices(5, 5) == range(0, 5)


# ---------------------------------------------------------------- info


def test_info_prints_the_fields(valid_file, capsys):
    path, expected_snr = valid_file
    assert main(["info", str(path)]) == 0
    captured = capsys.readouterr()
    assert captured.err == ""
    out = captured.out
    assert out.splitlines()[0] == str(path)
    assert re.search(r"slices:\s+24$", out, re.MULTILINE)
    assert re.search(r"coils:\s+4$", out, re.MULTILINE)
    assert "64 x 32 (readout x phase), recon 32 x 32" in out
    assert re.search(r"acquisition:\s+CORPDFS_FBK$", out, re.MULTILINE)
    assert re.search(r"patient id:\s+patient-42$", out, re.MULTILINE)
    assert "slices 2-21 (0-based), central 20 of 24" in out
    snr = float(re.search(r"SNR:\s+([0-9.]+)", out).group(1))
    assert snr == pytest.approx(expected_snr, rel=0.1)
    assert re.search(r"mask:\s+none$", out, re.MULTILINE)


def test_info_reports_mask_acceleration_and_acs(tmp_path, capsys):
    kspace = noisy_phantom_kspace(n_slices=3)
    mask = np.zeros(32, bool)
    mask[::4] = True
    mask[12:20] = True  # 8 + 6 lattice lines outside = 14 of 32
    kspace[..., ~mask] = 0
    path = write_volume(tmp_path / "test.h5", Volume(kspace, "CORPD_FBK", "t1", mask=mask), recon_shape=(32, 32))
    assert main(["info", str(path)]) == 0
    out = capsys.readouterr().out
    assert "effective acceleration 2.29 (14 of 32 acquired lines), 9 ACS lines" in out  # line 20 touches the block
    assert "slices 0-2 (0-based), central 3 of 3, sampled lines only" in out
    assert re.search(r"SNR:\s+[0-9.]+ ", out)


def test_info_several_files_continues_past_a_bad_one(valid_file, tmp_path, capsys):
    path, _ = valid_file
    missing = tmp_path / "missing.h5"
    assert main(["info", str(path), str(missing), str(path)]) == 2
    captured = capsys.readouterr()
    assert captured.out.count("acquisition:") == 2
    assert captured.err.splitlines() == [f"vnrecon: error: {missing}: file not found"]


# ---------------------------------------------------------------- input errors


def _write_h5(path, **datasets):
    with h5py.File(path, "w") as h5:
        for name, value in datasets.items():
            h5[name] = value


def _nan_kspace():
    kspace = noisy_phantom_kspace(n_slices=2, n_coils=2, readout=16, phase=8)
    kspace[1, 0, 4, 4] = np.nan
    return kspace


BAD_FILES = {
    "missing.h5": (lambda p: None, "file not found"),
    "random.h5": (lambda p: p.write_bytes(np.random.default_rng(1).bytes(2048)), "not an HDF5 file"),
    "no_kspace.h5": (lambda p: _write_h5(p, other=np.zeros(3)), "no 'kspace' dataset"),
    "rank3.h5": (lambda p: _write_h5(p, kspace=np.zeros((2, 16, 8), np.complex64)), "'kspace' must be 4-D"),
    "nan.h5": (lambda p: _write_h5(p, kspace=_nan_kspace()), "k-space contains NaN or Inf (slice 1)"),
}


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_bad_input_is_one_line_exit_2(tmp_path, capsys, name):
    make, message = BAD_FILES[name]
    path = tmp_path / name
    make(path)
    assert main(["info", str(path)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(f"vnrecon: error: {path}: {message}")


def test_subprocess_errors_have_no_traceback(tmp_path):
    paths = []
    for name, (make, _) in sorted(BAD_FILES.items()):
        path = tmp_path / name
        make(path)
        paths.append(path)
    result = subprocess.run(
        [sys.executable, "-m", "vnrecon.cli", "info", *map(str, paths)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == len(paths)
    for line, path, (name, (_, message)) in zip(lines, paths, sorted(BAD_FILES.items())):
        assert line.startswith(f"vnrecon: error: {path}: {message}")
