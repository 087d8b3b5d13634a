"""Stage audit (with audit.enabled): the proxy-fidelity audit. Does inherited-weight mIoU rank subnets as stand-alone
training does?

`audit.genotypes` front points of each skeleton, spread over its front points' latency range (predictors.design.spread),
and with `audit.random` > 0 that many seeded random subnets plus the smallest and largest paths of each skeleton, are
each trained from scratch with the same fixed budget (`audit.train`, engine/training/standalone.py, resumable; with
`audit.workers` > 1 all at once on single-threaded worker processes, engine/training/pool.py) and evaluated on the
validation images. Their stand-alone mIoU is ranked against two proxies: inherited-weight mIoU with BN
recalibration (what the search used) and without it (the supernet's running statistics), over all audited subnets and
within each group (front, random, extremes), and with several skeletons within each skeleton, with the gap between each
skeleton's stand-alone and inherited mIoU (supernets trained apart may be calibrated apart).

With `audit.seeds` >= 2 every audited subnet is trained under each seed (seed, seed + 1, ...): its stand-alone mIoU is
the seeds' mean, and the references are read against their own noise: `reference_kendall` is the Kendall tau between
the seeds' stand-alone mIoU (the mean over pairs of seeds), the most any proxy can reach at this training budget, and
`proxy_kendall` the tau of the proxy (recalibrated inherited mIoU) against the seeds' mean, each with a 90 % bootstrap
interval over the subnets, over all and per group (`per_group`). The baseline stage reuses these networks. Writes
runs/<name>/audit/<key>/ (training), audit/audit.csv (one row per genotype, its group) and audit/audit.json (Kendall tau
and Spearman rho of each proxy, overall and per group; where the smallest and largest paths rank by each score; the
budget).
"""

from __future__ import annotations

import random

import numpy as np
import pandas as pd

from engine.config import UNSEEN, ExperimentConfig
from engine.evaluation.inherited import InheritedEvaluator, evaluator_for
from engine.evaluation.standalone import standalone_miou
from engine.files import write_csv, write_json
from engine.paths import ARTEFACTS as A
from engine.runner import Context, Stage
from engine.training.pool import train_on_cluster
from engine.training.supernet import load_supernets
from predictors.design import spread
from predictors.evaluation import bootstrap_interval, kendall, pairwise_kendall, spearman
from spaces import Genotype, largest, sample_of, smallest


def audit_genotypes(config: ExperimentConfig) -> dict[Genotype, str]:
    """The audited genotypes and their groups: front points spread over latency, then (audit.random > 0) the
    smallest and largest paths and seeded random subnets, each once."""
    front = pd.read_csv(config.paths.front).sort_values("latency_ms").reset_index(drop=True)
    chosen = {}
    for name in config.space.skeletons:  # the table's rows in the configured order of skeletons
        rows = front[front.key.map(skeleton_of) == name].reset_index(drop=True)
        count = min(config.audit.genotypes, len(rows))
        chosen |= {Genotype.from_key(rows.key[i]): "front"
                   for i in sorted(spread(rows.latency_ms.to_numpy(), count, config.seed))}
    if config.audit.random:
        others = random_and_extremes(config.space.skeletons, config.audit.random, config.seed, taken=chosen)
        chosen |= {genotype: group for genotype, group in others.items() if genotype not in chosen}
    return chosen


def skeleton_of(key: str) -> str:
    return Genotype.from_key(key).skeleton


def random_and_extremes(skeletons: tuple[str, ...], count: int, seed: int, taken=()) -> dict[Genotype, str]:
    """The smallest and largest paths of each skeleton ("extremes") and `count` distinct seeded random subnets
    ("random") outside `taken`."""
    chosen = {extreme(name): "extremes" for name in skeletons for extreme in (smallest, largest)}
    rng, drawn = random.Random(seed + 2), 0
    while drawn < count:
        genotype = sample_of(skeletons, rng)
        if genotype not in chosen and genotype not in taken:
            chosen[genotype], drawn = "random", drawn + 1
    return chosen


