"""Study presets: how big the study is, and which trainings run by default.

A preset fixes the simulated data (knee k-space matrix, coils, patients,
slices, synthetic images), which slices the symbolic names of the experiment
definitions stand for (``patients: train`` = all training patients, ``slices:
train`` = their central N slices, ...), and the training settings: a shipped
training preset (``vnrecon/configs/cpu.yaml`` or ``paper.yaml``) plus
overrides. The module imports nothing heavy, so the CLI help can list the
presets.
"""

from dataclasses import asdict, dataclass, field

from ..errors import InputError


@dataclass(frozen=True)
class StudyPreset:
    name: str
    #: Simulated knee k-space (full readout incl. 2x oversampling, phase encoding).
    matrix: tuple[int, int]
    coils: int
    train_patients: int
    #: Test patients follow the training patients in the sorted patient ids.
    test_patients: int
    #: Slices per simulated volume.
    simulated_slices: int
    #: Central slices per training patient (experiments 1-14, knee validation of the rest).
    train_slices: int
    #: Central slices per test patient; None = every slice.
    test_slices: int | None
    #: Synthetic natural-image slices per SNR setting (experiments 15-18).
    natural_images: int
    #: Central slices per training patient of the fine-tuning subsets (19, 20, ref19, ref20).
    finetune_slices: int
    #: Shipped training preset ('cpu' or 'paper', see vnrecon.train.config).
    training_preset: str
    #: Training settings on top of the training preset (same keys as a training config).
    overrides: dict = field(default_factory=dict)
    #: Experiment ids run by default; None = all.
    experiments: tuple[str, ...] | None = None
    #: Central slices per test patient that are scored after every epoch (monitoring only).
    validation_slices: int = 2
    #: Give the trainings on the fine-tuning subsets (19, 20, ref19, ref20) as many optimiser
    #: steps as a training on the full training slices (see ``experiments.training_config``);
    #: False: the training preset's epochs, i.e. a tenth of the steps (the paper: 150 epochs on
    #: 20 slices, 600 steps, a tenth of its 6000 on 200 slices).
    small_set_full_steps: bool = False
    #: Optimiser settings of the fine-tunings (experiments with ``init``) on top of the
    #: training preset's, e.g. {"lr": 0.003}; empty: the same as a training from scratch.
    finetune_optimizer: dict = field(default_factory=dict)
    #: Expected wall time, for the help text.
    expected_time: str = ""

    @property
    def acs_lines(self) -> int:
        """ACS lines of the masks: the paper's 24 of 368, scaled to the matrix (``matched_acs_lines``)."""
        from ..physics.masks import matched_acs_lines  # numpy: kept out of the CLI's help path

        return matched_acs_lines(self.matrix[1])

    def to_dict(self) -> dict:
        """The settings (the expected time is documentation, not a setting)."""
        values = asdict(self)
        del values["expected_time"]
        values["matrix"] = list(self.matrix)
        values["experiments"] = list(self.experiments) if self.experiments is not None else None
        return values

    def summary(self) -> str:
        """One paragraph for ``vnrecon study --help``."""
        runs = ", ".join(self.experiments) if self.experiments is not None else "all experiments"
        test = f"central {self.test_slices}" if self.test_slices is not None else "all"
        plural = "s" if self.test_patients > 1 else ""
        return (
            f"{self.name}: k-space {self.matrix[0]}x{self.matrix[1]}, {self.coils} coils, "
            f"{self.train_patients} training patients x central {self.train_slices} of {self.simulated_slices} slices, "
            f"{self.test_patients} test patient{plural} x {test} slices, {self.natural_images} synthetic images per SNR, "
            f"fine-tuning subsets of central {self.finetune_slices} slices per training patient, "
            f"training preset '{self.training_preset}'{_overrides_text(self.overrides)}; runs {runs}; {self.expected_time}"
        )


def _overrides_text(overrides: dict) -> str:
    """', epochs 2, model stages 2 filters 4 kernel_size 5' for {'epochs': 2, 'model': {...}}."""
    parts = []
    for key, value in overrides.items():
        inner = " ".join(f"{name} {setting}" for name, setting in value.items()) if isinstance(value, dict) else value
        parts.append(f", {key} {inner}")
    return "".join(parts)


PRESETS: dict[str, StudyPreset] = {
    preset.name: preset
    for preset in (
        StudyPreset(
            name="tiny",
            matrix=(96, 64),
            coils=4,
            train_patients=2,
            test_patients=1,
            simulated_slices=6,
            train_slices=4,
            test_slices=None,
            natural_images=8,
            finetune_slices=2,
            training_preset="cpu",
            overrides={"epochs": 2, "model": {"stages": 2, "filters": 4, "kernel_size": 5}},
            experiments=("01", "02", "17", "19", "ref19"),
            small_set_full_steps=True,
            expected_time="under a minute on 2 CPU cores (a smoke test of the pipeline, not a result)",
        ),
        StudyPreset(
            name="cpu",
            matrix=(256, 96),  # vnrecon.data.knee.DEFAULT_MATRIX
            coils=15,
            train_patients=10,
            test_patients=2,
            simulated_slices=20,
            train_slices=20,
            test_slices=20,
            natural_images=200,
            finetune_slices=2,
            training_preset="cpu",
            # The training preset as it is (8 epochs, 320 Adam steps on 200 slices). The
            # 20-slice trainings (19, 20, ref19, ref20) get the same 320 steps (80 epochs,
            # small_set_full_steps): at 8 epochs they got 32 steps, a tenth of every other
            # training's, and the fine-tuned model had barely moved from the synthetic one
            # (the paper's 150 epochs on 20 slices are 600 iPALM steps). Their validation
            # curves (study figures, curves_*.png) show what the extra steps buy.
            overrides={},
            small_set_full_steps=True,
            expected_time=(
                "1 h 15 min on a 2-core AVX-512 machine (0.65 s per 5-slice step; measured from a fresh clone), "
                "~2.7 h on a 2-vCPU AVX2 VM (1.49 s per step)"
            ),
        ),
        StudyPreset(
            name="paper",
            matrix=(640, 368),  # vnrecon.data.knee.PAPER_MATRIX
            coils=15,
            train_patients=10,
            test_patients=10,
            simulated_slices=40,
            train_slices=20,
            test_slices=None,
            natural_images=200,
            finetune_slices=2,
            training_preset="paper",
            expected_time="not timed here: 20 trainings of the paper's network, needs a GPU (--device cuda)",
        ),
    )
}


def get_preset(name: str) -> StudyPreset:
    if name not in PRESETS:
        raise InputError(f"unknown study preset {name!r}; choose one of {', '.join(PRESETS)}")
    return PRESETS[name]
