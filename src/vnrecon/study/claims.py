"""The paper's findings as checks on the study's mean test SSIMs: PASS, FAIL or NOT RUN, and claims.md.

Each claim (A-F) is a set of checks fixed before any run: a direction
(``better``: A above B by any margin) or a tolerance (``close``: the matched
or reference training better by at most ``TOLERANCE``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .results import FS, MASK_ORDER, NOISE, PDW, RANDOM, REGULAR, Score, StudyResults, short_id

#: Experiments 9-14: the contrast they are trained on and their training mask.
SAMPLING_TRAININGS = {
    "09": (PDW, REGULAR), "10": (PDW, RANDOM), "11": (PDW, "both"),
    "12": (FS, REGULAR), "13": (FS, RANDOM), "14": (FS, "both"),
}


#: SSIM tolerance of "costs little", "matches" and "comes close", fixed before any run (not tuned).
TOLERANCE = 0.02
PASS, FAIL, NOT_RUN = "PASS", "FAIL", "NOT RUN"

#: The paper's SSIM of single example slices (Figs. 2, 4 and 7 and their text), not test-set means.
PAPER_SLICE_SSIM = {
    ("01", PDW, REGULAR): 0.94, ("01", FS, REGULAR): 0.81, ("01", NOISE, REGULAR): 0.74,
    ("02", PDW, REGULAR): 0.91, ("02", FS, REGULAR): 0.89, ("02", NOISE, REGULAR): 0.82,
    ("03", PDW, REGULAR): 0.91, ("03", FS, REGULAR): 0.88,
    ("04", PDW, REGULAR): 0.94, ("04", FS, REGULAR): 0.89,
    ("05", FS, REGULAR): 0.85,
    ("09", PDW, RANDOM): 0.95, ("10", PDW, RANDOM): 0.96,
    ("15", FS, REGULAR): 0.65,
}


@dataclass(frozen=True)
class Cell:
    """One mean score: a training evaluated on a test set with a mask."""

    source: str
    test_set: str
    mask: str = REGULAR

    def text(self) -> str:
        return f"{short_id(self.source)} on {self.test_set}" + (f" ({self.mask})" if self.mask != REGULAR else "")


@dataclass(frozen=True)
class Check:
    """A rule on the mean SSIMs of ``cells``; ``rule`` returns (holds, the arithmetic in words)."""

    text: str
    cells: tuple[Cell, ...]
    rule: Callable[..., tuple[bool, str]]


@dataclass(frozen=True)
class Claim:
    key: str
    finding: str
    checks: tuple[Check, ...]
    if_fails: str


def better(winner: Cell, loser: Cell, text: str) -> Check:
    """winner's mean SSIM above loser's (any margin: the paper states a direction)."""
    return Check(text, (winner, loser), lambda w, l: (w > l, f"{w:.3f} - {l:.3f} = {w - l:+.3f} (needs > 0)"))


def close(candidate: Cell, matched: Cell, text: str) -> Check:
    """candidate costs at most TOLERANCE SSIM against matched (being better is fine)."""
    return Check(
        text, (candidate, matched),
        lambda c, m: (m - c <= TOLERANCE, f"{m:.3f} - {c:.3f} = {m - c:+.3f} (needs <= {TOLERANCE})"),
    )


def snr_drop_exceeds_contrast_drop() -> Check:
    def rule(high_noise, matched_noise, fs_noise, fs_fs, noisy_fs):
        snr = matched_noise - high_noise
        contrast = max(abs(fs_noise - matched_noise), abs(fs_fs - noisy_fs))
        return snr > contrast, f"SNR drop {snr:+.3f} vs largest contrast drop {contrast:.3f} (needs SNR drop larger)"

    cells = (Cell("01", NOISE), Cell("03", NOISE), Cell("02", NOISE), Cell("02", FS), Cell("03", FS))
    return Check("SNR-mismatch drop on PDw+noise (3 - 1) exceeds the contrast-mismatch drops |2 - 3| on PDw+noise and on PDw-FS", cells, rule)


def sampling_checks() -> tuple[Check, ...]:
    """Per contrast and test mask: every other training of 9-14 against the one trained on that mask."""
    checks = []
    for contrast in (PDW, FS):
        trainings = {mask: source for source, (c, mask) in SAMPLING_TRAININGS.items() if c == contrast}
        for test_mask in MASK_ORDER:
            matched = trainings[test_mask]
            for train_mask, source in trainings.items():
                if source != matched:
                    text = f"{contrast}, {test_mask} test: {train_mask}-trained {short_id(source)} vs {test_mask}-trained {short_id(matched)}"
                    checks.append(close(Cell(source, contrast, test_mask), Cell(matched, contrast, test_mask), text))
    return tuple(checks)


CLAIMS = (
    Claim(
        "A", "SNR mismatch costs most: high-SNR training on low-SNR data amplifies noise, the reverse blurs.",
        (
            better(Cell("03", NOISE), Cell("01", NOISE), "PDw+noise: matched-SNR training 3 above high-SNR training 1"),
            snr_drop_exceeds_contrast_drop(),
            better(Cell("02", FS), Cell("01", FS), "PDw-FS: high-SNR training 1 below matched training 2 (noise amplification)"),
            better(Cell("01", PDW), Cell("02", PDW), "PDw: low-SNR training 2 below matched training 1 (blurring)"),
            better(Cell("16", FS), Cell("15", FS), "PDw-FS: synthetic high-SNR training 15 below synthetic low-SNR training 16"),
        ),
        "If this fails, the learned step sizes / regularisation weights of our networks are not SNR-specific at this "
        "size and noise level, so SNR is not the critical training-data property the paper found it to be here.",
    ),
    Claim(
        "B", "Contrast mismatch costs little.",
        (
            close(Cell("03", FS), Cell("02", FS), "PDw-FS: PDw+noise training 3 (other contrast, same SNR) vs matched 2"),
            close(Cell("02", NOISE), Cell("03", NOISE), "PDw+noise: PDw-FS training 2 (other contrast, same SNR) vs matched 3"),
        ),
        "If this fails, our networks learn contrast-specific image content (e.g. the simulated fat signal), so contrast "
        "matters beyond its SNR, unlike in the paper.",
    ),
    Claim(
        "C", "Joint training on heterogeneous data matches training on matched data.",
        (
            close(Cell("04", PDW), Cell("01", PDW), "PDw: joint PDw + PDw-FS training 4 vs matched 1"),
            close(Cell("04", FS), Cell("02", FS), "PDw-FS: joint PDw + PDw-FS training 4 vs matched 2"),
            close(Cell("05", PDW), Cell("01", PDW), "PDw: joint PDw + PDw+noise training 5 vs matched 1"),
            close(Cell("05", NOISE), Cell("03", NOISE), "PDw+noise: joint PDw + PDw+noise training 5 vs matched 3"),
        ),
        "If this fails, one network cannot serve both SNR / contrast regimes at our capacity, and heterogeneous "
        "training costs image quality compared with one network per protocol.",
    ),
    Claim(
        "D", "Sampling-pattern mismatch costs little (regular vs random undersampling, and joint training on both).",
        sampling_checks(),
        "If this fails, the networks learn pattern-specific de-aliasing, and a network must be trained for the "
        "sampling pattern it will see.",
    ),
    Claim(
        "E", "Synthetic-only training is worse than in-vivo training (the paper: residual aliasing).",
        (
            better(Cell("01", PDW), Cell("17", PDW), "PDw: synthetic training 17 below in-vivo training 1"),
            better(Cell("02", FS), Cell("17", FS), "PDw-FS: synthetic training 17 below in-vivo training 2"),
        ),
        "If this fails, our natural-image k-space is as good a training set as the simulated knees, i.e. the knee "
        "simulation is too simple to show a domain gap. The residual aliasing itself is a visual finding: see Figs. 7 and 8.",
    ),
    Claim(
        "F", "Fine-tuning on 20 slices beats the synthetic baseline and the 20-slice-only training, and comes close to full in-domain training.",
        (
            better(Cell("19", PDW), Cell("17", PDW), "PDw: fine-tuned 19 above synthetic baseline 17"),
            better(Cell("20", FS), Cell("17", FS), "PDw-FS: fine-tuned 20 above synthetic baseline 17"),
            better(Cell("19", PDW), Cell("ref19", PDW), "PDw: fine-tuned 19 above 20-slice-only training ref19"),
            better(Cell("20", FS), Cell("ref20", FS), "PDw-FS: fine-tuned 20 above 20-slice-only training ref20"),
            close(Cell("19", PDW), Cell("01", PDW), "PDw: fine-tuned 19 vs full in-vivo training 1"),
            close(Cell("20", FS), Cell("02", FS), "PDw-FS: fine-tuned 20 vs full in-vivo training 2"),
        ),
        "If this fails, pre-training on synthetic data gives no head start (or 20 slices are not enough to adapt it) "
        "at our network size and epochs, and transfer learning does not replace in-domain data here.",
    ),
)


@dataclass(frozen=True)
class CheckResult:
    check: Check
    status: str
    detail: str
    scores: tuple[Score | None, ...]


def evaluate_check(results: StudyResults, check: Check) -> CheckResult:
    scores = tuple(results.score(cell.source, cell.test_set, cell.mask) for cell in check.cells)
    missing = [cell.text() for cell, score in zip(check.cells, scores) if score is None]
    if missing:
        return CheckResult(check, NOT_RUN, "missing: " + ", ".join(missing), scores)
    holds, detail = check.rule(*(score.mean["ssim"] for score in scores))
    return CheckResult(check, PASS if holds else FAIL, detail, scores)


def claim_status(checks: list[CheckResult]) -> str:
    statuses = {result.status for result in checks}
    if FAIL in statuses:
        return FAIL
    return PASS if PASS in statuses else NOT_RUN


def evaluate_claims(results: StudyResults) -> list[tuple[Claim, str, list[CheckResult]]]:
    evaluated = []
    for claim in CLAIMS:
        checks = [evaluate_check(results, check) for check in claim.checks]
        evaluated.append((claim, claim_status(checks), checks))
    return evaluated


def status_text(status: str, checks: list[CheckResult]) -> str:
    """The claim's status, saying when it rests on only some of its checks."""
    missing = sum(result.status == NOT_RUN for result in checks)
    return f"{status} ({missing} of {len(checks)} checks not run)" if status != NOT_RUN and missing else status


