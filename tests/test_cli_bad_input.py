"""The bad-input corpus: every command, every way a user's input can be wrong.

Each case must end with exit status 2 and exactly one line ``vnrecon: error:
...`` on stderr that names the file or option at fault (no traceback, no
warning before it), and every file that existed before (inputs, earlier runs,
earlier outputs) must be byte-identical afterwards. Usage errors that argparse
reports itself (a missing required option, a bad choice) are tested in
``test_cli.py``.
"""

import os
import shutil
import subprocess
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
import yaml

from tests.conftest import KNEE_ACS, knee_selection
from vnrecon.cli import main
from vnrecon.train.checkpoint import payload_digest
from vnrecon.train.config import config_from_dict
from vnrecon.train.loop import train

TINY_MODEL = {"stages": 2, "filters": 4, "kernel_size": 5, "rbf_centres": 7}


@pytest.fixture(scope="module")
def world(knee_folder, tmp_path_factory):
    """What the cases break: the knee files, a trained run, a training config, damaged checkpoints."""
    root = tmp_path_factory.mktemp("corpus")
    config = {
        "train": [knee_selection(knee_folder, (0, 2), 2)],
        "model": TINY_MODEL,
        "epochs": 1,
        "batch_size": 2,
        "seed": 0,
        "optimizer": {"name": "adam", "lr": 0.01},
    }
    train(config_from_dict(config, "corpus"), root / "runs" / "base", progress=False, cache_dir=root / "cache")
    (root / "train.yaml").write_text(yaml.safe_dump(config))
    knee = root / "K.h5"
    shutil.copy(sorted(knee_folder.glob("*CORPD_FBK.h5"))[3], knee)
    checkpoint = root / "runs" / "base" / "checkpoint.pt"
    payload = torch.load(checkpoint, weights_only=True)

    def variant(name, edit, redigest=True):
        changed = torch.load(checkpoint, weights_only=True)
        edit(changed)
        if redigest:
            changed["digest"] = payload_digest(changed)
        torch.save(changed, root / name)

    variant("nan.pt", lambda p: next(iter(p["model_state"].values())).fill_(float("nan")))
    variant("tampered.pt", lambda p: p["optimizer_state"]["state"][0]["exp_avg"].add_(1.0), redigest=False)
    variant("not_tensor.pt", lambda p: p["model_state"].__setitem__(next(iter(p["model_state"])), 1.0))
    variant("bad_epoch.pt", lambda p: p.__setitem__("epoch", "one"))
    variant("bad_history.pt", lambda p: p.__setitem__("history", "none"))
    variant("bad_settings.pt", lambda p: p["model_config"].__setitem__("filters", 0))
    (root / "truncated.pt").write_bytes(checkpoint.read_bytes()[:-300])
    (root / "empty.pt").write_bytes(b"")
    torch.save({"weights": torch.zeros(3)}, root / "foreign.pt")
    torch.save({"code": {1, 2}}, root / "legacy.pt", _use_new_zipfile_serialization=False)  # a raw pickle
    assert payload["epoch"] == 1
    return {"root": root, "knee": knee, "config": config, "knee_folder": knee_folder}


def _snapshot(root: Path) -> dict:
    return {path: path.read_bytes() for path in sorted(root.rglob("*")) if path.is_file() and path.suffix != ".lock"}


def _write_h5(path: Path, **datasets) -> Path:
    with h5py.File(path, "w") as h5:
        for name, value in datasets.items():
            h5.create_dataset(name, data=value)
    return path


def _config(world, tmp: Path, **changes) -> str:
    values = {**world["config"], **changes}
    values = {key: value for key, value in values.items() if value is not _DROP}
    path = tmp / "config.yaml"
    path.write_text(yaml.safe_dump(values))
    return str(path)


_DROP = object()
_SIM = ("--patients", "1", "--slices", "2")  # argparse wants both; later options override them


def _selection(world, **changes):
    return [{**knee_selection(world["knee_folder"], (0, 2), 2), **changes}]


