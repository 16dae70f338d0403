"""`vnrecon recon`: reconstruct a file with a trained network."""

from __future__ import annotations

import argparse
from pathlib import Path

from vnrecon.errors import InputError
from vnrecon.files import check_destination, check_free_space

from .common import HelpFormatter, device_option


#: What each --format's output must be called (the formats of ``vnrecon.data.export``; dicom is a folder).
_SUFFIXES = {"h5": (".h5",), "cfl": (".cfl",), "nifti": (".nii", ".nii.gz"), "dicom": (), "png": (".png",)}


def _run_recon(args: argparse.Namespace) -> int:
    import numpy as np

    from vnrecon.data.export import output_paths, write_images
    from vnrecon.data.fastmri import read_volume
    from vnrecon.models.inference import check_mask_fits, reconstruct_volume
    from vnrecon.physics.masks import DEFAULT_ACS_LINES, count_acs_lines, make_mask, within_columns
    from vnrecon.train.checkpoint import model_from_checkpoint, resolve_checkpoint

    expected = _SUFFIXES[args.format]
    if expected and not args.out.name.endswith(expected):
        raise InputError(f"{args.out}: --format {args.format} writes {' or '.join(expected)} files; name the output so")
    for path in output_paths(args.out, args.format):
        check_destination(path, inputs=[args.input, args.model], folder=args.format == "dicom")
    device_option(args.device)
    if args.png:
        check_destination(args.out.with_suffix(".png"), inputs=[args.input])
    checkpoint = resolve_checkpoint(args.model)
    model, _ = model_from_checkpoint(checkpoint)
    model.to(args.device).eval()
    volume = read_volume(args.input).prewhitened()
    if volume.mask is not None:
        mask, how = volume.mask, "mask stored in the file (data already undersampled)"
        if args.acs_lines is None:  # a fastMRI challenge file is reconstructed as given: its own ACS block
            args.acs_lines = count_acs_lines(mask)
            how += f", its {args.acs_lines} ACS lines"
    else:
        if args.acs_lines is None:
            args.acs_lines = DEFAULT_ACS_LINES
        try:
            mask = make_mask(args.mask, volume.kspace.shape[-1], args.acceleration, args.acs_lines)
        except ValueError as error:  # a mask file names itself; the others are options for this file
            where = "" if Path(args.mask).is_file() else f"{args.input}: --acceleration {args.acceleration} --acs-lines {args.acs_lines}: "
            raise InputError(f"{where}{error}") from None
        if Path(args.mask).is_file():  # a user's mask that does not fit is the mask file's fault
            check_mask_fits(np.asarray(mask, bool), volume.kspace.shape[-1], args.acs_lines, args.mask)
        how = f"{args.mask} mask, R={args.acceleration}, {args.acs_lines} ACS lines"
    first, stop = volume.acquired
    if (first, stop) != (0, volume.kspace.shape[-1]):
        mask = within_columns(np.asarray(mask, bool), (first, stop))  # never-acquired edge columns are not samples
        how += f"; columns {first}-{stop - 1} acquired (fastMRI padding)"
    slices, _, readout, phase = volume.kspace.shape
    check_free_space(args.out, 2 * slices * (readout // volume.oversampling) * phase * (8 + 4) + 2**20)  # complex + magnitude, margin
    images = reconstruct_volume(
        model, volume.kspace, np.asarray(mask, bool), args.acs_lines, volume.oversampling, where=str(args.input),
        progress=True, device=args.device, maps=volume.slice_maps(),
    )
    write_images(args.out, args.format, images, volume, np.asarray(mask, bool), str(checkpoint), str(args.input))
    print(f"reconstructed {images.shape[0]} slices of {args.input} ({how}) -> {args.out}")
    if args.png:
        png = write_images(args.out.with_suffix(".png"), "png", images, volume, np.asarray(mask, bool), str(checkpoint), str(args.input))
        print(f"images: {png}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "recon",
        help="reconstruct a fastMRI or ISMRMRD HDF5 file with a trained network",
        description=(
            "Reconstruct every slice of a fastMRI multi-coil file with a trained VN.\n"
            "Fully sampled data are undersampled with --mask first; files that are already\n"
            "undersampled (a 'mask' dataset, as in the fastMRI test set) are used as they\n"
            "are. A file's 'noise_covariance' prewhitens the data first. Coil maps: the\n"
            "file's own 'maps' when it stores them, else ESPIRiT from the ACS lines.\n"
            "--format h5 (default) writes OUT.h5 with 'reconstruction'\n"
            "(slices, recon matrix) float32 magnitude as in fastMRI submissions, plus\n"
            "'reconstruction_complex' on the readout-cropped grid (the file's readout\n"
            "oversampling, encoded / recon readout of its ISMRMRD header, is removed) and\n"
            "the 'mask' used. For viewers and other tools:\n"
            "  cfl    the complex images as a BART pair OUT.cfl + OUT.hdr\n"
            "  nifti  magnitude as OUT.nii / OUT.nii.gz (affine from the header's FOV, matrix\n"
            "         and slice thickness; axes are the array's: readout, phase, slice)\n"
            "  dicom  one MR image series, the folder OUT with one 16-bit file per slice\n"
            "  png    all slices in one picture OUT.png"
        ),
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--model", required=True, type=Path, metavar="RUN_DIR", help="run folder (or checkpoint file)")
    parser.add_argument("--in", dest="input", required=True, type=Path, metavar="FILE.h5", help="input k-space")
    parser.add_argument("--out", required=True, type=Path, metavar="OUT", help="output file (a folder for dicom)")
    parser.add_argument("--mask", default="regular", metavar="regular|random|FILE", help="sampling mask for fully sampled input (default: regular)")
    parser.add_argument("--acceleration", type=int, default=4, metavar="R", help="acceleration of the mask (default: 4)")
    parser.add_argument("--acs-lines", type=int, default=None, metavar="L",
                        help="fully sampled centre lines, for the mask and ESPIRiT (default: 24; an undersampled\n"
                             "file's own ACS block, fastMRI's num_low_frequency)")
    parser.add_argument("--format", choices=tuple(_SUFFIXES), default="h5", help="output format (default: h5)")
    parser.add_argument("--png", action="store_true", help="also write OUT.png with all slices")
    parser.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    parser.set_defaults(func=_run_recon)
