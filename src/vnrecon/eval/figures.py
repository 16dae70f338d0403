"""Figures a person would rather look at than read: learned parameters and training curves.

All functions write a PNG (matplotlib, Agg backend) atomically and return its path.
"""

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (backend must be chosen first)
import torch  # noqa: E402

from ..files import atomic_write  # noqa: E402
from ..models.activations import rbf_naive  # noqa: E402


def save_figure(figure, path: str | Path, dpi: int = 100) -> Path:
    """Save as PNG without ever leaving a half-written file, and close the figure."""
    try:
        with atomic_write(path) as temporary:
            figure.savefig(temporary, format="png", dpi=dpi, bbox_inches="tight")
    finally:
        plt.close(figure)
    return Path(path)


def activation_curves(model, samples: int = 201) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """x on the RBF domain and phi(x) of every filter, one (filters, samples) tensor per stage."""
    grid = model.grid
    x = torch.linspace(grid.vmin, grid.vmax, samples, dtype=torch.float64)
    curves = []
    with torch.no_grad():
        for stage in model.stages:
            if stage.activation is None:
                curves.append(x.expand(stage.filters.shape[0], -1).clone())
                continue
            weight = stage.activation.weight.detach().to(torch.float64)
            inputs = x.expand(1, weight.shape[0], -1).contiguous()
            curves.append(rbf_naive(inputs, weight, grid)[0])
    return x, curves


def plot_filters_and_activations(model, path: str | Path, title: str = "") -> Path:
    """The paper's Figure 10 for every stage: filters k_re, k_im and activations phi per filter.

    Rows come in threes per stage (real part, imaginary part, activation), one
    column per filter; each filter is shown on its own symmetric grey scale.
    """
    stages = len(model.stages)
    filters = model.stages[0].filters.shape[0]
    x, curves = activation_curves(model)
    figure, axes = plt.subplots(3 * stages, filters, figsize=(0.75 * filters + 1, 0.75 * 3 * stages + 0.6), squeeze=False)
    for t, stage in enumerate(model.stages):
        kernel = stage.filters.detach().to("cpu", torch.float64)
        for i in range(filters):
            for part in range(2):
                axis = axes[3 * t + part, i]
                limit = float(kernel[i, part].abs().max()) or 1.0
                axis.imshow(kernel[i, part], cmap="gray", vmin=-limit, vmax=limit)
                axis.set_xticks([])
                axis.set_yticks([])
            axis = axes[3 * t + 2, i]
            axis.plot(x, curves[t][i], linewidth=0.8)
            axis.axhline(0, color="0.7", linewidth=0.4)
            axis.set_xticks([])
            axis.set_yticks([])
        for part, label in enumerate(("k_re", "k_im", "phi")):
            axes[3 * t + part, 0].set_ylabel(f"t={t + 1}\n{label}", fontsize=7)
    figure.suptitle(title or "learned filters (real, imaginary) and activations per stage", fontsize=10)
    return save_figure(figure, path, dpi=80)


def plot_training_curves(history: list[dict], path: str | Path, title: str = "", switch_epoch: int | None = None) -> Path:
    """Train / validation RMSE and SSIM over epochs; ``switch_epoch`` marks the start of fine-tuning."""
    epochs = [int(row["epoch"]) for row in history]
    figure, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for axis, metric in zip(axes, ("rmse", "ssim")):
        for split, style in (("train", "-"), ("val", "--")):
            values = [float(row[f"{split}_{metric}"]) for row in history]
            if not all(math.isnan(value) for value in values):
                axis.plot(epochs, values, style, label="training" if split == "train" else "validation")
        if switch_epoch is not None:
            axis.axvline(switch_epoch + 0.5, color="k", linestyle=":", linewidth=1, label="fine-tuning starts")
        axis.set_xlabel("epoch")
        axis.set_ylabel(metric.upper())
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    figure.suptitle(title or "training curves", fontsize=10)
    return save_figure(figure, path)


def save_image_grid(
    images: list, titles: list[str], path: str | Path, title: str = "", columns: int = 6, pixel_aspect: float = 1.0
) -> Path:
    """Magnitude images in a grid, each on its own grey scale (0 to its 99.5th percentile).

    ``pixel_aspect``: row spacing / column spacing, so anatomy keeps its proportions.
    """
    import numpy as np

    count = len(images)
    columns = min(columns, count)
    rows = math.ceil(count / columns)
    height, width = images[0].shape
    aspect = height * pixel_aspect / width
    figure, axes = plt.subplots(rows, columns, figsize=(2.4 * columns, (2.4 * aspect + 0.4) * rows), squeeze=False)
    for axis in axes.flat:
        axis.axis("off")
    for axis, image, label in zip(axes.flat, images, titles):
        axis.imshow(image, cmap="gray", vmin=0, vmax=float(np.percentile(image, 99.5)) or 1.0, aspect=pixel_aspect)
        axis.set_title(label, fontsize=8)
    if title:
        figure.suptitle(title, fontsize=10)
    return save_figure(figure, path)
