"""`vnrecon simulate knee|natural`: the numerical knee and the synthetic natural-image sets."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from vnrecon.errors import InputError
from vnrecon.files import check_destination

from .common import HelpFormatter, Progress, file_range, non_negative, parse_matrix, positive


def _run_simulate_knee(args: argparse.Namespace) -> int:
    import numpy as np

    from vnrecon.data import knee
    from vnrecon.data.fastmri import read_header
    from vnrecon.data.simulation_folder import montage_path
    from vnrecon.data.natural import KNEE_HIGH, KNEE_LOW, measure_knee_reference

    patients = positive(args.patients, "--patients")
    slices = positive(args.slices, "--slices")
    coils = positive(args.coils, "--coils")
    seed = non_negative(args.seed, "--seed")
    if args.matrix is not None:
        matrix = args.matrix
    else:
        matrix = knee.PAPER_MATRIX if args.size == "paper" else knee.DEFAULT_MATRIX
    try:
        matrix = knee.check_matrix(matrix)
    except ValueError as error:
        raise InputError(f"--matrix {matrix[0]}x{matrix[1]}: {error}") from None
    out = check_destination(args.out, folder=True)
    progress = Progress("patient")
    try:
        paths = knee.simulate_knee_dataset(
            out, patients, slices, seed=seed, matrix=matrix, n_coils=coils, progress=progress
        )
    finally:
        progress.close()
    reference = measure_knee_reference(out, files=paths)
    print(
        f"wrote {len(paths)} files ({patients} patient(s) x {KNEE_HIGH} + {KNEE_LOW}, {slices} slices, "
        f"{coils} coils, k-space {matrix[0]} x {matrix[1]}) to {out}: {file_range(paths)}"
    )
    if montage_path(out).is_file():
        print(f"montage: {montage_path(out)}")
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

    count = positive(args.count, "--count")
    per_file = {} if args.slices_per_file is None else {"slices_per_file": positive(args.slices_per_file, "--slices-per-file")}
    seed = non_negative(args.seed, "--seed")
    maps_from = Path(args.maps_from)
    if not maps_from.is_dir():
        raise InputError(f"{maps_from}: --maps-from folder not found")
    if args.images is not None and not Path(args.images).is_dir():
        raise InputError(f"{args.images}: --images folder not found")
    out = check_destination(args.out, folder=True)
    progress = Progress("image")
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

    from vnrecon.data.simulation_folder import montage_path
    from vnrecon.data.photos import default_image_source
    snrs, sources = [], set()
    with h5py.File(paths[0], "r") as h5:
        high, low = float(h5.attrs["snr_reference_high"]), float(h5.attrs["snr_reference_low"])
        sigma = float(h5.attrs["noise_sigma"])
    for path in paths:
        with h5py.File(path, "r") as h5:
            snrs.extend(np.asarray(h5.attrs["snr"]).tolist())
            sources.update(str(name) for name in h5.attrs["source_image"])
    print(f"wrote {len(paths)} files ({count} synthetic slices, SNR {args.snr}) to {out}: {file_range(paths)}")
    where = args.images if args.images is not None else default_image_source()
    print(f"images: {len(sources)} distinct source images from {where}; generating coil maps stored in each file")
    if montage_path(out).is_file():
        print(f"montage: {montage_path(out)}")
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


def register(subparsers: argparse._SubParsersAction) -> None:
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
        formatter_class=HelpFormatter,
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
            "receiver noise covariance (loaders prewhiten with it), plus DIR_montage.png\n"
            "beside DIR (DIR holds only .h5 files, as fastMRI's loader expects).\n"
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
        formatter_class=HelpFormatter,
    )
    knee.add_argument("--out", required=True, type=Path, metavar="DIR", help="output folder (created)")
    knee.add_argument("--patients", required=True, type=int, metavar="N", help="number of patients (>= 1)")
    knee.add_argument("--slices", required=True, type=int, metavar="S", help="slices per patient (>= 1; the paper uses the central 20)")
    knee.add_argument("--seed", type=int, default=0, metavar="K", help="random seed (default: 0)")
    size = knee.add_mutually_exclusive_group()
    size.add_argument(
        "--matrix",
        type=parse_matrix,
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
            "source image and map slice are file attributes) and DIR_montage.png beside DIR\n"
            "(magnitude and phase of the coil-combined first images). Output is deterministic per seed.\n"
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
        formatter_class=HelpFormatter,
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
