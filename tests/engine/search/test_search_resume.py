"""A search killed with SIGKILL resumes without scoring a finished trial again and ends on the same front (killed
while scoring, during a round's measurements, during a refit: nothing measured twice); Dask workers find the same
front as one process; a latency constraint keeps the front feasible; through a device agent, the rounds measure."""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pandas as pd
import pytest

from engine.run import main
from hardware.store import MeasurementKey

SEARCH = ["search.population=8", "search.generations=5", "evaluation.val_images=8"]


def scored_trials(db: Path) -> int:
    """Trials stored so far (a scored subnet is a running trial until the search completes it)."""
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(db, timeout=1) as connection:
            return connection.execute("SELECT COUNT(*) FROM trials").fetchone()[0]
    except sqlite3.OperationalError:  # the tables are not created yet, or the file is locked for a moment
        return 0


def overrides(runs: Path, store: Path, fast: list[str]) -> list[str]:
    return [f"runs_dir={runs}", f"latency.store={store}", *fast, *SEARCH]


def study_of(run: Path) -> optuna.Study:
    return optuna.load_study(study_name=run.name, storage=f"sqlite:///{run / 'study.db'}")


def trial_keys(run: Path) -> list[str]:
    return [t.user_attrs["key"] for t in study_of(run).trials]


KILLER = """
import os, signal, sys
from engine.latency.meter import Meter
from engine.run import main
from hardware.store import MeasurementKey
from engine.search import rounds

if sys.argv[1] == "measuring":  # SIGKILL at the search's third measurement: two of the first round are stored
    measure_network, calls = Meter.measure_network, []
    def killing(self, network):
        calls.append(network)
        if len(calls) == 3:
            os.kill(os.getpid(), signal.SIGKILL)
        return measure_network(self, network)
    Meter.measure_network = killing
else:  # SIGKILL while the second round's refit is being saved: half its files written
    save = rounds.save_latency_model
    def killing(model, folder):
        if folder.name == "round_02":
            model.regressor.save(folder.with_name(".round_02.partial"))
            os.kill(os.getpid(), signal.SIGKILL)
        save(model, folder)
    rounds.save_latency_model = killing
sys.exit(main(sys.argv[2:]))
"""


def store_rows(store: Path) -> pd.DataFrame:
    (path,) = store.glob("*.csv")
    return pd.read_csv(path)


@pytest.fixture(scope="module")
def searched(tmp_path_factory, quickstart: str, fast: list[str]) -> Path:
    """A run directory after space, supernet and latency, and a copy of it searched uninterrupted ('whole')."""
    root = tmp_path_factory.mktemp("search")
    assert main([quickstart, *overrides(root / "base", root / "store", fast),
                 "--stages", "space,supernet,latency"]) == 0
    shutil.copytree(root / "store", root / "store_base")  # the latency stage's measurements only
    shutil.copytree(root / "base", root / "whole")
    assert main([quickstart, *overrides(root / "whole", root / "store", fast), "--stages", "search"]) == 0
    return root


def front(run: Path) -> pd.DataFrame:
    columns = ["key", "miou", "latency_ms"]
    return pd.read_csv(run / "front.csv")[columns].sort_values("key").reset_index(drop=True)


def test_killed_search_resumes_to_the_same_front(fast, quickstart, root, searched: Path) -> None:
    store = searched / "store"
    shutil.copytree(searched / "base", searched / "killed")
    whole = searched / "whole" / "quickstart"
    total = len(trial_keys(whole))

    killed = searched / "killed" / "quickstart"
    command = [sys.executable, "-m", "engine.run", quickstart, *overrides(searched / "killed", store, fast),
               "--stages", "search"]
    process = subprocess.Popen(command, cwd=root, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
    deadline = time.monotonic() + 240
    while scored_trials(killed / "study.db") < 10 and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    before = trial_keys(killed)
    assert 10 <= len(before) < total and not (killed / "front.csv").exists()

    assert main([quickstart, *overrides(searched / "killed", store, fast), "--stages", "search"]) == 0
    after = trial_keys(killed)
    assert after[: len(before)] == before and len(after) == len(set(after)) == total
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in study_of(killed).trials)
    pd.testing.assert_frame_equal(front(killed), front(whole))
    hypervolume = [pd.read_csv(run / "hypervolume.csv") for run in (killed, whole)]
    pd.testing.assert_frame_equal(*hypervolume)


