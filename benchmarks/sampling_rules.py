"""How each supernet sampling rule biases the inherited-weight ranking, at equal training compute.

    python -m benchmarks.sampling_rules experiments/camvid.yaml data.root=../shared/data/camvid \
        --rules uniform,sandwich,sandwich_rare,fair --passes 3000 --random 10 --keep /tmp/rules

One set of audited subnets (the audit's: the smallest and largest paths and `--random` seeded random ones) is
trained stand-alone once, from scratch with the experiment's `audit.train` recipe (engine.evaluation.standalone,
as the audit stage trains them), and scored on the validation split. For each sampling rule a supernet is trained
with the experiment's `supernet` recipe for `--passes` path passes (forward + backward of one path on one batch:
uniform 1 per step, sandwich 2 + sandwich_paths, fair one per candidate), its warm-up scaled with its steps; each
audited subnet's inherited mIoU (BN recalibrated, as the search scores) is ranked against its stand-alone mIoU as
the audit ranks them (engine.stages.audit.agreement): Kendall tau and Spearman rho over all and over the random
ones, and where the extremes rank. Everything is resumable: run the same command with the same --keep again.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import pandas as pd
import torch

from benchmarks.common import host, markdown, one_skeleton, scratch
from engine.config import ExperimentConfig, load
from engine.evaluation.inherited import evaluator_for, validation_batches
from engine.evaluation.standalone import standalone_miou
from engine.stages.audit import agreement, proxy_scores, random_and_extremes
from engine.training.distributed import World
from engine.training.sampling import SAMPLING, Rule, passes_per_step
from engine.training.supernet import load_supernets, train_supernet


def rule_config(config: ExperimentConfig, rule: str, passes: int, runs: Path) -> ExperimentConfig:
    """The experiment with the rule, as many steps as give `passes` path passes, warm-up scaled alike."""
    settings = config.supernet
    per_step = passes_per_step(config.space.skeleton, rule, Rule(settings.sandwich_paths, settings.extremes_every))
    steps = max(1, math.ceil(passes / per_step))
    warmup = round(settings.warmup_steps * steps / settings.steps)
    supernet = settings.model_copy(update={"sampling": rule, "steps": steps, "warmup_steps": warmup,
                                           "checkpoint_every": max(1, min(settings.checkpoint_every, steps // 5))})
    return config.model_copy(update={"runs_dir": runs, "name": rule, "supernet": supernet})


def standalone(config: ExperimentConfig, groups: dict, folder: Path, world: World, batches) -> dict[str, float]:
    scores = {}
    for number, genotype in enumerate(groups, 1):
        start = time.perf_counter()
        scores[genotype.key] = standalone_miou(config, genotype, folder / genotype.key, world, batches)
        print(f"stand-alone {number}/{len(groups)} {genotype.key}: mIoU {scores[genotype.key]:.4f} "
              f"({(time.perf_counter() - start) / 60:.1f} min)", flush=True)
    return scores


def inherited(config: ExperimentConfig, groups: dict, world: World) -> tuple[pd.DataFrame, float]:
    start = time.perf_counter()
    train_supernet(config, world)
    minutes = (time.perf_counter() - start) / 60
    supernets = load_supernets(config, world.device)
    genotypes = list(groups)
    scores = proxy_scores(evaluator_for(config, supernets, world.device, cache=False), genotypes)
    table = pd.DataFrame({"key": [g.key for g in genotypes], "group": list(groups.values()), **scores})
    return table, minutes


def summary_row(rule: str, config: ExperimentConfig, passes: int, minutes: float, stats: dict) -> dict:
    out = {"rule": rule, "steps": config.supernet.steps, "passes": passes, "minutes": round(minutes, 1)}
    for prefix in ("", "random_"):
        for stat in ("kendall_tau", "spearman_rho"):
            out[f"{prefix or 'all_'}{stat}"] = round(stats.get(f"{prefix}inherited_miou_{stat}", math.nan), 3)
    for extreme in ("smallest", "largest"):
        rank = stats.get(f"{extreme}_rank", {})
        out[f"{extreme} rank (inherited/alone)"] = f"{rank.get('inherited')}/{rank.get('standalone')}"
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config")
    parser.add_argument("overrides", nargs="*")
    parser.add_argument("--rules", default="uniform,sandwich,sandwich_rare,fair")
    parser.add_argument("--passes", type=int, default=3000, help="path passes of each supernet's training")
    parser.add_argument("--random", type=int, default=10, help="random subnets audited beside the extremes")
    parser.add_argument("--keep", type=Path, help="folder for the runs (kept; rerun with it to resume)")
    args = parser.parse_args()
    rules = args.rules.split(",")
    unknown = [rule for rule in rules if rule not in SAMPLING]
    if unknown:
        parser.error(f"--rules: unknown {unknown}; known: {', '.join(SAMPLING)}")
    resume = args.keep is not None and args.keep.exists()
    with scratch(parser, None if resume else args.keep) as folder:
        folder = args.keep if resume else folder
        config = load(args.config, args.overrides)
        one_skeleton(parser, config)
        world = World(0, 1, 0, torch.device("cpu"))
        groups = random_and_extremes(config.space.skeletons, args.random, config.seed)
        print(f"{host()}, torch {torch.__version__}, {torch.get_num_threads()} threads; {config.data.kind}, skeleton "
              f"{config.space.skeleton} width {config.space.width}, crop {list(config.data.crop)}, supernet batch "
              f"{config.supernet.batch_size}, {args.passes} path passes per rule; {len(groups)} audited subnets "
              f"trained stand-alone {config.audit.train.steps} steps of batch {config.audit.train.batch_size}",
              flush=True)
        rows, tables = [], []
        for rule in rules:
            ruled = rule_config(config, rule, args.passes, folder / "rules")
            table, minutes = inherited(ruled, groups, world)
            tables.append(table.set_index("key").inherited_miou.rename(rule))
            rows.append((rule, ruled, minutes, table))
            print(f"{rule}: {ruled.supernet.steps} steps in {minutes:.1f} min", flush=True)
        batches = validation_batches(config)
        alone = standalone(config, groups, folder / "standalone", world, batches)
        summary = []
        for rule, ruled, minutes, table in rows:
            table["standalone_miou"] = table.key.map(alone)
            summary.append(summary_row(rule, ruled, args.passes, minutes, agreement(table)))
        scores = pd.concat(tables, axis=1)
        scores.insert(0, "group", scores.index.map({g.key: group for g, group in groups.items()}))
        scores["standalone"] = scores.index.map(alone)
        print(markdown(pd.DataFrame(summary).set_index("rule")))
        print(markdown(scores.sort_values("standalone").round(4)))
        (folder / "sampling_rules.json").write_text(json.dumps({"summary": summary,
                                                                "scores": scores.reset_index().to_dict("records")}))


if __name__ == "__main__":
    main()
