"""Stage audit (with audit.enabled): the proxy-fidelity audit. Does inherited-weight mIoU rank subnets as
stand-alone training does?

`audit.genotypes` front points, spread over the front's latency range (predictors.design.spread), and with
`audit.random` > 0 that many seeded random subnets plus the smallest and largest paths, are each trained from
scratch with the same fixed budget (`audit.train`, engine/training/standalone.py, resumable) and evaluated on the
validation images. Their stand-alone mIoU is ranked against two proxies: inherited-weight mIoU with BN
recalibration (what the search used) and without it (the supernet's running statistics), over all audited subnets
and within each group (front, random, extremes). Writes runs/<name>/audit/<key>/ (training), audit/audit.csv (one row
per genotype, its group) and audit/audit.json (Kendall tau and Spearman rho of each proxy, overall and per group;
where the smallest and largest paths rank by each score; the budget).
"""

from __future__ import annotations

import random

import pandas as pd

from engine.config import UNSEEN, ExperimentConfig
from engine.evaluation.inherited import InheritedEvaluator, evaluator_for
from engine.evaluation.standalone import standalone_miou
from engine.files import write_csv, write_json
from engine.paths import ARTEFACTS as A
from engine.runner import Context, Stage
from engine.training.supernet import load_supernet
from predictors.design import spread
from predictors.evaluation import kendall, spearman
from spaces import Genotype, largest, sample, smallest


def audit_genotypes(config: ExperimentConfig) -> dict[Genotype, str]:
    """The audited genotypes and their groups: front points spread over latency, then (audit.random > 0) the
    smallest and largest paths and seeded random subnets, each once."""
    front = pd.read_csv(config.paths.front).sort_values("latency_ms").reset_index(drop=True)
    count = min(config.audit.genotypes, len(front))
    chosen = {Genotype.from_key(front.key[i]): "front"
              for i in sorted(spread(front.latency_ms.to_numpy(), count, config.seed))}
    if config.audit.random:
        others = random_and_extremes(config.space.skeleton, config.audit.random, config.seed, taken=chosen)
        chosen |= {genotype: group for genotype, group in others.items() if genotype not in chosen}
    return chosen


def random_and_extremes(skeleton: str, count: int, seed: int, taken=()) -> dict[Genotype, str]:
    """The smallest and largest paths ("extremes") and `count` distinct seeded random subnets ("random") outside
    `taken`."""
    chosen = {smallest(skeleton): "extremes", largest(skeleton): "extremes"}
    rng, drawn = random.Random(seed + 2), 0
    while drawn < count:
        genotype = sample(skeleton, rng)
        if genotype not in chosen and genotype not in taken:
            chosen[genotype], drawn = "random", drawn + 1
    return chosen


def proxy_scores(recalibrated: InheritedEvaluator, genotypes: list[Genotype]) -> dict[str, list[float]]:
    """Inherited mIoU of each genotype with BN recalibration and without it (same supernet and images)."""
    running = InheritedEvaluator(recalibrated.supernet, [], recalibrated.validation, recalibrated.num_classes,
                                 recalibrated.device)
    return {"inherited_miou": [recalibrated.score(g)["miou"] for g in genotypes],
            "inherited_miou_no_recalibration": [running.score(g)["miou"] for g in genotypes]}


def rank_agreement(table: pd.DataFrame, prefix: str = "") -> dict[str, float]:
    """Kendall tau and Spearman rho of each proxy against stand-alone mIoU (NaN below 2 rows or for ties)."""
    out = {}
    for proxy in ("inherited_miou", "inherited_miou_no_recalibration"):
        out[f"{prefix}{proxy}_kendall_tau"] = kendall(table[proxy], table.standalone_miou)
        out[f"{prefix}{proxy}_spearman_rho"] = spearman(table[proxy], table.standalone_miou)
    return out


def agreement(table: pd.DataFrame) -> dict:
    """rank_agreement over all audited subnets and within each group, and where the extremes rank."""
    out = rank_agreement(table)
    if table.group.nunique() > 1:
        for group, rows in table.groupby("group"):
            out.update(rank_agreement(rows, f"{group}_"))
    ranks = table[["inherited_miou", "standalone_miou"]].rank(ascending=False, method="min")
    for label, genotype in (("smallest", smallest), ("largest", largest)):
        rows = [i for i, key in enumerate(table.key) if key == genotype(Genotype.from_key(key).skeleton).key]
        if rows:
            out[f"{label}_rank"] = {"inherited": int(ranks.inherited_miou.iloc[rows[0]]),
                                    "standalone": int(ranks.standalone_miou.iloc[rows[0]]), "of": len(table)}
    return out


def run(ctx: Context) -> None:
    """The audit (module docstring): trained on every rank, written by the main one."""
    config, paths, world = ctx.config, ctx.paths, ctx.world
    groups = audit_genotypes(config)
    genotypes = list(groups)
    supernet = load_supernet(config, config.space.num_classes, world.device)
    recalibrated = evaluator_for(config, supernet, world.device, cache=False)
    standalone = [standalone_miou(config, g, paths.trained(g.key), world, recalibrated.validation) for g in genotypes]
    if not world.is_main:
        return
    front = pd.read_csv(paths.front).set_index("key")
    table = pd.DataFrame({"key": [g.key for g in genotypes], "group": [groups[g] for g in genotypes],
                          "latency_ms": [float(front.latency_ms[g.key]) if g.key in front.index else float("nan")
                                         for g in genotypes],
                          **proxy_scores(recalibrated, genotypes), "standalone_miou": standalone})
    write_csv(paths.audit, table)
    write_json(paths.audit_summary, {"genotypes": len(genotypes), "train_steps": config.audit.train.steps,
                                     "train_batch_size": config.audit.train.batch_size, **agreement(table)})


STAGE = Stage("audit", run, reads=(A.front, A.supernet), writes=(A.audit, A.audit_summary),
              work=(A.trained_dir,), config=("seed", "space", "data", *UNSEEN, "evaluation", "audit.genotypes",
                                                 "audit.random", "audit.train"),
              ranks="all", enabled=lambda config: config.audit.enabled,
              enabled_by="audit.enabled")
