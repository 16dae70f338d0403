"""`vnrecon study`: the whole generalisation and transfer-learning study."""

from __future__ import annotations

import argparse
from pathlib import Path

from vnrecon.files import check_destination

from .common import HelpFormatter, device_option, positive


def _run_study(args: argparse.Namespace) -> int:
    from vnrecon.study.runner import run_study

    jobs = positive(args.jobs, "--jobs")
    check_destination(args.out, folder=True)
    device_option(args.device)
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


def register(subparsers: argparse._SubParsersAction) -> None:
    from vnrecon.study.presets import PRESETS

    parser = subparsers.add_parser(
        "study",
        help="the paper's generalisation and transfer-learning study in one command",
        usage="vnrecon study --preset {tiny,cpu,paper} --out DIR [--data DIR] [--only IDS|snr] [--jobs N] [--device D]",
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
            "SNR family (--only snr; beyond the paper; vnrecon/configs/snr_study.yaml): the preset's VN\n"
            "trained on PDw knee data at fixed SNRs 5, 10, 20, 40, 80 (the paper's scale: the study's PDw\n"
            "= 80) and on the natural images at 5, 20, 80, one with noise augmentation over 5-80 (drawn\n"
            "per slice and epoch) and one noise-aware VN (conditions lambda_t and its activations on the\n"
            "noise it estimates from its input), each scored with CG-SENSE at test SNRs 2.5-160 on a copy\n"
            "of the knee with a quarter of the noise (data/knee_snr). Writes snr/: evaluations.csv,\n"
            "snr_map.md (the train x test SNR table, worst cases, goal check), snr_map.png (heat maps),\n"
            "snr_curves.png, snr_aware_lambda.png; the report gets a section. Simulated data only;\n"
            "about 50 min on 2 cores with --preset cpu.\n"
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
            "  vnrecon study --preset cpu --out study-cpu --only snr        # the SNR map\n"
            "  vnrecon study --preset paper --out study-paper --data DATA --device cuda"
        ),
        formatter_class=HelpFormatter,
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
        "what they need comes along (19, 20: 17; 9: 1; 12: 2); snr: the SNR family (above)",
    )
    parser.add_argument("--jobs", type=int, default=1, metavar="N", help="trainings run in parallel processes, sharing the CPU cores (default: 1)")
    parser.add_argument("--device", default="cpu", help="torch device for training and evaluation, e.g. cuda (default: cpu)")
    parser.set_defaults(func=_run_study)
