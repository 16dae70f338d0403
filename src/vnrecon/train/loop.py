"""The training loop: epochs over a SliceDataset, iPALM or projected Adam, logs and checkpoints.

Determinism and resume: the slice order of epoch e is drawn from a generator
seeded by (seed, e) alone and the data are fixed per slice (noise included;
noise augmentation is seeded by (seed, e, slice)),
so an interrupted run resumed from its last checkpoint ends with exactly the
parameters of an uninterrupted run.

Data parallelism: when ``torch.distributed`` is initialised (``torchrun``),
every process takes its share of each global batch; losses and gradients are
summed across processes before every optimiser decision, so all processes
take identical steps, equal to one process on the whole batch.
"""

import contextlib
import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
import yaml
from tqdm import tqdm

from ..data.dataset import SliceDataset, collate_by_shape, stable_seed, to_device
from ..errors import InputError
from ..files import read_csv_rows, run_lock, write_csv, write_text
from ..eval.metrics import nrmse, ssim
from ..models.vn import VariationalNetwork
from .checkpoint import load_checkpoint, model_from_checkpoint, model_from_payload, save_checkpoint
from .config import TrainConfig
from .augment import NoiseAugmentation
from .loss import reconstruction_loss, slice_objective
from .optim import IPALM, ProjectedAdam

CHECKPOINT = "checkpoint.pt"
HISTORY = "history.csv"
CONFIG = "config.yaml"
HISTORY_FIELDS = ("epoch", "steps", "train_loss", "train_rmse", "train_ssim", "val_rmse", "val_ssim", "seconds")
#: Prepared training slices are kept in memory below this size, streamed from disk above it.
IN_MEMORY_BYTES = 4 * 2**30


def reconstruct_batch(model, batch: dict, training: bool = False) -> torch.Tensor:
    """Run the network on a collated batch; output on the reference's (readout-cropped) grid, in normalised units.

    ``training``: the batch is training data (a noise-aware network records its noise levels)."""
    return model(batch["kspace"], batch["maps"], batch["mask"], batch["reference"].shape[-2], record_noise_levels=training)


class PreparedSlices:
    """Items of a SliceDataset, prepared once and kept in memory when they fit, else re-read per use."""

    def __init__(self, dataset: SliceDataset, progress: bool, label: str):
        self.dataset = dataset
        self.items = None
        first = dataset[0]
        item_bytes = sum(value.numel() * value.element_size() for value in first.values() if torch.is_tensor(value))
        if item_bytes * len(dataset) <= IN_MEMORY_BYTES:
            indices = range(len(dataset))
            self.items = [first] + [
                dataset[index]
                for index in tqdm(
                    indices[1:], desc=f"prepare {label}", initial=1, total=len(dataset), disable=None if progress else True, leave=False
                )
            ]

    def __len__(self) -> int:
        return len(self.dataset)

    def batches(self, indices) -> list[dict]:
        """The slices at ``indices`` as one batch per matrix size (``collate_by_shape``)."""
        items = [self.items[i] if self.items is not None else self.dataset[i] for i in indices]
        return collate_by_shape(items)


@dataclass
class Distributed:
    rank: int = 0
    world: int = 1

    @classmethod
    def current(cls) -> "Distributed":
        if dist.is_available() and dist.is_initialized():
            return cls(dist.get_rank(), dist.get_world_size())
        return cls()

    def sum_(self, tensor: torch.Tensor) -> torch.Tensor:
        if self.world > 1:
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor

    def widen_(self, interval: torch.Tensor) -> torch.Tensor:
        """[low, high] -> [lowest low, highest high] over the processes."""
        if self.world > 1:
            ends = torch.stack([interval[0], -interval[1]])
            dist.all_reduce(ends, op=dist.ReduceOp.MIN)
            interval.copy_(torch.stack([ends[0], -ends[1]]))
        return interval


def build_optimizer(model: VariationalNetwork, settings: dict):
    """iPALM over the model's parameter blocks, or projected Adam with one group per block.

    Adam's ``block_lr`` maps block names (``filters``, ``activations``,
    ``lambda``) to learning rates of their own; the others use ``lr``. This is
    Adam's counterpart of iPALM's per-block step sizes: lambda_t scales a
    gradient step and must travel far from its initial 1.0, while the
    activation weights move in units of 0.04.
    """
    settings = dict(settings)
    name = settings.pop("name")
    blocks = model.parameter_blocks()
    if name == "ipalm":
        return IPALM(blocks, model.block_projections(), **settings)
    block_lr = settings.pop("block_lr", None) or {}
    groups = [
        {"params": params, "name": block, **({"lr": block_lr[block]} if block in block_lr else {})}
        for block, params in blocks.items()
        if params
    ]
    return ProjectedAdam(groups, projection=model.project_, **settings)


def write_history(run_dir: Path, history: list[dict]) -> None:
    write_csv(run_dir / HISTORY, history, HISTORY_FIELDS)


