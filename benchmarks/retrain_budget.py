"""Where latency stops buying retrained mIoU: a ladder of networks retrained at several training budgets.

    python -m benchmarks.retrain_budget experiments/quickstart.yaml --run runs/quickstart --steps 300,1000 \
        --keep /tmp/budget

The ladder: the smallest path, the hand-made designs k3_e1_g1, k3_e3_g1 and k3_e6_g1 in every layer, the largest
path and, with --run, the front points of a finished run of the experiment (its front.csv). Each network is trained
stand-alone from scratch on the CPU with the experiment's retraining recipe (retrain.train, its steps replaced by
each --steps; as the retrain stage trains a pick with retrain.init=scratch, engine.training.standalone), scored on
the validation split (mIoU and per-class IoU), and measured with the experiment's latency protocol and statistic
through its measurement store (measurements the run stored serve as they are). The table says, for each budget, up
to which latency retrained mIoU still rises: latency budgets beyond that point pick networks the retraining cannot
tell apart. Resumable: run the same command with the same --keep (another command's folder is refused).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import pandas as pd
import torch

from benchmarks.common import host, markdown, one_skeleton, scratch
from engine.config import ExperimentConfig, load
from engine.evaluation.inherited import evaluate, validation_batches
from engine.latency.meter import Meter, latency_of
from engine.stages.baseline import handmade
from engine.training.distributed import World
from engine.training.standalone import train_standalone
from spaces import Genotype, build, largest, smallest
from spaces.counting import count_macs

HANDMADE = ("k3_e1_g1", "k3_e3_g1", "k3_e6_g1")


def ladder(skeleton: str, run: Path | None) -> dict[Genotype, str]:
    """The networks to retrain, each with its name (front points as `front`)."""
    named = {smallest(skeleton): "smallest", **{handmade(skeleton, c): c for c in HANDMADE},
             largest(skeleton): "largest"}
    if run is not None:
        for key in pd.read_csv(run / "front.csv").key:
            named.setdefault(Genotype.from_key(key), "front")
    return named


def retrained(config: ExperimentConfig, genotype: Genotype, steps: int, folder: Path, world: World,
              batches) -> dict:
    """The genotype trained from scratch with retrain.train for `steps`, then its scores on the validation batches."""
    settings = config.retrain.train.model_copy(update={"steps": steps,
                                                       "checkpoint_every": min(config.retrain.train.checkpoint_every,
                                                                               steps)})
    start = time.perf_counter()
    network = train_standalone(genotype, config.data, settings, folder, world, config.space.width, config.seed,
                               section="retrain.train")
    scores = evaluate(network, batches, config.space.num_classes, world.device)
    return {"miou": scores["miou"], "iou": scores["iou"], "minutes": (time.perf_counter() - start) / 60}


def arguments(parser: argparse.ArgumentParser) -> tuple[argparse.Namespace, list[int]]:
    """The command line, checked; the budgets as distinct positive step counts."""
    args = parser.parse_args()
    try:
        budgets = sorted({int(steps) for steps in args.steps.split(",")})
    except ValueError:
        parser.error(f"--steps: comma-separated step counts, got {args.steps!r}")
    if budgets[0] < 1:
        parser.error(f"--steps: step counts must be positive, got {args.steps!r}")
    if args.run is not None and not (args.run / "front.csv").is_file():
        parser.error(f"--run {args.run}: no front.csv (run the experiment's search first)")
    return args, budgets


def same_arguments(parser: argparse.ArgumentParser, folder: Path, args: argparse.Namespace) -> None:
    """Record the command in a new --keep folder; refuse to resume one made by another command (its networks would
    be reused as they are)."""
    command = {"config": args.config, "overrides": args.overrides, "run": str(args.run)}
    record = folder / "arguments.json"
    if record.exists() and json.loads(record.read_text()) != command:
        parser.error(f"--keep {folder} was made by {json.loads(record.read_text())}, not by this command; "
                     f"use a new folder")
    folder.mkdir(parents=True, exist_ok=True)
    record.write_text(json.dumps(command))


def ladder_rows(config: ExperimentConfig, networks: dict[Genotype, str], budgets: list[int], folder: Path,
                world: World) -> pd.DataFrame:
    """One row per network: its measurement, MACs and, per budget, retrained mIoU and per-class IoU."""
    statistic = config.latency.statistic
    milliseconds = latency_of(Meter(config).measure(list(networks), "the ladder"), statistic)
    batches = validation_batches(config)
    rows = []
    for (genotype, name), ms in zip(networks.items(), milliseconds):
        macs = count_macs(build(genotype, config.space.width, config.space.num_classes), tuple(config.space.input_size))
        row = {"network": name, "key": genotype.key, f"measured ms ({statistic})": float(ms), "MMACs": macs / 1e6}
        for steps in budgets:
            scores = retrained(config, genotype, steps, folder / f"{steps}" / genotype.key, world, batches)
            row[f"mIoU@{steps}"] = scores["miou"]
            row[f"IoU@{steps}"] = " ".join(f"{iou:.2f}" for iou in scores["iou"])
            print(f"{name} {genotype.key} {ms:.2f} ms, {steps} steps: mIoU {scores['miou']:.4f} "
                  f"({scores['minutes']:.1f} min)", flush=True)
        rows.append(row)
    return pd.DataFrame(rows).sort_values(f"measured ms ({statistic})").set_index("network")


def report(table: pd.DataFrame, budgets: list[int], classes: tuple[str, ...]) -> None:
    latency = table.columns[1]
    per_class = [c for c in table if c.startswith("IoU@")]
    print(markdown(table.drop(columns=per_class).round({latency: 2, "MMACs": 1, **{f"mIoU@{s}": 4 for s in budgets}})))
    print(f"per-class IoU ({', '.join(classes)}):")
    print(markdown(table[[latency, *per_class]].round({latency: 2})))
    for steps in budgets:
        rho = table[latency].corr(table[f"mIoU@{steps}"], method="spearman")
        print(f"{steps} steps: Spearman rho of measured latency and retrained mIoU over the ladder {rho:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config")
    parser.add_argument("overrides", nargs="*")
    parser.add_argument("--run", type=Path, help="a finished run of the experiment: its front points join the ladder")
    parser.add_argument("--steps", default="300", help="retraining budgets, comma-separated steps")
    parser.add_argument("--keep", type=Path, help="folder for the trainings (kept; rerun with it to resume)")
    args, budgets = arguments(parser)
    resume = args.keep is not None and args.keep.exists()
    with scratch(parser, None if resume else args.keep) as folder:
        folder = args.keep if resume else folder
        same_arguments(parser, folder, args)
        config = one_skeleton(parser, load(args.config, args.overrides))
        networks = ladder(config.space.skeletons[0], args.run)
        print(f"{host()}, torch {torch.__version__}, {torch.get_num_threads()} threads; {config.data.kind}, skeleton "
              f"{config.space.skeleton} width {config.space.width}, crop {list(config.data.crop)}; {len(networks)} "
              f"networks retrained from scratch on the CPU (retrain.train: batch {config.retrain.train.batch_size}, "
              f"lr {config.retrain.train.lr}; retrain.init ignored) for {budgets} steps", flush=True)
        table = ladder_rows(config, networks, budgets, folder, World(0, 1, 0, torch.device("cpu")))
        report(table, budgets, config.data.class_names)
        (folder / "retrain_budget.json").write_text(json.dumps(table.reset_index().to_dict("records")))


if __name__ == "__main__":
    main()
