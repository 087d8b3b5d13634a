"""Several skeletons in one run (`space.skeleton: [small, large]`): a tiny run end to end (supernets, predictor,
search with the evolution and DNAS, selection, retraining, report), killed with SIGKILL during the second supernet's
training and resumed by the same command; the genome keeps every child a valid genotype of its skeleton."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import pytest
import torch

from engine.config import load
from engine.run import main
from engine.search import operators
from engine.search.genome import Genome
from engine.training import checkpoint
from spaces import Genotype, largest, smallest

TWO = ["space.skeleton=[small,large]", "supernet.steps=4", "supernet.checkpoint_every=2",
       "search.strategies=[evolution,dnas]", "search.dnas.cost=macs", "search.dnas.lambdas=[1.0]",
       "search.dnas.warmup_steps=2", "search.dnas.steps=2", "search.dnas.batch_size=2",
       "search.dnas.checkpoint_every=2"]
KILLER = """
import os, signal, sys
import engine.training.supernet as supernet
from engine.training import trainer
train, step, calls = supernet.train, trainer.train_step, []
def train_killed_in_large(model, batches, settings, out_dir, *args, **kwargs):
    def killing_step(*a, **k):
        calls.append(1)
        if len(calls) == 3:  # large's third step: its checkpoint of step 2 is written
            os.kill(os.getpid(), signal.SIGKILL)
        return step(*a, **k)
    trainer.train_step = killing_step if out_dir.name == "large" else step
    return train(model, batches, settings, out_dir, *args, **kwargs)
supernet.train = train_killed_in_large
from engine.run import main
sys.exit(main(sys.argv[1:]))
"""


def test_the_genome_decodes_every_child_to_a_genotype_of_its_skeleton() -> None:
    genome = Genome(("small", "large"))
    assert genome.choices == [2] + [13] * 22
    for genotype in (largest("small"), smallest("large"), Genotype("small", tuple(range(13)) + (0,) * 7)):
        assert genome.decode(genome.encode(genotype)) == genotype
    x = genome.encode(largest("small"))
    x[21] = 5  # an inert gene of a small genotype
    assert genome.key(x) == largest("small").key
    x[0] = 1  # the child moves to large: its 22 genes are its own
    assert genome.decode(x).skeleton == "large" and len(genome.decode(x).choices) == 22
    algorithm = operators.algorithm(genome.choices, 8, initial=genome.initial(), key=genome.key)
    problem = operators.GenomeProblem(genome.choices)

    def objective(X: np.ndarray):
        genotypes = [genome.decode(x) for x in X]
        return np.array([[-sum(g.choices), len(g.choices)] for g in genotypes]), None

    keys = []
    for X, _ in operators.evolve(algorithm, problem, objective, generations=4, seed=0):
        keys += [genome.key(x) for x in X]
    assert {key.split(":")[0] for key in keys} == {"small", "large"}
    assert len(keys) == len(set(keys))  # never the same genotype twice, whatever its inert genes


def test_two_skeletons_end_to_end_resumed_after_a_kill_in_the_second_supernet(quickstart, run_args, root,
                                                                               tmp_path: Path) -> None:
    command = [quickstart, *run_args, *TWO]
    killed = subprocess.run([sys.executable, "-c", KILLER, *command], cwd=root, capture_output=True)
    assert killed.returncode == -signal.SIGKILL, killed.stderr.decode()[-2000:]
    config = load(quickstart, [*run_args, *TWO])
    paths = config.paths
    assert not paths.supernet.exists()
    assert checkpoint.load(paths.supernet_work("small", True) / "checkpoint.pt")["step"] == 4
    assert checkpoint.load(paths.supernet_work("large", True) / "checkpoint.pt")["step"] == 2
    small_log = paths.supernet_metrics("small", True).read_text()

    again = subprocess.run([sys.executable, "-m", "engine.run", *command], cwd=root, capture_output=True)
    assert again.returncode == 0, again.stderr.decode()[-2000:]  # the same command, as a user reruns it
    assert paths.supernet_metrics("small", True).read_text() == small_log  # finished: reloaded, not trained again
    steps = pd.read_csv(paths.supernet_metrics("large", True)).step.tolist()
    assert steps[-1] == 4 and steps == sorted(set(steps))  # no step logged twice
    straight = load(quickstart, [f"runs_dir={tmp_path / 'straight'}", *run_args[1:], *TWO])
    uninterrupted = [quickstart, f"runs_dir={tmp_path / 'straight'}", *run_args[1:], *TWO, "--stages", "supernet"]
    # in a fresh process too: torch's thread count, which earlier tests in this process may have set, changes the
    # floating-point sums
    assert subprocess.run([sys.executable, "-m", "engine.run", *uninterrupted], cwd=root).returncode == 0
    resumed, uninterrupted = (checkpoint.load(c.paths.supernet)["models"] for c in (config, straight))
    assert resumed.keys() == uninterrupted.keys() == {"small", "large"}
    for name in resumed:
        assert all(torch.equal(resumed[name][k], uninterrupted[name][k]) for k in resumed[name])

    evaluations = pd.read_csv(paths.evaluations)
    skeletons = evaluations.skeleton
    assert set(skeletons[evaluations.reference.isna()]) == {"small", "large"}
    assert set(evaluations.reference.dropna()) == {"lat_small", "mac_small", "lat_large", "mac_large"}
    dnas = pd.read_csv(paths.dnas)
    assert set(dnas.skeleton) == {"small", "large"}
    study = optuna.load_study(study_name=config.name, storage=f"sqlite:///{paths.study}")
    assert {t.params["skeleton"] for t in study.trials} == {"small", "large"}
    assert all(t.params["skeleton"] == t.user_attrs["key"].split(":")[0] for t in study.trials)
    accuracy = json.loads(paths.accuracy.read_text())
    assert set(accuracy["per_skeleton"]) == {"small", "large"}
    front = pd.read_csv(paths.front)
    picked = json.loads(paths.selection.read_text())["picked"]
    assert picked and all(pick["key"] in set(front.key) for pick in picked)
    for pick in picked:
        assert json.loads(paths.picked_metrics(pick["label"]).read_text())["key"] == pick["key"]
    report = paths.report.read_text()
    assert "skeleton large" in report and "small + large" in report


@pytest.mark.parametrize("skeletons", ["[small,small]", "[small,fbnet_cifar]", "[]"])
def test_a_bad_list_of_skeletons_is_one_line(quickstart, run_args, capsys, skeletons: str) -> None:
    assert main([quickstart, *run_args, f"space.skeleton={skeletons}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "space.skeleton" in err[0]
