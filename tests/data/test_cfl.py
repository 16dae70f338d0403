"""BART .cfl/.hdr in and out: the layout against numpy, and our data against the real ``bart`` command."""

import shutil
import subprocess

import numpy as np
import pytest
import torch

from vnrecon.cli import main
from vnrecon.data import cfl
from vnrecon.data.fastmri import read_volume
from vnrecon.errors import InputError
from vnrecon.physics.espirit import espirit_maps
from vnrecon.physics.fft import ifft2c

BART = shutil.which("bart")
needs_bart = pytest.mark.skipif(BART is None, reason="bart not installed (Debian package 'bart'; .ci/run installs it as root)")


def bart(*args, cwd):
    subprocess.run([BART, *map(str, args)], cwd=cwd, check=True, capture_output=True)


def test_layout_is_column_major_complex64_with_16_dims(tmp_path):
    array = (np.arange(24) + 1j * np.arange(24)[::-1]).reshape(2, 3, 4).astype(np.complex64)
    written = cfl.write_cfl(tmp_path / "a.cfl", array)
    assert (tmp_path / "a.hdr").read_text().splitlines() == ["# Dimensions", "2 3 4" + " 1" * 13 + " "]
    raw = np.fromfile(written, dtype="<c8")
    np.testing.assert_array_equal(raw, array.transpose(2, 1, 0).ravel())  # first index fastest
    back = cfl.read_cfl(tmp_path / "a")
    assert back.shape == (2, 3, 4) + (1,) * 13
    np.testing.assert_array_equal(back[..., *([0] * 13)], array)


def test_kspace_layout_round_trip():
    kspace = np.random.default_rng(0).standard_normal((3, 4, 8, 6)).astype(np.complex64)
    bart_array = cfl.kspace_to_bart(kspace)
    assert bart_array.shape == (8, 6, 1, 4) + (1,) * 9 + (3,)
    assert bart_array[5, 2, 0, 1, *([0] * 9), 2] == kspace[2, 1, 5, 2]
    np.testing.assert_array_equal(cfl.kspace_from_bart(bart_array, "x"), kspace)


@pytest.mark.parametrize(
    ("dims", "message"),
    [((8, 6, 4, 2), "3-D k-space"), ((8, 6, 1, 2, 2), "MAPS \\(dim 4\\) = 2"), ((8, 6, 1, 2, 1, 3), "TE \\(dim 5\\) = 3")],
)
def test_arrays_that_are_not_2d_multicoil_kspace_are_refused(dims, message):
    with pytest.raises(InputError, match=message):
        cfl.kspace_from_bart(np.zeros(dims, np.complex64), "k.cfl")


def test_damaged_pairs_name_the_file(tmp_path):
    cfl.write_cfl(tmp_path / "k.cfl", np.ones((4, 4, 1, 2), np.complex64))
    (tmp_path / "k.hdr").write_text("# Dimensions\n4 4 1 3\n")  # header for more data than the .cfl holds
    with pytest.raises(InputError, match=r"k\.cfl: holds 256 bytes but its header's dimensions \[4, 4, 1, 3\] need 384"):
        cfl.read_cfl(tmp_path / "k")
    (tmp_path / "k.hdr").write_text("no dimensions here\n")
    with pytest.raises(InputError, match=r"k\.hdr: not a BART header"):
        cfl.read_cfl(tmp_path / "k.cfl")
    (tmp_path / "k.hdr").unlink()
    with pytest.raises(InputError, match=r"k\.hdr: file not found"):
        cfl.read_cfl(tmp_path / "k.cfl")


@needs_bart
def test_bart_phantom_reads_as_kspace_and_bart_fft_equals_ours(tmp_path):
    bart("phantom", "-x", 64, "-s", 6, "-k", "k", cwd=tmp_path)
    bart("fft", "-i", "-u", 3, "k", "img", cwd=tmp_path)
    kspace = cfl.kspace_from_bart(cfl.read_cfl(tmp_path / "k"), "k")
    assert kspace.shape == (1, 6, 64, 64)
    ours = ifft2c(torch.from_numpy(kspace)).numpy()
    theirs = cfl.kspace_from_bart(cfl.read_cfl(tmp_path / "img"), "img")
    np.testing.assert_allclose(ours, theirs, atol=1e-5 * np.abs(theirs).max())


