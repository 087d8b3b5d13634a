"""The fidelity bench (experiments/fidelity.yaml): do the references converge, and which proxy ranks subnets as they do?

    python -m benchmarks.fidelity curve experiments/fidelity.yaml data.root=../shared/data/camvid \
        --steps 750,1500,3000 --keep /tmp/fidelity/curve
    python -m engine.run experiments/fidelity.yaml data.root=../shared/data/camvid runs_dir=/tmp/fidelity/runs \
        --stages space,supernet,latency,search,audit
    python -m benchmarks.fidelity proxies experiments/fidelity.yaml data.root=../shared/data/camvid \
        runs_dir=/tmp/fidelity/runs --finetune 100 --fewshot -1 --variant sampling=fair --keep /tmp/fidelity/proxies

`curve`: the smallest and largest paths trained stand-alone with the experiment's audit recipe (audit.train, from
scratch, seed of the experiment), each budget of --steps a separate training with its own schedule, all on
single-threaded Dask workers (audit.workers), and their validation mIoU: where the references stop rising.

`proxies`: the audited subnets of a run of the experiment (its audit/audit.csv: every subnet's stand-alone mIoU under
each of audit.seeds) are the references; each proxy scores the same subnets and is ranked against the seeds' mean,
beside the references' own agreement (reference_kendall, the ceiling). The proxies: the run's own (inherited mIoU
from its supernet, BN recalibrated); with each --variant, a supernet trained with those settings changed (another
sampling rule, no distillation: for as many path passes as the run's; steps=N: a training-length change); with each
--fewshot, few-shot supernets split at that layer at the run's compute; with --finetune, each subnet trained for that
many steps from its inherited weights with the audit's recipe (learning rate scaled by --finetune-lr) before it is
scored. Each with its cost: supernet steps, path passes (forward + backward of one path on one batch), and the
minutes of its own training (a variant's or the few-shot supernets', the fine-tunings' together; the run's supernet
from its stage record).
Resumable: run the same command with the same --keep; the scores are kept there, so they can be computed while the
audit still trains.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from benchmarks.common import host, markdown, one_skeleton
from benchmarks.sampling_rules import rule_config
from engine.cluster import as_finished, dask_client
from engine.config import ExperimentConfig, load
from engine.data.loader import step_batches
from engine.data.splits import train_set
from engine.evaluation.inherited import evaluate, evaluator_for, validation_batches
from engine.evaluation.standalone import standalone_miou
from engine.files import write_json
from engine.latency.model import space_costs
from engine.paths import METRICS_LOG
from engine.stages.audit import audit_genotypes, fidelity, proxy_scores
from engine.training.distributed import World, init_world
from engine.training.pool import train_on_worker
from engine.training.sampling import PathStep, Rule, passes_per_step, step_paths
from engine.training.standalone import train_standalone
from engine.training.supernet import load_supernets, train_supernet, work_folder
from engine.training.trainer import train
from spaces import Genotype, Supernet, largest, smallest
from spaces.space import space_of


def curve_jobs(config: ExperimentConfig, budgets: list[int], keep: Path) -> list[tuple[ExperimentConfig, Genotype,
                                                                                          Path]]:
    """(the experiment with audit.train.steps = budget, path, folder) for both extremes and every budget."""
    skeleton = config.space.skeleton
    jobs = []
    for steps in budgets:
        train = config.audit.train.model_copy(update={"steps": steps, "checkpoint_every": min(
            config.audit.train.checkpoint_every, steps)})
        budget = config.model_copy(update={"audit": config.audit.model_copy(update={"train": train})})
        jobs += [(budget, path(skeleton), keep / f"{steps}" / path(skeleton).key) for path in (smallest, largest)]
    return jobs


def train_all(config: ExperimentConfig, jobs: list[tuple[ExperimentConfig, Genotype, Path]], keep: Path) -> None:
    """Every job not trained yet at once on audit.workers single-threaded Dask workers, the costliest first."""
    todo = [job for job in jobs if not (job[2] / "weights.pt").exists()]
    if not todo:
        return
    costs = space_costs(config)
    tasks = [(budget.for_workers(), "audit.train", genotype.key, str(folder.absolute()), 0)
             for budget, genotype, folder in todo]
    cost = [float(costs.genotype_macs(genotype)) * budget.audit.train.steps for budget, genotype, _ in todo]
    with dask_client(keep / "dask", min(config.audit.workers, len(tasks))) as client:
        for done, (_, _, key, folder, _) in enumerate(t for t, _ in as_finished(client, train_on_worker, tasks, cost)):
            print(f"trained {done + 1}/{len(tasks)}: {folder}", flush=True)


def curve(config: ExperimentConfig, budgets: list[int], keep: Path) -> pd.DataFrame:
    """Validation mIoU of the smallest and largest paths at each budget (a row per path, a column per budget)."""
    jobs = curve_jobs(config, budgets, keep)
    start = time.perf_counter()
    train_all(config, jobs, keep)
    batches, world = validation_batches(config), init_world(config.supernet.device)
    table = {}
    for budget, genotype, folder in jobs:
        name = "smallest" if genotype == smallest(config.space.skeleton) else "largest"
        table.setdefault(name, {})[f"mIoU@{budget.audit.train.steps}"] = round(
            standalone_miou(budget, genotype, folder, world, batches), 4)
    print(f"{(time.perf_counter() - start) / 60:.1f} min")
    return pd.DataFrame(table).T


def references(parser: argparse.ArgumentParser, config: ExperimentConfig) -> pd.DataFrame:
    """The run's audit.csv, with two seeds or more of stand-alone mIoU per subnet."""
    path = config.paths.audit
    if not path.is_file():
        parser.error(f"{path}: no audit of this experiment yet (the proxies' scores are kept in --keep; run this "
                     f"command again when the audit has finished)")
    table = pd.read_csv(path)
    if len(seed_columns(table)) < 2:
        parser.error(f"{path}: one seed of stand-alone mIoU; the references need audit.seeds >= 2")
    return table


