"""Command-line interface: ``vnrecon COMMAND [options]``, one job per command.

Each command is a pair of functions: ``_register_<name>(subparsers)`` adds its
subparser (help text, arguments) and sets ``func`` to ``_run_<name>(args) ->
int``. Adding a command means writing those two functions and listing the
register function in ``_COMMANDS``; ``main`` needs no change.

Errors in user input (``vnrecon.errors.InputError``, and OSError from user
paths) are reported as one line ``vnrecon: error: <message>`` on stderr with
exit status 2 and no traceback; argparse usage errors also exit with 2.
Heavy modules (torch, h5py, the models) are imported inside the run functions
so ``vnrecon --help`` stays fast.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Callable, Sequence

from vnrecon import __version__
from vnrecon.errors import InputError
from vnrecon.files import check_destination, check_free_space

# Idle OpenMP threads of torch's libgomp spin for 300000 iterations before they sleep: on
# an idle 2-core machine a VN training step takes ~0.7x the time of sleeping at once
# (OMP_WAIT_POLICY=PASSIVE), but 1.7-1.9x when a second job shares the cores (tiny problems
# up to 100x). A spin of 3000 gives ~0.75x and 1.05-1.2x (benchmarks/openmp_wait.py). A
# user's own OpenMP settings win.
if "OMP_WAIT_POLICY" not in os.environ:
    os.environ.setdefault("GOMP_SPINCOUNT", "3000")

PROG = "vnrecon"
EXIT_USAGE = 2



class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keep the paragraph layout of descriptions and epilogs."""


# --------------------------------------------------------------------------- info


def _format_info(path: Path) -> str:
    import numpy as np
    import torch

    from vnrecon.data.fastmri import read_header, read_volume
    from vnrecon.physics.masks import count_acs_lines, effective_acceleration
    from vnrecon.data.selection import SNR_SLICES, central_slices
    from vnrecon.physics.noise import estimate_snr

    info = read_header(path)
    header = info.header
    recon = header.get("recon_shape")
    recon_text = f"{recon[0]} x {recon[1]}" if recon else "not in header"
    snr_slices = central_slices(info.n_slices, min(SNR_SLICES, info.n_slices))
    volume = read_volume(path, slices=slice(snr_slices.start, snr_slices.stop))
    kspace = volume.kspace
    note = ""
    if info.mask is not None:
        # Undersampled file: unsampled lines are zeros, so use the measured lines only.
        kspace = kspace[..., info.mask]
        note = ", sampled lines only"
    which = (
        f"slices {snr_slices.start}-{snr_slices.stop - 1}"
        f" (0-based), central {len(snr_slices)} of {info.n_slices}{note}"
    )
    if "snr" in info.attrs:
        # Synthetic files fill the oversampled FOV, so no margin is background: report the recorded truth.
        recorded = np.atleast_1d(np.asarray(info.attrs["snr"], dtype=float))
        snr_text = f"{recorded.mean():.1f}"
        method = f"recorded at simulation, mean of {recorded.size} slices"
    else:
        method = f"rms(k-space) / noise std from the readout margins; {which}"
        try:
            snr_text = f"{estimate_snr(torch.from_numpy(np.ascontiguousarray(kspace))):.1f}"
        except ValueError as error:  # incl. InputError: data the estimator cannot use (e.g. no margins)
            snr_text = f"n/a ({error})"
    if "tissue_snr" in info.attrs:
        tissue_text = f"{float(info.attrs['tissue_snr']):.1f} (muscle SNR of the fully sampled image, recorded at simulation)"
    else:
        tissue_text = "not recorded (needs a tissue ROI; simulated knee files carry it)"
    lines = [
        f"{path}",
        f"  slices:       {info.n_slices}",
        f"  coils:        {info.n_coils}",
        f"  matrix:       {info.readout} x {info.phase} (readout x phase), recon {recon_text}",
        f"  acquisition:  {info.acquisition or '-'}",
        f"  patient id:   {info.patient_id or '-'}",
        f"  SNR:          {snr_text} ({method})",
        f"  tissue SNR:   {tissue_text}",
        f"  coil maps:    {f'stored ({info.n_maps} set(s) in the file)' if info.has_maps else 'none stored (ESPIRiT from the ACS lines)'}",
        f"  noise:        {'covariance stored (data are prewhitened when loaded)' if info.has_noise_covariance else 'no covariance stored (taken as white)'}",
    ]
    if info.mask is not None:
        lines.append(
            f"  mask:         effective acceleration {effective_acceleration(info.mask):.2f}"
            f" ({int(info.mask.sum())} of {info.mask.size} lines), {count_acs_lines(info.mask)} ACS lines"
        )
    else:
        lines.append("  mask:         none")
    return "\n".join(lines)


def _run_info(args: argparse.Namespace) -> int:
    status, printed = 0, False
    for path in args.files:
        try:
            text = _format_info(path)
        except (InputError, OSError) as error:
            _report(error)
            status = EXIT_USAGE
            continue
        print(("\n" if printed else "") + text, flush=True)
        printed = True
    return status


