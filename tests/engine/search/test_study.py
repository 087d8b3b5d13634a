"""The trial store: a study kept outside the run directory (search.storage) is not reused once the supernet it was
scored with changes; Optuna's trials_dataframe gives the evaluations table."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from engine.run import main

UP_TO_SEARCH = ["--stages", "space,supernet,latency,search"]


def test_a_study_elsewhere_is_refused_after_the_supernet_changes(quickstart, run_args, tmp_path: Path,
                                                                   capsys) -> None:
    storage = f"search.storage=sqlite:///{tmp_path / 'elsewhere.db'}"
    assert main([quickstart, *run_args, storage, *UP_TO_SEARCH]) == 0
    evaluations = pd.read_csv(tmp_path / "quickstart" / "evaluations.csv")
    assert len(evaluations) >= 6 and evaluations.trial.is_monotonic_increasing
    capsys.readouterr()
    assert main([quickstart, *run_args, storage, "supernet.steps=3", *UP_TO_SEARCH]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "scored with another supernet" in err[0] and "delete the study" in err[0], err