def seed_columns(table: pd.DataFrame) -> list[str]:
    return [column for column in table.columns if column.startswith("standalone_miou_seed")]


def ranked(name: str, scores, table: pd.DataFrame, seed: int, cost: dict) -> dict:
    """The proxy's Kendall tau against the seeds' mean with its 90 % interval, over all and over the random
    subnets, and its cost."""
    scored = table.assign(inherited_miou=np.asarray(scores, dtype=float))
    out = {"proxy": name, **cost}
    for label, found in taus(scored, seed).items():
        low, high = found["proxy_kendall_interval"]
        out[f"{label}: tau (90 %)"] = f"{found['proxy_kendall']:.3f} ({low:.2f}, {high:.2f})"
    return out


def ceiling_row(table: pd.DataFrame, seed: int) -> dict:
    """The references' own agreement (reference_kendall): the most a proxy can reach."""
    out = {"proxy": "stand-alone, seed against seed (the ceiling)"}
    for label, found in taus(table, seed).items():
        low, high = found["reference_kendall_interval"]
        out[f"{label}: tau (90 %)"] = f"{found['reference_kendall']:.3f} ({low:.2f}, {high:.2f})"
    return out


def taus(table: pd.DataFrame, seed: int) -> dict[str, dict]:
    """engine.stages.audit.fidelity over all audited subnets and over the random ones."""
    columns = seed_columns(table)
    return {label: fidelity(rows.reset_index(drop=True), columns, seed)
            for label, rows in (("all", table), ("random", table[table.group == "random"]))}


def run_cost(config: ExperimentConfig) -> dict:
    record = json.loads(config.paths.record("supernet").read_text())
    return {"supernet steps": config.supernet.steps, "path passes": supernet_passes(config),
            "minutes": round(record["seconds"] / 60, 1)}