def proxy_scores(recalibrated: InheritedEvaluator, genotypes: list[Genotype]) -> dict[str, list[float]]:
    """Inherited mIoU of each genotype with BN recalibration and without it (same supernet and images)."""
    running = InheritedEvaluator(recalibrated.supernets, [], recalibrated.validation, recalibrated.num_classes,
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
    """rank_agreement over all audited subnets (across skeletons) and within each group, and where the extremes of
    the first row's skeleton rank; with several skeletons also within each skeleton, with its extremes' ranks and its
    supernet's calibration (`per_skeleton`)."""
    skeletons = table.key.map(skeleton_of)
    out = {**rank_agreement(table), **extreme_ranks(table, skeletons.iloc[0])}
    if table.group.nunique() > 1:
        for group, rows in table.groupby("group"):
            out.update(rank_agreement(rows, f"{group}_"))
    if skeletons.nunique() > 1:
        out["per_skeleton"] = {name: {**rank_agreement(rows), **extreme_ranks(rows, name), **calibration(rows)}
                               for name, rows in table.groupby(skeletons, sort=False)}
    return out


def extreme_ranks(table: pd.DataFrame, skeleton: str) -> dict:
    """Where the smallest and largest path of `skeleton` rank among `table` by each score."""
    ranks = table[["inherited_miou", "standalone_miou"]].rank(ascending=False, method="min")
    out = {}
    for label, genotype in (("smallest", smallest), ("largest", largest)):
        found = [i for i, key in zip(table.index, table.key) if key == genotype(skeleton).key]
        if found:
            out[f"{label}_rank"] = {"inherited": int(ranks.inherited_miou[found[0]]),
                                    "standalone": int(ranks.standalone_miou[found[0]]), "of": len(table)}
    return out


def calibration(rows: pd.DataFrame) -> dict:
    """How a skeleton's supernet is calibrated: mean inherited and stand-alone mIoU of its audited subnets and the
    mean gap (stand-alone − inherited). Gaps that differ between skeletons shift one skeleton's front against
    another's: the front mixes skeletons by inherited mIoU, as if their supernets were trained equally well."""
    gap = rows.standalone_miou - rows.inherited_miou
    return {"inherited_mean": float(rows.inherited_miou.mean()), "standalone_mean": float(rows.standalone_miou.mean()),
            "gap_mean": float(gap.mean()), "count": len(rows)}


def ceiling(table: pd.DataFrame, seed: int) -> dict:
    """With two seeds or more: the proxy against its references' own agreement (module docstring), over all audited
    subnets and per group of three or more."""
    columns = [column for column in table.columns if column.startswith("standalone_miou_seed")]
    if len(columns) < 2:
        return {}
    out = fidelity(table, columns, seed)
    if table.group.nunique() > 1:
        out["per_group"] = {group: fidelity(rows, columns, seed) for group, rows in table.groupby("group")
                            if len(rows) >= 3}
    return out


def fidelity(rows: pd.DataFrame, columns: list[str], seed: int) -> dict:
    """reference_kendall and proxy_kendall of these subnets, each with its 90 % bootstrap interval."""
    seeds, proxy = rows[columns].to_numpy(), rows.inherited_miou.to_numpy()
    mean = seeds.mean(axis=1)
    out: dict = {"count": len(rows)}
    for name, statistic in (("reference_kendall", lambda i: pairwise_kendall(seeds[i])),
                            ("proxy_kendall", lambda i: kendall(proxy[i], mean[i]))):
        out[name] = statistic(np.arange(len(rows)))
        out[f"{name}_interval"] = list(bootstrap_interval(statistic, len(rows), seed=seed))
    return out


def standalone_table(config: ExperimentConfig, genotypes: list[Genotype], ctx: Context, validation) -> dict:
    """Stand-alone mIoU of each genotype: the seeds' mean, and each seed's with audit.seeds >= 2."""
    seeds = range(config.audit.seeds)
    seeded = [config.model_copy(update={"seed": config.seed + i}) for i in seeds]
    scores = np.array([[standalone_miou(seeded[i], g, ctx.paths.trained(g.key, i), ctx.world, validation)
                        for i in seeds] for g in genotypes])
    columns = {f"standalone_miou_seed{i}": scores[:, i] for i in seeds} if len(seeds) > 1 else {}
    return {"standalone_miou": scores.mean(axis=1), **columns}


def run(ctx: Context) -> None:
    """The audit (module docstring): trained on every rank, written by the main one."""
    config, paths, world = ctx.config, ctx.paths, ctx.world
    groups = audit_genotypes(config)
    genotypes = list(groups)
    jobs = [(g.key, paths.trained(g.key, i), i) for i in range(config.audit.seeds) for g in genotypes]
    train_on_cluster(config, "audit.train", jobs, config.audit.workers, world, paths.audit_dask)
    recalibrated = evaluator_for(config, load_supernets(config, world.device), world.device, cache=False)
    standalone = standalone_table(config, genotypes, ctx, recalibrated.validation)
    if not world.is_main:
        return
    front = pd.read_csv(paths.front).set_index("key")
    table = pd.DataFrame({"key": [g.key for g in genotypes], "skeleton": [g.skeleton for g in genotypes],
                          "group": [groups[g] for g in genotypes],
                          "latency_ms": [float(front.latency_ms[g.key]) if g.key in front.index else float("nan")
                                         for g in genotypes],
                          **proxy_scores(recalibrated, genotypes), **standalone})
    write_csv(paths.audit, table)
    write_json(paths.audit_summary, {"genotypes": len(genotypes), "seeds": config.audit.seeds,
                                     "train_steps": config.audit.train.steps,
                                     "train_batch_size": config.audit.train.batch_size, **agreement(table),
                                     **ceiling(table, config.seed)})


STAGE = Stage("audit", run, reads=(A.front, A.supernet), writes=(A.audit, A.audit_summary),
              work=(A.trained_dir, A.audit_dask),
              config=("seed", "space", "data", *UNSEEN, "evaluation", "audit.genotypes", "audit.random", "audit.train",
                      "audit.seeds"),
              ranks="all", enabled=lambda config: config.audit.enabled,
              enabled_by="audit.enabled")
