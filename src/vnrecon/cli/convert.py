"""`vnrecon convert`: raw data from one format to another."""

from __future__ import annotations

import argparse
from pathlib import Path

from vnrecon.files import check_destination

from .common import HelpFormatter, non_negative, positive


def _run_convert(args: argparse.Namespace) -> int:
    from vnrecon.data.cfl import cfl_pair
    from vnrecon.data.formats import raw_format, read_raw, write_raw
    from vnrecon.data.seed_mat import convert_seed_folder, is_patient_folder

    if raw_format(args.input) == "seed" and not is_patient_folder(args.input):
        check_destination(args.to, inputs=[args.input], folder=True)
        written = convert_seed_folder(args.input, args.to, say=print)
        print(f"{args.input} -> {args.to}: {len(written)} fastMRI files with the stored ESPIRiT maps")
        return 0
    inputs = [args.input, *cfl_pair(args.input)]
    check_destination(args.to, inputs=inputs)
    if args.to.suffix == ".cfl":
        for part in cfl_pair(args.to):
            check_destination(part, inputs=inputs)
    repetition = None if args.repetition is None else non_negative(args.repetition, "--repetition")
    volume = read_raw(args.input, positive(args.oversampling, "--oversampling"), args.acquisition, args.patient_id, repetition)
    written = write_raw(args.to, volume)
    slices, coils, readout, phase = volume.kspace.shape
    notes = []
    if volume.mask is not None:
        notes.append(f"undersampled, {int(volume.mask.sum())} of {phase} lines")
    if volume.noise_covariance is not None and args.to.suffix == ".cfl":
        notes.append("prewhitened with the file's noise covariance")
    notes.append(f"readout oversampling {volume.oversampling}x")
    print(f"{args.input} -> {', '.join(str(path) for path in written)}: {slices} slices, {coils} coils, "
          f"k-space {readout} x {phase} ({'; '.join(notes)})")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "convert",
        help="convert raw k-space (ISMRMRD, fastMRI HDF5, BART .cfl, the seed's .mat) to fastMRI HDF5 or BART .cfl",
        description=(
            "Convert multi-coil 2-D Cartesian k-space from IN to OUT; the formats are\n"
            "recognised from the input's content and the output's suffix. Inputs: fastMRI\n"
            "multi-coil .h5, ISMRMRD .h5 (Cartesian 2-D; noise scans give the noise\n"
            "covariance, embedded calibration lines join the k-space, the measured lines\n"
            "give the mask, the header the readout oversampling) and BART arrays. Outputs:\n"
            "  .h5   fastMRI multi-coil layout (as read by every vnrecon command), with the\n"
            "        input's coil maps, mask and noise covariance when it has them\n"
            "  .cfl  BART array OUT.cfl + OUT.hdr, dims [readout, phase, 1, coils, 1, ...,\n"
            "        slices in dim 13]; prewhitened when the input has a noise covariance;\n"
            "        stored coil maps go to OUT_maps.cfl (BART's ecalib layout)\n"
            "The seed paper's data (<sequence>/<patient>/rawdata<k>.mat + espirit<k>.mat,\n"
            "MATLAB v5 or v7.3): a patient folder converts to one .h5 file, a sequence\n"
            "folder (or a folder of them) to OUT_DIR/<sequence>_<patient>.h5, each with the\n"
            "stored ESPIRiT maps and the 2x readout oversampling.\n"
            "BART input (NAME, NAME.cfl or NAME.hdr) carries no header: --oversampling says\n"
            "how much of the readout FOV is oversampling, and zero-filled phase lines become\n"
            "the file's mask (an undersampled acquisition).\n"
            "\n"
            "Examples:\n"
            "  vnrecon convert knee.h5 --to knee.cfl && bart ecalib knee maps\n"
            "  vnrecon convert scan_ismrmrd.h5 --to scan.h5\n"
            "  vnrecon convert knee_data/coronal_pd_fs --to knee/"
        ),
        formatter_class=HelpFormatter,
    )
    parser.add_argument("input", type=Path, metavar="IN", help="raw data: ISMRMRD .h5, fastMRI .h5, BART NAME[.cfl|.hdr] or a seed-data folder")
    parser.add_argument("--to", required=True, type=Path, metavar="OUT", help="output file: OUT.h5 or OUT.cfl (a folder for several seed-data patients)")
    parser.add_argument("--oversampling", type=int, default=1, metavar="N",
                        help="readout oversampling of BART input (default: 1; fastMRI knee raw data: 2)")
    parser.add_argument("--acquisition", default="", metavar="NAME", help="acquisition name for BART input, e.g. CORPD_FBK")
    parser.add_argument("--patient-id", default="", metavar="ID", help="patient id for BART input (default: the file name)")
    parser.add_argument("--repetition", type=int, default=None, metavar="N",
                        help="ISMRMRD input: convert only repetition N (default: all, as slices)")
    parser.set_defaults(func=_run_convert)
