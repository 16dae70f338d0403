"""`vnrecon info`: what a fastMRI-layout file holds (slices, coils, matrix, SNR, mask)."""

from __future__ import annotations

import argparse
from pathlib import Path

from vnrecon.errors import InputError

from .common import EXIT_USAGE, HelpFormatter, report


def _format_info(path: Path) -> str:
    import numpy as np
    import torch

    from vnrecon.data.fastmri import read_header, read_volume
    from vnrecon.physics.masks import count_acs_lines, effective_acceleration, within_columns
    from vnrecon.data.selection import SNR_SLICES, central_slices
    from vnrecon.physics.noise import estimate_snr

    info = read_header(path)
    header = info.header
    recon = header.get("recon_shape")
    recon_text = f"{recon[0]} x {recon[1]}" if recon else "not in header"
    snr_slices = central_slices(info.n_slices, min(SNR_SLICES, info.n_slices))
    volume = read_volume(path, slices=slice(snr_slices.start, snr_slices.stop))
    first, stop = info.acquired
    kspace = volume.kspace
    note = ""
    if info.mask is not None:
        # Undersampled file: unsampled lines are zeros, so use the measured lines only.
        kspace = kspace[..., within_columns(info.mask, (first, stop))]
        note = ", sampled lines only"
    elif (first, stop) != (0, info.phase):
        kspace = kspace[..., first:stop]  # fastMRI's zero-filled edge columns were never acquired
        note = f", acquired columns {first}-{stop - 1} only"
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
            snr_text = f"{estimate_snr(torch.from_numpy(np.ascontiguousarray(kspace)), info.oversampling):.1f}"
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
        f"  matrix:       {info.readout} x {info.phase} (readout x phase), recon {recon_text}, readout oversampling {info.oversampling}x",
        f"  acquisition:  {info.acquisition or '-'}",
        f"  patient id:   {info.patient_id or '-'}",
        f"  SNR:          {snr_text} ({method})",
        f"  tissue SNR:   {tissue_text}",
        f"  coil maps:    {f'stored ({info.n_maps} set(s) in the file)' if info.has_maps else 'none stored (ESPIRiT from the ACS lines)'}",
        f"  noise:        {'covariance stored (data are prewhitened when loaded)' if info.has_noise_covariance else 'no covariance stored (taken as white)'}",
    ]
    if (first, stop) != (0, info.phase):
        lines.append(f"  acquired:     columns {first}-{stop - 1} of {info.phase} (the rest zero-filled: fastMRI padding)")
    if info.mask is not None:
        acquired = info.mask[first:stop]
        lines.append(
            f"  mask:         effective acceleration {effective_acceleration(acquired):.2f}"
            f" ({int(acquired.sum())} of {acquired.size} acquired lines), {count_acs_lines(info.mask)} ACS lines"
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
            report(error)
            status = EXIT_USAGE
            continue
        print(("\n" if printed else "") + text, flush=True)
        printed = True
    return status


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "info",
        help="print shape, sequence, SNR and sampling of fastMRI or ISMRMRD HDF5 files",
        description=(
            "Print for each fastMRI multi-coil HDF5 file: slices, coils, k-space matrix\n"
            "(readout x phase) and recon matrix, acquisition (e.g. CORPD_FBK), patient id,\n"
            "the estimated SNR = rms(k-space) / noise std (noise from the readout-oversampled\n"
            "margins) over the central up-to-20 slices, and, for undersampled files with a\n"
            "'mask' dataset, the effective acceleration and the number of ACS lines.\n"
            "Files that cannot be read are reported on stderr (exit status 2); the\n"
            "others are still printed."
        ),
        formatter_class=HelpFormatter,
    )
    parser.add_argument("files", nargs="+", type=Path, metavar="FILE.h5", help="fastMRI multi-coil HDF5 file")
    parser.set_defaults(func=_run_info)