def repair_history(run_dir: Path) -> None:
    """The checkpoint is the record, history.csv its table: a kill between the two writes of an
    epoch, or a damaged file, left the table wrong; rewrite it from the checkpoint where it differs."""
    history = load_checkpoint(Path(run_dir) / CHECKPOINT)["history"]
    path = Path(run_dir) / HISTORY
    try:
        current = read_csv_rows(path, HISTORY_FIELDS) if path.is_file() else None
    except InputError:
        current = None
    if current is None or len(current) != len(history):
        write_history(run_dir, history)


def check_resumable(checkpoint_path: Path, trained_with: dict | None, now: dict) -> None:
    """A resumed run continues the same training: every setting but the monitoring ('validation')
    must be what the run was started with, or the result is no run anyone asked for."""
    trained_with = dict(trained_with or {})
    changed = [key for key in sorted(set(trained_with) | set(now)) if key != "validation" and trained_with.get(key) != now.get(key)]
    if changed:
        details = "; ".join(f"{key}: {trained_with.get(key)!r} -> {now.get(key)!r}" for key in changed[:3])
        raise InputError(
            f"{checkpoint_path}: cannot resume, the run was started with other settings ({details}); "
            "start a new run, or fine-tune from it with --init"
        )


def evaluate_slices(model, slices: PreparedSlices, batch_size: int, device) -> tuple[float, float]:
    """Mean RMSE and SSIM (whole image, magnitude SSIM) of the network on prepared slices."""
    errors, similarities = [], []
    with torch.no_grad():
        for start in range(0, len(slices), batch_size):
            for part in slices.batches(range(start, min(start + batch_size, len(slices)))):
                batch = to_device(part, device)
                output = reconstruct_batch(model, batch)
                errors.append(nrmse(output, batch["reference"]))
                similarities.append(ssim(output, batch["reference"]))
    return float(torch.cat(errors).mean()), float(torch.cat(similarities).mean())


def train(
    config: TrainConfig,
    run_dir: str | Path,
    resume: bool = False,
    init: str | Path | None = None,
    progress: bool = True,
    cache_dir: str | Path | None = None,
    device: str | torch.device = "cpu",
    max_epochs: int | None = None,
) -> list[dict]:
    """Train a VN as ``config`` says, writing checkpoint, history.csv and TensorBoard logs to ``run_dir``.

    The run lasts ``config.planned_epochs(n)`` epochs of the ``n`` training
    slices, ``config.total_steps(n)`` optimiser steps (see ``TrainConfig.steps``).

    ``max_epochs`` stops early after that many epochs of this call (used to
    simulate an interruption); the run can then be resumed.
    """
    run_dir = Path(run_dir)
    device = torch.device(device)
    group = Distributed.current()
    lead = group.rank == 0
    with run_lock(run_dir) if lead else contextlib.nullcontext():
        return _train_locked(config, run_dir, resume, init, progress and lead, cache_dir, device, max_epochs, group)


