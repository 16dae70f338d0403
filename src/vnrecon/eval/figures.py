"""Figures a person would rather look at than read: learned parameters, training curves, method comparisons.

All functions write a PNG (matplotlib, Agg backend) atomically and return its path.
"""

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (backend must be chosen first)
import numpy as np  # noqa: E402
import torch  # noqa: E402

from ..errors import InputError  # noqa: E402
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


def activation_curves(model, samples: int = 201) -> tuple[np.ndarray, list[np.ndarray]]:
    """x on the RBF domain and phi(x) of every filter, one (filters, samples) array per stage (numpy, for plotting)."""
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
    return x.numpy(), [curve.numpy() for curve in curves]


def draw_filter(axes, kernel: np.ndarray, x: np.ndarray, phi: np.ndarray) -> None:
    """One filter on three axes: real part, imaginary part (own symmetric grey scale), activation phi(x)."""
    for part in range(2):
        limit = float(np.abs(kernel[part]).max()) or 1.0
        axes[part].imshow(kernel[part], cmap="gray", vmin=-limit, vmax=limit)
    axes[2].plot(x, phi, linewidth=0.8)
    axes[2].axhline(0, color="0.7", linewidth=0.4)
    for axis in axes:
        axis.set_xticks([])
        axis.set_yticks([])


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
        kernel = stage.filters.detach().to("cpu", torch.float64).numpy()
        for i in range(filters):
            draw_filter(axes[3 * t : 3 * t + 3, i], kernel[i], x, curves[t][i])
        for part, label in enumerate(("k_re", "k_im", "phi")):
            axes[3 * t + part, 0].set_ylabel(f"t={t + 1}\n{label}", fontsize=7)
    figure.suptitle(title or "learned filters (real, imaginary) and activations per stage", fontsize=10)
    return save_figure(figure, path, dpi=80)


def plot_noise_conditioning(model, path: str | Path, title: str = "", decades: float = 1.5) -> Path:
    """A noise-aware VN's lambda_t and regulariser scales against the normalised noise level sigma.

    The x axis spans ``noise_reference`` x 10^(+-decades), widened to the trained range;
    one line per stage (early stages dark, late ones light); the noise levels the network
    was trained on are shaded (below them it holds its values at the lowest, see
    ``NoiseConditioning.conditioned``).
    """
    conditioning = model.noise
    trained = conditioning.trained_range()
    ends = [conditioning.reference * 10**-decades, conditioning.reference * 10**decades]
    if trained is not None:
        ends = [min(ends[0], trained[0] / 3), max(ends[1], trained[1] * 3)]
    sigmas = torch.logspace(math.log10(ends[0]), math.log10(ends[1]), 61, dtype=torch.float64)
    lambdas = torch.stack([stage.lam.detach() for stage in model.stages])  # curves() moves them to sigmas
    curves = conditioning.curves(lambdas, sigmas)
    panels = (
        ("lambda_t(sigma): data-term weight", curves["data"]),
        ("regulariser output scale exp(c_t s)", curves["output"]),
        ("activation input scale exp(-d_t s)", curves["input"]),
    )
    figure, axes = plt.subplots(1, 3, figsize=(13, 4))
    colours = plt.cm.viridis(np.linspace(0, 0.9, len(model.stages)))
    for axis, (label, values) in zip(axes, panels):
        if trained is not None:
            axis.axvspan(*trained, color="0.9", zorder=0, label="trained noise levels")
        for t in range(len(model.stages)):
            axis.plot(sigmas.numpy(), values[:, t].numpy(), color=colours[t], lw=1, label=f"t={t + 1}" if t in (0, len(model.stages) - 1) else None)
        axis.set_xscale("log")
        axis.set_yscale("log")
        axis.set_xlabel("sigma / max |A^H f|")
        axis.set_title(label, fontsize=9)
    axes[0].legend(fontsize=8)
    figure.suptitle(
        f"{title or 'noise conditioning per stage'}: against the noise sigma the network estimates from its input, "
        "relative to the slice normalisation", fontsize=10,
    )
    figure.tight_layout()
    return save_figure(figure, path)


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


# --------------------------------------------------------------------------- method comparison


def _magnitude_array(image, name: str):
    """|image| of a 2-D numpy array or torch tensor (complex or already a magnitude) as float64 numpy."""
    if isinstance(image, torch.Tensor):
        image = image.detach().cpu().numpy()
    magnitude = np.abs(np.asarray(image)).astype(np.float64)
    if magnitude.ndim != 2:
        raise InputError(f"{name}: expected a 2-D image, got shape {magnitude.shape}")
    return magnitude


def default_roi(reference) -> tuple[int, int, int, int]:
    """(row0, row1, col0, col1): a window of about a third of each dimension around the centre of mass of |reference|."""
    magnitude = _magnitude_array(reference, "reference")
    total = magnitude.sum()
    shape = magnitude.shape
    if total > 0:
        centre = [float((magnitude.sum(axis=1 - axis) * np.arange(size)).sum() / total) for axis, size in enumerate(shape)]
    else:
        centre = [size / 2 for size in shape]
    roi = []
    for middle, size in zip(centre, shape):
        extent = max(1, round(size / 3))
        start = min(max(0, round(middle - extent / 2)), size - extent)
        roi += [start, start + extent]
    return tuple(roi)


