import numpy as np
import pytest
import torch
import yaml
from skimage.metrics import structural_similarity

from tests.conftest import knee_selection
from vnrecon.data.dataset import SliceDataset
from vnrecon.data.selection import Selection, parse_selections
from vnrecon.errors import InputError
from vnrecon.eval.evaluate import (
    baseline_reconstructor, choose_weights, evaluate, markdown_table, parse_weight, read_selection_source,
    spread_indices, summarise,
)
from vnrecon.models.baselines import SENSE_REGULARIZATION
from vnrecon.physics.operator import SenseOperator

pytestmark = pytest.mark.usefixtures("single_torch_thread")


def test_rows_match_independent_metrics_and_summary(knee_folder, tmp_path):
    dataset = SliceDataset(parse_selections([knee_selection(knee_folder, (0, 1), 3)], "test"), cache_dir=tmp_path / "cache")
    methods = {"zero-filled": baseline_reconstructor("zf"), "CG-SENSE": baseline_reconstructor("sense")}
    rows = evaluate(methods, dataset, "PDw", batch_size=2)
    assert len(rows) == 2 * 3
    for row in rows:
        if row["method"] != "zero-filled":
            continue
        item = dataset[[entry.slice_index for entry in dataset.entries].index(row["slice"])]
        image = SenseOperator(item["maps"][None], item["mask"], item["reference"].shape[0]).adjoint(item["kspace"][None])[0]
        reference = item["reference"].numpy()
        error = np.linalg.norm(reference - image.numpy()) / np.linalg.norm(reference)
        assert row["nrmse"] == pytest.approx(error, rel=1e-4)
        magnitude, truth = np.abs(image.numpy()), np.abs(reference)
        expected = structural_similarity(
            truth, magnitude, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
            data_range=truth.max() - truth.min(),
        )
        assert row["ssim"] == pytest.approx(expected, abs=1e-4)
    summary = summarise(rows)
    assert [(entry["test_set"], entry["method"]) for entry in summary] == [("PDw", "zero-filled"), ("PDw", "CG-SENSE")]
    sense = [row["ssim"] for row in rows if row["method"] == "CG-SENSE"]
    assert summary[1]["ssim_mean"] == pytest.approx(np.mean(sense)) and summary[1]["ssim_sd"] == pytest.approx(np.std(sense))
    table = markdown_table(summary)
    assert table.count("\n") == 3 and "| PDw | CG-SENSE | 3 |" in table


# ---------------------------------------------------------------- the evaluate command's parts


def test_summary_groups_by_mask_when_rows_carry_one():
    rng = np.random.default_rng(1)
    rows = [
        {"test_set": "PDw", "mask": mask, "method": method, "file": "f.h5", "slice": index,
         "nrmse": rng.uniform(), "ssim": rng.uniform(), "psnr": rng.uniform(20, 40), "seconds": 0.1}
        for mask in ("regular", "random") for method in ("TV", "CG-SENSE") for index in range(3)
    ]
    summary = summarise(rows)
    assert [(entry["mask"], entry["method"]) for entry in summary] == [
        ("regular", "TV"), ("regular", "CG-SENSE"), ("random", "TV"), ("random", "CG-SENSE")]
    members = [row["psnr"] for row in rows if row["mask"] == "random" and row["method"] == "TV"]
    assert summary[2]["psnr_mean"] == pytest.approx(np.mean(members)) and summary[2]["psnr_sd"] == pytest.approx(np.std(members))
    lines = markdown_table(summary).splitlines()
    assert lines[0].startswith("| test set | mask | method | slices |") and len(lines) == 2 + 4
    assert lines[1].count("---") == 7 and lines[4].startswith("| PDw | random | TV | 3 |")


def test_selection_sources(knee_folder, tmp_path):
    (name, parts), = read_selection_source(knee_folder, "CORPDFS_FBK", (1, 3), 2).items()
    assert name == "CORPDFS_FBK" and parts == [Selection(str(knee_folder), "CORPDFS_FBK", (1, 3), 2)]
    assert list(read_selection_source(knee_folder)) == [knee_folder.name]

    sets = tmp_path / "sets.yaml"
    sets.write_text(yaml.safe_dump({
        "PDw": [knee_selection(knee_folder, (0, 1), 2)],
        "both": [knee_selection(knee_folder, (0, 1), 1), knee_selection(knee_folder, (1, 2), 1, "CORPDFS_FBK", mask="random")],
    }))
    loaded = read_selection_source(sets)
    assert list(loaded) == ["PDw", "both"] and [len(parts) for parts in loaded.values()] == [1, 2]
    assert loaded["both"][1].acquisition == "CORPDFS_FBK" and loaded["both"][1].mask == "random"

    with pytest.raises(InputError, match="apply to a data folder"):
        read_selection_source(sets, acquisition="CORPD_FBK")
    with pytest.raises(InputError, match="neither a data folder nor a YAML file"):
        read_selection_source(tmp_path / "missing")
    sets.write_text("PDw: [data: {")
    with pytest.raises(InputError, match="sets.yaml: not a readable YAML"):
        read_selection_source(sets)
    sets.write_text("- data: x\n")
    with pytest.raises(InputError, match="mapping of test-set names"):
        read_selection_source(sets)


@pytest.mark.parametrize("text, message", [
    ("sense", "METHOD=VALUE"), ("=1", "METHOD=VALUE"), ("foo=1", "unknown method 'foo'"),
    ("zf=1", "no regularisation weight"), ("tv=abc", "'abc' is not a number"), ("tv=-1", "non-negative"),
    ("tv=nan", "finite"),
])
def test_malformed_weights(text, message):
    with pytest.raises(InputError, match=message):
        parse_weight(text)


def test_weights_parse_and_spread():
    assert parse_weight("sense=1e-2") == ("sense", 0.01) and parse_weight(" tv = 3e-4") == ("tv", 3e-4)
    assert spread_indices(9, 1) == [4] and spread_indices(20, 10) == list(range(1, 20, 2))
    assert spread_indices(3, 10) == [0, 1, 2]


def test_tuned_weight_is_the_grid_minimum(knee_folder, tmp_path):
    tuning = SliceDataset(parse_selections([knee_selection(knee_folder, (0, 1), 2)], "tune"), cache_dir=tmp_path / "cache")
    choices = choose_weights(["zf", "sense", "tv"], "regular", {"tv": 5e-4}, tuning, torch.device("cpu"))
    assert set(choices) == {"sense", "tv"}
    assert (choices["tv"].value, choices["tv"].chosen_by) == (5e-4, "--weight")
    sense = choices["sense"]
    weights = [entry["weight"] for entry in sense.grid_scores]
    np.testing.assert_allclose(weights, np.geomspace(SENSE_REGULARIZATION / 10, SENSE_REGULARIZATION * 10, 5))
    scores = [entry["nrmse"] for entry in sense.grid_scores]
    assert sense.chosen_by == "tuned" and sense.tuning_slices == 2 and sense.value == weights[int(np.argmin(scores))]
    defaults = choose_weights(["sense"], "random", {}, None, torch.device("cpu"))
    assert (defaults["sense"].value, defaults["sense"].chosen_by, defaults["sense"].mask) == (SENSE_REGULARIZATION, "default", "random")
