"""Optional stage: the proxy-fidelity audit. Does inherited-weight mIoU rank subnets as stand-alone training does?

`audit.genotypes` front points, spread over the front's predicted latency range (predictors.design.spread), are
each trained from scratch with the same fixed budget (`audit.train`, engine/standalone.py, resumable) and
evaluated on the validation images. Their stand-alone mIoU is ranked against two proxies: inherited-weight mIoU
with BN recalibration (what the search used) and without it (the supernet's running statistics). Writes
runs/<name>/audit/<key>/ (training), audit/audit.csv (one row per genotype) and audit/audit.json (Kendall tau and
Spearman rho of each proxy, the budget); skipped when audit.json exists.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
from scipy.stats import kendalltau, spearmanr

from engine.config import ExperimentConfig
from engine.distributed import World
from engine.evaluate import Batch, InheritedEvaluator, evaluate, evaluator_for
from engine.standalone import train_standalone
from engine.supernet_training import load_supernet
from predictors.design import spread
from spaces import Genotype


def audit_genotypes(config: ExperimentConfig) -> list[Genotype]:
    front = pd.read_csv(config.run_dir / "front.csv").sort_values("latency_ms").reset_index(drop=True)
    count = min(config.audit.genotypes, len(front))
    return [Genotype.from_key(front.key[i]) for i in sorted(spread(front.latency_ms.to_numpy(), count, config.seed))]


def proxy_scores(recalibrated: InheritedEvaluator, genotypes: list[Genotype]) -> dict[str, list[float]]:
    """Inherited mIoU of each genotype with BN recalibration and without it (same supernet and images)."""
    running = InheritedEvaluator(recalibrated.supernet, [], recalibrated.validation, recalibrated.num_classes,
                                 recalibrated.device)
    return {"inherited_miou": [recalibrated.score(g)["miou"] for g in genotypes],
            "inherited_miou_no_recalibration": [running.score(g)["miou"] for g in genotypes]}


def standalone_miou(config: ExperimentConfig, genotype: Genotype, folder: Path, world: World,
                    batches: list[Batch]) -> float:
    network = train_standalone(genotype, config.data, config.audit.train, folder, world, config.space.width,
                               config.seed)
    return evaluate(network, batches, config.space.num_classes, world.device)["miou"]


def rank_agreement(table: pd.DataFrame) -> dict[str, float]:
    out = {}
    for proxy in ("inherited_miou", "inherited_miou_no_recalibration"):
        out[f"{proxy}_kendall_tau"] = float(kendalltau(table[proxy], table.standalone_miou).statistic)
        out[f"{proxy}_spearman_rho"] = float(spearmanr(table[proxy], table.standalone_miou).statistic)
    return out


def run_audit(config: ExperimentConfig, world: World) -> Path:
    """The audit (module docstring); returns audit/audit.json."""
    out_dir = config.run_dir / "audit"
    out = out_dir / "audit.json"
    if out.exists():
        return out
    genotypes = audit_genotypes(config)
    supernet = load_supernet(config, config.space.num_classes, world.device)
    recalibrated = evaluator_for(config, supernet, world.device, cache=False)
    standalone = [standalone_miou(config, g, out_dir / g.key.replace(":", "_"), world, recalibrated.validation)
                  for g in genotypes]
    front = pd.read_csv(config.run_dir / "front.csv").set_index("key")
    table = pd.DataFrame({"key": [g.key for g in genotypes],
                          "latency_ms": [float(front.latency_ms[g.key]) for g in genotypes],
                          **proxy_scores(recalibrated, genotypes), "standalone_miou": standalone})
    if not world.is_main:
        return out
    table.to_csv(out_dir / "audit.csv", index=False)
    summary = {"genotypes": len(genotypes), "train_steps": config.audit.train.steps,
               "train_batch_size": config.audit.train.batch_size, **rank_agreement(table)}
    out.write_text(json.dumps(summary, indent=1))
    return out
