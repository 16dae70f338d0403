"""The study outputs on a small synthetic study folder with known numbers (no training, no reconstruction)."""

import base64
import csv
import json

import numpy as np
import pytest

from vnrecon.models.vn import VariationalNetwork
from vnrecon.study.experiments import load_study
from vnrecon.study.claims import FAIL, NOT_RUN, PASS, SAMPLING_TRAININGS, evaluate_claims
from vnrecon.study.outputs import build_outputs
from vnrecon.study.results import StudyResults
from vnrecon.train.checkpoint import save_checkpoint

pytestmark = pytest.mark.usefixtures("single_torch_thread")

TEST_SETS = ("PDw", "PDw-FS", "PDw+noise")
SLICES = 4
#: Mean SSIM per (source, test set); the per-slice values spread around it.
MEAN_SSIM = {
    "01": {"PDw": 0.94, "PDw-FS": 0.81, "PDw+noise": 0.74},
    "02": {"PDw": 0.91, "PDw-FS": 0.89, "PDw+noise": 0.83},
    # 3 vs 1 on PDw+noise: passes; 3 vs 2 on PDw-FS costs 0.09 > 0.02: fails.
    "03": {"PDw": 0.91, "PDw-FS": 0.80, "PDw+noise": 0.84},
    "17": {"PDw": 0.85, "PDw-FS": 0.80, "PDw+noise": 0.75},
    "19": {"PDw": 0.93, "PDw-FS": 0.79, "PDw+noise": 0.70},
    "ref19": {"PDw": 0.88, "PDw-FS": 0.75, "PDw+noise": 0.65},
    "zero-filled": {"PDw": 0.70, "PDw-FS": 0.60, "PDw+noise": 0.55},
    "CG-SENSE": {"PDw": 0.80, "PDw-FS": 0.70, "PDw+noise": 0.62},
}
EXPERIMENTS = ("01", "02", "03", "17", "19", "ref19")
#: 9 is the training of 1 (``same_as``): no files of its own, its scores and examples are 1's.
REUSED = {"09": "01"}
CHECKPOINTS = ("01", "02", "17", "19")
IMAGE_SHAPE = (24, 16)


