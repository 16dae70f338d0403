"""`vnrecon inspect`: a trained network's filters, activations and training curves."""

from __future__ import annotations

import argparse
from pathlib import Path

from vnrecon.files import check_destination

from .common import HelpFormatter


def _run_inspect(args: argparse.Namespace) -> int:
    from vnrecon.eval.figures import plot_filters_and_activations, plot_noise_conditioning, plot_training_curves
    from vnrecon.train.checkpoint import model_from_checkpoint, resolve_checkpoint

    checkpoint = resolve_checkpoint(args.run)
    model, payload = model_from_checkpoint(checkpoint)
    out = check_destination(args.out or checkpoint.parent, folder=True)
    filters = plot_filters_and_activations(model, out / "filters.png", title=f"{args.run}: filters and activations")
    print(f"filters and activations: {filters}")
    if model.noise is not None:
        conditioning = plot_noise_conditioning(model, out / "noise.png", title=f"{args.run}: lambda_t against the noise level")
        trained = model.noise.trained_range()
        span = "no record (saved before it was kept)" if trained is None else f"sigma / max|A^H f| {trained[0]:.3g}-{trained[1]:.3g}"
        print(f"noise conditioning: {conditioning} (trained noise levels: {span})")
    if payload["history"]:
        curves = plot_training_curves(payload["history"], out / "curves.png", title=f"{args.run}: training curves")
        print(f"training curves: {curves}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "inspect",
        help="draw a trained network's filters, activations and training curves",
        description=(
            "Draw the learned filters (real and imaginary part) and activation functions of\n"
            "every stage (the paper's Figure 10) to filters.png, and the training and\n"
            "validation RMSE/SSIM per epoch to curves.png, in RUN_DIR (or --out). For a noise-aware\n"
            "network (model setting noise_aware) also noise.png: lambda_t and the regulariser's scales\n"
            "of every stage against the noise level it estimates from its input, with the noise levels\n"
            "it was trained on (input cleaner than those is conditioned as the cleanest of them)."
        ),
        formatter_class=HelpFormatter,
    )
    parser.add_argument("run", type=Path, metavar="RUN_DIR", help="run folder (or checkpoint file)")
    parser.add_argument("--out", type=Path, metavar="DIR", help="where to write the PNGs (default: RUN_DIR)")
    parser.set_defaults(func=_run_inspect)