def _register_info(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "info",
        help="print shape, sequence, SNR and sampling of fastMRI HDF5 files",
        description=(
            "Print for each fastMRI multi-coil HDF5 file: slices, coils, k-space matrix\n"
            "(readout x phase) and recon matrix, acquisition (e.g. CORPD_FBK), patient id,\n"
            "the estimated SNR = rms(k-space) / noise std (noise from the readout-oversampled\n"
            "margins) over the central up-to-20 slices, and, for undersampled files with a\n"
            "'mask' dataset, the effective acceleration and the number of ACS lines.\n"
            "Files that cannot be read are reported on stderr (exit status 2); the\n"
            "others are still printed."
        ),
        formatter_class=_HelpFormatter,
    )
    parser.add_argument("files", nargs="+", type=Path, metavar="FILE.h5", help="fastMRI multi-coil HDF5 file")
    parser.set_defaults(func=_run_info)


# --------------------------------------------------------------------------- simulate


def _parse_matrix(text: str) -> tuple[int, int]:
    """'RxP' (e.g. 256x96) -> (readout, phase); an argparse type (usage error on bad syntax)."""
    parts = text.lower().replace("*", "x").split("x")
    try:
        if len(parts) != 2:
            raise ValueError
        return int(parts[0]), int(parts[1])
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected READOUTxPHASE, e.g. 256x96, got {text!r}") from None


def _positive(value: int, option: str) -> int:
    if value < 1:
        raise InputError(f"{option} must be a positive integer, got {value}")
    return value


def _device(text: str) -> str:
    """--device: a torch device this build and machine have (checked before any work)."""
    import torch

    try:
        device = torch.device(text)
    except (RuntimeError, ValueError):
        raise InputError(f"--device {text}: not a torch device (use cpu, cuda or cuda:N)") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise InputError(f"--device {text}: no CUDA device is available to this torch build")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise InputError(f"--device {text}: only {torch.cuda.device_count()} CUDA device(s) are visible")
    elif device.type != "cpu":
        raise InputError(f"--device {text}: only cpu and cuda devices are supported")
    return text


def _non_negative(value: int, option: str) -> int:
    if value < 0:
        raise InputError(f"{option} must be a non-negative integer, got {value}")
    return value


