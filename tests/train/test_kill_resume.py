"""The fault test: ``vnrecon train`` killed with SIGKILL at seeded random moments, and inside its
checkpoint writes, then rerun (``--resume`` where a checkpoint exists) until done, ends with
exactly the parameters and history of a run that was never interrupted."""

import csv
import os
import random
import signal
import subprocess
import sys
import time

import pytest
import torch
import yaml

from tests.conftest import knee_selection
from vnrecon.cli import main
from vnrecon.train.checkpoint import load_checkpoint

EPOCHS = 4
RANDOM_KILLS = 16
KILLS_IN_WRITE = 4  # the 1st .. 4th checkpoint write, half written when the kill comes

# The child is the real command; on request it dies inside the N-th checkpoint write, after
# half the bytes of the temporary file reached the disk (what a kill in the write leaves).
CHILD = r"""
import os, signal, sys
import torch
from vnrecon.cli import main

target = int(os.environ.get("KILL_IN_CHECKPOINT_WRITE", "0"))
if target:
    save, writes = torch.save, []

    def dying_save(payload, path, *args, **kwargs):
        save(payload, path, *args, **kwargs)
        if "checkpoint.pt" in str(path):
            writes.append(path)
            if len(writes) == target:
                with open(path, "r+b") as handle:
                    handle.truncate(os.path.getsize(path) // 2)
                os.kill(os.getpid(), signal.SIGKILL)

    torch.save = dying_save
sys.exit(main(sys.argv[1:]))
"""


@pytest.fixture(scope="module")
def setup(knee_folder, tmp_path_factory):
    root = tmp_path_factory.mktemp("kills")
    config = root / "train.yaml"
    config.write_text(yaml.safe_dump({
        "train": [knee_selection(knee_folder, (0, 2), 2)],
        "model": {"stages": 2, "filters": 4, "kernel_size": 5, "rbf_centres": 7},
        "optimizer": {"name": "adam", "lr": 0.01, "lr_schedule": "cosine"},
        "epochs": EPOCHS,
        "batch_size": 2,
        "seed": 3,
    }))
    child = root / "child.py"
    child.write_text(CHILD)
    return root, config, child


def _command(setup, run, resume=False):
    root, config, child = setup
    argv = [sys.executable, str(child), "train", "--config", str(config), "--out", str(run), "--quiet", "--cache", str(root / "cache")]
    return argv + (["--resume"] if resume else [])


def _finish(setup, run) -> None:
    """Rerun the command as a user would after a crash (here in this process: the same code without
    another interpreter start) until the run has all its epochs."""
    for _ in range(3):
        resume = (run / "checkpoint.pt").exists()
        assert main(_command(setup, run, resume)[2:]) == 0
        if load_checkpoint(run / "checkpoint.pt")["epoch"] == EPOCHS:
            return
    raise AssertionError(f"{run} did not finish")


def _history(run) -> list[dict]:
    with (run / "history.csv").open(newline="") as handle:
        return [{key: value for key, value in row.items() if key != "seconds"} for row in csv.DictReader(handle)]


def test_killed_trainings_resume_to_the_uninterrupted_result(setup):
    root = setup[0]
    reference = root / "reference"
    started = time.perf_counter()
    subprocess.run(_command(setup, reference), check=True, capture_output=True, timeout=300)
    duration = time.perf_counter() - started
    expected = load_checkpoint(reference / "checkpoint.pt")
    expected_history = _history(reference)
    assert len(expected_history) == EPOCHS

    draw = random.Random(14)
    trials = [("write", n) for n in range(1, KILLS_IN_WRITE + 1)]
    trials += [("time", draw.uniform(0.1, 1.0) * duration) for _ in range(RANDOM_KILLS)]
    killed = 0
    for index, (how, when) in enumerate(trials):
        run = root / f"trial{index:02d}"
        env = {**os.environ, **({"KILL_IN_CHECKPOINT_WRITE": str(when)} if how == "write" else {})}
        process = subprocess.Popen(_command(setup, run), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if how == "time":
            try:
                process.wait(timeout=when)
            except subprocess.TimeoutExpired:
                process.send_signal(signal.SIGKILL)
        killed += process.wait(timeout=300) == -signal.SIGKILL
        if how == "write":
            assert process.returncode == -signal.SIGKILL, f"trial {index} was not killed in its checkpoint write"
            assert not (run / "checkpoint.pt").exists() or load_checkpoint(run / "checkpoint.pt")["epoch"] == when - 1
        _finish(setup, run)
        result = load_checkpoint(run / "checkpoint.pt")
        for name, tensor in expected["model_state"].items():
            assert torch.equal(result["model_state"][name], tensor), (index, how, when, name)
        assert _history(run) == expected_history, (index, how, when)
        assert not list(run.glob(".*.tmp")), f"trial {index} left temporary files"
    assert killed >= len(trials) // 2  # most kills landed while the run was still going


def test_a_second_train_into_a_busy_run_folder_stops_at_once(setup):
    """Two `vnrecon train` into the same --out: the second, started while the first is training,
    exits 2 with one line naming the folder and writes nothing there."""
    root = setup[0]
    run = root / "busy"
    first = subprocess.Popen(_command(setup, run) + ["--epochs", "400"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not (run / "history.csv").exists() and time.monotonic() < deadline:  # written once the lock is held
            time.sleep(0.05)
        second = subprocess.run(_command(setup, run), capture_output=True, text=True, timeout=300)
        assert first.poll() is None, "the first training ended before the second tried"
    finally:
        first.kill()
        first.wait()
    lines = second.stderr.strip().splitlines()
    assert second.returncode == 2 and len(lines) == 1, second.stderr
    assert lines[0].startswith(f"vnrecon: error: {run}: another vnrecon process"), lines[0]
