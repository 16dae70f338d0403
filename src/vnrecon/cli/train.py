"""`vnrecon train` (and `preset`): train a variational network from a YAML config."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from vnrecon.errors import InputError
from vnrecon.files import check_destination

from .common import HelpFormatter, device_option, positive


def _init_distributed(device: str) -> bool:
    """Join the process group when launched by torchrun (WORLD_SIZE > 1); True if joined."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    import torch.distributed as dist

    dist.init_process_group(backend="nccl" if device.startswith("cuda") else "gloo")
    return True


def _run_train(args: argparse.Namespace) -> int:
    from vnrecon.train.config import load_train_config
    from vnrecon.train.loop import train

    check_destination(args.out, folder=True)
    device_option(args.device)
    config = load_train_config(args.config)
    if args.epochs is not None and args.steps is not None:
        raise InputError("give --epochs or --steps, not both")
    if args.epochs is not None:
        config.epochs, config.steps = positive(args.epochs, "--epochs"), None
    if args.steps is not None:
        config.steps = positive(args.steps, "--steps")
    distributed = _init_distributed(args.device)
    try:
        history = train(
            config, args.out, resume=args.resume, init=args.init, progress=not args.quiet,
            cache_dir=args.cache, device=args.device,
        )
    finally:
        if distributed:
            import torch.distributed as dist

            dist.destroy_process_group()
    if history and not args.quiet:
        last = history[-1]
        print(f"trained {last['epoch']} epochs ({last['steps']} steps): train RMSE {last['train_rmse']:.4f} SSIM {last['train_ssim']:.4f}; "
              f"run folder {args.out} (checkpoint.pt, history.csv, tensorboard/)")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train a variational network from a YAML config",
        description=(
            "Train a variational network (SPEC section 3) on the training selections of a\n"
            "YAML config and write RUN_DIR/checkpoint.pt (every epoch, atomically),\n"
            "history.csv (train/validation RMSE and SSIM per epoch), config.yaml and\n"
            "TensorBoard logs. The config names its data selections, mask, noise, model\n"
            "sizes, optimiser (ipalm | adam with lr and lr_schedule constant | cosine),\n"
            "epochs (or 'steps': optimiser steps, for small training sets), batch size and\n"
            "seed; 'preset: cpu'\n"
            "or 'preset: paper' fills in what it leaves out ('vnrecon preset NAME' prints them).\n"
            "Several processes or GPUs: torchrun --nproc_per_node N -m vnrecon.cli train ...\n"
            "(each process takes its share of every batch; steps equal single-process training)."
        ),
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--config", required=True, type=Path, metavar="CONFIG.yaml", help="training config")
    parser.add_argument("--out", required=True, type=Path, metavar="RUN_DIR", help="run folder to create (or resume)")
    parser.add_argument("--resume", action="store_true", help="continue the interrupted run in RUN_DIR")
    parser.add_argument("--init", type=Path, metavar="CKPT", help="start from a trained model (fine-tuning)")
    parser.add_argument("--epochs", type=int, metavar="N", help="override the config's number of epochs")
    parser.add_argument(
        "--steps", type=int, metavar="N",
        help="train for N optimiser steps instead (the last epoch is cut short; the lr schedule spans N)",
    )
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda (default: cpu)")
    parser.add_argument("--cache", type=Path, metavar="DIR", help="ESPIRiT map cache (default: $VNRECON_CACHE or ~/.cache/vnrecon)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars or summary")
    parser.set_defaults(func=_run_train)


def _run_preset(args: argparse.Namespace) -> int:
    from vnrecon.train.config import preset_text

    print(preset_text(args.name), end="")
    return 0


def register_preset(subparsers: argparse._SubParsersAction) -> None:
    from vnrecon.train.config import PRESETS

    parser = subparsers.add_parser(
        "preset",
        help="print a shipped training preset (YAML) to copy into a config",
        description="Print the YAML of a training preset: 'cpu' (minutes on a laptop) or 'paper' (Knoll et al.).",
    )
    parser.add_argument("name", choices=PRESETS, help="preset name")
    parser.set_defaults(func=_run_preset)
