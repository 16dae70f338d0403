"""Score reconstruction methods on a test set: per-slice NRMSE, SSIM, PSNR and time, and their summary.

A method is any reconstructor ``(kspace, maps, mask, readout) -> image`` (see
``vnrecon.models.inference``): the variational network itself, or a classical
baseline wrapped by ``baseline_reconstructor``. Every method sees exactly the
same prepared slices (masks, ESPIRiT maps, normalisation) from a SliceDataset.
"""

import statistics
import time

import torch

from ..data.dataset import SliceDataset, collate_slices
from ..models.baselines import reconstruct
from ..models.inference import Reconstructor
from ..physics.operator import SenseOperator
from .metrics import nrmse, psnr, ssim

METRICS = ("nrmse", "ssim", "psnr")


def baseline_reconstructor(method: str, **overrides) -> Reconstructor:
    """A classical method ('zf', 'sense', 'tv', 'wavelet') with the reconstructor signature."""

    def run(kspace, maps, mask, readout):
        return reconstruct(method, SenseOperator(maps, mask, readout), kspace, **overrides)

    return run


def evaluate(methods: dict[str, Reconstructor], dataset: SliceDataset, test_set: str, batch_size: int = 5) -> list[dict]:
    """One row per method and slice: test set, method, file, slice, nrmse, ssim, psnr, seconds (per slice)."""
    rows = []
    with torch.no_grad():
        for start in range(0, len(dataset), batch_size):
            batch = collate_slices([dataset[index] for index in range(start, min(start + batch_size, len(dataset)))])
            readout = batch["reference"].shape[-2]
            for name, method in methods.items():
                started = time.perf_counter()
                output = method(batch["kspace"], batch["maps"], batch["mask"], readout)
                seconds = (time.perf_counter() - started) / len(batch["file"])
                scores = {
                    "nrmse": nrmse(output, batch["reference"]),
                    "ssim": ssim(output, batch["reference"]),
                    "psnr": psnr(output, batch["reference"]),
                }
                for index, (path, slice_index) in enumerate(zip(batch["file"], batch["slice"])):
                    row = {"test_set": test_set, "method": name, "file": path, "slice": slice_index}
                    row.update({metric: float(scores[metric][index]) for metric in METRICS})
                    row["seconds"] = seconds
                    rows.append(row)
    return rows


def summarise(rows: list[dict]) -> list[dict]:
    """Mean and SD of every metric per (test set, method), in first-seen order."""
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        groups.setdefault((row["test_set"], row["method"]), []).append(row)
    summary = []
    for (test_set, method), members in groups.items():
        entry = {"test_set": test_set, "method": method, "slices": len(members)}
        for metric in METRICS:
            values = [member[metric] for member in members]
            entry[f"{metric}_mean"] = statistics.fmean(values)
            entry[f"{metric}_sd"] = statistics.pstdev(values)
        summary.append(entry)
    return summary


def markdown_table(summary: list[dict]) -> str:
    lines = [
        "| test set | method | slices | SSIM | NRMSE | PSNR (dB) |",
        "|---|---|---|---|---|---|",
    ]
    for entry in summary:
        lines.append(
            f"| {entry['test_set']} | {entry['method']} | {entry['slices']} "
            f"| {entry['ssim_mean']:.3f} ± {entry['ssim_sd']:.3f} "
            f"| {entry['nrmse_mean']:.3f} ± {entry['nrmse_sd']:.3f} "
            f"| {entry['psnr_mean']:.1f} ± {entry['psnr_sd']:.1f} |"
        )
    return "\n".join(lines)
