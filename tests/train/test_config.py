import pytest
import yaml

from vnrecon.errors import InputError
from vnrecon.train.config import PRESETS, load_train_config, preset_values


def write(tmp_path, values, name="config.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(values))
    return path


def test_presets_ship_and_fill_in_what_the_config_leaves_out(tmp_path):
    for name in PRESETS:
        assert preset_values(name)["model"]["stages"] >= 1
    paper = preset_values("paper")
    assert paper["model"] == {"stages": 10, "filters": 24, "kernel_size": 11, "rbf_centres": 31, "lambda_init": 1.0}
    assert paper["epochs"] == 150 and paper["batch_size"] == 5 and paper["optimizer"]["name"] == "ipalm"
    path = write(tmp_path, {"preset": "paper", "train": [{"data": "knee"}], "epochs": 3, "model": {"stages": 4}})
    config = load_train_config(path)
    assert config.epochs == 3 and config.batch_size == 5
    assert config.model["stages"] == 4 and config.model["filters"] == 24


def test_switching_optimiser_drops_the_other_optimisers_settings(tmp_path):
    path = write(tmp_path, {"preset": "paper", "train": [{"data": "knee"}], "optimizer": {"name": "adam", "lr": 0.001}})
    assert load_train_config(path).optimizer == {"name": "adam", "lr": 0.001}


@pytest.mark.parametrize(
    "values,problem",
    [
        ({"epochs": 3}, "'train'"),
        ({"train": [{"data": "x"}], "epochs": 0}, "epochs"),
        ({"train": [{"data": "x"}], "optimizer": {"name": "sgd"}}, "optimizer"),
        ({"train": [{"data": "x"}], "learning_rate": 1}, "unknown keys"),
        ({"train": [{"data": "x"}], "preset": "gpu"}, "unknown preset"),
        ({"train": [{"data": "x"}], "optimizer": {"name": "adam", "lr_schedule": "step"}}, "lr_schedule"),
        ({"train": [{"data": "x"}], "optimizer": {"name": "ipalm", "lr_schedule": "cosine"}}, "adam optimiser only"),
        ({"train": [{"data": "x"}], "optimizer": {"name": "ipalm", "block_lr": {"lambda": 0.1}}}, "adam optimiser only"),
        ({"train": [{"data": "x"}], "optimizer": {"name": "adam", "block_lr": {"lambdas": 0.1}}}, "block_lr must map"),
        ({"train": [{"data": "x"}], "optimizer": {"name": "adam", "block_lr": [0.1]}}, "block_lr must map"),
        ({"train": [{"data": "x"}], "optimizer": {"name": "adam", "block_lr": {"lambda": -1}}}, "positive number"),
        ({"train": [{"data": "x"}], "optimizer": {"name": "adam", "block_lr": {"lambda": "fast"}}}, "positive number"),
    ],
)
def test_bad_configs_name_the_file_and_problem(tmp_path, values, problem):
    path = write(tmp_path, values)
    with pytest.raises(InputError, match=problem):
        load_train_config(path)


def test_unreadable_config_files(tmp_path):
    with pytest.raises(InputError, match="not found"):
        load_train_config(tmp_path / "missing.yaml")
    path = tmp_path / "broken.yaml"
    path.write_text("train: [unclosed\n")
    with pytest.raises(InputError, match="not valid YAML") as error:
        load_train_config(path)
    assert str(path) in str(error.value)
