"""`vnrecon evaluate`: networks and classical methods scored on test selections."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from vnrecon.files import check_destination

from .common import HelpFormatter, device_option, non_negative, optional_positive


def _run_evaluate(args: argparse.Namespace) -> int:
    from vnrecon.eval.evaluate import (
        EvaluationRequest, parse_weight, read_selection_source, read_tuning_source, run_evaluation,
    )

    check_destination(args.out, folder=True)
    device_option(args.device)
    patients = tuple(args.patients) if args.patients is not None else None
    request = EvaluationRequest(
        test_sets=read_selection_source(args.data, args.acquisition, patients, optional_positive(args.slices, "--slices")),
        models=args.model,
        methods=args.method,
        masks=args.mask or ["regular"],
        weights=dict(parse_weight(text) for text in args.weight),
        tune=read_tuning_source(args.tune, args.acquisition) if args.tune is not None else None,
        figure_slices=non_negative(args.figure_slices, "--figure-slices"),
        acceleration=optional_positive(args.acceleration, "--acceleration"),
        acs_lines=optional_positive(args.acs_lines, "--acs-lines"),
        cache_dir=args.cache,
        device=args.device,
    )
    result = run_evaluation(request, args.out, progress=not args.quiet)
    print(result.table)
    if not args.quiet:
        print(f"wrote {len(result.rows)} per-slice scores, the summary, {len(result.figures)} figure(s) "
              f"and report.html to {args.out}", file=sys.stderr)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
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
        formatter_class=HelpFormatter,
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
