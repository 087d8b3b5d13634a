"""The accuracy surrogate: the regressor chosen by cross-validated rank correlation ranks unseen subnets of a
synthetic problem; the surrogate loop end to end on a tiny run (only true evaluations become trials, each its
subnet's true inherited mIoU); a run killed with SIGKILL inside a surrogate round resumes to the same front
without scoring anything twice; pymoo's other algorithms run the search; a round's batch is what adds most
hypervolume (optimistically) to the true front, or the surrogate's front spread over latency; the local candidates
are one- or two-layer mutants of the true front's points."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import optuna
import pandas as pd
import pytest

from engine.config import load
from engine.evaluation.inherited import evaluator_for
from engine.run import main
from engine.search.fronts import hypervolume
from engine.search.surrogate import MUTANTS, SurrogateSearch
from engine.training.supernet import load_supernets
from predictors.accuracy import AccuracySurrogate
from predictors.evaluation import kendall
from spaces import Genotype

SURROGATE = ["search.accuracy_surrogate.enabled=true", "search.accuracy_surrogate.initial=8",
             "search.accuracy_surrogate.per_round=4", "search.rounds=2", "search.generations=3",
             "search.accuracy_surrogate.kinds=[ridge,trees]", "search.accuracy_surrogate.members=3",
             "search.accuracy_surrogate.local=2",
             "evaluation.val_images=4"]
KILLER = """
import os, signal, sys
from engine.search.evolution import EvolutionarySearch
store, stored = EvolutionarySearch.store, []
def killing(self, *args):
    store(self, *args)
    stored.append(1)
    if len(stored) == 10:  # the initial 8, then 2 of the first round's 4
        os.kill(os.getpid(), signal.SIGKILL)
EvolutionarySearch.store = killing
from engine.run import main
sys.exit(main(sys.argv[1:]))
"""


def additive(rows: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.integers(0, 2, size=(rows, 30)).astype(float)
    weights = np.linspace(0.0, 1.0, 30)
    return X, X @ weights + 0.05 * rng.standard_normal(rows)


def test_the_surrogate_ranks_unseen_rows_and_says_where_it_is_unsure() -> None:
    X, y = additive(120, 0)
    surrogate = AccuracySurrogate(members=3, seed=0).fit(X[:80], y[:80])
    mean, std = surrogate.predict(X[80:])
    assert surrogate.kind in surrogate.scores and surrogate.scores[surrogate.kind] == max(surrogate.scores.values())
    assert kendall(y[80:], mean) > 0.7 and mean.shape == std.shape == (40,) and (std > 0).all()
    far = np.full((1, 30), 5.0)  # far outside what it has seen
    assert surrogate.predict(far)[1][0] > np.median(std)
    again = AccuracySurrogate(members=3, seed=0).fit(X[:80], y[:80]).predict(X[80:])[0]
    np.testing.assert_array_equal(again, mean)


def one_hot(rows: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A search's encoding (20 layers x 13 candidates, one-hot) and an additive mIoU around 0.2."""
    rng = np.random.default_rng(seed)
    choices = rng.integers(0, 13, size=(rows, 20))
    X = np.eye(13)[choices].reshape(rows, -1)
    return X, 0.2 + X @ rng.normal(0.0, 0.01, X.shape[1]) + rng.normal(0.0, 0.005, rows)


@pytest.mark.parametrize("kind", ["ridge", "gp", "trees", "mlp"])
def test_each_kind_predicts_unseen_subnets_on_the_scale_of_what_it_saw(kind: str) -> None:
    """From 30 rows, where most one-hot columns are rarely 1: the error on unseen rows stays within the target's
    spread (a standardised-input MLP erred by ~0.5 mIoU here)."""
    X, y = one_hot(230, 2)
    mean, _ = AccuracySurrogate((kind,), members=2, seed=0).fit(X[:30], y[:30]).predict(X[30:])
    assert np.mean(np.abs(mean - y[30:])) < 1.5 * np.std(y)


@pytest.mark.parametrize("kinds, rows, message", [(("boosting",), 20, "unknown surrogate kind"),
                                                  (("ridge",), 5, "at least 8 rows")])
def test_bad_surrogate_input_says_what(kinds, rows: int, message: str) -> None:
    X, y = additive(rows, 1)
    with pytest.raises(ValueError, match=message):
        AccuracySurrogate(kinds).fit(X, y)


@pytest.fixture(scope="module")
def surrogate_runs(tmp_path_factory, quickstart: str, fast: list[str]) -> tuple[Path, list[str]]:
    """A run after space, supernet and latency ('base'), and a copy searched with the surrogate ('whole')."""
    root = tmp_path_factory.mktemp("surrogate")
    args = [f"latency.store={root / 'store'}", *fast, *SURROGATE]
    assert main([quickstart, f"runs_dir={root / 'base'}", *args, "--stages", "space,supernet,latency"]) == 0
    shutil.copytree(root / "base", root / "whole")
    assert main([quickstart, f"runs_dir={root / 'whole'}", *args, "--stages", "search"]) == 0
    return root, args