def _recon(world, tmp, *extra, model=None, source=None, out=None):
    return [
        "recon", "--model", str(model or world["root"] / "runs" / "base"), "--in", str(source or world["knee"]),
        "--out", str(out or tmp / "out.h5"), "--acs-lines", str(KNEE_ACS), *extra,
    ]  # fmt: skip


def _train(world, tmp, *extra, config=None, out=None):
    return ["train", "--config", config or _config(world, tmp), "--out", str(out or tmp / "run"), "--quiet", *extra]


def _mask(tmp, name, content) -> str:
    path = tmp / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif name.endswith(".npy"):
        np.save(path, content)
    else:
        path.write_text(content)
    return str(path)


def _knee_variant(world, tmp, edit) -> str:
    path = tmp / "variant.h5"
    shutil.copy(world["knee"], path)
    with h5py.File(path, "a") as h5:
        edit(h5)
    return str(path)


def _replace(name, value):
    def edit(h5):
        del h5[name]
        h5.create_dataset(name, data=value)

    return edit


def _header_edit(old: str, new: str):
    """Replace text in the file's ISMRMRD header (e.g. make its encoded readout disagree with the k-space)."""
    def edit(h5):
        xml = h5["ismrmrd_header"][()].decode()
        assert old in xml
        del h5["ismrmrd_header"]
        h5.create_dataset("ismrmrd_header", data=xml.replace(old, new, 1))

    return edit


def _cfl(tmp: Path, shape=(64, 48, 1, 4), dims: str | None = None, cut: int = 0, value=1.0) -> str:
    """A BART k-space pair tmp/k.cfl + k.hdr; ``dims`` overwrites the header, ``cut`` drops bytes from the data."""
    from vnrecon.data.cfl import write_cfl

    path = write_cfl(tmp / "k.cfl", np.full(shape, value, np.complex64))
    if dims is not None:
        (tmp / "k.hdr").write_text(f"# Dimensions\n{dims}\n")
    if cut:
        path.write_bytes(path.read_bytes()[:-cut])
    return str(path)


def _kspace(world):
    with h5py.File(world["knee"]) as h5:
        return h5["kspace"][()]


