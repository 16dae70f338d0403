"""Checkpoints: the model, the optimiser and the training history in one file.

A checkpoint is a plain dict saved with ``torch.save`` and read back with
``torch.load(..., weights_only=True)`` (no pickled code can run). It carries a
SHA-256 digest of everything else it stores (parameters, optimiser state,
epoch, history, configs), so a truncated or edited file is reported instead of
silently producing a different network or a different resumed run; a network
whose parameters are not finite is refused even with a valid digest. Files are
written to a temp file and renamed, so a crash never leaves a half-written
checkpoint.
"""

import errno
import hashlib
import shutil
import zipfile
from pathlib import Path

import torch

from ..errors import InputError
from ..files import atomic_write

FORMAT = "vnrecon-checkpoint"
VERSION = 2  # 2: the digest covers the whole payload (1: parameters only)
#: What the network's input scaling is; a model trained otherwise is refused.
NORMALISATION = "max-abs-zero-filled"


def _feed(digest, value) -> None:
    """Hash a nested payload canonically: mappings by sorted key, tensors by name, shape, dtype and bytes."""
    if isinstance(value, torch.Tensor):
        tensor = value.detach().cpu().contiguous()
        digest.update(f"T{tuple(tensor.shape)}{tensor.dtype}".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    elif isinstance(value, dict):
        digest.update(f"D{len(value)}".encode())
        for key in sorted(value, key=repr):
            _feed(digest, key)
            _feed(digest, value[key])
    elif isinstance(value, (list, tuple)):
        digest.update(f"L{len(value)}".encode())
        for item in value:
            _feed(digest, item)
    elif value is None or isinstance(value, (bool, int, float, str)):
        digest.update(f"{type(value).__name__}:{value!r};".encode())
    else:
        raise TypeError(f"a checkpoint cannot hold {type(value).__name__}")


def payload_digest(payload: dict) -> str:
    """SHA-256 over every entry of a checkpoint payload except the digest itself."""
    digest = hashlib.sha256()
    _feed(digest, {key: value for key, value in payload.items() if key != "digest"})
    return digest.hexdigest()


def save_checkpoint(path: str | Path, model, optimizer=None, epoch: int = 0, history=None, train_config=None) -> None:
    state = {name: tensor.detach().cpu() for name, tensor in model.state_dict().items()}
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "normalisation": NORMALISATION,
        "model_config": dict(model.config),
        "model_state": state,
        "optimizer_state": optimizer.state_dict() if optimizer is not None else None,
        "epoch": epoch,
        "history": list(history or []),
        "train_config": train_config,
        # Reductions split over threads round differently (up to ~3e-4 after a training): a
        # resume with another count is not bitwise the uninterrupted run, so the count is kept.
        "threads": torch.get_num_threads(),
    }
    payload["digest"] = payload_digest(payload)
    with atomic_write(path) as temporary:
        try:
            torch.save(payload, temporary)
        except RuntimeError as error:  # torch's writer turns a failed write (full disk) into RuntimeError
            full = shutil.disk_usage(Path(path).parent).free < 2**20
            cause = "no space left on the disk" if full else str(error).splitlines()[0][:100]
            raise OSError(errno.ENOSPC if full else errno.EIO, f"cannot write the checkpoint ({cause})") from None


def load_checkpoint(path: str | Path) -> dict:
    """Read and verify a checkpoint; every problem is an InputError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: checkpoint not found")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except (zipfile.BadZipFile, RuntimeError, EOFError, OSError, ValueError) as error:
        problem = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise InputError(f"{path}: not a readable checkpoint (truncated or corrupt: {problem})") from None
    except Exception as error:  # weights_only refuses anything that is not plain data
        raise InputError(f"{path}: checkpoint holds unexpected content ({type(error).__name__})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise InputError(f"{path}: not a vnrecon checkpoint")
    if payload.get("version") != VERSION:
        raise InputError(f"{path}: checkpoint version {payload.get('version')} is not supported (expected {VERSION})")
    if payload.get("normalisation") != NORMALISATION:
        raise InputError(
            f"{path}: model was trained with normalisation {payload.get('normalisation')!r}, "
            f"this version expects {NORMALISATION!r}"
        )
    try:
        intact = payload_digest(payload) == payload.get("digest")
    except TypeError as error:
        raise InputError(f"{path}: checkpoint holds unexpected content ({error})") from None
    if not intact:
        raise InputError(f"{path}: checkpoint content does not match its checksum (file was altered or damaged)")
    state = payload.get("model_state")
    if not isinstance(state, dict) or not all(isinstance(value, torch.Tensor) for value in state.values()):
        raise InputError(f"{path}: model state is not a mapping of tensors")
    if not all(torch.isfinite(value).all() for value in state.values() if value.is_floating_point() or value.is_complex()):
        raise InputError(f"{path}: model parameters are not finite (NaN or infinity; the training diverged)")
    if not isinstance(payload.get("epoch"), int) or isinstance(payload["epoch"], bool) or payload["epoch"] < 0:
        raise InputError(f"{path}: checkpoint epoch {payload.get('epoch')!r} is not a non-negative integer")
    if not isinstance(payload.get("history"), list) or not all(isinstance(row, dict) for row in payload["history"]):
        raise InputError(f"{path}: checkpoint history is not a list of epoch records")
    return payload


def model_from_checkpoint(path: str | Path):
    """Rebuild the network of a checkpoint; a parameter layout that does not fit is an InputError."""
    payload = load_checkpoint(path)
    return model_from_payload(payload, path), payload


def model_from_payload(payload: dict, path: str | Path):
    """The network of a loaded (verified) checkpoint payload; ``path`` names it in errors."""
    from ..models.vn import VariationalNetwork

    try:
        model = VariationalNetwork.from_config(payload["model_config"])
        model.load_state_dict(payload["model_state"])
    except InputError as error:  # the stored settings themselves are invalid
        raise InputError(f"{path}: stored network settings are invalid ({error})") from None
    except (TypeError, KeyError, RuntimeError) as error:
        problem = str(error).splitlines()[0]
        raise InputError(f"{path}: parameters do not fit a variational network ({problem})") from None
    return model


def resolve_checkpoint(path: str | Path) -> Path:
    """A run folder means its checkpoint.pt; a file is taken as it is."""
    path = Path(path)
    if path.is_dir():
        path = path / "checkpoint.pt"
    if not path.is_file():
        raise InputError(f"{path}: checkpoint not found (train a model first, or give a run folder)")
    return path