def keys(run: Path) -> list[str]:
    study = optuna.load_study(study_name=run.name, storage=f"sqlite:///{run / 'study.db'}")
    return [t.user_attrs["key"] for t in study.trials]


def selection_loop() -> SurrogateSearch:
    """A SurrogateSearch over a stand-in search: hypervolume of (-mIoU, latency / 10 ms), feasible rows only."""
    def volume(rows: list[dict]) -> float:
        return hypervolume(np.array([[-r["miou"], r["latency_ms"] / 10] for r in rows if r["feasible"]]), [0.0, 1.0])

    config = SimpleNamespace(seed=0, search=SimpleNamespace(accuracy_surrogate=None))
    return SurrogateSearch(SimpleNamespace(config=config, hypervolume=volume))


def point(latency_ms: float, feasible: bool = True) -> dict:
    return {"latency_ms": latency_ms, "feasible": feasible, "miou": 0.0}


def test_a_round_s_batch_is_what_adds_most_hypervolume_to_the_true_front() -> None:
    loop = selection_loop()
    known = [{**point(5.0), "miou": 0.30}]
    rows = [point(6.0), point(5.0), point(2.0), point(9.0, feasible=False), point(2.1)]
    optimistic = np.array([0.20, 0.35, 0.31, 0.90, 0.31])
    # 2 adds most, then 1; 4 would add nearly as much as 2 alone but nothing once 2 is taken (as good, slower);
    # 0 is dominated and 3 infeasible: the batch stops short
    assert loop.gains(rows, optimistic, known, 5) == [2, 1]
    assert loop.gains(rows, optimistic, known, 1) == [2]
    assert loop.gains(rows, np.array([0.2, 0.3, 0.1, 0.9, 0.1]), [*known, {**point(1.0), "miou": 0.3}], 3) == []
    # the local slots first (among 3 and 4, as choose() takes the mutants), then any candidate after them
    assert loop.gains(rows, optimistic, known, 1, among=range(3, 5)) == [4]
    assert loop.gains(rows, optimistic, known, 3, picked=[4]) == [4, 1, 2]


def test_the_spread_selection_takes_the_surrogate_front_spread_over_latency() -> None:
    rows = [point(ms) for ms in (1.0, 2.0, 3.0, 4.0, 5.0, 4.5)]
    mean = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.3])  # the last is dominated
    picked = selection_loop().spread_front(rows, mean, 3, 1)
    assert len(picked) == 3 and 5 not in picked and {0, 4} <= set(picked)


def test_local_candidates_are_mutants_of_the_true_front_only() -> None:
    names = [f"c{i}" for i in range(13)]
    config = SimpleNamespace(seed=0, search=SimpleNamespace(accuracy_surrogate=SimpleNamespace(local=2)))
    loop = SurrogateSearch(SimpleNamespace(config=config, genome=SimpleNamespace(names=names)))
    good, bad, cheap = Genotype("small", (7,) * 20), Genotype("small", (3,) * 20), Genotype("small", (12,) * 20)
    seen = {g.key: {"key": g.key, "miou": m, "latency_ms": ms, "feasible": True}
            for g, m, ms in ((good, 0.4, 3.0), (bad, 0.2, 3.5), (cheap, 0.1, 1.0))}
    found = loop.neighbours(seen, 1)
    assert len(found) == 2 * MUTANTS and found == loop.neighbours(seen, 1) and found != loop.neighbours(seen, 2)
    for parent, mutants in ((good, found[:MUTANTS]), (cheap, found[MUTANTS:])):  # the dominated one has none
        changed = [sum(a != b for a, b in zip(parent.choices, g.choices)) for g in mutants]
        assert all(1 <= n <= 2 for n in changed) and all(g.skeleton == "small" for g in mutants)


def test_the_inner_search_starts_from_the_feasible_front_then_the_rest_by_latency() -> None:
    config = SimpleNamespace(seed=0, search=SimpleNamespace(accuracy_surrogate=None, population=3))
    genome = SimpleNamespace(encode=lambda g: np.array(g.choices[:1]))
    loop = SurrogateSearch(SimpleNamespace(config=config, genome=genome))
    rows = [(0, 0.4, 3.0, True), (1, 0.9, 1.0, False), (2, 0.2, 3.5, True), (3, 0.1, 1.0, True), (4, 0.3, 2.0, True)]
    seen = {f"small:{'-'.join([str(c)] * 20)}": {"key": f"small:{'-'.join([str(c)] * 20)}", "miou": m, "latency_ms": ms,
                                                "feasible": ok} for c, m, ms, ok in rows}
    # the infeasible 1 dominates everything but is no front point; the front is 3, 4, 0 (by latency); population 3
    assert loop.seeds(seen)[:, 0].tolist() == [3, 4, 0]
    config.search.population = 5
    assert loop.seeds(seen)[:, 0].tolist() == [3, 4, 0, 1, 2]