# Each case: (id, function(world, tmp) -> argv, text the error line must contain ("{tmp}" / "{root}" filled in)).
CASES = [
    # ---- info
    ("info-missing", lambda w, t: ["info", str(t / "none.h5")], "none.h5"),
    ("info-folder", lambda w, t: ["info", str(t)], str),
    ("info-empty", lambda w, t: ["info", _mask(t, "empty.h5", b"")], "empty.h5"),
    ("info-text", lambda w, t: ["info", _mask(t, "text.h5", "hello")], "text.h5"),
    ("info-no-kspace", lambda w, t: ["info", str(_write_h5(t / "x.h5", other=np.zeros(3)))], "x.h5"),
    ("info-kspace-3d", lambda w, t: ["info", str(_write_h5(t / "x.h5", kspace=np.zeros((2, 4, 4), np.complex64)))], "x.h5"),
    ("info-kspace-real", lambda w, t: ["info", str(_write_h5(t / "x.h5", kspace=np.zeros((1, 2, 8, 8), np.float32)))], "x.h5"),
    ("info-kspace-nan", lambda w, t: ["info", _knee_variant(w, t, _replace("kspace", _kspace(w) * np.nan))], "variant.h5"),
    # ---- recon: destinations (checked before any work)
    ("recon-out-is-input", lambda w, t: _recon(w, t, out=w["knee"]), "K.h5"),
    ("recon-out-symlink-to-input", lambda w, t: (os.symlink(w["knee"], t / "link.h5"), _recon(w, t, out=t / "link.h5"))[1], "link.h5"),
    ("recon-out-is-folder", lambda w, t: _recon(w, t, out=t), str),
    ("recon-out-under-a-file", lambda w, t: _recon(w, t, out=w["knee"] / "out.h5"), "out.h5"),
    ("recon-png-is-input", lambda w, t: (shutil.copy(w["knee"], t / "scan.png"), _recon(w, t, "--png", source=t / "scan.png", out=t / "scan.h5"))[1], "scan.png"),
    # ---- recon: models
    ("recon-model-missing", lambda w, t: _recon(w, t, model=t / "nothing"), "nothing"),
    ("recon-model-empty", lambda w, t: _recon(w, t, model=w["root"] / "empty.pt"), "empty.pt"),
    ("recon-model-truncated", lambda w, t: _recon(w, t, model=w["root"] / "truncated.pt"), "truncated.pt"),
    ("recon-model-tampered", lambda w, t: _recon(w, t, model=w["root"] / "tampered.pt"), "tampered.pt"),
    ("recon-model-nan", lambda w, t: _recon(w, t, model=w["root"] / "nan.pt"), "nan.pt"),
    ("recon-model-not-tensor", lambda w, t: _recon(w, t, model=w["root"] / "not_tensor.pt"), "not_tensor.pt"),
    ("recon-model-bad-epoch", lambda w, t: _recon(w, t, model=w["root"] / "bad_epoch.pt"), "bad_epoch.pt"),
    ("recon-model-bad-history", lambda w, t: _recon(w, t, model=w["root"] / "bad_history.pt"), "bad_history.pt"),
    ("recon-model-foreign", lambda w, t: _recon(w, t, model=w["root"] / "foreign.pt"), "foreign.pt"),
    ("recon-model-legacy-pickle", lambda w, t: _recon(w, t, model=w["root"] / "legacy.pt"), "legacy.pt"),
    ("recon-model-text", lambda w, t: _recon(w, t, model=_mask(t, "model.pt", "not a checkpoint")), "model.pt"),
    # ---- recon: masks and sampling
    ("recon-mask-empty-npy", lambda w, t: _recon(w, t, "--mask", _mask(t, "m.npy", b"")), "m.npy"),
    ("recon-mask-empty-text", lambda w, t: _recon(w, t, "--mask", _mask(t, "m.txt", "")), "m.txt"),
    ("recon-mask-wrong-length", lambda w, t: _recon(w, t, "--mask", _mask(t, "m.npy", np.ones(7))), "m.npy"),
    ("recon-mask-2d", lambda w, t: _recon(w, t, "--mask", _mask(t, "m.npy", np.ones((4, 64)))), "m.npy"),
    ("recon-mask-not-binary", lambda w, t: _recon(w, t, "--mask", _mask(t, "m.npy", np.full(64, 0.5))), "m.npy"),
    ("recon-mask-no-lines", lambda w, t: _recon(w, t, "--mask", _mask(t, "m.npy", np.zeros(64))), "m.npy"),
    ("recon-mask-no-acs", lambda w, t: _recon(w, t, "--mask", _mask(t, "m.npy", (np.arange(64) % 4 == 0).astype(float))), "m.npy"),
    ("recon-mask-pickle", lambda w, t: _recon(w, t, "--mask", _mask(t, "m.npy", np.array([{"a": 1}], dtype=object))), "m.npy"),
    ("recon-acceleration-0", lambda w, t: _recon(w, t, "--acceleration", "0"), "K.h5: --acceleration 0"),
    ("recon-acs-0", lambda w, t: _recon(w, t)[:-2] + ["--acs-lines", "0"], "--acs-lines 0"),
    ("recon-acs-too-many", lambda w, t: _recon(w, t)[:-2] + ["--acs-lines", "65"], "--acs-lines 65"),
    ("recon-mask-unknown-kind", lambda w, t: _recon(w, t, "--mask", "bogus"), "bogus"),
    ("recon-model-bad-settings", lambda w, t: _recon(w, t, model=w["root"] / "bad_settings.pt"), "bad_settings.pt"),
    ("recon-device-bogus", lambda w, t: _recon(w, t, "--device", "bogus"), "--device bogus"),
    pytest.param(
        ("recon-device-cuda", lambda w, t: _recon(w, t, "--device", "cuda"), "--device cuda"),
        marks=pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA: cuda is a valid device"),
    ),
    ("recon-device-tpu", lambda w, t: _recon(w, t, "--device", "meta"), "--device meta"),
    ("recon-input-missing", lambda w, t: _recon(w, t, source=t / "none.h5"), "none.h5"),
    ("recon-input-nan", lambda w, t: _recon(w, t, source=_knee_variant(w, t, _replace("kspace", _kspace(w) * np.nan))), "variant.h5"),
    ("recon-header-readout-mismatch", lambda w, t: _recon(w, t, source=_knee_variant(
        w, t, _header_edit("<x>96</x>", "<x>128</x>"))), "variant.h5: the ISMRMRD header encodes a readout of 128"),
    ("recon-header-oversampling-not-whole", lambda w, t: _recon(w, t, source=_knee_variant(
        w, t, _header_edit("<x>48</x>", "<x>40</x>"))), "variant.h5: the ISMRMRD header's reconSpace readout (40)"),
    ("info-header-readout-mismatch", lambda w, t: ["info", _knee_variant(
        w, t, _header_edit("<x>96</x>", "<x>128</x>"))], "variant.h5: the ISMRMRD header"),
    ("recon-input-all-zero", lambda w, t: _recon(w, t, source=_knee_variant(w, t, _replace("kspace", _kspace(w) * 0))), "variant.h5"),
    ("recon-input-bad-covariance", lambda w, t: _recon(w, t, source=_knee_variant(
        w, t, _replace("noise_covariance", -np.eye(4, dtype=np.complex64)))), "variant.h5"),
    ("recon-format-nifti-not-nii-name", lambda w, t: _recon(w, t, "--format", "nifti", out=t / "out.h5"), "out.h5: --format nifti"),
    ("recon-format-dicom-onto-a-file", lambda w, t: _recon(w, t, "--format", "dicom", out=w["knee"]), "K.h5"),
    ("recon-format-cfl-not-cfl-name", lambda w, t: _recon(w, t, "--format", "cfl", out=t / "out.h5"), "out.h5: --format cfl"),
    # ---- convert
    ("convert-missing", lambda w, t: ["convert", str(t / "none.h5"), "--to", str(t / "o.cfl")], "none.h5: file not found"),
    ("convert-not-raw-data", lambda w, t: ["convert", _mask(t, "notes.txt", "hello"), "--to", str(t / "o.h5")], "notes.txt: not a raw-data file"),
    ("convert-cfl-size-mismatch", lambda w, t: ["convert", _cfl(t, dims="64 48 1 4 1 1 1 1 1 1 1 1 1 2"), "--to", str(t / "o.h5")],
     "k.cfl: holds"),
    ("convert-cfl-truncated", lambda w, t: ["convert", _cfl(t, cut=8), "--to", str(t / "o.h5")], "k.cfl: holds"),
    ("convert-cfl-no-header", lambda w, t: (_cfl(t), (t / "k.hdr").unlink())[0] and ["convert", str(t / "k.cfl"), "--to", str(t / "o.h5")],
     "k.hdr: file not found"),
    ("convert-cfl-header-garbage", lambda w, t: ["convert", _cfl(t, dims="sixty four"), "--to", str(t / "o.h5")], "k.hdr: not a BART header"),
    ("convert-cfl-3d", lambda w, t: ["convert", _cfl(t, shape=(16, 8, 4, 2)), "--to", str(t / "o.h5")], "k.cfl: 3-D k-space"),
    ("convert-cfl-nan", lambda w, t: ["convert", _cfl(t, value=np.nan), "--to", str(t / "o.h5")], "k.cfl: contains NaN"),
    ("convert-oversampling-does-not-divide", lambda w, t: ["convert", _cfl(t), "--to", str(t / "o.h5"), "--oversampling", "5"],
     "--oversampling 5 does not divide"),
    ("convert-oversampling-0", lambda w, t: ["convert", _cfl(t), "--to", str(t / "o.h5"), "--oversampling", "0"], "--oversampling"),
    ("convert-unknown-output", lambda w, t: ["convert", str(w["knee"]), "--to", str(t / "o.nii")], "o.nii: unknown output format"),
    ("convert-out-is-input", lambda w, t: ["convert", str(w["knee"]), "--to", str(w["knee"])], "K.h5"),
    ("convert-cfl-out-is-input", lambda w, t: ["convert", _cfl(t), "--to", str(t / "k.cfl")], "k.cfl"),
    ("convert-nan-kspace", lambda w, t: ["convert", _knee_variant(w, t, _replace("kspace", _kspace(w) * np.nan)), "--to", str(t / "o.cfl")], "variant.h5"),
    # ---- train: the config file
    ("train-config-missing", lambda w, t: _train(w, t, config=str(t / "none.yaml")), "none.yaml"),
    ("train-config-not-yaml", lambda w, t: _train(w, t, config=_mask(t, "c.yaml", "train: [unclosed\n")), "c.yaml"),
    ("train-config-not-utf8", lambda w, t: _train(w, t, config=_mask(t, "c.yaml", "seed: '\xe4'\n".encode("latin-1"))), "c.yaml"),
    ("train-config-a-list", lambda w, t: _train(w, t, config=_mask(t, "c.yaml", "- 1\n- 2\n")), "c.yaml"),
    ("train-config-empty", lambda w, t: _train(w, t, config=_mask(t, "c.yaml", "")), "c.yaml"),
    ("train-no-train", lambda w, t: _train(w, t, config=_config(w, t, train=_DROP)), "'train'"),
    ("train-unknown-key", lambda w, t: _train(w, t, config=_config(w, t, learning_rate=1)), "unknown keys"),
    ("train-epochs-true", lambda w, t: _train(w, t, config=_config(w, t, epochs=True)), "'epochs'"),
    ("train-epochs-0", lambda w, t: _train(w, t, config=_config(w, t, epochs=0)), "'epochs'"),
    ("train-epochs-string", lambda w, t: _train(w, t, config=_config(w, t, epochs="3")), "'epochs'"),
    ("train-batch-0", lambda w, t: _train(w, t, config=_config(w, t, batch_size=0)), "'batch_size'"),
    ("train-steps-negative", lambda w, t: _train(w, t, config=_config(w, t, steps=-1)), "'steps'"),
    ("train-seed-string", lambda w, t: _train(w, t, config=_config(w, t, seed="zero")), "'seed'"),
    ("train-seed-list", lambda w, t: _train(w, t, config=_config(w, t, seed=[1])), "'seed'"),
    ("train-seed-negative", lambda w, t: _train(w, t, config=_config(w, t, seed=-1)), "'seed'"),
    ("train-noise-range-reversed", lambda w, t: _train(w, t, config=_config(w, t, noise={"snr_range": [8, 2]})), "'noise'"),
    ("train-noise-a-number", lambda w, t: _train(w, t, config=_config(w, t, noise=20)), "'noise'"),
    ("train-noise-aware-string", lambda w, t: _train(w, t, config=_config(w, t, model={**TINY_MODEL, "noise_aware": "yes"})), "'model.noise_aware'"),
    ("train-noise-reference-0", lambda w, t: _train(w, t, config=_config(w, t, model={**TINY_MODEL, "noise_reference": 0})), "'model.noise_reference'"),
    ("train-oversampling-key", lambda w, t: _train(w, t, config=_config(w, t, oversampling=2)), "'oversampling'"),
    ("train-loss-eps-0", lambda w, t: _train(w, t, config=_config(w, t, loss_eps=0)), "'loss_eps'"),
    ("train-model-list", lambda w, t: _train(w, t, config=_config(w, t, model=[2])), "'model'"),
    ("train-model-unknown", lambda w, t: _train(w, t, config=_config(w, t, model={"stage": 2})), "model.stage"),
    ("train-model-string-filters", lambda w, t: _train(w, t, config=_config(w, t, model={"filters": "4"})), "model.filters"),
    ("train-model-activation", lambda w, t: _train(w, t, config=_config(w, t, model={"activation": "relu"})), "model.activation"),
    ("train-model-negative-lambda", lambda w, t: _train(w, t, config=_config(w, t, model={"lambda_init": -1})), "model.lambda_init"),
    ("train-optimizer-string", lambda w, t: _train(w, t, config=_config(w, t, optimizer="adam")), "'optimizer'"),
    ("train-optimizer-sgd", lambda w, t: _train(w, t, config=_config(w, t, optimizer={"name": "sgd"})), "optimizer name"),
    ("train-adam-lr-negative", lambda w, t: _train(w, t, config=_config(w, t, optimizer={"name": "adam", "lr": -1})), "optimizer.lr"),
    ("train-adam-lr-string", lambda w, t: _train(w, t, config=_config(w, t, optimizer={"name": "adam", "lr": "x"})), "optimizer.lr"),
    ("train-adam-unknown-arg", lambda w, t: _train(w, t, config=_config(w, t, optimizer={"name": "adam", "nesterov": True})), "optimizer.nesterov"),
    ("train-adam-betas", lambda w, t: _train(w, t, config=_config(w, t, optimizer={"name": "adam", "betas": [0.9, 1.0]})), "optimizer.betas"),
    ("train-ipalm-beta", lambda w, t: _train(w, t, config=_config(w, t, optimizer={"name": "ipalm", "beta": 2})), "optimizer.beta"),
    ("train-ipalm-schedule", lambda w, t: _train(w, t, config=_config(w, t, optimizer={"name": "ipalm", "lr_schedule": "cosine"})), "adam optimiser only"),
    # ---- train: the data selections
    ("train-selection-acceleration-string", lambda w, t: _train(w, t, config=_config(w, t, train=_selection(w, acceleration="4"))), "'acceleration'"),
    ("train-selection-acs-0", lambda w, t: _train(w, t, config=_config(w, t, train=_selection(w, acs_lines=0))), "'acs_lines'"),
    ("train-selection-noise-list", lambda w, t: _train(w, t, config=_config(w, t, train=_selection(w, noise_snr=[20]))), "'noise_snr'"),
    ("train-selection-noise-negative", lambda w, t: _train(w, t, config=_config(w, t, train=_selection(w, noise_snr=-5))), "'noise_snr'"),
    ("train-selection-patients", lambda w, t: _train(w, t, config=_config(w, t, train=_selection(w, patients=[2, 1]))), "'patients'"),
    ("train-selection-unknown-key", lambda w, t: _train(w, t, config=_config(w, t, train=_selection(w, slice=3))), "unknown keys"),
    ("train-selection-mask-missing", lambda w, t: _train(w, t, config=_config(w, t, train=_selection(w, mask="none.npy"))), "mask"),
    ("train-data-missing", lambda w, t: _train(w, t, config=_config(w, t, train=_selection(w, data=str(t / "nodata")))), "nodata"),
    ("train-data-empty", lambda w, t: (os.mkdir(t / "nodata"), _train(w, t, config=_config(w, t, train=_selection(w, data=str(t / "nodata")))))[1], "nodata"),
    ("train-acquisition-absent", lambda w, t: _train(w, t, config=_config(w, t, train=_selection(w, acquisition="AXT2"))), "AXT2"),
    ("train-too-many-slices", lambda w, t: _train(w, t, config=_config(w, t, train=_selection(w, slices=99))), "slices"),
    # ---- train: the command line and the run folder
    ("train-epochs-option-0", lambda w, t: _train(w, t, "--epochs", "0"), "--epochs"),
    ("train-epochs-and-steps", lambda w, t: _train(w, t, "--epochs", "2", "--steps", "3"), "--steps"),
    ("train-resume-nothing", lambda w, t: _train(w, t, "--resume"), "checkpoint.pt"),
    ("train-run-exists", lambda w, t: _train(w, t, out=w["root"] / "runs" / "base"), "--resume"),
    ("train-resume-other-seed", lambda w, t: _train(w, t, "--resume", config=_config(w, t, seed=7), out=w["root"] / "runs" / "base"), "seed"),
    ("train-resume-other-model", lambda w, t: _train(w, t, "--resume", config=_config(w, t, model={**TINY_MODEL, "stages": 3}), out=w["root"] / "runs" / "base"), "model"),
    ("train-init-damaged", lambda w, t: _train(w, t, "--init", str(w["root"] / "truncated.pt")), "truncated.pt"),
    ("train-init-nan", lambda w, t: _train(w, t, "--init", str(w["root"] / "nan.pt")), "nan.pt"),
    ("train-device-bogus", lambda w, t: _train(w, t, "--device", "gpu0"), "--device gpu0"),
    ("train-out-is-a-file", lambda w, t: _train(w, t, out=w["knee"]), "K.h5"),
    # ---- evaluate
    ("evaluate-model-missing", lambda w, t: ["evaluate", "--data", str(w["knee_folder"]), "--model", str(t / "none"), "--out", str(t / "e")], "none"),
    ("evaluate-model-tampered", lambda w, t: ["evaluate", "--data", str(w["knee_folder"]), "--model", str(w["root"] / "tampered.pt"), "--out", str(t / "e")], "tampered.pt"),
    ("evaluate-data-missing", lambda w, t: ["evaluate", "--data", str(t / "nodata"), "--method", "zf", "--out", str(t / "e")], "nodata"),
    ("evaluate-out-is-a-file", lambda w, t: ["evaluate", "--data", str(w["knee_folder"]), "--method", "zf", "--out", str(w["knee"])], "K.h5"),
    ("evaluate-device-bogus", lambda w, t: ["evaluate", "--data", str(w["knee_folder"]), "--method", "zf", "--out", str(t / "e"), "--device", "x"], "--device x"),
    ("evaluate-slices-0", lambda w, t: ["evaluate", "--data", str(w["knee_folder"]), "--method", "zf", "--out", str(t / "e"), "--slices", "0"], "--slices"),
    ("evaluate-acceleration-0", lambda w, t: ["evaluate", "--data", str(w["knee_folder"]), "--method", "zf", "--out", str(t / "e"), "--acceleration", "0"], "--acceleration"),
    # ---- simulate
    ("simulate-slices-0", lambda w, t: ["simulate", "knee", *_SIM, "--out", str(t / "s"), "--slices", "0"], "--slices"),
    ("simulate-patients-0", lambda w, t: ["simulate", "knee", *_SIM, "--out", str(t / "s"), "--patients", "0"], "--patients"),
    ("simulate-coils-0", lambda w, t: ["simulate", "knee", *_SIM, "--out", str(t / "s"), "--coils", "0"], "--coils"),
    ("simulate-matrix-small", lambda w, t: ["simulate", "knee", *_SIM, "--out", str(t / "s"), "--matrix", "10x10"], "--matrix"),
    ("simulate-out-is-a-file", lambda w, t: ["simulate", "knee", *_SIM, "--out", str(w["knee"])], "K.h5"),
    ("simulate-huge", lambda w, t: ["simulate", "knee", *_SIM, "--out", str(t / "s"), "--slices", "1000000"], "memory"),
    ("simulate-into-foreign-folder", lambda w, t: ["simulate", "knee", *_SIM, "--out", str(w["knee_folder"])], "knee"),
    ("simulate-natural-maps-missing", lambda w, t: ["simulate", "natural", "--out", str(t / "n"), "--maps-from", str(t / "none")], "none"),
    ("simulate-natural-count-0", lambda w, t: ["simulate", "natural", "--out", str(t / "n"), "--maps-from", str(w["knee_folder"]), "--count", "0"], "--count"),
    # ---- inspect
    ("inspect-missing", lambda w, t: ["inspect", str(t / "none")], "none"),
    ("inspect-truncated", lambda w, t: ["inspect", str(w["root"] / "truncated.pt")], "truncated.pt"),
    ("inspect-nan", lambda w, t: ["inspect", str(w["root"] / "nan.pt")], "nan.pt"),
    ("inspect-out-is-a-file", lambda w, t: ["inspect", str(w["root"] / "runs" / "base"), "--out", str(w["knee"])], "K.h5"),
    # ---- study
    ("study-only-unknown", lambda w, t: ["study", "--preset", "tiny", "--out", str(t / "st"), "--only", "99"], "99"),
    ("study-jobs-0", lambda w, t: ["study", "--preset", "tiny", "--out", str(t / "st"), "--jobs", "0"], "--jobs"),
    ("study-out-is-a-file", lambda w, t: ["study", "--preset", "tiny", "--out", str(w["knee"])], "K.h5"),
    ("study-data-missing", lambda w, t: ["study", "--preset", "tiny", "--out", str(t / "st"), "--data", str(t / "none")], "none"),
    ("study-device-bogus", lambda w, t: ["study", "--preset", "tiny", "--out", str(t / "st"), "--device", "bogus"], "--device bogus"),
    ("demo-out-is-a-file", lambda w, t: ["demo", "--out", str(w["knee"])], "K.h5"),
]