@needs_bart
def test_exported_knee_agrees_with_bart_fft_rss_and_ecalib(knee_folder, tmp_path):
    source = sorted(knee_folder.glob("*CORPD_FBK.h5"))[0]
    assert main(["convert", str(source), "--to", str(tmp_path / "k.cfl")]) == 0
    volume = read_volume(source).prewhitened()  # the export is prewhitened: BART assumes white noise
    exported = cfl.kspace_from_bart(cfl.read_cfl(tmp_path / "k"), "k")
    np.testing.assert_allclose(exported, volume.kspace, rtol=0, atol=1e-6 * np.abs(volume.kspace).max())

    bart("fft", "-i", "-u", 3, "k", "coils", cwd=tmp_path)
    bart("rss", 8, "coils", "rss", cwd=tmp_path)
    coils = ifft2c(torch.from_numpy(volume.kspace)).numpy()
    theirs = cfl.kspace_from_bart(cfl.read_cfl(tmp_path / "coils"), "coils")
    np.testing.assert_allclose(coils, theirs, atol=1e-5 * np.abs(theirs).max())
    rss = cfl.kspace_from_bart(cfl.read_cfl(tmp_path / "rss"), "rss")[:, 0]  # (slices, readout, phase)
    np.testing.assert_allclose(np.sqrt((np.abs(coils) ** 2).sum(1)), rss, rtol=1e-4, atol=1e-6 * rss.max())

    # ESPIRiT: the same subspace as bart ecalib with the same parameters, up to each pixel's phase.
    one = tmp_path / "one"
    one.mkdir()
    cfl.write_cfl(one / "k.cfl", cfl.kspace_to_bart(volume.kspace[:1]))
    bart("ecalib", "-m", 1, "-r", 24, "-k", 6, "-t", 0.02, "-c", 0.95, "k", "maps", cwd=one)
    theirs = cfl.kspace_from_bart(cfl.read_cfl(one / "maps"), "maps")[0]
    ours = espirit_maps(torch.from_numpy(volume.kspace[0]), acs_lines=24).numpy()
    both = (np.abs(ours).sum(0) > 0) & (np.abs(theirs).sum(0) > 0)
    agree = np.abs(np.sum(np.conj(ours) * theirs, axis=0))[both]
    # BART's eigenvalues come out smaller than SigPy's (which ours match, tests/physics/test_espirit.py), so
    # at the same -c it keeps a subset of our pixels (here ~1/3); where both keep a map, the maps agree.
    kept_by_bart = np.abs(theirs).sum(0) > 0
    assert kept_by_bart.sum() > 0.05 * kept_by_bart.size and both.sum() == kept_by_bart.sum()
    assert np.median(agree) > 0.999 and np.percentile(agree, 5) > 0.99


@needs_bart
def test_bart_kspace_converts_to_our_layout_and_back(tmp_path):
    bart("phantom", "-x", 64, "-s", 4, "-k", "k", cwd=tmp_path)
    kspace = cfl.kspace_from_bart(cfl.read_cfl(tmp_path / "k"), "k")
    assert main(["convert", str(tmp_path / "k.cfl"), "--to", str(tmp_path / "k.h5"), "--acquisition", "CORPD_FBK"]) == 0
    volume = read_volume(tmp_path / "k.h5")
    np.testing.assert_array_equal(volume.kspace, kspace)
    assert volume.acquisition == "CORPD_FBK" and volume.oversampling == 1 and volume.mask is None
    assert main(["convert", str(tmp_path / "k.h5"), "--to", str(tmp_path / "again.cfl")]) == 0
    np.testing.assert_array_equal(cfl.read_cfl(tmp_path / "again"), cfl.read_cfl(tmp_path / "k"))
    # Undersampled BART data (bart poisson / a mask multiplied in) give the file's mask.
    mask = np.zeros(64, bool)
    mask[::3] = mask[26:38] = True
    cfl.write_cfl(tmp_path / "u.cfl", cfl.kspace_to_bart(kspace * mask))
    assert main(["convert", str(tmp_path / "u"), "--to", str(tmp_path / "u.h5"), "--oversampling", "2"]) == 0
    undersampled = read_volume(tmp_path / "u.h5")
    np.testing.assert_array_equal(undersampled.mask, mask)
    assert undersampled.oversampling == 2
    # Zero-filled edge columns (a padded fastMRI file exported to BART) are padding, not undersampling.
    padded = kspace.copy()
    padded[..., :3] = padded[..., 60:] = 0
    cfl.write_cfl(tmp_path / "p.cfl", cfl.kspace_to_bart(padded))
    assert main(["convert", str(tmp_path / "p"), "--to", str(tmp_path / "p.h5")]) == 0
    back = read_volume(tmp_path / "p.h5")
    assert back.mask is None and back.acquired == (3, 60) and back.reconstruction_rss is not None
