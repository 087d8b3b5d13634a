"""The Optuna trial store: every evaluated subnet of a run is one complete trial of one study.

params = per-layer candidate names, values = (inherited mIoU, predicted latency), user attributes = genotype key,
MACs, params, the predicted interval, strategy, generation (NSGA-II) or lambda (DNAS) and feasibility. The study
lives in runs/<name>/study.db (SQLite) or at `search.storage` (any SQLAlchemy URL, e.g. PostgreSQL), records the
latency predictor's digest and refuses to mix trials of two predictors.
"""

from __future__ import annotations

import hashlib
import warnings

import optuna
import pandas as pd
from optuna.trial import TrialState

from engine.config import ExperimentConfig
from engine.errors import StudyMismatch
from engine.paths import RunPaths

COLUMNS = ("trial", "strategy", "generation", "lambda", "key", "miou", "latency_ms", "latency_lower_ms",
           "latency_upper_ms", "macs", "params", "feasible")


def storage_url(config: ExperimentConfig) -> str:
    return config.search.storage or f"sqlite:///{RunPaths(config.run_dir).study.resolve()}"


def predictor_digest(config: ExperimentConfig) -> str:
    files = sorted(RunPaths(config.run_dir).predictor.glob("*.json"))
    return hashlib.sha256(b"".join(f.read_bytes() for f in files)).hexdigest()[:16]


def open_study(config: ExperimentConfig) -> optuna.Study:
    """The experiment's study (created or reloaded), checked against the current predictor."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name=config.name, storage=storage_url(config),
                                directions=["maximize", "minimize"], load_if_exists=True)
    digest = predictor_digest(config)
    stored = study.user_attrs.get("predictor")
    if stored is None:
        with warnings.catch_warnings():  # set_metric_names is marked experimental; optuna-dashboard shows it
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names(["inherited mIoU", "predicted latency ms"])
        study.set_user_attr("predictor", digest)
    elif stored != digest:
        raise StudyMismatch(f"{storage_url(config)}: study {config.name!r} was made with latency predictor {stored}, "
                            f"not the current {digest}; remove the study or give the run another name")
    return study


def finished(study: optuna.Study) -> dict[str, dict]:
    """User attributes and mIoU of every complete trial, by genotype key."""
    return {t.user_attrs["key"]: {**t.user_attrs, "miou": t.values[0], "trial": t.number}
            for t in study.get_trials(deepcopy=False, states=[TrialState.COMPLETE])}


def trials_table(study: optuna.Study) -> pd.DataFrame:
    """Every complete trial as one row of COLUMNS, by trial number (Optuna's trials_dataframe)."""
    frame = study.trials_dataframe(attrs=("number", "values", "user_attrs", "state"), multi_index=False)
    if frame.empty:
        return pd.DataFrame(columns=list(COLUMNS))
    frame = frame[frame.state == TrialState.COMPLETE.name]
    miou = next(name for name in frame.columns if name.startswith("values"))  # the first objective, named or not
    frame = frame.rename(columns={"number": "trial", miou: "miou"}).rename(
        columns=lambda name: name.removeprefix("user_attrs_"))
    return frame.reindex(columns=list(COLUMNS)).sort_values("trial").reset_index(drop=True)
