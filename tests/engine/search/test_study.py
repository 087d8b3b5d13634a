"""The trial store: a study kept outside the run directory (search.storage) is not reused once the supernet it was
scored with changes; Optuna's trials_dataframe gives the evaluations table."""

from __future__ import annotations

import shutil
from pathlib import Path

import optuna
import pandas as pd

from engine.run import main
from engine.search.evolution import search_seconds
from engine.search.study import add_scored, trials_table

UP_TO_SEARCH = ["--stages", "space,supernet,latency,search"]


def test_a_study_elsewhere_is_refused_after_the_supernet_changes(quickstart, run_args, tmp_path: Path,
                                                                   capsys) -> None:
    storage = f"search.storage=sqlite:///{tmp_path / 'elsewhere.db'}"
    assert main([quickstart, *run_args, storage, *UP_TO_SEARCH]) == 0
    evaluations = pd.read_csv(tmp_path / "quickstart" / "evaluations.csv")
    evaluations = evaluations[evaluations.reference.isna()]  # the trials, without the released networks' rows
    assert len(evaluations) >= 6 and evaluations.trial.is_monotonic_increasing
    capsys.readouterr()
    assert main([quickstart, *run_args, storage, "supernet.steps=3", *UP_TO_SEARCH]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "scored with another supernet" in err[0] and "delete the study" in err[0], err


def test_a_study_on_a_postgresql_server_gives_the_sqlite_front(quickstart, run_args, tmp_path: Path,
                                                               postgres: str) -> None:
    """search.storage on a real PostgreSQL server (a throwaway one): the same trials and front as SQLite from the
    same supernet and predictor, and a rerun of the search replays from the server without scoring again."""
    assert main([quickstart, *run_args, "--stages", "space,supernet,latency"]) == 0
    shutil.copytree(tmp_path / "quickstart", tmp_path / "pg" / "quickstart")
    assert main([quickstart, *run_args, "--stages", "search"]) == 0
    on_server = [quickstart, *run_args, f"runs_dir={tmp_path / 'pg'}", f"search.storage={postgres}"]
    assert main([*on_server, "--stages", "search"]) == 0
    lite, pg = (pd.read_csv(run / "quickstart" / "evaluations.csv") for run in (tmp_path, tmp_path / "pg"))
    columns = ["key", "miou", "latency_ms", "front"]
    pd.testing.assert_frame_equal(lite[columns], pg[columns])
    assert len(optuna.load_study(study_name="quickstart", storage=postgres).trials) == pg.reference.isna().sum()
    assert not (tmp_path / "pg" / "quickstart" / "study.db").exists()
    (tmp_path / "pg" / "quickstart" / "front.csv").unlink()  # the search reruns: a replay from the server
    assert main([*on_server, "--stages", "search"]) == 0
    assert len(optuna.load_study(study_name="quickstart", storage=postgres).trials) == pg.reference.isna().sum()


def test_trials_and_time_stored_under_the_old_strategy_name_read_as_the_evolution() -> None:
    """A study made when the evolution strategy was called nsga2 (its trials' strategy, nsga2_seconds) resumes."""
    study = optuna.create_study(directions=["maximize", "minimize"])
    distribution = {"layer_0": optuna.distributions.CategoricalDistribution(["a", "b"])}
    for strategy, key in (("nsga2", "small:0"), ("dnas", "small:1")):
        add_scored(study, {"layer_0": "a"}, distribution, {"key": key, "miou": 0.5, "strategy": strategy})
    study.set_user_attr("nsga2_seconds", 12.5)
    assert trials_table(study).strategy.tolist() == ["evolution", "dnas"]
    assert search_seconds(study) == 12.5
