"""`vnrecon simulate knee|natural` end to end: files, printed summary, info on the output, input errors."""

import contextlib
import io
import re

import h5py
import numpy as np
import pytest
import torch

from vnrecon.cli import main
from vnrecon.physics.noise import estimate_snr
from vnrecon.data import knee
from vnrecon.data.fastmri import read_header, read_volume

KNEE_ARGS = ["--patients", "1", "--slices", "3", "--matrix", "64x48", "--coils", "4"]


pytestmark = pytest.mark.usefixtures("single_torch_thread")


@pytest.fixture(scope="module")
def knee_run(tmp_path_factory):
    """Module-scoped, so stdout is captured with a redirect (capsys is function-scoped)."""
    out = tmp_path_factory.mktemp("cli") / "knee"
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        status = main(["simulate", "knee", "--out", str(out), "--seed", "2", *KNEE_ARGS])
    return out, status, stdout.getvalue()


def one_line_error(capsys, argv, pattern):
    assert main(argv) == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("vnrecon: error: "), err
    assert re.search(pattern, lines[0]), lines[0]


def test_help_lists_simulate(capsys):
    assert main(["--help"]) == 0
    assert re.search(r"^\s+simulate\s+\S", capsys.readouterr().out, re.MULTILINE)
    for kind, words in (("knee", ["--patients", "--matrix", "--size", "640x368"]), ("natural", ["--maps-from", "--snr", "--images", "sinusoidal"])):
        assert main(["simulate", kind, "--help"]) == 0
        out = capsys.readouterr().out
        assert all(word in out for word in words), out


def test_simulate_knee(knee_run):
    out, status, printed = knee_run
    assert status == 0
    names = sorted(path.name for path in out.glob("*.h5"))
    assert names == ["knee_p000_CORPDFS_FBK.h5", "knee_p000_CORPD_FBK.h5"]
    assert read_header(out / "knee_p000_CORPD_FBK.h5").shape == (3, 4, 64, 48)
    montage = out.parent / f"{out.name}_montage.png"  # beside the folder: it holds only .h5 files
    assert montage.is_file() and sorted(out.iterdir()) == sorted(out.glob("*.h5"))
    assert str(out) in printed and f"montage: {montage}" in printed
    pattern = r"^\s+(CORPD_FBK|CORPDFS_FBK)\s+paper-style\s+([\d.]+)\s+tissue\s+([\d.]+)"
    snr = {name: (float(paper), float(tissue)) for name, paper, tissue in re.findall(pattern, printed, re.MULTILINE)}
    assert snr["CORPD_FBK"][0] / snr["CORPDFS_FBK"][0] == pytest.approx(4.0, rel=0.2)  # the paper's 80 : 20
    assert snr["CORPDFS_FBK"][1] == pytest.approx(knee.acquisition.PDFS_MUSCLE_SNR, abs=0.1)
    assert snr["CORPD_FBK"][1] > snr["CORPDFS_FBK"][1]


def fastmri_opens_every_slice(folder):
    """fastMRI's own SliceDataset (the reference loader) on one of our output folders: it opens every
    file there as HDF5, so any other file in the folder breaks it. Its k-space must be ours."""
    mri_data = pytest.importorskip("fastmri.data.mri_data", reason="fastmri not installed (make test installs it)")
    dataset = mri_data.SliceDataset(folder, challenge="multicoil")
    files = sorted(folder.glob("*.h5"))
    assert len(dataset) == sum(read_header(path).n_slices for path in files)
    kspace, _, target, attrs, name, index = dataset[0]
    np.testing.assert_array_equal(kspace, read_volume(folder / name, [index]).kspace[0])
    assert attrs["encoding_size"][0] == kspace.shape[-2]


def test_fastmri_slicedataset_opens_the_knee_folder(knee_run):
    fastmri_opens_every_slice(knee_run[0])


