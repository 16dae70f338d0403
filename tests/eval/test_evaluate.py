import numpy as np
import pytest
from skimage.metrics import structural_similarity

from tests.conftest import knee_selection
from vnrecon.data.dataset import SliceDataset
from vnrecon.data.selection import parse_selections
from vnrecon.eval.evaluate import baseline_reconstructor, evaluate, markdown_table, summarise
from vnrecon.physics.operator import SenseOperator


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
