import csv
import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from tests.conftest import knee_selection
from vnrecon.errors import InputError
from vnrecon.models.vn import VariationalNetwork
from vnrecon.train.checkpoint import load_checkpoint
from vnrecon.train.config import config_from_dict
from vnrecon.train.loop import train
from vnrecon.train.loss import reconstruction_loss, slice_objective

TINY_MODEL = {"stages": 2, "filters": 4, "kernel_size": 5, "rbf_centres": 15}


def tiny_config(folder, epochs=3, batch_size=3, optimizer=None, **extra):
    values = {
        "train": [knee_selection(folder, (0, 2), 2)],
        "model": TINY_MODEL,
        "epochs": epochs,
        "batch_size": batch_size,
        "seed": 5,
        **extra,
    }
    if optimizer is not None:
        values["optimizer"] = optimizer
    return config_from_dict(values, "test")


def parameters(run_dir):
    return load_checkpoint(run_dir / "checkpoint.pt")["model_state"]


def assert_same_parameters(first, second, atol=0.0):
    assert first.keys() == second.keys()
    for name in first:
        torch.testing.assert_close(first[name], second[name], rtol=0, atol=atol, msg=name)


def test_loss_is_squared_error_of_smoothed_magnitudes():
    output = torch.tensor([[[3 + 4j, 0j]]], dtype=torch.complex128)
    reference = torch.tensor([[[1 + 0j, 1j]]], dtype=torch.complex128)
    eps = 1e-2
    expected = ((25 + eps) ** 0.5 - (1 + eps) ** 0.5) ** 2 + (eps**0.5 - (1 + eps) ** 0.5) ** 2
    assert reconstruction_loss(output, reference, eps).item() == pytest.approx(expected)


def test_log_slice_loss_weighs_each_slice_by_its_own_error():
    """d/dx log(e(x)) = e'(x) / e(x): a slice 100x worse than another pulls no harder on the network."""
    errors = torch.tensor([4.0, 0.04], dtype=torch.float64, requires_grad=True)
    slice_objective(errors, "log").sum().backward()
    torch.testing.assert_close(errors.grad, 1 / errors.detach())
    assert slice_objective(errors.detach(), "squared").tolist() == errors.detach().tolist()
    assert torch.isfinite(slice_objective(torch.zeros(1, dtype=torch.float64), "log")).all()


def test_log_slice_loss_trains_otherwise_and_resumes_exactly(knee_folder, tmp_path):
    cache = tmp_path / "cache"
    config = tiny_config(knee_folder, epochs=2, slice_loss="log")
    train(config, tmp_path / "whole", progress=False, cache_dir=cache)
    train(config, tmp_path / "split", progress=False, cache_dir=cache, max_epochs=1)
    train(config, tmp_path / "split", resume=True, progress=False, cache_dir=cache)
    assert_same_parameters(parameters(tmp_path / "whole"), parameters(tmp_path / "split"))
    train(tiny_config(knee_folder, epochs=2), tmp_path / "squared", progress=False, cache_dir=cache)
    squared, logged = parameters(tmp_path / "squared"), parameters(tmp_path / "whole")
    assert any(not torch.equal(squared[name], logged[name]) for name in squared)


