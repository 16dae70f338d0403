"""The study's definitions and presets: loading, resolution, shared trainings, experiment ids."""

from pathlib import Path

import pytest

from vnrecon.data import knee
from vnrecon.errors import InputError
from vnrecon.study.experiments import DATA_NAMES, load_study, parse_ids, plan_study, select
from vnrecon.study.presets import PRESETS, get_preset

IDS = [f"{number:02d}" for number in range(1, 21)] + ["ref19", "ref20"]
FOLDERS = {name: Path("/data") / name for name in DATA_NAMES}


def test_the_22_trainings_are_shipped_in_study_order():
    study = load_study()
    assert study.ids() == IDS
    tables = {experiment.id: experiment.table for experiment in study.experiments}
    assert [tables[name] for name in ("01", "05", "06", "08", "09", "14", "15", "18", "19", "ref20")] == [
        "S1", "S1", "S2", "S2", "S3", "S3", "S4", "S4", "S5", "S5",
    ]
    fine_tunings = {experiment.id: experiment.init for experiment in study.experiments if experiment.init}
    assert fine_tunings == {"19": "17", "20": "17"}


def test_presets_match_the_simulator_and_resolve_every_experiment():
    assert PRESETS["cpu"].matrix == knee.DEFAULT_MATRIX
    assert PRESETS["paper"].matrix == knee.PAPER_MATRIX
    study = load_study()
    for preset in PRESETS.values():
        plans = plan_study(study, preset, FOLDERS)
        assert list(plans) == IDS
        assert set(preset.experiments or IDS) <= set(IDS)
    with pytest.raises(InputError, match="unknown study preset"):
        get_preset("huge")


def test_parts_resolve_to_the_papers_selections():
    preset = PRESETS["cpu"]  # 10 training patients (ids 0-9), then the test patients, central 20 slices
    plans = plan_study(load_study(), preset, FOLDERS)
    joint = [selection.to_dict() for selection in plans["04"].config.train]
    assert [(part["acquisition"], part["patients"], part["slices"]) for part in joint] == [
        ("CORPD_FBK", [0, 5], 20), ("CORPDFS_FBK", [5, 10], 20),
    ]
    assert plans["03"].config.train[0].noise_snr == "CORPDFS_FBK"  # the SNR of the same patients' PDw-FS files
    assert plans["11"].config.train[0].mask == "mix"
    assert plans["17"].config.train[0].data == str(FOLDERS["natural_variable"])
    assert plans["19"].config.train[0].slices == 2 and plans["19"].config.train[0].patients == (0, 10)
    validation = plans["01"].config.validation[0]
    assert (validation.patients, validation.slices) == ((10, 10 + preset.test_patients), 2)


def test_identical_trainings_share_one_run():
    plans = plan_study(load_study(), PRESETS["tiny"], FOLDERS)
    assert {name: plan.same_as for name, plan in plans.items() if plan.same_as} == {"09": "01", "12": "02"}
    assert plans["09"].run == "01" and plans["01"].run == "01"
    # Fine-tuning and training from scratch on the same slices differ by their start.
    assert plans["19"].same_as is None and plans["ref19"].same_as is None
    assert select(plans, ["09"]) == ["01", "09"]


def test_only_accepts_short_ids_and_pulls_in_what_they_need():
    study = load_study()
    plans = plan_study(study, PRESETS["tiny"], FOLDERS)
    assert parse_ids("1, 01,ref19", study.ids()) == ["01", "01", "ref19"]
    assert select(plans, parse_ids("19", study.ids())) == ["17", "19"]
    assert select(plans, parse_ids("20,ref20", study.ids())) == ["17", "20", "ref20"]
    with pytest.raises(InputError, match="unknown experiment '21'"):
        parse_ids("21", study.ids())


def test_small_sets_get_the_steps_of_a_full_training_and_fine_tunings_their_optimiser():
    from dataclasses import replace

    preset = PRESETS["cpu"]
    plans = plan_study(load_study(), preset, FOLDERS)
    full = plans["01"].config
    n_full = preset.train_patients * preset.train_slices  # 200 slices
    assert full.steps is None and full.total_steps(n_full) == full.epochs * -(-n_full // full.batch_size)
    for name in ("19", "20", "ref19", "ref20"):
        config = plans[name].config
        assert config.steps == full.total_steps(n_full)  # 320 = 8 epochs x 40 batches
        n_small = preset.train_patients * preset.finetune_slices
        assert config.planned_epochs(n_small) == config.steps // -(-n_small // config.batch_size)
    assert plans["17"].config.steps is None
    # The paper preset keeps the paper's 150 epochs on the 20 slices (600 iPALM steps).
    assert plan_study(load_study(), PRESETS["paper"], FOLDERS)["19"].config.steps is None
    tuned = replace(preset, finetune_optimizer={"lr": 0.002}, small_set_full_steps=False)
    plans = plan_study(load_study(), tuned, FOLDERS)
    assert plans["19"].config.optimizer["lr"] == 0.002 and plans["19"].config.optimizer["block_lr"] == {"lambda": 0.1}
    assert plans["ref19"].config.optimizer == plans["01"].config.optimizer  # from scratch: the preset's
    assert plans["19"].config.steps is None