def test_simulate_natural_and_info(knee_run, tmp_path, capsys):
    knee_dir = knee_run[0]
    out = tmp_path / "natural"
    argv = ["simulate", "natural", "--out", str(out), "--maps-from", str(knee_dir), "--count", "5",
            "--snr", "variable", "--seed", "4", "--slices-per-file", "2"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    paths = sorted(out.glob("natural_variable_*.h5"))
    assert [path.name for path in paths] == [f"natural_variable_{i:03d}.h5" for i in range(3)]
    assert [read_header(path).n_slices for path in paths] == [2, 2, 1]
    montage = tmp_path / "natural_montage.png"
    assert montage.is_file() and f"montage: {montage}" in printed
    assert sorted(out.iterdir()) == paths
    fastmri_opens_every_slice(out)
    assert "synthetic SNR:" in printed and "knee reference" in printed
    with h5py.File(paths[0]) as h5:
        assert h5.attrs["acquisition"] == "SYNTHETIC_VARIABLE" and h5.attrs["seed"] == 4
        low, high = h5.attrs["snr_reference_low"], h5.attrs["snr_reference_high"]
        assert np.all((h5.attrs["snr"] >= low) & (h5.attrs["snr"] <= high))
    first = read_volume(paths[0]).kspace

    # Same command again: identical data (deterministic per seed).
    assert main(argv) == 0
    capsys.readouterr()
    np.testing.assert_array_equal(read_volume(paths[0]).kspace, first)

    # `vnrecon info` reports the SNR recorded at simulation (no margin of these files is background).
    assert main(["info", str(paths[0])]) == 0
    shown = float(re.search(r"SNR:\s+([\d.]+) \(recorded", capsys.readouterr().out).group(1))
    with h5py.File(paths[0]) as h5:
        assert shown == pytest.approx(float(np.mean(h5.attrs["snr"])), abs=0.05)

    # On a knee file: the paper-style SNR measured from the margins and the recorded tissue SNR.
    fs = knee_dir / "knee_p000_CORPDFS_FBK.h5"
    assert main(["info", str(fs)]) == 0
    printed = capsys.readouterr().out
    paper = float(re.search(r"SNR:\s+([\d.]+) \(rms", printed).group(1))
    assert paper == pytest.approx(estimate_snr(torch.from_numpy(read_volume(fs).kspace)), abs=0.05)
    tissue = float(re.search(r"tissue SNR:\s+([\d.]+) \(muscle", printed).group(1))
    assert tissue == pytest.approx(knee.acquisition.PDFS_MUSCLE_SNR, abs=0.05)


def test_simulate_natural_with_image_folder(knee_run, tmp_path, capsys):
    from skimage import io as skio

    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    for name in ("a.png", "b.jpg"):
        skio.imsave(images / name, rng.integers(0, 256, (40, 60, 3), dtype=np.uint8), check_contrast=False)
    out = tmp_path / "natural"
    assert main(["simulate", "natural", "--out", str(out), "--maps-from", str(knee_run[0]), "--count", "3",
                 "--snr", "low", "--images", str(images)]) == 0
    capsys.readouterr()
    with h5py.File(out / "natural_low_000.h5") as h5:
        assert set(h5.attrs["source_image"]) == {"a.png", "b.jpg"}
        assert h5.attrs["acquisition"] == "SYNTHETIC_LOW"


def test_input_errors(knee_run, tmp_path, capsys):
    knee_dir = str(knee_run[0])
    out = str(tmp_path / "out")
    empty = tmp_path / "empty"
    empty.mkdir()
    knee = ["simulate", "knee", "--out", out]
    natural = ["simulate", "natural", "--out", out, "--maps-from"]
    one_line_error(capsys, [*knee, "--patients", "0", "--slices", "3"], r"--patients must be a positive integer")
    one_line_error(capsys, [*knee, "--patients", "1", "--slices", "-1"], r"--slices must be a positive integer")
    one_line_error(capsys, [*knee, "--patients", "1", "--slices", "2", "--coils", "0"], r"--coils must be a positive integer")
    one_line_error(capsys, [*knee, "--patients", "1", "--slices", "2", "--matrix", "10x3"], r"--matrix 10x3: .*too small")
    one_line_error(capsys, [*knee, "--patients", "1", "--slices", "2", "--matrix", "66x48"], r"--matrix 66x48: .*divisible")
    one_line_error(capsys, [*natural, str(empty)], r"no \.h5 files")
    one_line_error(capsys, [*natural, str(tmp_path / "missing")], r"--maps-from folder not found")
    one_line_error(capsys, [*natural, knee_dir, "--images", str(empty)], r"no readable images")
    one_line_error(capsys, [*natural, knee_dir, "--images", str(tmp_path / "missing")], r"--images folder not found")
    one_line_error(capsys, [*natural, knee_dir, "--count", "0"], r"--count must be a positive integer")
    one_line_error(capsys, [*natural, knee_dir, "--slices-per-file", "0"], r"--slices-per-file must be a positive")
    pdw_only = tmp_path / "pdw_only"
    pdw_only.mkdir()
    (pdw_only / "x.h5").write_bytes((knee_run[0] / "knee_p000_CORPD_FBK.h5").read_bytes())
    one_line_error(capsys, [*natural, str(pdw_only)], r"CORPDFS_FBK")
    # argparse usage errors: exit 2 with usage.
    for argv in ([*knee, "--patients", "1", "--slices", "2", "--matrix", "64by48"],
                 [*knee, "--patients", "1", "--slices", "2", "--matrix", "64x48", "--size", "paper"],
                 [*natural, knee_dir, "--snr", "medium"],
                 ["simulate", "natural", "--out", out],
                 ["simulate"]):
        assert main(argv) == 2
        assert "usage:" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