@pytest.mark.parametrize("where", ["measuring", "refit"])
def test_a_search_killed_in_a_round_resumes_without_measuring_or_scoring_twice(fast, quickstart, root, where: str,
                                                                               searched: Path) -> None:
    """SIGKILL during a round's measurements or its refit; the same command finishes without measuring a genotype
    again (one store row per genotype, two for one measured twice by search.recheck) or scoring a trial twice, and an
    uninterrupted search given the same measurements ends on the same front."""
    runs, store = searched / f"kill-{where}", searched / f"store-{where}"
    shutil.copytree(searched / "base", runs)
    shutil.copytree(searched / "store_base", store)
    command = [quickstart, *overrides(runs, store, fast), "--stages", "search"]
    killed = subprocess.run([sys.executable, "-c", KILLER, where, *command], cwd=root, capture_output=True)
    assert killed.returncode == -signal.SIGKILL, killed.stderr.decode()[-2000:]
    run = runs / "quickstart"
    before = trial_keys(run)
    assert before and not (run / "front.csv").exists()
    assert main(command) == 0
    after = trial_keys(run)
    assert after[: len(before)] == before and len(after) == len(set(after))
    rows = store_rows(store)
    # one row per genotype, or two when its first measurement lay above its interval (search.recheck): the later
    # row is then the kept one and says so
    twice = rows[rows.duplicated(list(MeasurementKey._fields), keep=False)]
    assert twice.groupby(list(MeasurementKey._fields)).size().le(2).all()
    assert twice.drop_duplicates(list(MeasurementKey._fields), keep="last").provenance.str.contains('"recheck"').all()
    measured = pd.read_csv(run / "search" / "measurements.csv")
    assert measured.first_ms.notna().sum() == twice.genotype.nunique()
    rounds = pd.read_csv(run / "search" / "rounds.csv")
    front_rows = pd.read_csv(run / "front.csv")
    assert rounds.measured.sum() == len(pd.read_csv(run / "search" / "measurements.csv")) > 0
    assert (front_rows.latency_source == "measured").all() and front_rows.measured_ms.notna().all()

    again = searched / f"again-{where}"
    shutil.copytree(searched / "base", again)
    assert main([quickstart, *overrides(again, store, fast), "--stages", "search"]) == 0
    assert len(store_rows(store)) == len(rows)  # everything was measured already
    pd.testing.assert_frame_equal(front(again / "quickstart"), front(run))


def test_dask_workers_find_the_same_front(fast, quickstart, searched: Path) -> None:
    shutil.copytree(searched / "base", searched / "dask")
    assert main([quickstart, *overrides(searched / "dask", searched / "store", fast), "search.workers=2",
                 "--stages", "search"]) == 0
    # one thread per Dask worker, the process's threads in the whole run: mIoU agrees to float rounding
    pd.testing.assert_frame_equal(front(searched / "dask" / "quickstart"), front(searched / "whole" / "quickstart"),
                                  check_exact=False, rtol=1e-4)
    assert (searched / "dask" / "quickstart" / "dask").is_dir()  # the cluster's scratch: in the run, not /tmp


def test_latency_constraint_keeps_the_front_feasible(fast, quickstart, searched: Path) -> None:
    """On a copy of the shared store: this search takes another path, and a stored measurement above its interval
    there is measured again and the lower kept (search.recheck), which would change, by the host's timing noise, the
    measurements the later searches compared with 'whole' read."""
    shutil.copytree(searched / "base", searched / "limited")
    shutil.copytree(searched / "store", searched / "store-limited")
    whole = pd.read_csv(searched / "whole" / "quickstart" / "evaluations.csv")
    limit = float(whole.latency_ms.median())
    assert main([quickstart, *overrides(searched / "limited", searched / "store-limited", fast),
                 f"search.constraints.max_latency_ms={limit}", "--stages", "search"]) == 0
    evaluations = pd.read_csv(searched / "limited" / "quickstart" / "evaluations.csv")
    assert (evaluations.feasible == (evaluations.latency_ms <= limit)).all()
    assert evaluations.front.any() and (evaluations[evaluations.front].latency_ms <= limit).all()


def server_trials(postgres: str, name: str) -> list[str]:
    """Genotype keys of the stored trials of study `name` on the server (none while it does not exist yet)."""
    try:
        study = optuna.load_study(study_name=name, storage=postgres)
    except KeyError:
        return []
    return [t.user_attrs["key"] for t in study.get_trials(deepcopy=False)]


def test_a_search_on_postgresql_with_dask_workers_killed_resumes_to_the_sqlite_front(
        fast, quickstart, root, searched: Path, postgres: str) -> None:
    """The supported way to parallelise: the study on a PostgreSQL server, subnets scored by 2 Dask workers; killed
    with SIGKILL after 10 trials, the same command resumes and ends on the front one process finds with SQLite."""
    shutil.copytree(searched / "base" / "quickstart", searched / "pg" / "pgkill")
    command = [quickstart, *overrides(searched / "pg", searched / "store", fast), "name=pgkill",
               f"search.storage={postgres}", "search.workers=2", "--stages", "search"]
    process = subprocess.Popen([sys.executable, "-m", "engine.run", *command], cwd=root, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 240
    while len(server_trials(postgres, "pgkill")) < 10 and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    before = server_trials(postgres, "pgkill")
    whole = searched / "whole" / "quickstart"
    assert 10 <= len(before) < len(trial_keys(whole))
    assert main(command) == 0
    after = server_trials(postgres, "pgkill")
    assert after[: len(before)] == before and sorted(after) == sorted(trial_keys(whole))
    pd.testing.assert_frame_equal(front(searched / "pg" / "pgkill"), front(whole), check_exact=False, rtol=1e-4)