def supernet_passes(config: ExperimentConfig) -> int:
    settings = config.supernet
    rule = Rule(settings.sandwich_paths, settings.extremes_every)
    return settings.steps * passes_per_step(config.space.skeleton, settings.sampling, rule)


def variant_config(parser: argparse.ArgumentParser, config: ExperimentConfig, text: str, keep: Path
                   ) -> ExperimentConfig:
    """The experiment with its supernet section changed as `text` says ("sampling=fair", "distill=false",
    "steps=3000", comma-separated), in its own run directory; without `steps`, as many steps as give the run's path
    passes, the warm-up scaled alike (benchmarks.sampling_rules.rule_config)."""
    changes = dict(item.split("=", 1) for item in text.split(",") if "=" in item)
    if not changes or len(changes) != len(text.split(",")):
        parser.error(f"--variant {text!r}: comma-separated supernet settings, e.g. sampling=fair,distill=false")
    try:
        settings = type(config.supernet).model_validate({**config.supernet.model_dump(), **changes})
    except ValueError as error:
        parser.error(f"--variant {text!r}: {str(error).splitlines()[-2].strip()} {str(error).splitlines()[-1]}")
    changed = config.model_copy(update={"supernet": settings})
    name = text.replace("=", "-").replace(",", "_")
    if "steps" not in changes:
        changed = rule_config(changed, settings.sampling, supernet_passes(config), keep / "variants")
    return changed.model_copy(update={"runs_dir": keep / "variants", "name": name})


def variant_scores(config: ExperimentConfig, genotypes: list[Genotype], world: World) -> tuple[list[float], dict]:
    """Inherited mIoU (BN recalibrated) of each genotype from the variant's supernet, trained here (resumable)."""
    train_supernet(config, world)
    scores = proxy_scores(evaluator_for(config, load_supernets(config, world.device), world.device, cache=False),
                          genotypes)["inherited_miou"]
    return scores, {"supernet steps": config.supernet.steps, "path passes": supernet_passes(config),
                    "minutes": trained_minutes([work_folder(config, config.space.skeleton)])}


def trained_minutes(folders: list[Path]) -> float:
    """The trainings' minutes as their metrics.csv timed them when they trained (not this rerun's)."""
    return round(sum(float(pd.read_csv(folder / METRICS_LOG).elapsed_s.iloc[-1]) for folder in folders) / 60, 1)


EXPANSIONS = ("skip", 1, 3, 6)
"""Few-shot groups: a split layer's candidates by expansion (skip; e1; e3; e6), one sub-supernet each."""


def split_groups(skeleton: str) -> list[list[int]]:
    candidates = space_of(skeleton).candidates
    return [[i for i, c in enumerate(candidates) if (c.name == "skip" if e == "skip" else
                                                     c.name != "skip" and c.expansion == e)] for e in EXPANSIONS]


def costliest_layer(config: ExperimentConfig) -> int:
    """The layer whose candidates differ most in MACs on the largest path: the default layer to split."""
    skeleton, costs = config.space.skeleton, space_costs(config)
    top, count = largest(skeleton), len(space_of(skeleton).candidates)

    def spread(layer: int) -> float:
        macs = [float(costs.genotype_macs(Genotype(skeleton, top.choices[:layer] + (c,) + top.choices[layer + 1:])))
                for c in range(count)]
        return max(macs) - min(macs)

    return max(range(len(top.choices)), key=spread)


def within(paths: list[PathStep], layer: int, members: list[int], rng: random.Random) -> list[PathStep]:
    """The step's paths with `layer`'s candidate drawn from `members` where it is not one of them."""
    out = []
    for path in paths:
        choices = list(path.genotype.choices)
        if choices[layer] not in members:
            choices[layer] = rng.choice(members)
        out.append(PathStep(Genotype(path.genotype.skeleton, tuple(choices)), path.teacher))
    return out


