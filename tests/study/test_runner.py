"""`vnrecon study` end to end with the tiny preset (one shared run), resuming, and its checks."""

import csv
import json
import math
import shutil
from dataclasses import replace

import numpy as np
import pytest

from vnrecon.cli import main
from vnrecon.errors import InputError
from vnrecon.study.experiments import (
    Study,
    check_test_patients,
    experiment_from_dict,
    held_out_selection,
    load_study,
    plan_study,
)
from vnrecon.study import runner
from vnrecon.study.presets import PRESETS
from vnrecon.study.runner import BASELINES, COLUMNS, data_folders, run_study

pytestmark = pytest.mark.usefixtures("single_torch_thread")

TINY = PRESETS["tiny"]
EXPERIMENTS = ["01", "02", "17", "19", "ref19"]
TEST_SETS = ["PDw", "PDw-FS", "PDw+noise"]
#: 1 test patient, all 6 slices.
TEST_SLICES = TINY.test_patients * TINY.simulated_slices


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """One tiny study for the module; later tests may add experiments to it, never remove any."""
    out = tmp_path_factory.mktemp("study") / "tiny"
    assert main(["study", "--preset", "tiny", "--out", str(out)]) == 0
    return out


def manifest(out) -> dict:
    return json.loads((out / "study.json").read_text())


def read_csv(path) -> tuple[list[str], list[dict]]:
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        return reader.fieldnames, list(reader)


