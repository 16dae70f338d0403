import torch
import pytest

from vnrecon.errors import InputError
from vnrecon.models.vn import VariationalNetwork
from vnrecon.train.checkpoint import (
    load_checkpoint, model_from_checkpoint, payload_digest, resolve_checkpoint, save_checkpoint,
)
from vnrecon.train.loop import build_optimizer


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
    payload["digest"] = payload_digest(payload)  # a consistent file, only the layout is wrong
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


def _trained_checkpoint(path):
    """A checkpoint with optimiser state, an epoch and a history, as training writes it."""
    model = small_model()
    optimizer = build_optimizer(model, {"name": "adam", "lr": 0.01})
    for parameter in model.parameters():
        parameter.grad = torch.ones_like(parameter)
    optimizer.step(lambda: torch.zeros(()))
    save_checkpoint(path, model, optimizer, epoch=3, history=[{"epoch": e, "train_rmse": 0.1 * e} for e in (1, 2, 3)],
                    train_config={"seed": 0})
    return torch.load(path, weights_only=True)


@pytest.mark.parametrize(
    "edit",
    [
        lambda p: p["optimizer_state"]["state"][0]["exp_avg"].add_(1e-3),
        lambda p: p.__setitem__("epoch", 2),
        lambda p: p["history"][-1].__setitem__("train_rmse", 0.5),
        lambda p: p["train_config"].__setitem__("seed", 1),
        lambda p: p["model_config"].__setitem__("stages", 3),
    ],
    ids=["optimiser-state", "epoch", "history", "train-config", "model-config"],
)
def test_every_stored_entry_is_covered_by_the_checksum(tmp_path, edit):
    path = tmp_path / "checkpoint.pt"
    payload = _trained_checkpoint(path)
    edit(payload)
    torch.save(payload, path)
    with pytest.raises(InputError, match="checksum") as error:
        load_checkpoint(path)
    assert str(path) in str(error.value)


def test_flipped_bytes_are_refused_or_harmless(tmp_path):
    """Any single flipped byte either makes the file refused or leaves its content unchanged
    (zip metadata torch does not read): never a silently different checkpoint."""
    path = tmp_path / "checkpoint.pt"
    original = _trained_checkpoint(path)
    data = path.read_bytes()
    generator = torch.Generator().manual_seed(0)
    refused = 0
    for position in torch.randint(0, len(data), (40,), generator=generator).tolist():
        damaged = bytearray(data)
        damaged[position] ^= 0xFF
        path.write_bytes(bytes(damaged))
        try:
            payload = load_checkpoint(path)
        except InputError:
            refused += 1
            continue
        assert payload_digest(payload) == payload_digest(original)
    assert refused > 0


def test_non_finite_parameters_and_malformed_entries_are_refused(tmp_path):
    path = tmp_path / "checkpoint.pt"
    for edit, problem in (
        (lambda p: p["model_state"]["stages.0.lam"].fill_(float("nan")), "not finite"),
        (lambda p: p["model_state"].__setitem__("stages.0.lam", 1.0), "not a mapping of tensors"),
        (lambda p: p.__setitem__("epoch", "3"), "epoch"),
        (lambda p: p.__setitem__("history", {"epoch": 3}), "history"),
    ):
        payload = _trained_checkpoint(path)
        edit(payload)
        payload["digest"] = payload_digest(payload)  # consistent files: only the content is wrong
        torch.save(payload, path)
        with pytest.raises(InputError, match=problem):
            load_checkpoint(path)
