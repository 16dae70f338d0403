"""`vnrecon evaluate` end to end on simulated knee data, and its one-line input errors."""

import csv
import json

import numpy as np
import pytest
import torch
from skimage.metrics import structural_similarity

from tests.conftest import KNEE_ACS, knee_selection
from vnrecon.cli import main
from vnrecon.data.dataset import SliceDataset
from vnrecon.data.selection import parse_selections
from vnrecon.eval.evaluate import CSV_COLUMNS
from vnrecon.models.vn import VariationalNetwork
from vnrecon.physics.operator import SenseOperator
from vnrecon.train.checkpoint import model_from_checkpoint, save_checkpoint

pytestmark = pytest.mark.usefixtures("single_torch_thread")

TEST_PATIENTS = (3, 4)
TEST_SLICES = 3


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    torch.manual_seed(0)
    run = tmp_path_factory.mktemp("runs") / "vn_tiny"
    save_checkpoint(run / "checkpoint.pt", VariationalNetwork(stages=1, filters=2, kernel_size=3))
    return run


def _base_args(knee_folder, out, cache):
    return [
        "evaluate", "--data", str(knee_folder), "--acquisition", "CORPD_FBK",
        "--patients", *map(str, TEST_PATIENTS), "--slices", str(TEST_SLICES), "--acs-lines", str(KNEE_ACS),
        "--out", str(out), "--cache", str(cache), "--quiet",
    ]


def _test_item(knee_folder, cache, slice_index):
    selection = parse_selections([knee_selection(knee_folder, TEST_PATIENTS, TEST_SLICES)], "test")
    dataset = SliceDataset(selection, cache_dir=cache)
    return dataset[[entry.slice_index for entry in dataset.entries].index(slice_index)]


def _skimage_ssim(image, reference):
    image, reference = np.abs(image), np.abs(reference)
    return structural_similarity(reference, image, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                 data_range=reference.max() - reference.min())


def test_evaluate_models_and_methods(knee_folder, tiny_run, tmp_path, capsys):
    out, cache = tmp_path / "out", tmp_path / "cache"
    argv = _base_args(knee_folder, out, cache) + [
        "--model", str(tiny_run), "--method", "zf", "--method", "sense", "--mask", "regular", "--mask", "random",
        "--tune", str(knee_folder),
    ]
    assert main(argv) == 0
    table = capsys.readouterr().out
    assert table.strip() == (out / "summary.md").read_text().strip()

    with open(out / "per_slice.csv", newline="") as handle:
        reader = csv.DictReader(handle)
        assert tuple(reader.fieldnames) == CSV_COLUMNS
        rows = list(reader)
    labels = ["vn_tiny", "zero-filled", "CG-SENSE"]
    assert len(rows) == 2 * len(labels) * TEST_SLICES
    assert {(row["mask"], row["method"]) for row in rows} == {(mask, label) for mask in ("regular", "random") for label in labels}

    # One slice, recomputed independently: zero filling and the network against the reference.
    first = next(row for row in rows if row["mask"] == "regular")
    item = _test_item(knee_folder, cache, int(first["slice"]))
    reference = item["reference"].numpy()
    batch = [item[key][None] for key in ("kspace", "maps", "mask")]
    zero_filled = SenseOperator(batch[1], batch[2], reference.shape[0]).adjoint(batch[0])[0].numpy()
    with torch.no_grad():
        network, _ = model_from_checkpoint(tiny_run / "checkpoint.pt")
        network_image = network(*batch, reference.shape[0])[0].numpy()
    scores = {row["method"]: row for row in rows if row["mask"] == "regular" and row["slice"] == first["slice"]}
    assert float(scores["zero-filled"]["ssim"]) == pytest.approx(_skimage_ssim(zero_filled, reference), abs=1e-4)
    assert float(scores["vn_tiny"]["ssim"]) == pytest.approx(_skimage_ssim(network_image, reference), abs=1e-4)
    error = np.linalg.norm(network_image - reference) / np.linalg.norm(reference)
    assert float(scores["vn_tiny"]["nrmse"]) == pytest.approx(error, rel=1e-4)

    record = json.loads((out / "summary.json").read_text())
    assert len(record["summary"]) == 6
    for entry in record["summary"]:
        members = [row for row in rows if (row["mask"], row["method"]) == (entry["mask"], entry["method"])]
        for metric in ("ssim", "nrmse", "psnr"):
            values = np.array([float(row[metric]) for row in members])
            assert entry[f"{metric}_mean"] == pytest.approx(values.mean(), rel=1e-6)
            assert entry[f"{metric}_sd"] == pytest.approx(values.std(), rel=1e-5, abs=1e-9)
    (weights_regular, weights_random) = record["weights"]
    assert [weights["mask"] for weights in record["weights"]] == ["regular", "random"]
    for weights in (weights_regular, weights_random):
        assert (weights["method"], weights["chosen_by"], weights["tuning_slices"]) == ("CG-SENSE", "tuned", 10)
        best = min(weights["grid_scores"], key=lambda score: score["nrmse"])
        assert weights["value"] == best["weight"]
    assert record["models"] == {"vn_tiny": str(tiny_run / "checkpoint.pt")}

    figures = sorted((out / "figures").glob("*.png"))
    assert len(figures) == 2  # the central slice, per mask
    report = (out / "report.html").read_text()
    assert report.count("<img src=\"data:image/png;base64,") == 2 and "<td>vn_tiny</td>" in report