PARAMS = [case if hasattr(case, "marks") else pytest.param(case) for case in CASES]  # marked cases are params already


def test_the_corpus_is_large_and_covers_every_command():
    commands = {param.values[0][0].split("-")[0] for param in PARAMS}
    assert len(PARAMS) >= 80
    assert commands >= {"info", "recon", "train", "evaluate", "simulate", "inspect", "study"}


@pytest.mark.parametrize("case", PARAMS, ids=[param.values[0][0] for param in PARAMS])
def test_bad_input_is_one_line_exit_2_and_changes_nothing(world, tmp_path, capsys, case):
    _, make_argv, named = case
    argv = make_argv(world, tmp_path)
    capsys.readouterr()
    protected = [world["root"], world["knee_folder"], tmp_path]
    before = [_snapshot(root) for root in protected]
    status = main([str(item) for item in argv])
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert status == 2, captured.err
    assert len(lines) == 1 and lines[0].startswith("vnrecon: error: "), captured.err
    expected = str(tmp_path) if named is str else named
    assert expected in lines[0], lines[0]
    assert [_snapshot(root) for root in protected] == before


@pytest.fixture
def full_disk(tmp_path):
    """A 256 KiB tmpfs, filled to its last 12 KiB (needs root and mount; skipped otherwise)."""
    mount = tmp_path / "small_disk"
    mount.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("a small tmpfs needs root and mount(8) (CI runs the suite as root)")
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)], capture_output=True, text=True)
    if made.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {made.stderr.strip()}")
    try:
        free = shutil.disk_usage(mount).free
        (mount / "filler").write_bytes(b"\0" * max(free - 12 * 1024, 0))
        yield mount
    finally:  # lazily: a file still open in this process must not leave the mount behind
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_read_only_destination_is_refused_before_the_work(world, full_disk, tmp_path, capsys):
    """recon into a read-only mount: one line naming OUT, before the model is even loaded."""
    subprocess.run(["mount", "-o", "remount,ro", str(full_disk)], check=True)
    capsys.readouterr()
    status = main(_recon(world, tmp_path, out=full_disk / "out.h5", model=tmp_path / "not-loaded"))
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert status == 2 and len(lines) == 1 and f"{full_disk / 'out.h5'}: cannot write there" in lines[0], lines


