"""The Optuna trial store: every evaluated subnet of a run is one trial of one study.

params = per-layer candidate names; user attributes = genotype key, inherited mIoU, MACs, params, strategy,
generation and round (evolution) or lambda (DNAS), and the latency fields of engine/search/rounds.py. A subnet's trial
is added RUNNING as soon as it is scored (with its mIoU, so a resumed search never scores it again) and completed
when the search ends, with values (inherited mIoU, latency ms): its measurement where the search has one, its
prediction otherwise (user attribute latency_source), since measurements made in later rounds replace predictions.
The study lives in runs/<name>/study.db (SQLite) or at `search.storage` (any SQLAlchemy URL, e.g. PostgreSQL),
records the latency predictor's digest and refuses to mix trials of two predictors.
"""

from __future__ import annotations

import hashlib
import json
import warnings

import optuna
import pandas as pd
from optuna.distributions import BaseDistribution
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import TrialState, create_trial
from sqlalchemy.exc import SQLAlchemyError

from engine.config import RENAMED_STRATEGIES, ExperimentConfig
from engine.errors import ConfigError, CorruptFile, StudyMismatch
from engine.paths import RunPaths
from engine.search.rounds import LATENCY_FIELDS

COLUMNS = ("trial", "strategy", "generation", "round", "lambda", "key", "miou", *LATENCY_FIELDS, "macs", "params",
           "feasible")
METRICS = ["inherited mIoU", "latency ms (measured; predicted where not)"]
RESUMABLE = (TrialState.RUNNING, TrialState.COMPLETE)


def storage_url(config: ExperimentConfig) -> str:
    return config.search.storage or f"sqlite:///{RunPaths(config.run_dir).study.resolve()}"


def scores_digest(config: ExperimentConfig) -> str:
    """What a trial's values depend on: the latency predictor's files, the supernet's weights and the settings of
    inherited-weight scoring (seed, space, data, evaluation, search constraints)."""
    paths = RunPaths(config.run_dir)
    digest = hashlib.sha256()
    for path in [*sorted(paths.predictor.rglob("*.json")), paths.supernet]:  # per-skeleton predictors in folders
        with path.open("rb") as handle:
            digest.update(hashlib.file_digest(handle, "sha256").digest())
    settings = config.model_dump(mode="json", include={"seed", "space", "data", "evaluation"})
    settings["data"].pop("test_split", None)  # scored after the search only
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
            study.set_metric_names(METRICS)
        study.set_user_attr("scored_with", digest)
    elif stored != digest:
        raise StudyMismatch(f"{storage_url(config)}: study {config.name!r} holds trials scored with another supernet, "
                            f"latency predictor or scoring settings ({stored}, not {digest}); delete the study "
                            f"(optuna delete-study --study-name {config.name} --storage ...) or give the run another "
                            f"name")
    return study


def scored(study: optuna.Study) -> dict[str, dict]:
    """User attributes (mIoU among them) of every scored subnet, running or complete, by genotype key."""
    return {t.user_attrs["key"]: {**t.user_attrs, "trial": t.number}
            for t in study.get_trials(deepcopy=False, states=RESUMABLE) if "miou" in t.user_attrs}


def add_scored(study: optuna.Study, params: dict[str, str], distributions: dict[str, BaseDistribution],
               attrs: dict) -> None:
    """A scored subnet as a running trial, its mIoU and description in its user attributes (one transaction)."""
    study.add_trial(create_trial(state=TrialState.RUNNING, params=params, distributions=distributions,
                                 user_attrs=_plain(attrs)))


def complete(study: optuna.Study, rows: dict[str, dict]) -> int:
    """Complete the running trials of `rows`' keys with their final latency fields and values (mIoU, latency_ms);
    returns how many. A trial another search sharing the study completed first is left as it is."""
    done = 0
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        row = rows.get(trial.user_attrs.get("key"))
        if row is None:
            continue
        try:
            for name, value in _plain({name: row[name] for name in (*LATENCY_FIELDS, "feasible")}).items():
                study._storage.set_trial_user_attr(trial._trial_id, name, value)  # no public call for a running trial
            study.tell(trial.number, [row["miou"], row["latency_ms"]])
            done += 1
        except UpdateFinishedTrialError:
            continue
    return done


def _plain(attrs: dict) -> dict:
    """JSON-ready user attributes: NaN as None, numpy scalars as Python ones."""
    plain = {}
    for name, value in attrs.items():
        value = value.item() if hasattr(value, "item") else value
        plain[name] = None if isinstance(value, float) and value != value else value
    return plain


def trials_table(study: optuna.Study) -> pd.DataFrame:
    """Every scored subnet (running or complete trial) as one row of COLUMNS, by trial number, from its user
    attributes (Optuna's trials_dataframe)."""
    frame = study.trials_dataframe(attrs=("number", "user_attrs", "state"), multi_index=False)
    if frame.empty or "user_attrs_miou" not in frame:
        return pd.DataFrame(columns=list(COLUMNS))
    frame = frame[frame.state.isin([state.name for state in RESUMABLE]) & frame.user_attrs_miou.notna()]
    frame = frame.rename(columns={"number": "trial"}).rename(columns=lambda name: name.removeprefix("user_attrs_"))
    table = frame.reindex(columns=list(COLUMNS)).sort_values("trial").reset_index(drop=True)
    numeric = [name for name in COLUMNS if name not in ("strategy", "key", "latency_source", "feasible")]
    table[numeric] = table[numeric].apply(pd.to_numeric)
    return table.assign(strategy=table.strategy.replace(RENAMED_STRATEGIES))  # trials stored before the renaming