def test_evaluate_with_given_weight_and_yaml_test_sets(knee_folder, tmp_path, capsys):
    sets = tmp_path / "sets.yaml"
    sets.write_text(json.dumps({"PDw-FS": [knee_selection(knee_folder, (3, 4), 1, "CORPDFS_FBK", mask="random")]}))
    out = tmp_path / "out"
    argv = ["evaluate", "--data", str(sets), "--out", str(out), "--method", "sense", "--weight", "sense=1e-2",
            "--figure-slices", "0", "--cache", str(tmp_path / "cache"), "--quiet"]
    assert main(argv) == 0
    assert "| PDw-FS | regular | CG-SENSE | 1 |" in capsys.readouterr().out  # --mask defaults to regular
    record = json.loads((out / "summary.json").read_text())
    (weights,) = record["weights"]
    assert (weights["value"], weights["chosen_by"], weights["parameter"]) == (1e-2, "--weight", "regularization")
    assert not (out / "figures").exists() and "<img" not in (out / "report.html").read_text()


@pytest.fixture
def damaged_run(tmp_path):
    run = tmp_path / "damaged"
    run.mkdir()
    (run / "checkpoint.pt").write_bytes(b"PK\x03\x04 not really a zip")
    return run


def _short_mask(tmp_path):
    path = tmp_path / "short_mask.npy"
    np.save(path, np.ones(10))
    return path


@pytest.mark.parametrize("extra, message", [
    (["--method", "zf", "--acquisition", "NOPE"], "no file has acquisition NOPE"),
    (["--model", "{tmp}"], "checkpoint.pt: checkpoint not found"),
    (["--model", "{damaged}"], "checkpoint.pt: not a readable checkpoint"),
    (["--method", "zf", "--mask", "{mask}"], "short_mask.npy: mask has 10 lines but the data have 64 phase-encoding lines"),
    (["--method", "magic"], "--method: unknown method 'magic'"),
    (["--method", "sense", "--weight", "sense:1e-3"], "--weight sense:1e-3: expected METHOD=VALUE"),
    (["--method", "sense", "--weight", "tv=1e-3"], "method tv is not evaluated"),
    ([], "give at least one --model or --method"),
])
def test_bad_input_is_one_line_and_exit_2(knee_folder, damaged_run, tmp_path, capsys, extra, message):
    values = {"tmp": tmp_path, "damaged": damaged_run, "mask": _short_mask(tmp_path)}
    extra = [value.format(**values) for value in extra]
    base = ["evaluate", "--data", str(knee_folder), "--out", str(tmp_path / "out"), "--acs-lines", str(KNEE_ACS), "--quiet"]
    if "--acquisition" not in extra:
        base += ["--acquisition", "CORPD_FBK", "--patients", "3", "4", "--slices", "1"]
    assert main(base + extra) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("vnrecon: error: ") and message in lines[0]
    if "acquisition" in message:
        assert str(knee_folder) in lines[0]
    assert captured.out == "" and not (tmp_path / "out").exists()


def test_help_names_every_option(capsys):
    assert main(["evaluate", "--help"]) == 0
    text = capsys.readouterr().out
    for option in ("--data", "--out", "--model", "--method", "--mask", "--weight", "--tune", "--figure-slices",
                   "per_slice.csv", "summary.md", "summary.json", "report.html"):
        assert option in text