def test_tiny_study_writes_manifest_evaluations_and_examples(study):
    result = manifest(study)
    assert result["complete"] and result["preset"] == "tiny" and result["total_seconds"] > 0
    assert result["sizes"]["matrix"] == list(TINY.matrix) and result["sizes"]["train_patients"] == TINY.train_patients
    assert list(result["test_sets"]) == TEST_SETS and result["baselines"] == list(BASELINES)
    assert result["trained_now"] == EXPERIMENTS
    entries = {entry["id"]: entry for entry in result["experiments"]}
    assert list(entries) == EXPERIMENTS
    assert entries["19"]["init"] == "17" and entries["19"]["n_train_slices"] == TINY.train_patients * TINY.finetune_slices
    assert entries["01"]["n_train_slices"] == TINY.train_patients * TINY.train_slices
    assert entries["17"]["n_train_slices"] == TINY.natural_images
    # 2 epochs of 8 slices in batches of 5 are 4 steps; the 4-slice subsets (19, ref19) get those 4 steps as 4 epochs
    full_steps = 2 * math.ceil(TINY.train_patients * TINY.train_slices / 5)
    for name, entry in entries.items():
        small = name in ("19", "ref19")
        assert entry["steps"] == full_steps and entry["epochs"] == (full_steps if small else 2)
        assert entry["run"] == f"runs/{name}" and entry["same_as"] is None and entry["seconds"] > 0
        assert entry["train"] and entry["test_sets"] == TEST_SETS and entry["masks"] == ["regular"]
        assert (study / entry["run"] / "checkpoint.pt").is_file()
    assert (study / "figures" / "curves_steps.png").stat().st_size > 0  # the small sets' validation over steps

    for name in [*EXPERIMENTS, *BASELINES]:
        columns, rows = read_csv(study / "evaluations" / f"{name}.csv")
        assert tuple(columns) == COLUMNS and {row["experiment"] for row in rows} == {name}
        rows = [row for row in rows if row["mask"] == "regular"]  # baselines gain random rows once 9 is run
        assert len(rows) == len(TEST_SETS) * TEST_SLICES
        assert {row["method"] for row in rows} == {"VN" if name in EXPERIMENTS else name}
        assert [row["test_set"] for row in rows[::TEST_SLICES]] == TEST_SETS
        assert all(0 < float(row["ssim"]) <= 1 and float(row["nrmse"]) > 0 for row in rows)
        for test_set in TEST_SETS:
            example = np.load(study / "examples" / name / f"{test_set}__regular.npy")
            reference = np.load(study / "examples" / "reference" / f"{test_set}__regular.npy")
            assert example.dtype == np.complex64 and example.shape == reference.shape == (TINY.matrix[0] // 2, TINY.matrix[1])
    # The synthetic data took their coil maps from the training patients only.
    assert len(list((study / "data" / "knee_train").glob("*.h5"))) == 2 * TINY.train_patients


def test_rerun_trains_nothing(study, capsys):
    checkpoints = sorted(study.glob("runs/*/checkpoint.pt"))
    before = [path.stat().st_mtime_ns for path in checkpoints]
    first_total = manifest(study)["total_seconds"]
    assert main(["study", "--preset", "tiny", "--out", str(study)]) == 0
    assert manifest(study)["trained_now"] == []
    # The study's cost adds up over invocations: the first run's time is kept.
    assert manifest(study)["earlier_seconds"] == first_total < manifest(study)["total_seconds"]
    assert [path.stat().st_mtime_ns for path in checkpoints] == before
    assert "finished earlier" in capsys.readouterr().out


def test_a_shared_training_is_evaluated_under_both_ids(study, capsys):
    assert main(["study", "--preset", "tiny", "--out", str(study), "--only", "9"]) == 0
    assert "experiments 01, 09; trainings 01" in capsys.readouterr().out
    result = manifest(study)
    entries = {entry["id"]: entry for entry in result["experiments"]}
    assert entries["09"]["same_as"] == "01" and entries["09"]["run"] == "runs/01"
    assert result["trained_now"] == [] and not (study / "runs" / "09").exists()
    _, rows = read_csv(study / "evaluations" / "09.csv")
    pairs = {(row["test_set"], row["mask"]) for row in rows}
    assert pairs == {(name, mask) for name in TEST_SETS for mask in ("regular", "random")}
    # Experiments of the earlier invocation stay listed.
    assert set(EXPERIMENTS) < set(entries)


def test_a_killed_training_resumes_from_its_last_epoch(study, tmp_path, monkeypatch):
    out = tmp_path / "killed"
    original = runner.train

    def killed_after_one_epoch(*args, **kwargs):
        original(*args, **kwargs, max_epochs=1)
        raise KeyboardInterrupt

    monkeypatch.setattr(runner, "train", killed_after_one_epoch)
    with pytest.raises(KeyboardInterrupt):
        run_study(out, TINY, data_dir=study / "data", only="ref19", say=lambda line: None)
    assert runner.epochs_done(out / "runs" / "ref19") == 1 and not manifest(out)["complete"]
    monkeypatch.setattr(runner, "train", original)
    lines = []
    result = run_study(out, TINY, data_dir=study / "data", only="ref19", say=lines.append)
    assert any("resuming after epoch 1" in line for line in lines)
    assert result["trained_now"] == ["ref19"] and runner.epochs_done(out / "runs" / "ref19") == 4  # its 4 steps


def test_synthetic_sets_without_their_maps_are_simulated_again(study, tmp_path):
    import h5py

    from vnrecon.data.fastmri import read_header

    folder = tmp_path / "out" / "data" / "natural_variable"
    shutil.copytree(study / "data" / "natural_variable", folder)
    for path in folder.glob("*.h5"):  # as written before the generating maps were stored
        with h5py.File(path, "a") as h5:
            del h5["maps"], h5["maps_index"]
    lines = []
    runner._simulate_natural("natural_variable", folder, study / "data" / "knee", TINY, tmp_path / "out", lines.append)
    assert any("simulated again" in line for line in lines)
    assert all(read_header(path).has_maps for path in folder.glob("*.h5"))
    runner._simulate_natural("natural_variable", folder, study / "data" / "knee", TINY, tmp_path / "out", lines.append)
    assert "simulated earlier" in lines[-1]


def test_training_on_a_test_patient_is_refused(study):
    shipped = load_study()
    definition = {
        "id": "01", "title": "leaky", "table": "S1", "test_sets": ["PDw"], "masks": ["regular"],
        "train": [{"data": "knee", "acquisition": "PDw", "patients": [0, TINY.train_patients + 1], "slices": "train"}],
    }
    leaky = Study((experiment_from_dict(definition, shipped.test_sets, "leaky.yaml"),), shipped.test_sets, shipped.tables)
    folders = data_folders(study, None)
    plans = plan_study(leaky, TINY, folders)
    tests = [held_out_selection(test_set, "regular", TINY, folders, None) for test_set in leaky.test_sets.values()]
    with pytest.raises(InputError, match="trains on test patient sim002"):
        check_test_patients(plans.values(), tests)


def test_a_folder_of_another_preset_is_refused(study):
    with pytest.raises(InputError, match="preset 'tiny'"):
        run_study(study, replace(TINY, train_slices=2))


def test_bad_arguments_exit_with_a_message(tmp_path, capsys):
    assert main(["study", "--preset", "tiny", "--out", str(tmp_path / "a"), "--only", "1,99"]) == 2
    assert "unknown experiment '99'" in capsys.readouterr().err
    assert main(["study", "--preset", "tiny", "--out", str(tmp_path / "b"), "--data", str(tmp_path / "none")]) == 2
    assert "no knee data" in capsys.readouterr().err
    assert main(["study", "--preset", "tiny", "--out", str(tmp_path / "c"), "--jobs", "0"]) == 2
    assert "--jobs must be a positive integer" in capsys.readouterr().err


def test_parallel_jobs_train_a_fine_tuning_after_its_base(study, tmp_path, capsys):
    out = tmp_path / "parallel"
    arguments = ["--preset", "tiny", "--out", str(out), "--data", str(study / "data"), "--only", "19", "--jobs", "2"]
    assert main(["study", *arguments]) == 0
    printed = capsys.readouterr().out
    assert "2 trainings in up to 2 processes" in printed
    assert printed.index("training 1/2 finished: 17") < printed.index("training started: 19")
    assert manifest(out)["trained_now"] == ["17", "19"]
    assert not (out / "data" / "knee").exists()  # the given data were used


@pytest.mark.parametrize(
    "name,damage",
    [
        ("evaluations/01.csv", b"experiment,test_set\n01\n"),
        ("evaluations/CG-SENSE.csv", b"\xff\xfe\x00\x80garbage"),
        ("evaluations/17.csv", None),  # right header, a value that is not a number
    ],
    ids=["other-columns", "not-text", "bad-value"],
)
def test_a_damaged_table_in_a_study_folder_is_one_line(study, tmp_path, capsys, name, damage):
    """A damaged evaluation table is named with one line and exit 2 (delete it to recompute it);
    nothing else in the folder changes."""
    out = tmp_path / "copy"
    shutil.copytree(study, out, symlinks=True)
    path = out / name
    if damage is None:
        text = path.read_text().splitlines()
        text[1] = ",".join("not-a-number" if column == "ssim" else value for column, value in zip(COLUMNS, text[1].split(",")))
        path.write_text("\n".join(text) + "\n")
    else:
        path.write_bytes(damage)
    before = {item: item.read_bytes() for item in out.rglob("*") if item.is_file() and item.suffix != ".lock"}
    capsys.readouterr()
    assert main(["study", "--preset", "tiny", "--out", str(out)]) == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"vnrecon: error: {path}: damaged table"), lines
    after = {item: item.read_bytes() for item in out.rglob("*") if item.is_file() and item.suffix != ".lock"}
    assert {item for item in after if after[item] != before.get(item)} <= {out / "study.json"}


def test_a_damaged_history_is_rewritten_from_the_checkpoint(study, tmp_path):
    out = tmp_path / "copy"
    shutil.copytree(study, out, symlinks=True)
    history = out / "runs" / "01" / "history.csv"
    expected = history.read_bytes()
    history.write_bytes(b"\xff\xfe garbage")
    assert main(["study", "--preset", "tiny", "--out", str(out)]) == 0
    assert history.read_bytes() == expected
