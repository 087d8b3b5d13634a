"""The stage runner: skips what is current, reruns what a change reaches, names the stage to run first, rewrites a
half-written artefact; atomic writes; the configuration module loads without torch; the README lists the stages."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from engine.config import load
from engine.files import atomic, write_text
from engine.run import STAGE_NAMES, main
from engine.runner import Context, Runner, Stage, config_digest, config_sections, settings_digest, upgraded
from engine.training.distributed import World

UP_TO_REPORT = "space,supernet,latency,search,select,report"


@pytest.fixture(scope="module")
def finished(tmp_path_factory, quickstart: str, fast: list[str]) -> Path:
    """runs_dir of a fast quickstart run through select and report (no retraining), shared by the tests below."""
    runs = tmp_path_factory.mktemp("runner")
    assert main([quickstart, f"runs_dir={runs}", f"latency.store={runs / 'store'}", *fast,
                 "--stages", UP_TO_REPORT]) == 0
    return runs


@pytest.fixture
def runs(finished: Path, tmp_path: Path) -> Path:
    """A private copy of the finished run (the measurement store stays shared)."""
    shutil.copytree(finished / "quickstart", tmp_path / "quickstart")
    return tmp_path


def again(quickstart: str, fast: list[str], runs: Path, finished: Path, *extra: str) -> int:
    return main([quickstart, f"runs_dir={runs}", f"latency.store={finished / 'store'}", *fast, *extra])


def stamps(run: Path) -> dict[str, int]:
    return {path.name: path.stat().st_mtime_ns for path in (run / "stages").glob("*.json")}


def without_ids(page: str) -> str:
    """The page without Plotly's random div ids."""
    return re.sub(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", "id", page)


def test_a_finished_run_skips_every_stage(quickstart, fast, runs: Path, finished: Path) -> None:
    run = runs / "quickstart"
    before = stamps(run)
    assert set(before) == {f"{name}.json" for name in UP_TO_REPORT.split(",")}
    assert again(quickstart, fast, runs, finished, "--stages", UP_TO_REPORT) == 0
    assert stamps(run) == before
    log = (run / "run.log").read_text()
    assert "stage search: skipped (done and current)" in log and "stage report: finished in" in log


def test_a_new_stage_upstream_refreshes_the_report(quickstart, fast, runs: Path, finished: Path) -> None:
    run = runs / "quickstart"
    assert "Proxy fidelity audit" not in (run / "report.html").read_text()
    before = stamps(run)
    assert again(quickstart, fast, runs, finished, "audit.enabled=true", "audit.genotypes=3", "audit.train.steps=2",
                 "audit.baseline=false", "--stages", "audit,report") == 0
    after = stamps(run)
    assert after["report.json"] != before["report.json"] and "audit.json" in after
    page = (run / "report.html").read_text()
    assert "Proxy fidelity audit" in page and "audit/audit.csv not found" not in page


def test_a_changed_setting_reruns_its_stage_and_those_after_it(quickstart, fast, runs: Path, finished: Path) -> None:
    run = runs / "quickstart"
    before = stamps(run)
    assert again(quickstart, fast, runs, finished, "selection.budgets_ms={fast: 1000}", "selection.budgets_span={}",
                 "--stages", UP_TO_REPORT) == 0
    after = stamps(run)
    assert {name for name in before if after[name] != before[name]} == {"select.json", "report.json"}
    picked = json.loads((run / "selected" / "selection.json").read_text())["picked"]
    assert [entry["label"] for entry in picked] == ["fast"]
    assert "starting over (its configuration changed)" in (run / "run.log").read_text()


def test_a_changed_output_upstream_reruns_what_reads_it(quickstart, fast, runs: Path, finished: Path) -> None:
    """front.csv edited by hand: the search stage rewrites it (its study resumes: nothing is scored again)."""
    run = runs / "quickstart"
    front = (run / "front.csv").read_text()
    (run / "front.csv").write_text(front.splitlines()[0] + "\n")
    before = stamps(run)
    assert again(quickstart, fast, runs, finished, "--stages", UP_TO_REPORT) == 0
    assert (run / "front.csv").read_text() == front
    after = stamps(run)
    assert {name for name in before if after[name] != before[name]} == {"search.json", "report.json"}


def test_a_corrupt_retrain_result_is_redone(quickstart, fast, runs: Path, finished: Path) -> None:
    """selected/<label>/metrics.json truncated: the retrain stage redoes that label (its weights are kept) instead of
    reading the broken file as done."""
    run = runs / "quickstart"
    assert again(quickstart, fast, runs, finished, "--stages", "retrain") == 0
    label = json.loads((run / "selected" / "selection.json").read_text())["picked"][0]["label"]
    metrics = run / "selected" / label / "metrics.json"
    whole = json.loads(metrics.read_text())
    metrics.write_text(metrics.read_text()[:20])
    assert again(quickstart, fast, runs, finished, "--stages", "retrain") == 0
    redone = json.loads(metrics.read_text())
    assert (redone["key"], redone["retrained_miou"]) == (whole["key"], whole["retrained_miou"])
    assert "removing selected/" in (run / "run.log").read_text()


def test_a_report_killed_mid_write_is_rewritten(quickstart, fast, runs: Path, finished: Path) -> None:
    run = runs / "quickstart"
    whole = (run / "report.html").read_text().replace(str(finished / "quickstart"), str(run))  # names its folder
    for broken in ("", whole[: len(whole) // 2]):  # what a plain write killed early or half-way leaves
        (run / "report.html").write_text(broken)
        assert again(quickstart, fast, runs, finished, "--stages", UP_TO_REPORT) == 0
        assert without_ids((run / "report.html").read_text()) == without_ids(whole)


@pytest.mark.parametrize("broken, message", [
    (("study.db",), "not a readable Optuna storage"),
    (("supernet.pt", "supernet/checkpoint.pt"), "not a readable checkpoint"),
])
def test_a_corrupt_file_the_run_needs_is_one_line(quickstart, fast, runs: Path, finished: Path, broken, message,
                                                   capsys) -> None:
    run = runs / "quickstart"
    for name in broken:
        (run / name).write_bytes(b"\x00garbage" * 10)
    (run / "front.csv").unlink()  # the search reruns and opens its study
    capsys.readouterr()
    assert again(quickstart, fast, runs, finished, "--stages", UP_TO_REPORT) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(run / broken[-1]) in err[0] and message in err[0], err


def test_select_on_an_empty_run_names_the_stage_to_run_first(quickstart, run_args, tmp_path: Path, capsys) -> None:
    assert main([quickstart, *run_args, "--stages", "select"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "front.csv" in err[0] and "run stage search first" in err[0], err
    assert "(--stages supernet,latency,search,select, or no --stages)" in err[0], err  # the whole chain
    assert main([quickstart, *run_args, "--stages", "search"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "run stage supernet first" in err[0], err
    assert main([quickstart, *run_args, "--stages", "supernet,search"]) == 2  # the supernet runs: latency is missing
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "run stage latency first (--stages supernet,latency,search," in err[0], err


def test_an_atomic_write_interrupted_keeps_the_old_file(tmp_path: Path) -> None:
    path = write_text(tmp_path / "marker.json", "old")
    with pytest.raises(KeyboardInterrupt):
        with atomic(path) as handle:
            handle.write("half of the new")
            raise KeyboardInterrupt
    assert path.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["marker.json"]


def test_the_config_module_loads_without_torch() -> None:
    code = "import sys, engine.config; print(sorted(m for m in ('torch', 'numpy', 'pandas') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_the_readme_lists_the_runners_stages(root: Path) -> None:
    """README's stage table (name and purpose; docs/ARCHITECTURE.md has the full one) lists STAGES in order."""
    readme = (root / "README.md").read_text()
    table = readme[readme.index("| stage | what it does |"):].split("\n\n")[0]
    rows = [re.match(r"\| (\w+)", line).group(1) for line in table.splitlines()[2:]]
    assert tuple(rows) == STAGE_NAMES


def test_two_processes_under_torchrun_run_and_then_skip_every_stage(quickstart, run_args, tmp_path: Path,
                                                                     root: Path) -> None:
    """torchrun with 2 gloo processes: supernet and retraining on both ranks, the rest on rank 0, a barrier after
    each stage; the same command again skips everything (the main rank decides for both)."""
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "-m", "engine.run", quickstart,
               *run_args, "--stages", "space,supernet,latency,search,select,retrain"]
    for _ in range(2):
        result = subprocess.run(command, cwd=root, capture_output=True, text=True, timeout=240)
        assert result.returncode == 0, result.stderr[-2000:]
    run = tmp_path / "quickstart"
    log = (run / "run.log").read_text()
    assert log.count("stage retrain: finished") == 1 and log.count("stage retrain: skipped") == 1
    picked = json.loads((run / "selected" / "selection.json").read_text())["picked"]
    assert all((run / "selected" / entry["label"] / "metrics.json").exists() for entry in picked)


def test_a_stage_not_rerun_keeps_the_settings_it_was_made_with(quickstart, fast, runs: Path, finished: Path) -> None:
    """config.yaml is the latest invocation's; each stage's record keeps the settings that made it."""
    run = runs / "quickstart"
    made_with = json.loads((run / "stages" / "select.json").read_text())["settings"]
    assert made_with == {"selection": {"budgets_ms": {}, "budgets_span": {"small": 0.0, "large": 0.33, "xlarge": 1.0},
                                       "knee": False}}
    assert again(quickstart, fast, runs, finished, "selection.knee=true", "--stages", "report") == 0
    assert "knee: true" in (run / "config.yaml").read_text()
    assert json.loads((run / "stages" / "select.json").read_text())["settings"] == made_with


def test_a_stage_recorded_with_the_old_strategy_name_stays_current(tmp_path: Path) -> None:
    """A record made when the evolution strategy was called nsga2 (search.strategies: [nsga2]) is current for a
    configuration that names it either way; another strategy is a changed configuration."""
    def write_seed(ctx: Context) -> None:
        write_text(ctx.paths / "seed.txt", str(ctx.config.seed))

    stage = Stage("seed", write_seed, writes=("seed.txt",), config=("seed", "search.strategies"))

    def runner(*overrides: str) -> Runner:
        config = load("quickstart", [f"runs_dir={tmp_path}", *overrides])
        return Runner([stage], Context(config, config.paths, World(0, 1, 0, torch.device("cpu"))), lambda c: None)

    runner().run({"seed"})
    record_path = tmp_path / "quickstart" / "stages" / "seed.json"
    record = json.loads(record_path.read_text())
    old = {**record["settings"], "search.strategies": ["nsga2"]}
    record_path.write_text(json.dumps({**record, "settings": old, "config": settings_digest(old)}))
    assert runner("search.strategies=[nsga2]").verdict(stage) == ("current", "done and current")
    assert runner().verdict(stage) == ("current", "done and current")
    assert runner("search.strategies=[dnas]").verdict(stage)[0] == "start over"


def test_a_stage_recorded_before_a_setting_was_added_stays_current_at_its_old_value(quickstart) -> None:
    """latency.transfer and audit.seeds came after runs were made: a record without them is current while the run
    keeps the value that computes the same (engine.config.ADDED), and not once it changes it."""
    def old_record(sections: tuple[str, ...]) -> dict:
        settings = json.loads(json.dumps(config_sections(load(quickstart), sections)))
        settings.get("latency", {}).pop("transfer", None)
        settings.pop("audit.seeds", None)
        return settings

    def current(overrides: list[str], sections: tuple[str, ...]) -> bool:
        config = load(quickstart, overrides)
        now = config_sections(config, sections)
        return settings_digest(upgraded(old_record(sections), now)) == config_digest(config, sections)

    latency, audit = ("seed", "latency"), ("seed", "audit.train", "audit.seeds")
    assert current([], latency) and current([], audit)
    assert not current(["latency.transfer.enabled=true"], latency) and not current(["audit.seeds=2"], audit)
    assert current(["audit.seeds=2"], latency) and current(["latency.transfer.enabled=true"], audit)
