"""The proxy-fidelity audit: front points spread over latency, trained stand-alone, ranked against the proxies."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from engine.paths import key_folder
from engine.report.tables import ceiling_text, skeleton_audit_table
from engine.run import main
from engine.stages.audit import agreement, ceiling, rank_agreement
from predictors.evaluation import kendall
from spaces import largest, sample, smallest


def test_rank_agreement_of_both_proxies() -> None:
    table = pd.DataFrame({"inherited_miou": [0.1, 0.2, 0.3, 0.4], "standalone_miou": [0.3, 0.4, 0.5, 0.6],
                          "inherited_miou_no_recalibration": [0.4, 0.3, 0.2, 0.1]})
    agreement = rank_agreement(table)
    assert agreement["inherited_miou_kendall_tau"] == pytest.approx(1.0)
    assert agreement["inherited_miou_no_recalibration_spearman_rho"] == pytest.approx(-1.0)


def test_the_proxy_is_read_against_its_references_own_agreement() -> None:
    """Two seeds that swap two pairs of subnets: reference_kendall is their tau, proxy_kendall the proxy's against
    their mean, each inside its bootstrap interval, per group too; the report says it in one sentence."""
    truth = np.arange(12) / 12
    second = truth.copy()
    second[[2, 3, 7, 8]] = second[[3, 2, 8, 7]]
    proxy = truth + np.random.default_rng(0).normal(0, 0.1, 12)
    table = pd.DataFrame({"key": [sample("small", i).key for i in range(12)], "group": ["random"] * 8 + ["front"] * 4,
                          "inherited_miou": proxy, "standalone_miou_seed0": truth, "standalone_miou_seed1": second})
    out = ceiling(table, 0)
    assert out["reference_kendall"] == pytest.approx(kendall(truth, second))
    assert out["proxy_kendall"] == pytest.approx(kendall(proxy, (truth + second) / 2))
    for name in ("reference_kendall", "proxy_kendall"):
        low, high = out[f"{name}_interval"]
        assert low <= out[name] <= high and -1 <= low < high <= 1
    assert set(out["per_group"]) == {"front", "random"} and out["per_group"]["front"]["count"] == 4
    assert ceiling(table.drop(columns="standalone_miou_seed1"), 0) == {}
    text = ceiling_text({**out, "seeds": 2})
    assert f"Kendall τ {out['proxy_kendall']:.2f}" in text and "2 trainings of the same subnets agree" in text
    assert "audit.seeds to 2 or more" in ceiling_text({})


def test_with_two_skeletons_the_audit_ranks_within_each_and_measures_each_supernets_calibration() -> None:
    keys = [smallest("small").key, largest("small").key, smallest("large").key, largest("large").key,
            sample("small", 1).key, sample("large", 2).key]
    table = pd.DataFrame({"key": keys, "group": ["extremes"] * 4 + ["random"] * 2,
                          "inherited_miou": [0.10, 0.30, 0.12, 0.36, 0.20, 0.25],
                          "inherited_miou_no_recalibration": [0.1, 0.2, 0.3, 0.4, 0.5, 0.6],
                          "standalone_miou": [0.20, 0.40, 0.32, 0.56, 0.30, 0.45]})
    summary = agreement(table)
    small, large = summary["per_skeleton"]["small"], summary["per_skeleton"]["large"]
    assert small["inherited_miou_kendall_tau"] == pytest.approx(1.0) and small["count"] == 3
    assert small["gap_mean"] == pytest.approx(0.10) and large["gap_mean"] == pytest.approx(0.20)
    assert small["smallest_rank"] == {"inherited": 3, "standalone": 3, "of": 3}
    assert summary["largest_rank"]["of"] == 6  # across skeletons: the first skeleton's extremes among all
    html = skeleton_audit_table(summary)
    assert "+0.1000" in html and "+0.2000" in html and "all (across skeletons)" in html


def test_audit_stage_trains_front_points_and_reports(fast, quickstart, tmp_path: Path) -> None:
    """... the audit's and the baseline's networks trained at once on two worker processes (audit.workers)."""
    overrides = [f"runs_dir={tmp_path}", f"latency.store={tmp_path / 'store'}", *fast, "audit.enabled=true",
                 "audit.genotypes=3", "audit.train.steps=2", "audit.train.checkpoint_every=1", "audit.workers=2"]
    assert main([quickstart, *overrides, "--stages", "space,supernet,latency,search,select,audit,baseline,report"]) == 0
    run = tmp_path / "quickstart"
    audit = pd.read_csv(run / "audit" / "audit.csv")
    front = pd.read_csv(run / "front.csv")
    assert len(audit) == min(3, len(front)) and set(audit.key) <= set(front.key)
    assert audit.standalone_miou.between(0, 1).all() and audit.inherited_miou.between(0, 1).all()
    for path in run.rglob("*.json"):  # issue 35: every JSON the run wrote is strict JSON (null, never NaN)
        json.loads(path.read_text(), parse_constant=lambda name: pytest.fail(f"{path}: {name} is not JSON"))
    summary = json.loads((run / "audit" / "audit.json").read_text())
    tau = summary["inherited_miou_kendall_tau"]  # null when 2 training steps leave stand-alone mIoUs tied
    assert summary["train_steps"] == 2 and (tau is None or -1 <= tau <= 1)
    html = (run / "report.html").read_text()
    assert "Proxy fidelity" in html and "Searched vs hand-made at the latency of each hand-made design" in html
    baseline = json.loads((run / "audit" / "baseline.json").read_text())
    assert [pair["design"] for pair in baseline["pairs"]] == ["k3_e6_g1", "k3_e3_g1"]
    assert all(pair["searched"]["key"] in set(front.key) for pair in baseline["pairs"])
    audited = {(run / "audit" / "trained" / key_folder(key)) for key in audit.key}
    assert {folder for folder in (run / "audit" / "trained").iterdir()} == audited  # the baseline left them there
    own = [folder for folder in (run / "audit" / "baseline_trained").iterdir()]
    # the hand-made designs and their matches, less what the audit trained: which front point matches a design (and
    # whether the audit trained it) follows the real measurements, so the searched keys are read from baseline.json
    compared = {pair[side]["key"] for pair in baseline["pairs"] for side in ("handmade", "searched")}
    assert {pair["handmade"]["key"] for pair in baseline["pairs"]} == {"small:" + "-".join([str(c)] * 20)
                                                                       for c in (3, 2)}
    assert {p.name for p in own} == {key_folder(key) for key in compared} - {p.name for p in audited}
    for folders in (audited, own):  # trained on worker processes when a stage had two trainings or more
        assert all((f / "weights.pt").exists() and (f / "train.log").exists() == (len(folders) > 1) for f in folders)
    for folders, scratch in ((audited, "dask"), (own, "baseline_dask")):  # each stage's workers' scratch: its work
        assert (run / "audit" / scratch).is_dir() == (len(folders) > 1)
    assert not (run / "dask").exists()  # the search ran in one process: nobody else's scratch there


def test_the_audit_ranks_random_subnets_and_the_extremes_too(fast, quickstart, tmp_path: Path) -> None:
    """audit.random: that many random subnets and the smallest and largest paths beside the front points, each
    group's rank agreement and where the extremes rank; with audit.seeds=2 each trained twice, the references' own
    agreement beside the proxy's."""
    overrides = [f"runs_dir={tmp_path}", f"latency.store={tmp_path / 'store'}", *fast, "audit.enabled=true",
                 "audit.baseline=false", "audit.genotypes=3", "audit.random=3", "audit.train.steps=2",
                 "audit.train.checkpoint_every=1", "audit.seeds=2"]
    assert main([quickstart, *overrides, "--stages", "space,supernet,latency,search,select,audit,report"]) == 0
    run = tmp_path / "quickstart"
    audit = pd.read_csv(run / "audit" / "audit.csv")
    front = pd.read_csv(run / "front.csv")
    groups = audit.group.value_counts().to_dict()
    assert groups["random"] == 3 and groups["front"] == min(3, len(front)) and audit.key.is_unique
    assert set(audit[audit.group == "front"].key) <= set(front.key)
    keys = set(audit.key)
    assert {smallest("small").key, largest("small").key} <= keys  # as extremes, or as front points already
    summary = json.loads((run / "audit" / "audit.json").read_text())
    assert summary["genotypes"] == len(audit)
    for group in ("front", "random"):
        tau = summary[f"{group}_inherited_miou_kendall_tau"]
        assert tau is None or -1 <= tau <= 1
    for label in ("smallest", "largest"):
        rank = summary[f"{label}_rank"]
        assert rank["of"] == len(audit) and 1 <= rank["inherited"] <= len(audit)
    html = (run / "report.html").read_text()
    assert "□ random" in html and "2 trainings of the same subnets agree with each other" in html
    assert summary["seeds"] == 2 and {"reference_kendall", "proxy_kendall"} <= set(summary)
    assert len(summary["reference_kendall_interval"]) == 2 and "random" in summary["per_group"]
    seeds = audit[["standalone_miou_seed0", "standalone_miou_seed1"]].to_numpy()
    assert np.allclose(audit.standalone_miou, seeds.mean(axis=1))
    for key in audit.key:
        assert (run / "audit" / "trained" / key_folder(key) / "weights.pt").exists()
        assert (run / "audit" / "trained" / key_folder(key, 1) / "weights.pt").exists()
