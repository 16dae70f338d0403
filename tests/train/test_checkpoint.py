import torch
import pytest

from vnrecon.errors import InputError
from vnrecon.models.vn import VariationalNetwork
from vnrecon.train.checkpoint import load_checkpoint, model_from_checkpoint, resolve_checkpoint, save_checkpoint


def small_model():
    torch.manual_seed(0)
    return VariationalNetwork(stages=2, filters=3, kernel_size=3, rbf_centres=7)


def test_roundtrip_restores_identical_parameters(tmp_path):
    model = small_model()
    save_checkpoint(tmp_path / "checkpoint.pt", model, epoch=4, history=[{"epoch": 4}])
    restored, payload = model_from_checkpoint(resolve_checkpoint(tmp_path))
    assert payload["epoch"] == 4 and payload["history"] == [{"epoch": 4}]
    for (name, original), (_, loaded) in zip(model.state_dict().items(), restored.state_dict().items()):
        torch.testing.assert_close(original, loaded, rtol=0, atol=0, msg=name)


def test_truncated_checkpoint_is_reported(tmp_path):
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, small_model())
    path.write_bytes(path.read_bytes()[:-200])
    with pytest.raises(InputError, match="truncated or corrupt") as error:
        load_checkpoint(path)
    assert str(path) in str(error.value)


def test_tampered_parameters_fail_the_checksum(tmp_path):
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, small_model())
    payload = torch.load(path, weights_only=True)
    payload["model_state"]["stages.0.lam"] += 1.0
    torch.save(payload, path)
    with pytest.raises(InputError, match="checksum"):
        load_checkpoint(path)


def test_foreign_files_and_layouts_are_refused(tmp_path):
    path = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(3)}, path)
    with pytest.raises(InputError, match="not a vnrecon checkpoint"):
        load_checkpoint(path)
    save_checkpoint(path, small_model())
    payload = torch.load(path, weights_only=True)
    payload["normalisation"] = "zero-mean-unit-variance"
    torch.save(payload, path)
    with pytest.raises(InputError, match="normalisation"):
        load_checkpoint(path)
    # A parameter layout that does not fit the stated network.
    save_checkpoint(path, small_model())
    payload = torch.load(path, weights_only=True)
    payload["model_config"]["filters"] = 5
    torch.save(payload, path)
    with pytest.raises(InputError, match="do not fit"):
        model_from_checkpoint(path)
    with pytest.raises(InputError, match="not found"):
        resolve_checkpoint(tmp_path / "missing")


def test_save_is_atomic_and_leaves_no_temp_files(tmp_path, monkeypatch):
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, small_model(), epoch=1)
    before = path.read_bytes()

    def fail(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", fail)
    with pytest.raises(OSError):
        save_checkpoint(path, small_model(), epoch=2)
    assert path.read_bytes() == before
    assert [entry.name for entry in tmp_path.iterdir()] == ["checkpoint.pt"]
