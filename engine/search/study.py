"""The Optuna trial store: every evaluated subnet of a run is one complete trial of one study.

params = per-layer candidate names, values = (inherited mIoU, predicted latency), user attributes = genotype key,
MACs, params, the predicted interval, strategy, generation (NSGA-II) or lambda (DNAS) and feasibility. The study
lives in runs/<name>/study.db (SQLite) or at `search.storage` (any SQLAlchemy URL, e.g. PostgreSQL), records the
latency predictor's digest and refuses to mix trials of two predictors.
"""

from __future__ import annotations

import hashlib
import json
import warnings

import optuna
import pandas as pd
from optuna.trial import TrialState
from sqlalchemy.exc import SQLAlchemyError

from engine.config import ExperimentConfig
from engine.errors import ConfigError, CorruptFile, StudyMismatch
from engine.paths import RunPaths

COLUMNS = ("trial", "strategy", "generation", "lambda", "key", "miou", "latency_ms", "latency_lower_ms",
           "latency_upper_ms", "macs", "params", "feasible")


def storage_url(config: ExperimentConfig) -> str:
    return config.search.storage or f"sqlite:///{RunPaths(config.run_dir).study.resolve()}"


def scores_digest(config: ExperimentConfig) -> str:
    """What a trial's values depend on: the latency predictor's files, the supernet's weights and the settings of
    inherited-weight scoring (seed, space, data, evaluation, search constraints)."""
    paths = RunPaths(config.run_dir)
    digest = hashlib.sha256()
    for path in [*sorted(paths.predictor.glob("*.json")), paths.supernet]:
        with path.open("rb") as handle:
            digest.update(hashlib.file_digest(handle, "sha256").digest())
    settings = config.model_dump(mode="json", include={"seed", "space", "data", "evaluation"})
    digest.update(json.dumps([settings, config.search.constraints.model_dump(mode="json")], sort_keys=True).encode())
    return digest.hexdigest()[:16]


def open_study(config: ExperimentConfig) -> optuna.Study:
    """The experiment's study (created or reloaded), checked against what its trials were scored with (a study in
    another database, e.g. PostgreSQL, outlives the run directory the runner clears when the search starts over)."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        study = optuna.create_study(study_name=config.name, storage=storage_url(config),
                                    directions=["maximize", "minimize"], load_if_exists=True)
    except ImportError:
        raise ConfigError(f"search.storage {config.search.storage}: the database driver is not installed (for "
                          f"PostgreSQL: pip install 'psycopg[binary]')") from None
    except (SQLAlchemyError, optuna.exceptions.StorageInternalError) as error:
        raise CorruptFile(f"{storage_url(config)}: not a readable Optuna storage ({type(error).__name__}); delete "
                          f"it (the search starts over) or fix search.storage") from None
    digest = scores_digest(config)
    stored = study.user_attrs.get("scored_with")
    if stored is None and not study.trials:
        with warnings.catch_warnings():  # set_metric_names is marked experimental; optuna-dashboard shows it
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names(["inherited mIoU", "predicted latency ms"])
        study.set_user_attr("scored_with", digest)
    elif stored != digest:
        raise StudyMismatch(f"{storage_url(config)}: study {config.name!r} holds trials scored with another supernet, "
                            f"latency predictor or scoring settings ({stored}, not {digest}); delete the study "
                            f"(optuna delete-study --study-name {config.name} --storage ...) or give the run another "
                            f"name")
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
