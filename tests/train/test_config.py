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
        ({"train": [{"data": "x"}], "optimizer": {"name": "adam", "block_lr": {"lambdas": 0.1}}}, "block_lr' must be a mapping"),
        ({"train": [{"data": "x"}], "optimizer": {"name": "adam", "block_lr": [0.1]}}, "block_lr' must be a mapping"),
        ({"train": [{"data": "x"}], "optimizer": {"name": "adam", "block_lr": {"lambda": -1}}}, "positive learning rates"),
        ({"train": [{"data": "x"}], "optimizer": {"name": "adam", "block_lr": {"lambda": "fast"}}}, "positive learning rates"),
        # Every other key is typed too (the audit of issue 14): each was a traceback or accepted.
        ({"train": [{"data": "x"}], "epochs": True}, "'epochs' must be a positive integer"),
        ({"train": [{"data": "x"}], "seed": "zero"}, "'seed' must be an integer >= 0"),
        ({"train": [{"data": "x"}], "seed": [1]}, "'seed' must be an integer >= 0"),
        ({"train": [{"data": "x"}], "oversampling": 2}, "'oversampling' is not a setting"),
        ({"train": [{"data": "x"}], "loss_eps": "small"}, "'loss_eps' must be a number > 0"),
        ({"train": [{"data": "x"}], "slice_loss": "l1"}, "'slice_loss' must be one of"),
        ({"train": [{"data": "x"}], "model": [4]}, "'model' must be a mapping"),
        ({"train": [{"data": "x"}], "model": {"stage": 4}}, "unknown key 'model.stage'"),
        ({"train": [{"data": "x"}], "model": {"filters": "8"}}, "'model.filters' must be a positive integer"),
        ({"train": [{"data": "x"}], "model": {"activation": "relu"}}, "'model.activation' must be one of"),
        ({"train": [{"data": "x"}], "optimizer": "adam"}, "'optimizer' must be a mapping"),
        ({"train": [{"data": "x"}], "optimizer": {"name": "adam", "lr": -0.01}}, "'optimizer.lr' must be a number > 0"),
        ({"train": [{"data": "x"}], "optimizer": {"name": "adam", "lr": "fast"}}, "'optimizer.lr' must be a number > 0"),
        ({"train": [{"data": "x"}], "optimizer": {"name": "adam", "momentum": 0.9}}, "unknown key 'optimizer.momentum'"),
        ({"train": [{"data": "x"}], "optimizer": {"name": "ipalm", "beta": 1.5}}, "'optimizer.beta' must be a number >= 0 and < 1"),
        ({"train": [{"data": "x"}], "optimizer": {"name": "adam", "betas": [0.9]}}, "two numbers in"),
    ],
)
def test_bad_configs_name_the_file_and_problem(tmp_path, values, problem):
    path = write(tmp_path, values)
    with pytest.raises(InputError, match=problem):
        load_train_config(path)


def test_unreadable_config_files(tmp_path):
    latin = tmp_path / "latin1.yaml"
    latin.write_bytes("train: [{data: 'Kn\xe4'}]\n".encode("latin-1"))
    with pytest.raises(InputError, match="not a UTF-8 text file") as error:
        load_train_config(latin)
    assert str(latin) in str(error.value)
    with pytest.raises(InputError, match="not found"):
        load_train_config(tmp_path / "missing.yaml")
    path = tmp_path / "broken.yaml"
    path.write_text("train: [unclosed\n")
    with pytest.raises(InputError, match="not valid YAML") as error:
        load_train_config(path)
    assert str(path) in str(error.value)
