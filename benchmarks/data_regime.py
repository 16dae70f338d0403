"""The regime card of the simulated knee: how hard its reconstruction problem is, per contrast and size.

Usage: python benchmarks/data_regime.py [--sizes cpu paper] [--slices 4] [--muscle-snr 12] [--keep DIR]

For each size (cpu: the default matrix 256 x 96; paper: 640 x 368) it
simulates two patients (seed 0; patient 0 tunes the weights, patient 1 is
scored) and, at regular R = 4 with the size's ACS block (``matched_acs_lines``:
24 of 368 lines, 6 of 96, the paper's effective acceleration), loads them as
every tool of vnrecon does (prewhitening with the stored noise covariance,
ESPIRiT maps from the ACS lines) and prints one table:

* SSIM / NRMSE against the fully sampled reference of zero filling, CG-SENSE
  (Tikhonov weight tuned, solved to a residual of 1e-6), TV and l1-wavelet
  (weights tuned, up to ``--iterations`` (1000) iterations to a relative
  change of 1e-5); each weight is the best by SSIM of the default x
  ``--factors`` (10^(-1, -0.5, 0, 0.5, 1)) on the tuning patient;
* the tissue SNR (muscle SNR of the fully sampled image) and the paper-style
  SNR ``rms(f) / sigma_k`` recorded at simulation;
* the g-factor of the array at R = 4 (no ACS), mean and max over the knee
  (pixels above 10 % of the reference maximum), from the ESPIRiT maps.

``--muscle-snr`` simulates with another PDw-FS muscle SNR than the default
(``PDFS_MUSCLE_SNR``), to see how the regime moves with that estimate.
"""

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import torch

from vnrecon.data import knee
from vnrecon.data.dataset import SliceDataset, collate_slices
from vnrecon.data.fastmri import read_header
from vnrecon.data.knee import acquisition
from vnrecon.data.selection import Selection
from vnrecon.eval.metrics import nrmse, ssim
from vnrecon.models.baselines import METHODS, reconstruct, tune_weight
from vnrecon.physics.gfactor import g_factor
from vnrecon.physics.masks import matched_acs_lines
from vnrecon.physics.operator import SenseOperator

SIZES = {"cpu": knee.DEFAULT_MATRIX, "paper": knee.PAPER_MATRIX}
CONTRASTS = {"PDw": "CORPD_FBK", "PDw-FS": "CORPDFS_FBK"}
FACTORS = (0.1, 10**-0.5, 1.0, 10**0.5, 10.0)
TUNED = ("sense", "tv", "wavelet")
LABELS = {"zf": "zero-filled", "sense": "CG-SENSE", "tv": "TV", "wavelet": "l1-wavelet"}


def _batch(folder: Path, acquisition_name: str, patient: int, slices: int, acs: int, cache: Path) -> dict:
    selection = Selection(data=str(folder), acquisition=acquisition_name, patients=(patient, patient + 1), slices=slices, acs_lines=acs)
    dataset = SliceDataset([selection], cache_dir=cache)
    return collate_slices([dataset[index] for index in range(len(dataset))])


def _knee_g_factor(batch: dict) -> tuple[float, float]:
    values = []
    for maps, reference in zip(batch["maps"], batch["reference"]):
        rows = reference.shape[-2]
        start = maps.shape[-2] // 2 - rows // 2  # the readout-cropped grid of the reference
        g = g_factor(maps[:, start : start + rows], 4)
        knee_pixels = reference.abs() > 0.1 * reference.abs().max()
        values.append(g[knee_pixels & torch.isfinite(g)])
    values = torch.cat(values)
    return float(values.mean()), float(values.max())