def test_only_true_evaluations_become_trials(quickstart, surrogate_runs) -> None:
    root, args = surrogate_runs
    run = root / "whole" / "quickstart"
    trials = keys(run)
    assert len(trials) == len(set(trials)) == 8 + 2 * 4
    table = pd.read_csv(run / "search" / "surrogate.csv")
    assert table["round"].tolist() == [1, 2] and table.batch.tolist() == [4, 4]
    assert table.evaluations.tolist() == [12, 16] and set(table.kind) <= {"ridge", "trees"}
    evaluated = pd.read_csv(run / "evaluations.csv")
    for number, local in zip(table["round"], table.local):  # a mutant is 1-2 layers from a subnet evaluated before
        earlier = [Genotype.from_key(k).choices for k in evaluated.key[evaluated.generation < number]]
        near = sum(min(sum(a != b for a, b in zip(Genotype.from_key(k).choices, e)) for e in earlier) <= 2
                   for k in evaluated.key[evaluated.generation == number])
        assert 0 <= local <= near
    assert json.loads((run / "search_cost.json").read_text())["evolution"]["search_s"] > 0  # the loop's time, as the evolution's
    config = load(quickstart, [f"runs_dir={root / 'whole'}", *args])
    evaluator = evaluator_for(config, load_supernets(config, "cpu"), "cpu")
    evaluations = pd.read_csv(run / "evaluations.csv")
    for key, miou in zip(evaluations.key, evaluations.miou):  # each the subnet's true inherited mIoU
        assert miou == pytest.approx(evaluator.score(Genotype.from_key(key))["miou"], abs=1e-9)
    assert main([quickstart, f"runs_dir={root / 'whole'}", *args, "--stages", "report"]) == 0
    page = (run / "report.html").read_text()
    section = page[page.index("<h2>Accuracy surrogate per round</h2>"):]
    assert section[: section.index("</table>")].count("<tr>") == 1 + 2  # the header and one row per round


def test_a_search_killed_in_a_surrogate_round_resumes_to_the_same_front(quickstart, root, surrogate_runs) -> None:
    base, args = surrogate_runs
    shutil.copytree(base / "base", base / "killed")
    command = [quickstart, f"runs_dir={base / 'killed'}", *args, "--stages", "search"]
    killed = subprocess.run([sys.executable, "-c", KILLER, *command], cwd=root, capture_output=True)
    assert killed.returncode == -signal.SIGKILL, killed.stderr.decode()[-2000:]
    run = base / "killed" / "quickstart"
    before = keys(run)
    assert len(before) == 10
    assert main(command) == 0
    after = keys(run)
    assert after[:10] == before and len(after) == len(set(after)) == 16
    columns = ["key", "miou", "latency_ms"]
    pd.testing.assert_frame_equal(pd.read_csv(run / "front.csv")[columns],
                                  pd.read_csv(base / "whole" / "quickstart" / "front.csv")[columns])


@pytest.mark.parametrize("name", ["smsemoa", "unsga3"])
def test_other_pymoo_algorithms_run_the_search(name: str, quickstart, surrogate_runs) -> None:
    """On a copy of the shared store: another algorithm takes another path, and a stored measurement above its
    interval there is measured again and the lower kept (search.recheck), which would change, by the host's timing
    noise, the measurements the later searches compared with 'whole' read."""
    base, args = surrogate_runs
    shutil.copytree(base / "base", base / name)
    shutil.copytree(base / "store", base / f"store-{name}")
    plain = [arg for arg in args if not arg.startswith(("search.accuracy_surrogate", "latency.store="))]
    plain.append(f"latency.store={base / f'store-{name}'}")
    assert main([quickstart, f"runs_dir={base / name}", *plain, f"search.algorithm={name}", "--stages", "search"]) == 0
    evaluations = pd.read_csv(base / name / "quickstart" / "evaluations.csv")
    assert len(evaluations) >= 6 and evaluations.front.any()


def test_a_surrogate_round_scored_by_dask_workers_finds_the_same_front(quickstart, surrogate_runs) -> None:
    base, args = surrogate_runs
    shutil.copytree(base / "base", base / "dask")
    assert main([quickstart, f"runs_dir={base / 'dask'}", *args, "search.workers=2", "--stages", "search"]) == 0
    columns = ["key", "miou", "latency_ms"]
    # a Dask worker scores with one thread, the whole run with the process's threads: mIoU agrees to float rounding
    pd.testing.assert_frame_equal(pd.read_csv(base / "dask" / "quickstart" / "front.csv")[columns],
                                  pd.read_csv(base / "whole" / "quickstart" / "front.csv")[columns],
                                  check_exact=False, rtol=1e-4)
    assert sorted(keys(base / "dask" / "quickstart")) == sorted(keys(base / "whole" / "quickstart"))