def _check_roi(roi, shape: tuple[int, int]) -> tuple[int, int, int, int]:
    row0, row1, col0, col1 = (int(value) for value in roi)
    if not (0 <= row0 < row1 <= shape[0] and 0 <= col0 < col1 <= shape[1]):
        raise InputError(f"roi {tuple(roi)} is not a (row0, row1, col0, col1) window inside the {shape[0]} x {shape[1]} image")
    return row0, row1, col0, col1


def ssim_label(reconstruction, reference) -> str:
    """The SSIM text printed on a comparison panel: ``metrics.ssim`` of the magnitudes, as in the tables."""
    from .metrics import ssim

    image = torch.from_numpy(_magnitude_array(reconstruction, "reconstruction"))
    truth = torch.from_numpy(_magnitude_array(reference, "reference"))
    return f"SSIM {float(ssim(image, truth)):.3f}"


def _hide_ticks(axis) -> None:
    axis.set_xticks([])
    axis.set_yticks([])


def build_comparison_figure(
    reference,
    reconstructions: dict,
    title: str = "",
    roi: tuple[int, int, int, int] | None = None,
    pixel_aspect: float = 1.0,
):
    """The figure of ``comparison_figure``, not yet saved: 3 rows x (1 + methods) image axes plus a colour bar."""
    from matplotlib.patches import Rectangle

    truth = _magnitude_array(reference, "reference")
    images = {label: _magnitude_array(image, label) for label, image in reconstructions.items()}
    for label, image in images.items():
        if image.shape != truth.shape:
            raise InputError(f"{label}: image shape {image.shape} differs from the reference's {truth.shape}")
    row0, row1, col0, col1 = _check_roi(default_roi(truth) if roi is None else roi, truth.shape)
    grey_max = float(np.percentile(truth, 99.5)) or 1.0
    errors = {label: np.abs(image - truth) for label, image in images.items()}
    # One error scale for all methods, robust to a few outliers: the largest 99.5th percentile.
    error_max = max((float(np.percentile(error, 99.5)) for error in errors.values()), default=0.0) or grey_max

    columns = 1 + len(images)
    height, width = truth.shape
    zoom_aspect = (row1 - row0) * pixel_aspect / (col1 - col0)
    full_aspect = height * pixel_aspect / width
    panel = 2.4  # inches per column
    figure, axes = plt.subplots(
        3, columns, squeeze=False,
        figsize=(panel * columns + 0.8, panel * (2 * full_aspect + zoom_aspect) + 1.0),
        gridspec_kw={"height_ratios": [full_aspect, zoom_aspect, full_aspect]},
    )
    grey = {"cmap": "gray", "vmin": 0.0, "vmax": grey_max, "aspect": pixel_aspect}
    for column, (label, image) in enumerate({"reference": truth, **images}.items()):
        top, zoom = axes[0, column], axes[1, column]
        top.imshow(image, **grey)
        top.set_title(label, fontsize=9)
        zoom.imshow(image[row0:row1, col0:col1], **grey)
        if column > 0:
            top.text(0.03, 0.97, ssim_label(image, truth), transform=top.transAxes, ha="left", va="top",
                     fontsize=8, color="yellow", bbox={"facecolor": "black", "alpha": 0.5, "pad": 1.5, "linewidth": 0})
        for axis in (top, zoom):
            _hide_ticks(axis)
    axes[0, 0].add_patch(Rectangle((col0 - 0.5, row0 - 0.5), col1 - col0, row1 - row0, fill=False, edgecolor="yellow", linewidth=1))
    axes[1, 0].set_ylabel("zoom", fontsize=8)

    legend = axes[2, 0]
    legend.axis("off")
    legend.text(0.5, 0.5, f"error maps\n||recon| - |ref||\nscale 0 to {error_max:.3g}\n"
                f"({100 * error_max / grey_max:.0f}% of the\nreference grey scale)",
                transform=legend.transAxes, ha="center", va="center", fontsize=8)
    shown = None
    for column, (label, error) in enumerate(errors.items(), start=1):
        shown = axes[2, column].imshow(error, cmap="inferno", vmin=0.0, vmax=error_max, aspect=pixel_aspect)
        _hide_ticks(axes[2, column])
    if shown is not None:
        colorbar = figure.colorbar(shown, ax=list(axes[2, 1:]), fraction=0.04, pad=0.02)
        colorbar.ax.tick_params(labelsize=7)
    if title:
        figure.suptitle(title, fontsize=10)
    return figure


def comparison_figure(
    reference,
    reconstructions: dict,
    path: str | Path,
    title: str = "",
    roi: tuple[int, int, int, int] | None = None,
    pixel_aspect: float = 1.0,
) -> Path:
    """Reference and methods side by side, their zoomed ROI and their error maps, as a PNG.

    ``reference`` and every value of ``reconstructions`` (label -> image) are
    2-D complex images or magnitudes (numpy or torch). Row 1: magnitudes on the
    reference's grey scale (0 to its 99.5th percentile), each method's SSIM to
    the reference (``metrics.ssim``, the tables' metric) in its top-left corner,
    the ROI outlined on the reference. Row 2: the ROI ``(row0, row1, col0,
    col1)`` of every panel (default: ``default_roi(reference)``). Row 3:
    ``||recon| - |ref||`` on one colour scale shared by all methods, with a
    colour bar; the scale is also written out under the reference column.
    ``pixel_aspect``: row spacing / column spacing.
    """
    figure = build_comparison_figure(reference, reconstructions, title, roi, pixel_aspect)
    return save_figure(figure, path)
