"""`vnrecon recon`: reconstruct a file with a trained network."""

from __future__ import annotations

import argparse
from pathlib import Path

from vnrecon.errors import InputError
from vnrecon.files import check_destination, check_free_space

from .common import HelpFormatter, device_option


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
    if args.format == "cfl":
        from vnrecon.data.cfl import cfl_pair

        if args.out.suffix != ".cfl":
            raise InputError(f"{args.out}: --format cfl writes a BART pair NAME.cfl + NAME.hdr; name the output NAME.cfl")
        check_destination(cfl_pair(args.out)[0], inputs=[args.input, args.model])
    device_option(args.device)
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
    check_free_space(args.out, 2 * slices * (readout // volume.oversampling) * phase * (8 + 4) + 2**20)  # complex + magnitude, margin
    images = reconstruct_volume(
        model, volume.kspace, np.asarray(mask, bool), args.acs_lines, volume.oversampling, where=str(args.input),
        progress=True, device=args.device, maps=volume.slice_maps(),
    )
    if args.format == "cfl":
        from vnrecon.data.cfl import images_to_bart, write_cfl

        write_cfl(args.out, images_to_bart(images))
    else:
        _write_reconstruction(args.out, images, volume, checkpoint, np.asarray(mask, bool))
    print(f"reconstructed {images.shape[0]} slices of {args.input} ({how}) -> {args.out}")
    if args.png:
        png = save_image_grid(
            [np.abs(image) for image in images], [f"slice {index}" for index in range(images.shape[0])],
            args.out.with_suffix(".png"), title=f"{args.input.name}: VN reconstruction",
        )
        print(f"images: {png}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "recon",
        help="reconstruct a fastMRI HDF5 file with a trained network",
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
            "the 'mask' used. --format cfl writes the complex images as a BART pair\n"
            "OUT.cfl + OUT.hdr, dims [readout, phase, 1, 1, ..., slices in dim 13]."
        ),
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--model", required=True, type=Path, metavar="RUN_DIR", help="run folder (or checkpoint file)")
    parser.add_argument("--in", dest="input", required=True, type=Path, metavar="FILE.h5", help="input k-space")
    parser.add_argument("--out", required=True, type=Path, metavar="OUT.h5|OUT.cfl", help="output file")
    parser.add_argument("--mask", default="regular", metavar="regular|random|FILE", help="sampling mask for fully sampled input (default: regular)")
    parser.add_argument("--acceleration", type=int, default=4, metavar="R", help="acceleration of the mask (default: 4)")
    parser.add_argument("--acs-lines", type=int, default=24, metavar="L", help="fully sampled centre lines (default: 24)")
    parser.add_argument("--format", choices=("h5", "cfl"), default="h5", help="output format (default: h5)")
    parser.add_argument("--png", action="store_true", help="also write OUT.png with all slices")
    parser.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    parser.set_defaults(func=_run_recon)
