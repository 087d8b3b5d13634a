"""Every artefact of a run, named once: `RunPaths(run_dir)` gives the path of each file and folder a stage reads or
writes, so stages, the runner, the report and the tests agree on where things are. `ARTEFACTS` holds the same
paths relative to the run directory, for the stages' declarations (`ARTEFACTS.picked("*")` is a glob)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


CHECKPOINT = "checkpoint.pt"  # a training's resumable state, in its folder (engine/training/hooks.py)
METRICS_LOG = "metrics.csv"  # a training's log, in its folder
WEIGHTS = "weights.pt"  # a finished stand-alone network's weights, in its folder
ONNX = "model.onnx"  # a picked network exported by the retrain stage, in its folder


def key_folder(key: str, seed_index: int = 0) -> str:
    """The folder name of a genotype trained stand-alone under the run's seed + seed_index: its key without ':'."""
    return key.replace(":", "_") + (f"_seed{seed_index}" if seed_index else "")


def skeleton_folder(folder: Path, skeleton: str, several: bool) -> Path:
    """Where a skeleton's part of a stage's work goes: `folder` itself, or folder/<skeleton>/ when the run has several
    skeletons (the supernets' training, DNAS)."""
    return folder / skeleton if several else folder


@dataclass(frozen=True)
class RunPaths:
    """runs/<name>/ and what lies in it (docs/ARCHITECTURE.md, "Stages")."""

    root: Path

    def __truediv__(self, relative: str) -> Path:
        return self.root / relative

    # the run
    @property
    def config(self) -> Path:
        return self.root / "config.yaml"

    @property
    def log(self) -> Path:
        return self.root / "run.log"

    @property
    def records(self) -> Path:
        """One JSON record per finished stage: what it read and wrote, with digests (engine/runner.py)."""
        return self.root / "stages"

    def record(self, stage: str) -> Path:
        return self.records / f"{stage}.json"

    @property
    def lock(self) -> Path:
        return self.root / ".lock"

    # space
    @property
    def space(self) -> Path:
        return self.root / "space.csv"

    # supernet
    @property
    def supernet_dir(self) -> Path:
        return self.root / "supernet"

    @property
    def supernet(self) -> Path:
        """The final weights of every skeleton's supernet, in one file."""
        return self.root / "supernet.pt"

    def supernet_work(self, skeleton: str, several: bool) -> Path:
        """A skeleton's supernet training (checkpoint, metrics log): supernet/, or supernet/<skeleton>/ when the run
        has several skeletons."""
        return skeleton_folder(self.supernet_dir, skeleton, several)

    def supernet_metrics(self, skeleton: str, several: bool) -> Path:
        return self.supernet_work(skeleton, several) / METRICS_LOG

    # latency
    @property
    def latency_dir(self) -> Path:
        return self.root / "latency"

    @property
    def predictor(self) -> Path:
        return self.latency_dir / "predictor"

    @property
    def measurements(self) -> Path:
        return self.latency_dir / "measurements.csv"

    @property
    def heldout(self) -> Path:
        return self.latency_dir / "heldout.csv"

    @property
    def accuracy(self) -> Path:
        return self.latency_dir / "accuracy.json"

    @property
    def transfer_sources(self) -> Path:
        """The sources the latency stage read from the store when it started (its work: a rerun reads them again
        rather than the store, which may have changed)."""
        return self.latency_dir / "transfer_sources.csv"

    @property
    def inherited_cache(self) -> Path:
        """Inherited mIoU by genotype key (JSON lines): a cache, not an artefact."""
        return self.root / "inherited.jsonl"

    # search
    @property
    def study(self) -> Path:
        return self.root / "study.db"

    @property
    def evaluations(self) -> Path:
        return self.root / "evaluations.csv"

    @property
    def front(self) -> Path:
        return self.root / "front.csv"

    @property
    def front_json(self) -> Path:
        return self.root / "front.json"

    @property
    def hypervolume(self) -> Path:
        return self.root / "hypervolume.csv"

    @property
    def search_cost(self) -> Path:
        return self.root / "search_cost.json"

    @property
    def search_dir(self) -> Path:
        return self.root / "search"

    @property
    def rounds(self) -> Path:
        """One row per measuring round: what was measured, the predictor's accuracy on it before, the front."""
        return self.search_dir / "rounds.csv"

    @property
    def search_measurements(self) -> Path:
        """Every subnet the search measured, with its prediction and interval just before."""
        return self.search_dir / "measurements.csv"

    @property
    def surrogate(self) -> Path:
        """One row per surrogate round: the regressor chosen, its cross-validated and out-of-sample Kendall tau."""
        return self.search_dir / "surrogate.csv"

    @property
    def search_journal(self) -> Path:
        """The measurements the search used, by genotype key, as it took them (work: a search that runs again
        replays them, not the shared store's latest rows, which a re-measurement may have replaced since)."""
        return self.search_dir / "journal.jsonl"

    @property
    def round_predictors(self) -> Path:
        """The latency predictor refit after each round, round_<n>/ (work: a resumed search loads them)."""
        return self.search_dir / "predictors"

    @property
    def dask(self) -> Path:
        """The scratch folder of the search's and the retrain stage's Dask workers (search.workers,
        retrain.workers > 1)."""
        return self.root / "dask"

    @property
    def dnas_dir(self) -> Path:
        return self.root / "dnas"

    @property
    def dnas(self) -> Path:
        return self.dnas_dir / "dnas.csv"

    @property
    def lookup(self) -> Path:
        return self.dnas_dir / "lookup.json"

    # select and retrain
    @property
    def selected_dir(self) -> Path:
        return self.root / "selected"

    @property
    def selection(self) -> Path:
        return self.selected_dir / "selection.json"

    def picked(self, label: str) -> Path:
        """selected/<label>/: genotype.json (select), weights.pt, model.onnx, metrics.json (retrain)."""
        return self.selected_dir / label

    def picked_genotype(self, label: str) -> Path:
        return self.picked(label) / "genotype.json"

    def picked_metrics(self, label: str) -> Path:
        return self.picked(label) / "metrics.json"

    def picked_onnx(self, label: str) -> Path:
        return self.picked(label) / ONNX

    def picked_weights(self, label: str) -> Path:
        return self.picked(label) / WEIGHTS

    def picked_seed(self, label: str, seed_index: int) -> Path:
        """Where a pick is trained under the run's seed + seed_index (retrain.seeds): selected/<label>/ for the first
        seed (the network exported and re-measured), selected/<label>/seed<i>/ for the others."""
        return self.picked(label) / f"seed{seed_index}" if seed_index else self.picked(label)

    # audit
    @property
    def audit_dir(self) -> Path:
        return self.root / "audit"

    @property
    def audit(self) -> Path:
        return self.audit_dir / "audit.csv"

    @property
    def audit_summary(self) -> Path:
        return self.audit_dir / "audit.json"

    @property
    def baseline(self) -> Path:
        return self.audit_dir / "baseline.json"

    @property
    def trained_dir(self) -> Path:
        return self.audit_dir / "trained"

    def trained(self, key: str, seed_index: int = 0) -> Path:
        """The folder of a genotype the audit trained stand-alone under the run's seed + seed_index (audit.seeds)."""
        return self.trained_dir / key_folder(key, seed_index)

    @property
    def audit_dask(self) -> Path:
        """The scratch folder of the audit's Dask workers (audit.workers > 1)."""
        return self.audit_dir / "dask"

    @property
    def baseline_trained_dir(self) -> Path:
        return self.audit_dir / "baseline_trained"

    @property
    def baseline_dask(self) -> Path:
        """The scratch folder of the baseline comparison's Dask workers (audit.workers > 1)."""
        return self.audit_dir / "baseline_dask"

    def baseline_trained(self, key: str, seed_index: int = 0) -> Path:
        """The folder of a genotype the baseline comparison trained stand-alone under the run's seed + seed_index."""
        return self.baseline_trained_dir / key_folder(key, seed_index)

    # report
    @property
    def report(self) -> Path:
        return self.root / "report.html"



ARTEFACTS = RunPaths(Path())