def fewshot_scores(config: ExperimentConfig, layer: int, genotypes: list[Genotype], keep: Path,
                   world: World) -> tuple[list[float], dict]:
    """Few-shot supernets (Zhao et al., ICML 2021) at the run's compute: a supernet trained for half the run's steps,
    then split by `layer`'s candidates (split_groups) into sub-supernets, each fine-tuned from it for an equal share
    of the other half with the split layer drawn from its group (learning rate halved, no warm-up); a genotype is
    scored by the sub-supernet of its group."""
    settings, skeleton = config.supernet, config.space.skeleton
    half = max(1, settings.steps // 2)
    base = config.model_copy(update={"runs_dir": keep / "fewshot", "name": f"base-layer{layer}", "supernet":
                                     settings.model_copy(update={"steps": half,
                                                                 "warmup_steps": settings.warmup_steps // 2})})
    train_supernet(base, world)
    weights = load_supernets(base, torch.device("cpu"))[skeleton].state_dict()
    groups = split_groups(skeleton)
    share = max(1, (settings.steps - half) // len(groups))
    tune = settings.model_copy(update={"steps": share, "warmup_steps": 0, "lr": settings.lr / 2,
                                       "checkpoint_every": share})
    dataset = train_set(config.data, config.seed)
    rule, scores, folders = Rule(settings.sandwich_paths, settings.extremes_every), {}, [work_folder(base, skeleton)]
    for number, members in enumerate(groups):
        torch.manual_seed(config.seed + 1 + number)  # the training's own random draws (dropout), as build_supernet
        supernet = Supernet(skeleton, config.space.width, config.space.num_classes)
        supernet.load_state_dict(weights)

        def paths(step: int, members=members, number=number) -> list[PathStep]:
            drawn = step_paths(skeleton, settings.sampling, config.seed, half + step, rule)
            return within(drawn, layer, members, random.Random(config.seed * 1_000_003 + number * 10_007 + step))

        batches = step_batches(dataset, settings.batch_size, config.seed + 1 + number, share)
        folders.append(keep / "fewshot" / f"layer{layer}-group{number}")
        train(supernet.to(world.device), batches, tune, folders[-1], world, paths, section="supernet")
        chosen = [g for g in genotypes if g.choices[layer] in members]
        evaluator = evaluator_for(config, {skeleton: supernet.eval()}, world.device, cache=False)
        scores |= {g: evaluator.score(g)["miou"] for g in chosen}
    passes = supernet_passes(base) + len(groups) * share * passes_per_step(skeleton, settings.sampling, rule)
    return [scores[g] for g in genotypes], {"supernet steps": half + len(groups) * share, "path passes": passes,
                                            "minutes": trained_minutes(folders)}


def finetune_scores(config: ExperimentConfig, steps: int, lr_scale: float, genotypes: list[Genotype], keep: Path,
                    world: World) -> tuple[list[float], dict]:
    """Each subnet trained `steps` steps from its inherited weights (the audit's recipe, lr scaled, no warm-up),
    then its validation mIoU; the cost is the run's supernet plus `steps` path passes per subnet."""
    supernet = load_supernets(config, torch.device("cpu"))[config.space.skeleton]
    train = config.audit.train.model_copy(update={"steps": steps, "lr": config.audit.train.lr * lr_scale,
                                                  "warmup_steps": 0, "zero_init_residual": False,
                                                  "checkpoint_every": steps})
    batches, scores, folders = validation_batches(config), [], [keep / f"finetune{steps}" / g.key for g in genotypes]
    for genotype, folder in zip(genotypes, folders):
        network = train_standalone(genotype, config.data, train, folder, world, config.space.width, config.seed,
                                   supernet, section="audit.train")
        scores.append(evaluate(network, batches, config.space.num_classes, world.device)["miou"])
    return scores, {"supernet steps": config.supernet.steps,
                    "path passes": supernet_passes(config) + steps * len(genotypes), "minutes": trained_minutes(folders)}


def proxies(parser: argparse.ArgumentParser, config: ExperimentConfig, args: argparse.Namespace) -> pd.DataFrame:
    """One row per proxy (module docstring), the references' ceiling and the run's proxy first. The proxies' scores
    are kept in --keep/scores.json, so they can be computed while the audit still trains the references."""
    if not config.paths.front.is_file():
        parser.error(f"{config.paths.front}: no front of this experiment (run it with --stages ...,search first)")
    genotypes, world = list(audit_genotypes(config)), init_world(config.supernet.device)
    kept = args.keep / "scores.json"
    scored = json.loads(kept.read_text()) if kept.is_file() else {}
    jobs = [(text, lambda text=text: variant_scores(variant_config(parser, config, text, args.keep), genotypes, world))
            for text in args.variant]
    for layer in args.fewshot:
        layer = costliest_layer(config) if layer < 0 else layer
        jobs.append((f"few-shot: layer {layer} split by expansion",
                     lambda layer=layer: fewshot_scores(config, layer, genotypes, args.keep, world)))
    for steps in budgets_of(parser, args.finetune, "--finetune") if args.finetune else []:
        jobs.append((f"{config.supernet.sampling} + {steps} fine-tuning steps",
                     lambda steps=steps: finetune_scores(config, steps, args.finetune_lr, genotypes, args.keep, world)))
    keys = [g.key for g in genotypes]
    for name, job in jobs:
        if set(keys) - set(scored.get(name, {}).get("scores", {})):  # new, or audited subnets added since
            scores, cost = job()
            scored[name] = {"scores": dict(zip(keys, scores)), "cost": cost}
            args.keep.mkdir(parents=True, exist_ok=True)
            write_json(kept, scored)
            print(f"{name}: scored ({cost})", flush=True)
    table = references(parser, config)
    rows = [ceiling_row(table, config.seed),
            ranked(f"{config.supernet.sampling} (the run's)", table.inherited_miou, table, config.seed, run_cost(config))]
    rows += [ranked(name, table.key.map(scored[name]["scores"]), table, config.seed, scored[name]["cost"])
             for name, _ in jobs]
    return pd.DataFrame(rows).set_index("proxy")


def budgets_of(parser: argparse.ArgumentParser, text: str, option: str) -> list[int]:
    try:
        values = sorted({int(value) for value in text.split(",") if value})
    except ValueError:
        parser.error(f"{option}: comma-separated step counts, got {text!r}")
    if not values or values[0] < 1:
        parser.error(f"{option}: positive step counts, got {text!r}")
    return values


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("part", choices=("curve", "proxies"))
    parser.add_argument("config")
    parser.add_argument("overrides", nargs="*")
    parser.add_argument("--steps", default="750,1500,3000", help="curve: stand-alone budgets, comma-separated")
    parser.add_argument("--variant", action="append", default=[], help="proxies: a supernet trained with these "
                        "settings changed (e.g. sampling=fair; distill=false; steps=3000), as many as given")
    parser.add_argument("--fewshot", type=int, action="append", default=[], help="proxies: few-shot supernets split "
                        "at this layer (-1: the layer whose candidates differ most in MACs), as many as given")
    parser.add_argument("--finetune", default="", help="proxies: fine-tuning budgets (steps), comma-separated")
    parser.add_argument("--finetune-lr", type=float, default=0.2, help="proxies: fine-tuning learning rate as a "
                        "fraction of audit.train.lr")
    parser.add_argument("--keep", type=Path, required=True, help="folder for the trainings (rerun with it to resume)")
    args = parser.parse_args()
    config = one_skeleton(parser, load(args.config, args.overrides))
    torch.set_num_threads(1)
    print(host())
    if args.part == "curve":
        table = curve(config, budgets_of(parser, args.steps, "--steps"), args.keep)
        print(markdown(table))
    else:
        print(markdown(proxies(parser, config, args)))


if __name__ == "__main__":
    main()