def measure(size: str, slices: int, work: Path, factors, iterations: int, methods, contrasts, say) -> list[dict]:
    matrix = SIZES[size]
    acs = matched_acs_lines(matrix[1])
    folder = work / size
    started = time.perf_counter()
    knee.simulate_knee_dataset(folder, 2, slices, seed=0, matrix=matrix)
    say(f"{size}: simulated 2 patients x {slices} slices ({time.perf_counter() - started:.0f} s), {acs} ACS lines")
    rows = []
    for contrast in contrasts:
        name = CONTRASTS[contrast]
        tune = _batch(folder, name, 0, slices, acs, work / "cache")
        test = _batch(folder, name, 1, slices, acs, work / "cache")
        attrs = read_header(folder / f"knee_p001_{name}.h5").attrs
        row = {"size": size, "contrast": contrast, "tissue_snr": float(attrs["tissue_snr"]), "paper_snr": float(attrs["paper_snr"])}
        row["g_mean"], row["g_max"] = _knee_g_factor(test)
        tune_op = SenseOperator(tune["maps"], tune["mask"], tune["reference"].shape[-2])
        test_op = SenseOperator(test["maps"], test["mask"], test["reference"].shape[-2])
        for method in methods:
            tick = time.perf_counter()
            options = {}
            if method in TUNED:
                entry = METHODS[method]
                default = entry.defaults[entry.weight_parameter]
                solver = {} if method == "sense" else {"iterations": iterations}
                grid = [default * factor for factor in factors]
                best, _ = tune_weight(method, tune_op, tune["kspace"], tune["reference"], grid, metric="ssim", **solver)
                options = {entry.weight_parameter: best, **solver}
                row[f"{method}_weight"] = best
            with torch.no_grad():
                image = reconstruct(method, test_op, test["kspace"], **options)
            row[f"{method}_ssim"] = float(ssim(image, test["reference"]).mean())
            row[f"{method}_nrmse"] = float(nrmse(image, test["reference"]).mean())
            say(f"  {size} {contrast} {LABELS[method]}: SSIM {row[f'{method}_ssim']:.3f} ({time.perf_counter() - tick:.0f} s)")
        rows.append(row)
    return rows


def table(rows: list[dict]) -> str:
    head = "| size | contrast | tissue SNR | paper SNR | g mean / max | " + " | ".join(f"{LABELS[m]} SSIM / NRMSE" for m in LABELS) + " |"
    lines = [head, "|" + "---|" * (5 + len(LABELS))]
    for row in rows:
        cells = [row["size"], row["contrast"], f"{row['tissue_snr']:.1f}", f"{row['paper_snr']:.2f}", f"{row['g_mean']:.2f} / {row['g_max']:.2f}"]
        cells += [f"{row[f'{m}_ssim']:.3f} / {row[f'{m}_nrmse']:.3f}" if f"{m}_ssim" in row else "not run" for m in LABELS]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", choices=list(SIZES), default=list(SIZES))
    parser.add_argument("--slices", type=int, default=4, help="central slices per patient (default: 4)")
    parser.add_argument("--muscle-snr", type=float, default=acquisition.PDFS_MUSCLE_SNR, help="PDw-FS muscle SNR to simulate")
    parser.add_argument("--factors", type=float, nargs="+", default=list(FACTORS), help="weight grid: default weight x these")
    parser.add_argument("--iterations", type=int, default=1000, help="TV / l1-wavelet iteration limit (default: 1000)")
    parser.add_argument("--contrasts", nargs="+", choices=list(CONTRASTS), default=list(CONTRASTS))
    parser.add_argument("--methods", nargs="+", choices=list(LABELS), default=list(LABELS), help="methods to score")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--keep", type=Path, metavar="DIR", help="keep the simulated files (and montages) in DIR")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    acquisition.PDFS_MUSCLE_SNR = args.muscle_snr
    work = args.keep or Path(tempfile.mkdtemp(prefix="vnrecon-regime-"))
    rows = []
    try:
        for size in args.sizes:
            rows.extend(measure(size, args.slices, work, args.factors, args.iterations, args.methods, args.contrasts, print))
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    print(
        f"\nregime card: regular R = 4, PDw-FS muscle SNR {args.muscle_snr:g}, {args.slices} slices of patient 1 "
        f"scored, weights x {', '.join(f'{f:g}' for f in args.factors)}, TV / wavelet <= {args.iterations} iterations\n"
    )
    print(table(rows))


if __name__ == "__main__":
    main()