def write_csv(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def evaluation_rows(source):
    rng = np.random.default_rng(sorted(MEAN_SSIM).index(source))
    rows = []
    for test_set, mean in MEAN_SSIM[source].items():
        spread = rng.uniform(-0.02, 0.02, SLICES)
        for index, offset in enumerate(spread - spread.mean()):
            rows.append({
                "experiment": source, "test_set": test_set, "mask": "regular", "method": "VN" if source.isdigit() or source.startswith("ref") else source,
                "file": f"{test_set}.h5", "slice": index, "ssim": mean + offset,
                "nrmse": (1 - mean) / 2 + rng.uniform(0, 0.01), "psnr": 30 + rng.uniform(0, 2), "seconds": 0.1,
            })
    return rows


def history_rows(epochs, start):
    return [
        {"epoch": epoch, "train_loss": start / epoch, "train_rmse": start / epoch, "train_ssim": 1 - start / epoch,
         "val_rmse": start / epoch if epoch % 2 else "nan", "val_ssim": 1 - start / epoch if epoch % 2 else "nan", "seconds": 1.0}
        for epoch in range(1, epochs + 1)
    ]


def experiment_entry(source):
    table = {"01": "S1", "02": "S1", "03": "S1", "09": "S3", "17": "S4"}.get(source, "S5")
    return {
        "id": source, "title": f"training {source}", "table": table, "train": [f"data of {source}"],
        "init": "17" if source == "19" else None, "same_as": REUSED.get(source), "test_sets": list(TEST_SETS),
        "masks": ["regular"], "run": f"runs/{REUSED.get(source, source)}", "epochs": 3, "n_train_slices": 20, "seconds": 12.5,
    }


def write_study(out, experiments):
    """study.json listing ``experiments``, and evaluation files for them (a same_as training has none) and the baselines."""
    (out / "study.json").write_text(json.dumps({
        "preset": "test", "sizes": {"patients": 2, "slices": 4},
        "experiments": [experiment_entry(source) for source in experiments],
        "test_sets": {name: f"the {name} test set" for name in TEST_SETS},
        "baselines": ["zero-filled", "CG-SENSE"], "total_seconds": 123.0,
    }))
    for source in (*experiments, "zero-filled", "CG-SENSE"):
        if source in MEAN_SSIM:
            write_csv(out / "evaluations" / f"{source}.csv", evaluation_rows(source))


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    out = tmp_path_factory.mktemp("study")
    write_study(out, (*EXPERIMENTS, *REUSED))
    for source in EXPERIMENTS:
        write_csv(out / "runs" / source / "history.csv", history_rows(3, 0.5))
    for source in CHECKPOINTS:
        save_checkpoint(out / "runs" / source / "checkpoint.pt", VariationalNetwork(stages=1, filters=2, kernel_size=3))
    rng = np.random.default_rng(0)
    for source in ("reference", *EXPERIMENTS):
        for test_set in TEST_SETS:
            image = rng.normal(size=IMAGE_SHAPE) + 1j * rng.normal(size=IMAGE_SHAPE)
            path = out / "examples" / source / f"{test_set}__regular.npy"
            path.parent.mkdir(parents=True, exist_ok=True)
            np.save(path, image.astype(np.complex64))
    return out, build_outputs(out)


def read_rows(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_table_means_and_sds_are_numpy_over_the_slices(study):
    out, written = study
    rows = read_rows(written["table_S1_csv"])
    assert {row["training"] for row in rows} == {"01", "02", "03", "zero-filled", "CG-SENSE"}
    assert len(rows) == 5 * len(TEST_SETS)
    for row in rows:
        slices = [r for r in read_rows(out / "evaluations" / f"{row['training']}.csv") if r["test_set"] == row["test_set"]]
        for column, name in (("ssim", "ssim"), ("nrmse", "rmse")):
            values = np.array([float(r[column]) for r in slices])
            assert float(row[f"{name}_mean"]) == pytest.approx(values.mean(), abs=1e-12)
            assert float(row[f"{name}_sd"]) == pytest.approx(values.std(), abs=1e-12)
    markdown = written["table_S1_md"].read_text()
    pdw = [r for r in rows if r["training"] == "01" and r["test_set"] == "PDw"][0]
    assert f"| 1: training 01 | {float(pdw['ssim_mean']):.3f} ± {float(pdw['ssim_sd']):.3f} |" in markdown
    assert "Not run: 4, 5." in markdown


def test_missing_experiments_skip_rows_and_tables(study):
    _, written = study
    s3 = read_rows(written["table_S3_csv"])
    assert {row["training"] for row in s3} == {"09", "zero-filled", "CG-SENSE"}
    assert [row["ssim_mean"] for row in s3 if row["training"] == "09"] == [
        row["ssim_mean"] for row in read_rows(written["table_S1_csv"]) if row["training"] == "01"
    ]
    assert "Not run: 10, 11, 12, 13, 14." in written["table_S3_md"].read_text()
    s5 = {row["training"] for row in read_rows(written["table_S5_csv"])}
    assert s5 == {"19", "ref19", "17", "01", "02", "zero-filled", "CG-SENSE"}


def test_a_study_without_trainings_reports_everything_as_not_run(tmp_path):
    write_study(tmp_path, ())
    written = build_outputs(tmp_path)
    assert "No experiment of this table was run." in written["table_S1_md"].read_text()
    assert read_rows(written["table_S1_csv"]) == []
    assert all(status == NOT_RUN for _, status, _ in evaluate_claims(StudyResults(tmp_path)))
    assert written["report"].is_file() and not any(key.startswith(("fig", "curves_")) for key in written)


def test_claims_follow_the_numbers(study):
    out, written = study
    claims = {claim.key: (status, checks) for claim, status, checks in evaluate_claims(StudyResults(out))}
    status_a, checks_a = claims["A"]
    assert checks_a[0].status == PASS  # 3 above 1 on PDw+noise
    assert [check.status for check in checks_a[1:]] == [PASS, PASS, PASS, NOT_RUN]  # 15 and 16 not run
    assert status_a == PASS
    status_b, checks_b = claims["B"]
    assert checks_b[0].status == FAIL and "+0.090" in checks_b[0].detail  # 2 - 3 on PDw-FS
    assert checks_b[1].status == PASS  # 3 - 2 on PDw+noise costs 0.01
    assert status_b == FAIL
    assert claims["C"][0] == claims["D"][0] == NOT_RUN
    status_f, checks_f = claims["F"]
    assert [check.status for check in checks_f] == [PASS, NOT_RUN, PASS, NOT_RUN, PASS, NOT_RUN]
    assert status_f == PASS
    text = written["claims"].read_text()
    assert "| PASS (1 of 5 checks not run) |" in text and "| B | Contrast mismatch costs little. | FAIL |" in text
    assert "| C | Joint training" in text and text.count(NOT_RUN) >= 2


def test_figures_and_report(study):
    out, written = study
    expected = {"heatmap", "filters", "fig2_PDw__regular", "fig8_PDw-FS__regular", "curves_19", "claims", "report"}
    assert expected <= set(written)
    assert not any(key.startswith(("fig3", "fig5")) for key in written)  # nothing of 6-8 or 12-14 was run
    assert "fig4_PDw__regular" in written and "curves_09" not in written  # 9 reuses 1's run
    for path in written.values():
        assert path.is_file() and path.stat().st_size > 0
    html = written["report"].read_text()
    assert base64.b64encode(written["heatmap"].read_bytes()).decode() in html
    assert "Table S5" in html and "NOT RUN" in html


def test_sampling_claims_use_the_shipped_definitions_of_9_to_14():
    """Claim D names 9-14 by contrast and training mask: that must stay what their YAML files train."""
    shipped = {}
    for experiment in load_study().experiments:
        if experiment.table == "S3":
            part = experiment.train[0]
            shipped[experiment.id] = (part["acquisition"], "both" if part["mask"] == "mix" else part["mask"])
    assert shipped == SAMPLING_TRAININGS