def cell_values(result: CheckResult, metric: str) -> str:
    return "; ".join(
        f"{cell.text()}: {score.mean[metric]:.3f}" if score else f"{cell.text()}: –"
        for cell, score in zip(result.check.cells, result.scores)
    )


def paper_values(check: Check) -> str:
    known = [f"{cell.text()}: {PAPER_SLICE_SSIM[key]:.2f}" for cell in check.cells if (key := (cell.source, cell.test_set, cell.mask)) in PAPER_SLICE_SSIM]
    return "; ".join(known) or "–"


CHECK_COLUMNS = ("check", "our mean SSIM", "our mean RMSE", "paper SSIM (one slice)", "arithmetic", "result")


def check_row(result: CheckResult) -> dict:
    return dict(zip(CHECK_COLUMNS, (
        result.check.text, cell_values(result, "ssim"), cell_values(result, "nrmse"),
        paper_values(result.check), result.detail, result.status,
    )))


def markdown_from_rows(rows: list[dict], columns) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|---" * len(columns) + "|"]
    lines += ["| " + " | ".join(str(row[column]).replace("|", "\\|") for column in columns) + " |" for row in rows]
    return "\n".join(lines)


CLAIMS_INTRO = (
    "Each finding of the paper is checked on the mean test SSIM (RMSE shown alongside), "
    "regular sampling unless a mask is named. Rules, fixed before any run: a direction ('A above B') passes on "
    "any positive difference; 'costs little' / 'matches' / 'comes close' passes when the matched or reference "
    f"training is better by at most {TOLERANCE} SSIM. A check whose trainings were not run is NOT RUN; a claim "
    "FAILs if any of its checks fails, PASSes if at least one passes and none fails. The paper's numbers are SSIMs "
    "of single example slices, not test-set means: they show the direction, not a target."
)


def claims_markdown(evaluated) -> str:
    lines = ["# Claims of Knoll et al. 2019, checked on this study", "", CLAIMS_INTRO, "", "| claim | finding | result |", "|---|---|---|"]
    lines += [f"| {claim.key} | {claim.finding} | {status_text(status, checks)} |" for claim, status, checks in evaluated]
    for claim, status, checks in evaluated:
        lines += ["", f"## {claim.key}. {claim.finding} — {status_text(status, checks)}", "", markdown_from_rows([check_row(r) for r in checks], CHECK_COLUMNS)]
        lines += ["", claim.if_fails]
    return "\n".join(lines) + "\n"