class _Progress:
    """tqdm bar (on stderr, only on a terminal) behind a ``progress(done, total)`` callback."""

    def __init__(self, unit: str) -> None:
        self.unit = unit
        self.bar = None

    def __call__(self, done: int, total: int) -> None:
        if self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit=self.unit, disable=None, file=sys.stderr)
        self.bar.update(done - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _file_range(paths: Sequence[Path]) -> str:
    names = [path.name for path in paths]
    return names[0] if len(names) == 1 else f"{names[0]} .. {names[-1]}"


def _run_simulate_knee(args: argparse.Namespace) -> int:
    import numpy as np

    from vnrecon.data import knee
    from vnrecon.data.fastmri import read_header
    from vnrecon.data.natural import KNEE_HIGH, KNEE_LOW, measure_knee_reference

    patients = _positive(args.patients, "--patients")
    slices = _positive(args.slices, "--slices")
    coils = _positive(args.coils, "--coils")
    seed = _non_negative(args.seed, "--seed")
    if args.matrix is not None:
        matrix = args.matrix
    else:
        matrix = knee.PAPER_MATRIX if args.size == "paper" else knee.DEFAULT_MATRIX
    try:
        matrix = knee.check_matrix(matrix)
    except ValueError as error:
        raise InputError(f"--matrix {matrix[0]}x{matrix[1]}: {error}") from None
    out = check_destination(args.out, folder=True)
    progress = _Progress("patient")
    try:
        paths = knee.simulate_knee_dataset(
            out, patients, slices, seed=seed, matrix=matrix, n_coils=coils, progress=progress
        )
    finally:
        progress.close()
    reference = measure_knee_reference(out, files=paths)
    print(
        f"wrote {len(paths)} files ({patients} patient(s) x {KNEE_HIGH} + {KNEE_LOW}, {slices} slices, "
        f"{coils} coils, k-space {matrix[0]} x {matrix[1]}) to {out}: {_file_range(paths)}"
    )
    montage = out / "montage.png"
    if montage.is_file():
        print(f"montage: {montage}")
    n_central = min(20, slices)
    infos = [read_header(path) for path in paths]
    tissue = {
        name: float(np.mean([float(info.attrs["tissue_snr"]) for info in infos if info.acquisition == name]))
        for name in (KNEE_HIGH, KNEE_LOW)
    }
    print(f"SNR over the central {n_central} slice(s), mean of the files: paper-style = rms(k-space) / noise std")
    print("(prewhitened, readout margins); tissue = muscle SNR of the fully sampled image")
    print(f"  {KNEE_HIGH:<12} paper-style {reference.snr_high:6.2f}   tissue {tissue[KNEE_HIGH]:6.1f}   (PDw)")
    print(f"  {KNEE_LOW:<12} paper-style {reference.snr_low:6.2f}   tissue {tissue[KNEE_LOW]:6.1f}   (PDw-FS)")
    print(f"  noise sigma  {reference.sigma:.3g}")
    return 0


def _run_simulate_natural(args: argparse.Namespace) -> int:
    from vnrecon.data.natural import simulate_natural_dataset

    count = _positive(args.count, "--count")
    per_file = {} if args.slices_per_file is None else {"slices_per_file": _positive(args.slices_per_file, "--slices-per-file")}
    seed = _non_negative(args.seed, "--seed")
    maps_from = Path(args.maps_from)
    if not maps_from.is_dir():
        raise InputError(f"{maps_from}: --maps-from folder not found")
    if args.images is not None and not Path(args.images).is_dir():
        raise InputError(f"{args.images}: --images folder not found")
    out = check_destination(args.out, folder=True)
    progress = _Progress("image")
    try:
        paths = simulate_natural_dataset(
            out,
            maps_from,
            count=count,
            snr=args.snr,
            seed=seed,
            images=args.images,
            acs_lines=args.acs_lines,
            progress=progress,
            **per_file,
        )
    finally:
        progress.close()
    import h5py
    import numpy as np

    from vnrecon.data.photos import default_image_source

    snrs, sources = [], set()
    with h5py.File(paths[0], "r") as h5:
        high, low = float(h5.attrs["snr_reference_high"]), float(h5.attrs["snr_reference_low"])
        sigma = float(h5.attrs["noise_sigma"])
    for path in paths:
        with h5py.File(path, "r") as h5:
            snrs.extend(np.asarray(h5.attrs["snr"]).tolist())
            sources.update(str(name) for name in h5.attrs["source_image"])
    print(f"wrote {len(paths)} files ({count} synthetic slices, SNR {args.snr}) to {out}: {_file_range(paths)}")
    where = args.images if args.images is not None else default_image_source()
    print(f"images: {len(sources)} distinct source images from {where}; generating coil maps stored in each file")
    montage = out / "montage.png"
    if montage.is_file():
        print(f"montage: {montage}")
    print(f"knee reference from {maps_from}: SNR PDw {high:.1f}, PDw-FS {low:.1f}, noise sigma {sigma:.3g}")
    if args.snr == "variable":
        print(f"synthetic SNR: {min(snrs):.1f} .. {max(snrs):.1f} (uniform per image), noise sigma {sigma:.3g}")
    else:
        print(f"synthetic SNR: {snrs[0]:.1f}, noise sigma {sigma:.3g}")
    print(
        "note: the image fills the readout-oversampled FOV, so no margin holds only noise; 'vnrecon info'\n"
        "      reports the SNR recorded in the attributes noise_sigma and snr"
    )
    stale = sorted(set(out.glob(f"natural_{args.snr}_*.h5")) - set(paths))
    if stale:
        print(f"warning: {out} also holds {len(stale)} older natural_{args.snr}_*.h5 file(s) not written now, "
              f"e.g. {stale[0].name}", file=sys.stderr)
    return 0


def _register_simulate(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "simulate",
        help="generate training data: numerical knee k-space, or synthetic k-space from natural images",
        description=(
            "Generate fully sampled multi-coil k-space in the fastMRI HDF5 layout.\n"
            "\n"
            "  knee     numerical knee phantom: coronal PDw (CORPD_FBK) and PDw-FS (CORPDFS_FBK)\n"
            "           TSE per patient, 15-loop array, correlated noise, 2x readout oversampling\n"
            "  natural  the paper's synthetic data: natural images x sinusoidal phase x ESPIRiT\n"
            "           coil maps of knee files, Fourier transformed, noise at the knee level\n"
            "\n"
            "Run 'vnrecon simulate knee --help' or 'vnrecon simulate natural --help'."
        ),
        formatter_class=_HelpFormatter,
    )
    kinds = parser.add_subparsers(dest="kind", metavar="KIND", title="kinds", required=True)

    knee = kinds.add_parser(
        "knee",
        help="numerical knee k-space, PDw and PDw-FS files per patient",
        usage=(
            "vnrecon simulate knee --out DIR --patients N --slices S [--seed K]\n"
            "                             [--matrix RxP | --size {cpu,paper}] [--coils C]"
        ),
        description=(
            "Simulate N numerical knee patients and write, per patient, one fully sampled\n"
            "fastMRI-layout file per sequence: DIR/knee_pNNN_CORPD_FBK.h5 (PDw) and\n"
            "DIR/knee_pNNN_CORPDFS_FBK.h5 (PDw-FS), S coronal slices each, C coils, with the\n"
            "receiver noise covariance (loaders prewhiten with it), plus DIR/montage.png.\n"
            "The noise is calibrated on the image: muscle SNR 25 in PDw-FS, and a paper-style\n"
            "SNR (rms(k-space) / noise std) 4 times higher in PDw than in PDw-FS (the paper's\n"
            "80 : 20). Matrices with fewer than 368 phase lines use a proportionally smaller\n"
            "ACS block (6 of 96: the paper's effective acceleration) and store coil maps from\n"
            "a 24-line calibration scan. Prints the files, the montage and both SNRs per\n"
            "sequence (central up-to-20 slices). Output is deterministic per seed."
        ),
        epilog=(
            "example:\n"
            "  vnrecon simulate knee --out data/knee --patients 20 --slices 20"
        ),
        formatter_class=_HelpFormatter,
    )
    knee.add_argument("--out", required=True, type=Path, metavar="DIR", help="output folder (created)")
    knee.add_argument("--patients", required=True, type=int, metavar="N", help="number of patients (>= 1)")
    knee.add_argument("--slices", required=True, type=int, metavar="S", help="slices per patient (>= 1; the paper uses the central 20)")
    knee.add_argument("--seed", type=int, default=0, metavar="K", help="random seed (default: 0)")
    size = knee.add_mutually_exclusive_group()
    size.add_argument(
        "--matrix",
        type=_parse_matrix,
        default=None,
        metavar="RxP",
        help="k-space matrix: full readout incl. 2x oversampling x phase encoding, e.g. 256x96\n"
        "(readout divisible by 4, phase even; instead of --size)",
    )
    size.add_argument(
        "--size",
        choices=("cpu", "paper"),
        default="cpu",
        help="matrix preset: cpu = 256x96 (default), paper = 640x368 (fastMRI knee)",
    )
    knee.add_argument("--coils", type=int, default=15, metavar="C", help="receive coils (default: 15, as the paper's knee coil)")
    knee.set_defaults(func=_run_simulate_knee)

    natural = kinds.add_parser(
        "natural",
        help="synthetic k-space from natural images with coil maps of knee files",
        usage=(
            "vnrecon simulate natural --out DIR --maps-from KNEE_DIR [--count N]\n"
            "                                [--snr {high,low,variable}] [--images FOLDER]\n"
            "                                [--seed K] [--acs-lines L] [--slices-per-file F]"
        ),
        description=(
            "The paper's synthetic training data (Knoll et al. 2019): N natural grey images,\n"
            "randomly rotated (k x 90 deg), flipped, scaled and cropped to the knee k-space\n"
            "matrix incl. readout oversampling, normalised to [0, 1], modulated with a\n"
            "sinusoidal phase a sin(2 pi (fx x + fy y) + p) of random frequency (0.5-2.5\n"
            "cycles per FOV) and amplitude (0.5-pi rad), multiplied with ESPIRiT coil maps\n"
            "of random central slices of the knee files in KNEE_DIR (both sequences; a pool\n"
            "of up to 20 slices), Fourier transformed, and complex Gaussian noise added at\n"
            "the knee noise level with SNR = rms(k-space) / sigma equal to the PDw SNR\n"
            "(high), the PDw-FS SNR (low) or uniform between the two per image (variable);\n"
            "both SNRs and sigma are measured on KNEE_DIR, which must hold fully sampled\n"
            "CORPD_FBK and CORPDFS_FBK files (e.g. from 'vnrecon simulate knee').\n"
            "\n"
            "Writes DIR/natural_<snr>_NNN.h5 (F slices each, acquisition SYNTHETIC_<SNR>,\n"
            "patient id natNNN; the true noise sigma and per-slice SNR, phase parameters,\n"
            "source image and map slice are file attributes) and DIR/montage.png (magnitude\n"
            "and phase of the coil-combined first images). Output is deterministic per seed.\n"
            "Images: scikit-image's sample photographs (astronaut, camera, coffee, chelsea,\n"
            "rocket, coins, moon, brick, grass, gravel, clock, immunohistochemistry, retina,\n"
            "cell, motorcycle), or every PNG/JPEG/TIFF/BMP file in --images (e.g. BSDS500)."
        ),
        epilog=(
            "example:\n"
            "  vnrecon simulate knee --out data/knee --patients 10 --slices 20\n"
            "  vnrecon simulate natural --out data/natural --maps-from data/knee \\\n"
            "                           --count 200 --snr variable"
        ),
        formatter_class=_HelpFormatter,
    )
    natural.add_argument("--out", required=True, type=Path, metavar="DIR", help="output folder (created)")
    natural.add_argument(
        "--maps-from", required=True, type=Path, metavar="KNEE_DIR",
        help="folder of fully sampled knee files (CORPD_FBK and CORPDFS_FBK): coil maps, matrix, noise, SNRs",
    )
    natural.add_argument("--count", type=int, default=200, metavar="N", help="number of synthetic slices (default: 200)")
    natural.add_argument(
        "--snr", choices=("high", "low", "variable"), default="high",
        help="high = PDw SNR, low = PDw-FS SNR, variable = uniform between per image (default: high)",
    )
    natural.add_argument(
        "--images", type=Path, default=None, metavar="FOLDER",
        help="folder of PNG/JPEG images to use, e.g. BSDS500 (default: the 121 GCompris photographs of "
        "Debian's gcompris-qt-data when installed, else scikit-image's 10 photographs)",
    )
    natural.add_argument("--seed", type=int, default=0, metavar="K", help="random seed (default: 0)")
    natural.add_argument("--acs-lines", type=int, default=24, metavar="L", help="ACS lines for ESPIRiT on the knee slices (default: 24)")
    natural.add_argument(
        "--slices-per-file", type=int, default=None, metavar="F",
        help="slices per output file; each file stores the coil map sets its slices use once (default: 100)",
    )
    natural.set_defaults(func=_run_simulate_natural)


# --------------------------------------------------------------------------- train


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
    _device(args.device)
    config = load_train_config(args.config)
    if args.epochs is not None and args.steps is not None:
        raise InputError("give --epochs or --steps, not both")
    if args.epochs is not None:
        config.epochs, config.steps = _positive(args.epochs, "--epochs"), None
    if args.steps is not None:
        config.steps = _positive(args.steps, "--steps")
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


def _register_train(subparsers: argparse._SubParsersAction) -> None:
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
        formatter_class=_HelpFormatter,
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


def _register_preset(subparsers: argparse._SubParsersAction) -> None:
    from vnrecon.train.config import PRESETS

    parser = subparsers.add_parser(
        "preset",
        help="print a shipped training preset (YAML) to copy into a config",
        description="Print the YAML of a training preset: 'cpu' (minutes on a laptop) or 'paper' (Knoll et al.).",
    )
    parser.add_argument("name", choices=PRESETS, help="preset name")
    parser.set_defaults(func=_run_preset)


# --------------------------------------------------------------------------- recon


def _write_reconstruction(path: Path, images, volume, model_path: Path, mask) -> None:
    """fastMRI-style output: magnitude 'reconstruction' on the header's recon grid plus the complex images."""
    import h5py
    import numpy as np

    from vnrecon.data.fastmri import center_fit
    from vnrecon.files import atomic_write

    recon_shape = tuple(volume.header.get("recon_shape", (images.shape[-2], images.shape[-1])))[:2]
    magnitude = np.stack([center_fit(np.abs(image), recon_shape) for image in images]).astype(np.float32)
    with atomic_write(path) as temporary, h5py.File(temporary, "w") as h5:
        h5.create_dataset("reconstruction", data=magnitude)
        h5.create_dataset("reconstruction_complex", data=images.astype(np.complex64))
        h5.create_dataset("mask", data=mask.astype(bool))
        h5.attrs["acquisition"] = volume.acquisition
        h5.attrs["patient_id"] = volume.patient_id
        h5.attrs["model"] = str(model_path)
        h5.attrs["max"] = float(magnitude.max())
        h5.attrs["norm"] = float(np.linalg.norm(magnitude))


def _run_recon(args: argparse.Namespace) -> int:
    import numpy as np

    from vnrecon.data.fastmri import read_volume
    from vnrecon.eval.figures import save_image_grid
    from vnrecon.models.inference import check_mask_fits, reconstruct_volume
    from vnrecon.physics.masks import make_mask
    from vnrecon.train.checkpoint import model_from_checkpoint, resolve_checkpoint

    check_destination(args.out, inputs=[args.input, args.model])
    _device(args.device)
    if args.png:
        check_destination(args.out.with_suffix(".png"), inputs=[args.input])
    checkpoint = resolve_checkpoint(args.model)
    model, _ = model_from_checkpoint(checkpoint)
    model.to(args.device).eval()
    volume = read_volume(args.input).prewhitened()
    if volume.mask is not None:
        mask, how = volume.mask, "mask stored in the file (data already undersampled)"
    else:
        try:
            mask = make_mask(args.mask, volume.kspace.shape[-1], args.acceleration, args.acs_lines)
        except ValueError as error:  # a mask file names itself; the others are options for this file
            where = "" if Path(args.mask).is_file() else f"{args.input}: --acceleration {args.acceleration} --acs-lines {args.acs_lines}: "
            raise InputError(f"{where}{error}") from None
        if Path(args.mask).is_file():  # a user's mask that does not fit is the mask file's fault
            check_mask_fits(np.asarray(mask, bool), volume.kspace.shape[-1], args.acs_lines, args.mask)
        how = f"{args.mask} mask, R={args.acceleration}, {args.acs_lines} ACS lines"
    slices, _, readout, phase = volume.kspace.shape
    check_free_space(args.out, 2 * slices * (readout // 2) * phase * (8 + 4) + 2**20)  # complex + magnitude, margin
    images = reconstruct_volume(
        model, volume.kspace, np.asarray(mask, bool), args.acs_lines, where=str(args.input),
        progress=True, device=args.device, maps=volume.slice_maps(),
    )
    _write_reconstruction(args.out, images, volume, checkpoint, np.asarray(mask, bool))
    print(f"reconstructed {images.shape[0]} slices of {args.input} ({how}) -> {args.out}")
    if args.png:
        png = save_image_grid(
            [np.abs(image) for image in images], [f"slice {index}" for index in range(images.shape[0])],
            args.out.with_suffix(".png"), title=f"{args.input.name}: VN reconstruction",
        )
        print(f"images: {png}")
    return 0


def _register_recon(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "recon",
        help="reconstruct a fastMRI HDF5 file with a trained network",
        description=(
            "Reconstruct every slice of a fastMRI multi-coil file with a trained VN.\n"
            "Fully sampled data are undersampled with --mask first; files that are already\n"
            "undersampled (a 'mask' dataset, as in the fastMRI test set) are used as they\n"
            "are. A file's 'noise_covariance' prewhitens the data first. Coil maps: the\n"
            "file's own 'maps' when it stores them, else ESPIRiT from the ACS lines.\n"
            "Writes OUT.h5 with 'reconstruction'\n"
            "(slices, recon matrix) float32 magnitude as in fastMRI submissions, plus\n"
            "'reconstruction_complex' on the readout-cropped grid and the 'mask' used."
        ),
        formatter_class=_HelpFormatter,
    )
    parser.add_argument("--model", required=True, type=Path, metavar="RUN_DIR", help="run folder (or checkpoint file)")
    parser.add_argument("--in", dest="input", required=True, type=Path, metavar="FILE.h5", help="input k-space")
    parser.add_argument("--out", required=True, type=Path, metavar="OUT.h5", help="output file")
    parser.add_argument("--mask", default="regular", metavar="regular|random|FILE", help="sampling mask for fully sampled input (default: regular)")
    parser.add_argument("--acceleration", type=int, default=4, metavar="R", help="acceleration of the mask (default: 4)")
    parser.add_argument("--acs-lines", type=int, default=24, metavar="L", help="fully sampled centre lines (default: 24)")
    parser.add_argument("--png", action="store_true", help="also write OUT.png with all slices")
    parser.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    parser.set_defaults(func=_run_recon)


# --------------------------------------------------------------------------- inspect


def _run_inspect(args: argparse.Namespace) -> int:
    from vnrecon.eval.figures import plot_filters_and_activations, plot_training_curves
    from vnrecon.train.checkpoint import model_from_checkpoint, resolve_checkpoint

    checkpoint = resolve_checkpoint(args.run)
    model, payload = model_from_checkpoint(checkpoint)
    out = check_destination(args.out or checkpoint.parent, folder=True)
    filters = plot_filters_and_activations(model, out / "filters.png", title=f"{args.run}: filters and activations")
    print(f"filters and activations: {filters}")
    if payload["history"]:
        curves = plot_training_curves(payload["history"], out / "curves.png", title=f"{args.run}: training curves")
        print(f"training curves: {curves}")
    return 0


def _register_inspect(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "inspect",
        help="draw a trained network's filters, activations and training curves",
        description=(
            "Draw the learned filters (real and imaginary part) and activation functions of\n"
            "every stage (the paper's Figure 10) to filters.png, and the training and\n"
            "validation RMSE/SSIM per epoch to curves.png, in RUN_DIR (or --out)."
        ),
        formatter_class=_HelpFormatter,
    )
    parser.add_argument("run", type=Path, metavar="RUN_DIR", help="run folder (or checkpoint file)")
    parser.add_argument("--out", type=Path, metavar="DIR", help="where to write the PNGs (default: RUN_DIR)")
    parser.set_defaults(func=_run_inspect)


# --------------------------------------------------------------------------- evaluate


def _optional_positive(value: int | None, option: str) -> int | None:
    return None if value is None else _positive(value, option)


def _run_evaluate(args: argparse.Namespace) -> int:
    from vnrecon.eval.evaluate import (
        EvaluationRequest, parse_weight, read_selection_source, read_tuning_source, run_evaluation,
    )

    check_destination(args.out, folder=True)
    _device(args.device)
    patients = tuple(args.patients) if args.patients is not None else None
    request = EvaluationRequest(
        test_sets=read_selection_source(args.data, args.acquisition, patients, _optional_positive(args.slices, "--slices")),
        models=args.model,
        methods=args.method,
        masks=args.mask or ["regular"],
        weights=dict(parse_weight(text) for text in args.weight),
        tune=read_tuning_source(args.tune, args.acquisition) if args.tune is not None else None,
        figure_slices=_non_negative(args.figure_slices, "--figure-slices"),
        acceleration=_optional_positive(args.acceleration, "--acceleration"),
        acs_lines=_optional_positive(args.acs_lines, "--acs-lines"),
        cache_dir=args.cache,
        device=args.device,
    )
    result = run_evaluation(request, args.out, progress=not args.quiet)
    print(result.table)
    if not args.quiet:
        print(f"wrote {len(result.rows)} per-slice scores, the summary, {len(result.figures)} figure(s) "
              f"and report.html to {args.out}", file=sys.stderr)
    return 0


def _register_evaluate(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "evaluate",
        help="compare trained networks and classical methods on test data (tables, figures, report)",
        usage=(
            "vnrecon evaluate --data SELECTION --out DIR (--model RUN_DIR | --method NAME) ...\n"
            "                        [--mask regular|random|mix|FILE ...] [--weight METHOD=VALUE ...]\n"
            "                        [--tune TRAIN_SELECTION] [--figure-slices N]\n"
            "                        [--acquisition NAME] [--patients FIRST STOP] [--slices N]\n"
            "                        [--acceleration R] [--acs-lines L] [--cache DIR] [--device DEV] [--quiet]"
        ),
        description=(
            "Reconstruct the test slices of SELECTION with every --model and --method and score\n"
            "each slice against the fully sampled reference: SSIM (magnitudes, Gaussian window\n"
            "sigma 1.5, data range max - min of the reference), NRMSE (complex) and PSNR.\n"
            "Every (test set, mask) pair is evaluated; all methods share one table.\n"
            "\n"
            "SELECTION is a folder of fully sampled fastMRI .h5 files (one test set, narrowed by\n"
            "--acquisition, --patients, --slices) or a YAML file mapping test-set names to\n"
            "selection lists as in training configs, e.g.\n"
            "  PDw:    [{data: data/knee, acquisition: CORPD_FBK, patients: [15, 20], slices: 20}]\n"
            "  PDw-FS: [{data: data/knee, acquisition: CORPDFS_FBK, patients: [15, 20], slices: 20}]\n"
            "--mask replaces the selections' masks.\n"
            "\n"
            "Methods: a --model is labelled by its run folder's name; --method zf (zero-filled),\n"
            "sense (CG-SENSE), tv (TV), wavelet (wavelet). The classical methods' weights are\n"
            "their defaults unless set with --weight, or chosen with --tune: the NRMSE-best of\n"
            "5 values from 0.1x to 10x the default on up to 10 slices of TRAIN_SELECTION, per mask.\n"
            "\n"
            "Writes to DIR: per_slice.csv (test_set, mask, method, file, slice, ssim, nrmse,\n"
            "psnr, seconds), summary.md (mean +- SD; also printed), summary.json (the same\n"
            "numbers, the weights used and how they were chosen), figures/*.png (reference,\n"
            "methods, zoomed region and error maps of N slices per test set and mask) and\n"
            "report.html (table and figures in one file that opens offline)."
        ),
        epilog=(
            "examples:\n"
            "  vnrecon evaluate --data data/knee --acquisition CORPD_FBK --patients 15 20 \\\n"
            "                   --out results/pdw --model runs/vn_pdw --method zf --method sense\n"
            "  vnrecon evaluate --data test_sets.yaml --out results/all --model runs/vn_pdw \\\n"
            "                   --method sense --method tv --mask regular --mask random \\\n"
            "                   --tune train.yaml --weight sense=1e-3"
        ),
        formatter_class=_HelpFormatter,
    )
    parser.add_argument("--data", required=True, type=Path, metavar="SELECTION", help="test data: folder of .h5 files or YAML of named selections")
    parser.add_argument("--out", required=True, type=Path, metavar="DIR", help="output folder (created)")
    parser.add_argument("--model", action="append", default=[], type=Path, metavar="RUN_DIR", help="trained network: run folder or checkpoint file (repeatable)")
    parser.add_argument("--method", action="append", default=[], metavar="NAME", help="classical method: zf, sense, tv or wavelet (repeatable)")
    parser.add_argument("--mask", action="append", default=[], metavar="KIND", help="regular, random, mix or a mask file (repeatable; default: regular)")
    parser.add_argument("--weight", action="append", default=[], metavar="METHOD=VALUE", help="regularisation weight of a classical method, e.g. sense=1e-3 (repeatable)")
    parser.add_argument("--tune", type=Path, metavar="TRAIN_SELECTION", help="choose the weights on this training data (folder or YAML)")
    parser.add_argument("--figure-slices", type=int, default=1, metavar="N", help="example figures per test set and mask (default: 1, the central slice)")
    parser.add_argument("--acquisition", metavar="NAME", help="folder SELECTION only: files of this acquisition, e.g. CORPD_FBK (also applies to a --tune folder)")
    parser.add_argument("--patients", nargs=2, type=int, metavar=("FIRST", "STOP"), help="folder SELECTION only: patients [FIRST, STOP) in sorted id order")
    parser.add_argument("--slices", type=int, metavar="N", help="folder SELECTION only: central N slices per file (default: all)")
    parser.add_argument("--acceleration", type=int, metavar="R", help="mask acceleration (default: the selection's, 4)")
    parser.add_argument("--acs-lines", type=int, metavar="L", help="fully sampled centre lines (default: the selection's, 24)")
    parser.add_argument("--cache", type=Path, metavar="DIR", help="ESPIRiT map cache (default: $VNRECON_CACHE or ~/.cache/vnrecon)")
    parser.add_argument("--device", default="cpu", metavar="DEV", help="torch device, e.g. cpu or cuda (default: cpu)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.set_defaults(func=_run_evaluate)


# --------------------------------------------------------------------------- demo


def _run_demo(args: argparse.Namespace) -> int:
    from vnrecon.study.demo import run_demo

    check_destination(args.out, folder=True)
    table = run_demo(args.out, say=lambda line: print(line, flush=True))
    print(table)
    print(f"report (opens offline): {args.out / 'report.html'}; tables in {args.out / 'results.md'}")
    return 0


def _register_demo(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="the whole pipeline on simulated data in a few minutes",
        description=(
            "The paper's first finding in miniature. Simulate a small knee set (7 patients\n"
            "x 10 slices, PDw and PDw-FS), train three CPU-preset VNs (PDw only, PDw-FS\n"
            "only, both jointly; 40 slices each), evaluate them, zero filling, CG-SENSE and\n"
            "TV (weights tuned on training slices) on two held-out patients of both\n"
            "contrasts, and write to DIR: report.html (self-contained: train x test table,\n"
            "example slices with SSIM, zoom and error maps, training curves, filters),\n"
            "results.md/.csv, evaluation/<contrast>/ (per-slice CSV, summary JSON) and the\n"
            "runs. 10-18 minutes on 2 CPU cores, depending on the CPU. A rerun skips what is already done."
        ),
        formatter_class=_HelpFormatter,
    )
    parser.add_argument("--out", type=Path, default=Path("demo"), metavar="DIR", help="output folder (default: demo)")
    parser.set_defaults(func=_run_demo)


# --------------------------------------------------------------------------- study


def _run_study(args: argparse.Namespace) -> int:
    from vnrecon.study.runner import run_study

    jobs = _positive(args.jobs, "--jobs")
    check_destination(args.out, folder=True)
    _device(args.device)
    run_study(
        args.out, args.preset, data_dir=args.data, only=args.only, jobs=jobs, device=args.device,
        say=lambda line: print(line, flush=True),
    )
    return 0


def _study_presets_text() -> str:
    import textwrap

    from vnrecon.study.presets import PRESETS

    return "\n".join(
        textwrap.fill(preset.summary(), width=92, initial_indent="  ", subsequent_indent="      ")
        for preset in PRESETS.values()
    )


def _register_study(subparsers: argparse._SubParsersAction) -> None:
    from vnrecon.study.presets import PRESETS

    parser = subparsers.add_parser(
        "study",
        help="the paper's generalisation and transfer-learning study in one command",
        usage="vnrecon study --preset {tiny,cpu,paper} --out DIR [--data DIR] [--only IDS] [--jobs N] [--device D]",
        description=(
            "Run the study of Knoll et al. (MRM 2019) end to end into DIR:\n"
            "  1. data      simulate the numerical knee (PDw and PDw-FS per patient) and the synthetic\n"
            "               natural-image k-space (high, low, variable SNR; coil maps, noise level and\n"
            "               SNRs from the training patients only), or use --data\n"
            "  2. plan      resolve the experiment definitions (vnrecon/configs/study/*.yaml) with the\n"
            "               preset; identical trainings (9 = 1, 12 = 2) run once; refuse to start if a\n"
            "               test patient is in any training set\n"
            "  3. train     experiments 1-20 and the references ref19, ref20 for the fine-tunings\n"
            "               19, 20 (which start from model 17)\n"
            "  4. evaluate  every model, zero filling and CG-SENSE on the test sets PDw, PDw-FS and\n"
            "               PDw+noise (regular mask; 9-14 also random), per slice\n"
            "  5. outputs   tables S1-S5, figures, claims and a report\n"
            "\n"
            "Outputs in DIR:\n"
            "  study.json                          manifest: preset and sizes, experiments (training\n"
            "                                      data, runs, epochs, slices, times), test sets\n"
            "  runs/<id>/                          checkpoint.pt, history.csv, config.yaml, tensorboard/\n"
            "  evaluations/<id>.csv                per slice: experiment, test_set, mask, method, file,\n"
            "                                      slice, ssim, nrmse, psnr, seconds; also zero-filled.csv\n"
            "                                      and CG-SENSE.csv\n"
            "  examples/<id>/<set>__<mask>.npy     the central slice of the first test patient (complex64);\n"
            "                                      also reference/, zero-filled/, CG-SENSE/\n"
            "  tables/, figures/, claims.md, report.html\n"
            "  data/, cache/                       simulated data, ESPIRiT maps\n"
            "\n"
            "Resumable: run the same command again to continue. Data, finished trainings (all\n"
            "epochs in history.csv) and evaluations are skipped; an interrupted training resumes\n"
            "from its last checkpoint and loses at most the epoch in progress. A folder holds\n"
            "one preset; --only adds experiments to it.\n"
            "\n"
            "Presets:\n" + _study_presets_text()
        ),
        epilog=(
            "examples:\n"
            "  vnrecon study --preset tiny --out study-tiny\n"
            "  vnrecon study --preset cpu --out study-cpu --jobs 2\n"
            "  vnrecon study --preset cpu --out study-cpu --only 1,2,19     # 19 brings 17 along\n"
            "  vnrecon study --preset paper --out study-paper --data DATA --device cuda"
        ),
        formatter_class=_HelpFormatter,
    )
    parser.add_argument("--preset", required=True, choices=tuple(PRESETS), help="study size (see Presets above)")
    parser.add_argument("--out", required=True, type=Path, metavar="DIR", help="output folder (created; rerun to resume)")
    parser.add_argument(
        "--data", type=Path, metavar="DIR",
        help="use these knee files instead of simulating them: DIR/knee/*.h5 or DIR/*.h5 (fastMRI layout,\n"
        "CORPD_FBK and CORPDFS_FBK; the first patients train, the next ones test), and\n"
        "DIR/natural_{high,low,variable}/ where present (else simulated from the training patients)",
    )
    parser.add_argument(
        "--only", metavar="IDS",
        help="comma list of experiments instead of the preset's set, e.g. 1,2,19 or 01,ref19;\n"
        "what they need comes along (19, 20: 17; 9: 1; 12: 2)",
    )
    parser.add_argument("--jobs", type=int, default=1, metavar="N", help="trainings run in parallel processes, sharing the CPU cores (default: 1)")
    parser.add_argument("--device", default="cpu", help="torch device for training and evaluation, e.g. cuda (default: cpu)")
    parser.set_defaults(func=_run_study)


# --------------------------------------------------------------------------- main

# Register functions, in the order the commands are listed in ``vnrecon --help``.
_COMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [
    _register_info,
    _register_simulate,
    _register_train,
    _register_preset,
    _register_recon,
    _register_inspect,
    _register_evaluate,
    _register_demo,
    _register_study,
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description=(
            "Learned multi-coil MRI reconstruction with variational networks, and the\n"
            "generalisation / transfer-learning study of Knoll et al. (MRM 2019).\n"
            "Run 'vnrecon COMMAND --help' for the options of a command."
        ),
        formatter_class=_HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands", required=True)
    for register in _COMMANDS:
        register(subparsers)
    return parser


def _report(error: BaseException) -> None:
    """One line on stderr: ``vnrecon: error: <message>``."""
    if isinstance(error, OSError) and error.filename is not None and error.strerror:
        message = f"{error.filename}: {error.strerror}"
    else:
        message = str(error) or type(error).__name__
    print(f"{PROG}: error: {' '.join(message.split())}", file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status (0 ok, 2 bad usage or input)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # --help, --version, usage errors (status 2): return, don't exit
        return exit_.code if isinstance(exit_.code, int) else EXIT_USAGE
    try:
        return int(args.func(args) or 0)
    except (InputError, OSError) as error:
        _report(error)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