def _train_locked(config, run_dir: Path, resume, init, show, cache_dir, device, max_epochs, group) -> list[dict]:
    lead = group.rank == 0
    checkpoint_path = run_dir / CHECKPOINT
    if checkpoint_path.exists() and not resume:
        raise InputError(f"{checkpoint_path}: a run already exists here; use --resume to continue it or another --out")
    if resume and not checkpoint_path.exists():
        raise InputError(f"{checkpoint_path}: nothing to resume (no checkpoint in the run folder)")
    saved_config = {**config.to_dict(), "init": str(init) if init is not None else None}
    if resume:  # checked before the data are prepared: a mismatch costs nothing
        payload = load_checkpoint(checkpoint_path)
        check_resumable(checkpoint_path, payload.get("train_config"), saved_config)

    augmentation = NoiseAugmentation.from_setting(config.noise)
    train_set = SliceDataset(config.train, seed=config.seed, cache_dir=cache_dir, noise_levels=augmentation is not None)
    training = PreparedSlices(train_set, show, "training slices")
    validation = None
    if config.validation:
        validation_set = SliceDataset(config.validation, seed=config.seed, cache_dir=cache_dir)
        validation = PreparedSlices(validation_set, show, "validation slices")

    torch.manual_seed(config.seed)
    history: list[dict] = []
    start_epoch = 0
    if resume:
        model = model_from_payload(payload, checkpoint_path)
        optimizer = build_optimizer(model.to(device), config.optimizer)
        try:
            optimizer.load_state_dict(payload["optimizer_state"])
        except (ValueError, KeyError, TypeError) as error:
            raise InputError(f"{checkpoint_path}: optimiser state does not fit the optimiser ({error})") from None
        history = list(payload["history"])
        start_epoch = payload["epoch"]
        threads = payload.get("threads")
        if lead and show and threads is not None and threads != torch.get_num_threads():
            tqdm.write(
                f"note: {checkpoint_path} was trained with {threads} thread(s), this resume uses "
                f"{torch.get_num_threads()}: parameters may differ from an uninterrupted run in the 4th digit"
            )
    elif init is not None:
        model, _ = model_from_checkpoint(init)
        model.to(device)
        optimizer = build_optimizer(model, config.optimizer)
    else:
        model = VariationalNetwork(**config.model).to(device)
        optimizer = build_optimizer(model, config.optimizer)
    if lead:
        write_text(run_dir / CONFIG, yaml.safe_dump(saved_config, sort_keys=False))
        write_history(run_dir, history)

    writer = None
    if lead:
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(run_dir / "tensorboard"), purge_step=start_epoch + 1)

    n_slices = len(training)
    per_epoch = config.batches_per_epoch(n_slices)
    total_steps = config.total_steps(n_slices)
    n_epochs = config.planned_epochs(n_slices)
    last_epoch = n_epochs if max_epochs is None else min(n_epochs, start_epoch + max_epochs)
    for epoch in range(start_epoch + 1, last_epoch + 1):
        started = time.perf_counter()
        order = torch.randperm(n_slices, generator=torch.Generator().manual_seed(stable_seed(config.seed, "epoch", epoch)))
        batches = [order[i : i + config.batch_size] for i in range(0, n_slices, config.batch_size)]
        batches = batches[: total_steps - (epoch - 1) * per_epoch]  # a step budget may end mid-epoch
        seen = sum(len(indices) for indices in batches)
        totals = torch.zeros(3, dtype=torch.float64)  # loss, rmse, ssim summed over slices
        bar = tqdm(batches, desc=f"epoch {epoch}/{n_epochs}", disable=None if show else True, leave=False)
        for batch_number, global_indices in enumerate(bar):
            if isinstance(optimizer, ProjectedAdam):
                steps_before = (epoch - 1) * per_epoch + batch_number
                optimizer.set_progress(steps_before / total_steps)
            local = global_indices[group.rank :: group.world].tolist()
            parts = training.batches(local) if local else []
            if augmentation is not None:
                parts = [augmentation.apply(part, config.seed, epoch) for part in parts]
            parts = [to_device(part, device) for part in parts]
            global_size = len(global_indices)
            observed = {}

            def batch_loss(metrics: bool) -> torch.Tensor:
                """Mean loss of the step's slices, over its sub-batches (one per matrix size)."""
                losses, sums = [], []
                for part in parts:
                    output = reconstruct_batch(model, part, training=True)
                    per_slice = reconstruction_loss(output, part["reference"], config.loss_eps)
                    losses.append(slice_objective(per_slice, config.slice_loss).sum() / global_size)
                    if metrics:
                        with torch.no_grad():
                            sums.append(torch.stack(
                                [per_slice.sum(), nrmse(output, part["reference"]).sum(), ssim(output, part["reference"]).sum()]
                            ).to(torch.float64).cpu())  # fmt: skip
                if sums:  # first evaluation of the step: the logged training metrics
                    observed["sums"] = sum(sums[1:], sums[0])
                return losses[0] if len(losses) == 1 else torch.stack(losses).sum()

            def closure():
                optimizer.zero_grad(set_to_none=False)
                if not parts:
                    loss = sum(parameter.sum() * 0 for parameter in model.parameters())
                else:
                    loss = batch_loss(metrics=not observed)
                loss.backward()
                loss = loss.detach()
                if group.world > 1:
                    for parameter in model.parameters():
                        group.sum_(parameter.grad)
                    group.sum_(loss)
                return loss

            def value_closure():
                """Loss only (iPALM's line search): a forward pass, no gradients."""
                with torch.no_grad():
                    loss = batch_loss(metrics=False) if parts else torch.zeros((), dtype=torch.float64)
                    return group.sum_(loss)

            loss = optimizer.step(closure, value_closure) if isinstance(optimizer, IPALM) else optimizer.step(closure)
            if "sums" in observed:
                totals += observed["sums"]
            bar.set_postfix(loss=f"{float(loss):.4g}")
        group.sum_(totals)
        if model.noise is not None:  # each process saw its share of the slices
            group.widen_(model.noise.trained_levels)
        row = {
            "epoch": epoch,
            "steps": (epoch - 1) * per_epoch + len(batches),
            "train_loss": float(totals[0]) / seen,
            "train_rmse": float(totals[1]) / seen,
            "train_ssim": float(totals[2]) / seen,
            "val_rmse": math.nan,
            "val_ssim": math.nan,
        }
        if validation is not None and lead:
            row["val_rmse"], row["val_ssim"] = evaluate_slices(model, validation, config.batch_size, device)
        row["seconds"] = time.perf_counter() - started
        history.append(row)
        if lead:
            save_checkpoint(checkpoint_path, model, optimizer, epoch, history, saved_config)
            write_csv(run_dir / HISTORY, history, HISTORY_FIELDS)
            for key in HISTORY_FIELDS[1:-1]:
                if not math.isnan(row[key]):
                    writer.add_scalar(key.replace("_", "/", 1), row[key], epoch)
            writer.flush()
            if show:
                validation_text = f", val RMSE {row['val_rmse']:.4f} SSIM {row['val_ssim']:.4f}" if validation else ""
                tqdm.write(
                    f"epoch {epoch}/{n_epochs}: train RMSE {row['train_rmse']:.4f} SSIM {row['train_ssim']:.4f}"
                    f"{validation_text} ({row['seconds']:.1f} s)"
                )
    if writer is not None:
        writer.close()
    return history