@pytest.mark.parametrize("command", ["recon", "train", "evaluate", "inspect"])
def test_a_full_disk_is_one_line_and_loses_nothing(world, full_disk, tmp_path, capsys, command):
    """Every command that writes, pointed at a full disk: one line naming what could not be written,
    exit 2, no half-written file, earlier files unchanged."""
    out = full_disk / "out"
    argv = {
        "recon": _recon(world, tmp_path, out=full_disk / "out.h5"),
        "train": _train(world, tmp_path, "--cache", str(tmp_path / "cache"), out=out),
        "evaluate": ["evaluate", "--data", str(world["knee_folder"]), "--method", "zf", "--slices", "1",
                     "--patients", "3", "4", "--acs-lines", str(KNEE_ACS), "--out", str(out), "--quiet"],
        "inspect": ["inspect", str(world["root"] / "runs" / "base"), "--out", str(out)],
    }[command]
    before = _snapshot(world["root"])
    capsys.readouterr()
    status = main(argv)
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert status == 2 and len(lines) == 1 and lines[0].startswith("vnrecon: error: "), lines
    assert str(full_disk) in lines[0] and ".tmp" not in lines[0], lines[0]
    assert not list(full_disk.rglob(".*.tmp")) and not (full_disk / "out.h5").exists()
    assert _snapshot(world["root"]) == before