@pytest.mark.parametrize(
    "optimizer",
    [
        None,
        {"name": "adam", "lr": 0.01},
        {"name": "adam", "lr": 0.01, "lr_schedule": "cosine", "block_lr": {"lambda": 0.1, "activations": 0.003}},
    ],
)
def test_resume_ends_with_the_parameters_of_an_uninterrupted_run(knee_folder, tmp_path, optimizer):
    config = tiny_config(knee_folder, optimizer=optimizer)
    cache = tmp_path / "cache"
    train(config, tmp_path / "straight", progress=False, cache_dir=cache)
    train(config, tmp_path / "split", progress=False, cache_dir=cache, max_epochs=1)
    assert load_checkpoint(tmp_path / "split" / "checkpoint.pt")["epoch"] == 1
    history = train(config, tmp_path / "split", resume=True, progress=False, cache_dir=cache)
    assert [row["epoch"] for row in history] == [1, 2, 3]
    assert_same_parameters(parameters(tmp_path / "straight"), parameters(tmp_path / "split"))
    with open(tmp_path / "split" / "history.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [int(row["epoch"]) for row in rows] == [1, 2, 3]
    assert list((tmp_path / "split" / "tensorboard").iterdir())


def test_a_step_budget_ends_mid_epoch_spans_the_schedule_and_resumes_exactly(knee_folder, tmp_path, monkeypatch):
    """4 slices in batches of 3 are 2 steps per epoch: 5 steps are 3 epochs, the last with one batch."""
    from vnrecon.train.optim import ProjectedAdam

    adam = {"name": "adam", "lr": 0.01, "lr_schedule": "cosine"}
    config = tiny_config(knee_folder, epochs=50, optimizer=adam, steps=5)  # steps win over epochs
    assert (config.total_steps(4), config.planned_epochs(4)) == (5, 3)
    progress = []
    original = ProjectedAdam.set_progress
    monkeypatch.setattr(ProjectedAdam, "set_progress", lambda self, value: (progress.append(value), original(self, value))[1])
    cache = tmp_path / "cache"
    history = train(config, tmp_path / "straight", progress=False, cache_dir=cache)
    assert [(row["epoch"], row["steps"]) for row in history] == [(1, 2), (2, 4), (3, 5)]
    assert progress == [step / 5 for step in range(5)]  # one optimiser step each, the cosine over all 5
    train(config, tmp_path / "split", progress=False, cache_dir=cache, max_epochs=2)
    train(config, tmp_path / "split", resume=True, progress=False, cache_dir=cache)
    assert_same_parameters(parameters(tmp_path / "straight"), parameters(tmp_path / "split"))
    with pytest.raises(InputError, match="'steps' must be null or a positive integer"):
        tiny_config(knee_folder, steps=0)


def test_block_lr_gives_each_block_its_rate(knee_folder, tmp_path):
    optimizer = {"name": "adam", "lr": 0.01, "block_lr": {"lambda": 0.1}}
    train(tiny_config(knee_folder, epochs=1, optimizer=optimizer), tmp_path / "run", progress=False, cache_dir=tmp_path / "cache")
    groups = load_checkpoint(tmp_path / "run" / "checkpoint.pt")["optimizer_state"]["param_groups"]
    assert [(group["name"], group["initial_lr"]) for group in groups] == [("filters", 0.01), ("activations", 0.01), ("lambda", 0.1)]


@pytest.mark.parametrize(
    "change",
    [
        {"optimizer": {"name": "adam", "lr": 0.01}},
        {"seed": 6},
        {"model": {**TINY_MODEL, "filters": TINY_MODEL["filters"] + 1}},
        {"epochs": 3},
        {"train_patients": (0, 1)},
    ],
    ids=["optimiser", "seed", "model", "epochs", "training-data"],
)
def test_resume_with_other_settings_is_refused_before_anything_changes(knee_folder, tmp_path, change):
    """The resumed run would be no run anyone asked for: refused, and the run folder stays as it was."""
    cache = tmp_path / "cache"
    run = tmp_path / "run"
    train(tiny_config(knee_folder, epochs=2), run, progress=False, cache_dir=cache, max_epochs=1)
    before = {path.name: path.read_bytes() for path in run.iterdir() if path.is_file()}
    change = dict(change)
    if "train_patients" in change:
        change["train"] = [knee_selection(knee_folder, change.pop("train_patients"), 2)]
    changed = tiny_config(knee_folder, **{"epochs": 2, **change})
    with pytest.raises(InputError, match="cannot resume, the run was started with other settings") as error:
        train(changed, run, resume=True, progress=False, cache_dir=cache)
    assert "checkpoint.pt" in str(error.value)
    assert {path.name: path.read_bytes() for path in run.iterdir() if path.is_file()} == before


def test_constraints_hold_after_training(knee_folder, tmp_path):
    train(tiny_config(knee_folder, epochs=1), tmp_path / "run", progress=False, cache_dir=tmp_path / "cache")
    state = parameters(tmp_path / "run")
    for name, value in state.items():
        if name.endswith("filters"):
            means = value.mean(dim=(2, 3))
            assert means.abs().max() < 1e-6, name
            assert value.flatten(1).norm(dim=1).max() <= 1 + 1e-6, name
        if name.endswith("lam"):
            assert value.item() >= 0


def test_init_starts_from_a_trained_model(knee_folder, tmp_path):
    cache = tmp_path / "cache"
    train(tiny_config(knee_folder, epochs=1), tmp_path / "base", progress=False, cache_dir=cache)
    config = tiny_config(knee_folder, epochs=1)
    history = train(config, tmp_path / "tuned", init=tmp_path / "base" / "checkpoint.pt", progress=False, cache_dir=cache)
    scratch = train(config, tmp_path / "scratch", progress=False, cache_dir=cache)
    # Fine-tuning starts where the base model ended, so its first epoch is already better than from scratch.
    assert history[0]["train_loss"] < scratch[0]["train_loss"]


def test_existing_run_needs_resume_and_resume_needs_a_run(knee_folder, tmp_path):
    config = tiny_config(knee_folder, epochs=1)
    train(config, tmp_path / "run", progress=False, cache_dir=tmp_path / "cache")
    with pytest.raises(InputError, match="--resume"):
        train(config, tmp_path / "run", progress=False, cache_dir=tmp_path / "cache")
    with pytest.raises(InputError, match="nothing to resume"):
        train(config, tmp_path / "empty", resume=True, progress=False, cache_dir=tmp_path / "cache")


def _free_port() -> int:
    with socket.socket() as handle:
        handle.bind(("127.0.0.1", 0))
        return handle.getsockname()[1]


def _distributed_worker(rank, world, port, folder, run_dir, cache, extra):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        train(tiny_config(folder, epochs=1, batch_size=4, **extra), run_dir, progress=False, cache_dir=cache)
    finally:
        dist.destroy_process_group()


NOISE_AWARE = {"model": {**TINY_MODEL, "noise_aware": True}, "noise": {"snr_range": [0.5, 8.0], "per_epoch": True}}


@pytest.mark.parametrize("extra", [{}, NOISE_AWARE], ids=["paper", "noise-aware"])
def test_two_process_gloo_step_equals_single_process(knee_folder, tmp_path, extra):
    """Also for a noise-aware network: its recorded range of training noise levels spans both processes' slices."""
    cache = tmp_path / "cache"
    # 2 patients x 2 slices = one global batch of 4: exactly one optimiser step.
    train(tiny_config(knee_folder, epochs=1, batch_size=4, **extra), tmp_path / "single", progress=False, cache_dir=cache)
    mp.spawn(_distributed_worker, args=(2, _free_port(), knee_folder, tmp_path / "ddp", cache, extra), nprocs=2)
    # Gradients are summed in a different order across processes: equal to rounding.
    assert_same_parameters(parameters(tmp_path / "single"), parameters(tmp_path / "ddp"), atol=1e-5)
    # ... and the step did move the parameters away from their (seeded) initial values.
    torch.manual_seed(5)
    initial = dict(VariationalNetwork(**tiny_config(knee_folder, **extra).model).named_parameters())
    moved = max((parameters(tmp_path / "ddp")[name] - value.detach()).abs().max().item() for name, value in initial.items())
    assert moved > 1e-3


def test_a_second_process_in_the_same_run_folder_is_refused(knee_folder, tmp_path):
    """While one holder has the run folder (the lock a training takes first), a second training
    refuses at once and writes nothing."""
    from vnrecon.files import run_lock

    run = tmp_path / "run"
    with run_lock(run):
        with pytest.raises(InputError, match="another vnrecon process") as error:
            train(tiny_config(knee_folder, epochs=1), run, progress=False, cache_dir=tmp_path / "cache")
        assert str(run) in str(error.value)
        assert sorted(path.name for path in run.iterdir()) == [".vnrecon.lock"]
    train(tiny_config(knee_folder, epochs=1), run, progress=False, cache_dir=tmp_path / "cache")  # released


def test_resume_repairs_a_history_left_behind_its_checkpoint(knee_folder, tmp_path):
    """A kill between the checkpoint's rename and the history write left history.csv one epoch short;
    the next invocation rewrites it from the checkpoint, which is the record."""
    run = tmp_path / "run"
    config = tiny_config(knee_folder, epochs=2)
    train(config, run, progress=False, cache_dir=tmp_path / "cache")
    lines = (run / "history.csv").read_text().splitlines()
    (run / "history.csv").write_text("\n".join(lines[:-1]) + "\n")
    history = train(config, run, resume=True, progress=False, cache_dir=tmp_path / "cache")
    assert [row["epoch"] for row in history] == [1, 2]
    assert (run / "history.csv").read_text().splitlines() == lines
