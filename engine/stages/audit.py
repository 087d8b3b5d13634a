"""Stage audit (with audit.enabled): the proxy-fidelity audit. Does inherited-weight mIoU rank subnets as
stand-alone training does?

`audit.genotypes` front points, spread over the front's predicted latency range (predictors.design.spread), are
each trained from scratch with the same fixed budget (`audit.train`, engine/training/standalone.py, resumable) and
evaluated on the validation images. Their stand-alone mIoU is ranked against two proxies: inherited-weight mIoU
with BN recalibration (what the search used) and without it (the supernet's running statistics). Writes
runs/<name>/audit/<key>/ (training), audit/audit.csv (one row per genotype) and audit/audit.json (Kendall tau and
Spearman rho of each proxy, the budget).
"""

from __future__ import annotations

import pandas as pd
from scipy.stats import kendalltau, spearmanr

from engine.config import UNSEEN, ExperimentConfig
from engine.evaluation.inherited import InheritedEvaluator, evaluator_for
from engine.evaluation.standalone import standalone_miou
from engine.files import write_csv, write_json
from engine.paths import ARTEFACTS as A
from engine.runner import Context, Stage
from engine.training.supernet import load_supernet
from predictors.design import spread
from spaces import Genotype


def audit_genotypes(config: ExperimentConfig) -> list[Genotype]:
    front = pd.read_csv(config.paths.front).sort_values("latency_ms").reset_index(drop=True)
    count = min(config.audit.genotypes, len(front))
    return [Genotype.from_key(front.key[i]) for i in sorted(spread(front.latency_ms.to_numpy(), count, config.seed))]


def proxy_scores(recalibrated: InheritedEvaluator, genotypes: list[Genotype]) -> dict[str, list[float]]:
    """Inherited mIoU of each genotype with BN recalibration and without it (same supernet and images)."""
    running = InheritedEvaluator(recalibrated.supernet, [], recalibrated.validation, recalibrated.num_classes,
                                 recalibrated.device)
    return {"inherited_miou": [recalibrated.score(g)["miou"] for g in genotypes],
            "inherited_miou_no_recalibration": [running.score(g)["miou"] for g in genotypes]}


def rank_agreement(table: pd.DataFrame) -> dict[str, float]:
    out = {}
    for proxy in ("inherited_miou", "inherited_miou_no_recalibration"):
        out[f"{proxy}_kendall_tau"] = float(kendalltau(table[proxy], table.standalone_miou).statistic)
        out[f"{proxy}_spearman_rho"] = float(spearmanr(table[proxy], table.standalone_miou).statistic)
    return out


def run(ctx: Context) -> None:
    """The audit (module docstring): trained on every rank, written by the main one."""
    config, paths, world = ctx.config, ctx.paths, ctx.world
    genotypes = audit_genotypes(config)
    supernet = load_supernet(config, config.space.num_classes, world.device)
    recalibrated = evaluator_for(config, supernet, world.device, cache=False)
    standalone = [standalone_miou(config, g, paths.trained(g.key), world, recalibrated.validation) for g in genotypes]
    if not world.is_main:
        return
    front = pd.read_csv(paths.front).set_index("key")
    table = pd.DataFrame({"key": [g.key for g in genotypes],
                          "latency_ms": [float(front.latency_ms[g.key]) for g in genotypes],
                          **proxy_scores(recalibrated, genotypes), "standalone_miou": standalone})
    write_csv(paths.audit, table)
    write_json(paths.audit_summary, {"genotypes": len(genotypes), "train_steps": config.audit.train.steps,
                                     "train_batch_size": config.audit.train.batch_size, **rank_agreement(table)})


STAGE = Stage("audit", run, reads=(A.front, A.supernet), writes=(A.audit, A.audit_summary),
              work=(A.trained_dir,), config=("seed", "space", "data", *UNSEEN, "evaluation", "audit.genotypes",
                                                 "audit.train"),
              ranks="all", enabled=lambda config: config.audit.enabled,
              enabled_by="audit.enabled")
