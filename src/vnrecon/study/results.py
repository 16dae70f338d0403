"""The study's results as a reader needs them: the manifest, the per-slice scores summarised, histories, examples.

``StudyResults(out_dir)`` reads what :mod:`vnrecon.study.runner` wrote
(``study.json``, ``evaluations/*.csv``, ``runs/<id>/history.csv``,
``examples/``); the tables, figures and report (:mod:`vnrecon.study.outputs`)
and the claims (:mod:`vnrecon.study.claims`) are made from it. Scores are
mean and population SD over the test slices, as ``eval.evaluate`` summarises
them; "RMSE" is the per-slice ``nrmse`` column (the paper's RMSE).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..files import read_csv_rows
from .experiments import Study, load_study

PDW, FS, NOISE = "PDw", "PDw-FS", "PDw+noise"
REGULAR, RANDOM = "regular", "random"
MASK_ORDER = (REGULAR, RANDOM)
METRICS = ("ssim", "nrmse", "psnr")


@dataclass(frozen=True)
class Score:
    """Mean and population SD of each metric over the test slices of one (source, test set, mask)."""

    slices: int
    mean: dict[str, float]
    sd: dict[str, float]


def short_id(source: str) -> str:
    """'01' -> '1' (the paper's numbering); 'ref19' and baseline names unchanged."""
    return str(int(source)) if source.isdigit() else source


def read_csv(path: Path) -> list[dict]:
    return read_csv_rows(path)


def as_float(text: str) -> float:
    """CSV cell -> float; an empty cell (a metric not computed) is NaN."""
    return float(text) if text not in ("", None) else math.nan


def table_rows_of(definitions: Study) -> dict[str, tuple[str, list[str]]]:
    """Table -> (title, rows): its own experiments, then the rows the paper repeats for comparison."""
    return {
        key: (entry["title"], [e.id for e in definitions.experiments if e.table == key] + list(entry.get("compare", [])))
        for key, entry in definitions.tables.items()
    }


def summarise_rows(rows: list[dict]) -> dict[tuple[str, str], Score]:
    """(test set, mask) -> Score over the per-slice rows of one evaluation file."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for row in rows:
        groups.setdefault((row["test_set"], row["mask"]), []).append(row)
    scores = {}
    for key, members in groups.items():
        values = {metric: np.array([as_float(member[metric]) for member in members]) for metric in METRICS}
        scores[key] = Score(
            len(members),
            {metric: float(np.mean(array)) for metric, array in values.items()},
            {metric: float(np.std(array)) for metric, array in values.items()},
        )
    return scores


def _summarise_file(path: Path) -> dict[tuple[str, str], Score]:
    try:
        return summarise_rows(read_csv(path))
    except InputError:
        raise
    except (KeyError, ValueError) as error:
        raise InputError(f"{path}: damaged table ({type(error).__name__}: {error}); delete it to recompute it") from None


class StudyResults:
    """study.json plus every evaluation file, summarised per source (experiment id or baseline)."""

    def __init__(self, out_dir: str | Path):
        self.out_dir = Path(out_dir)
        self.study = json.loads((self.out_dir / "study.json").read_text())
        self.experiments = {entry["id"]: entry for entry in self.study["experiments"]}
        self.baselines = list(self.study["baselines"])
        self.tables = table_rows_of(load_study())
        self.scores = {
            source: _summarise_file(path)
            for source in [*self.experiments, *self.baselines]
            if (path := self.file_of(source, "evaluations/{name}.csv")) is not None
        }

    def file_of(self, source: str, pattern: str) -> Path | None:
        """out_dir / pattern with {name} = source; a training that reuses another (``same_as``)
        may have no files of its own, then the other's are taken."""
        same_as = (self.experiments.get(source) or {}).get("same_as")
        for name in filter(None, (source, same_as)):
            if (path := self.out_dir / pattern.format(name=name)).is_file():
                return path
        return None

    def ran(self, source: str) -> bool:
        return source in self.experiments

    def score(self, source: str, test_set: str, mask: str = REGULAR) -> Score | None:
        return self.scores.get(source, {}).get((test_set, mask))

    def label(self, source: str) -> str:
        title = (self.experiments.get(source) or {}).get("title")
        return f"{short_id(source)}: {title}" if title else short_id(source)

    def test_set_order(self) -> list[str]:
        return list(self.study["test_sets"])

    def columns(self, sources) -> list[tuple[str, str]]:
        """(test set, mask) pairs scored for any of ``sources``, in study order."""
        present = {key for source in sources for key in self.scores.get(source, {})}
        names = self.test_set_order() + sorted({test_set for test_set, _ in present} - set(self.test_set_order()))
        masks = list(MASK_ORDER) + sorted({mask for _, mask in present} - set(MASK_ORDER))
        return [(name, mask) for name in names for mask in masks if (name, mask) in present]

    def run_dir(self, source: str) -> Path:
        return self.out_dir / self.experiments[source]["run"]

    def own_runs(self) -> list[str]:
        """Experiments with a training of their own (not a ``same_as`` reuse), in study order."""
        return [source for source, entry in self.experiments.items() if not entry.get("same_as")]

    def example(self, source: str, test_set: str, mask: str) -> np.ndarray | None:
        path = self.file_of(source, f"examples/{{name}}/{test_set}__{mask}.npy")
        return None if path is None else np.load(path)


def read_history(path: Path) -> list[dict]:
    try:
        return [{key: as_float(value) for key, value in row.items()} for row in read_csv_rows(path)]
    except ValueError as error:
        if isinstance(error, InputError):
            raise
        raise InputError(f"{path}: damaged table ({error}); delete it to recompute it") from None
