"""Memory and time of a DNAS step (every candidate mixed) against a one-shot supernet step (one path).

    python -m benchmarks.dnas_memory [--batches 2 4 8] [--steps 3] [--threads 1] [--config experiments/quickstart.yaml]

At the config's scale on this CPU. Each (mode, batch) runs in a fresh process so its peak resident memory is its
own: the process builds the supernet and the batch, takes one untimed step, records its peak RSS, takes `steps`
timed steps and reports the growth of the peak RSS over the untimed step's start (activations kept for the
backward pass, gradients and optimiser state) and the median step time. Modes: "path" is a one-shot step through
the largest path (the most expensive single path), "mixed" a DNAS weight step (all candidates, Gumbel weights),
"mixed + arch" a weight step and an architecture step (one DNAS round). Prints a markdown table and the ratios.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import platform
import resource
import statistics
import time

import torch
import torch.nn.functional as F

from benchmarks.common import one_skeleton
from engine.config import load
from engine.latency.model import space_costs
from engine.search.dnas import Architecture, expected_cost, relative_costs
from spaces import Supernet, largest

MODES = ("path", "mixed", "mixed + arch")


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def one_run(config_path: str, mode: str, batch: int, steps: int, threads: int, queue: mp.Queue) -> None:
    torch.set_num_threads(threads)
    config = load(config_path)
    space = config.space
    torch.manual_seed(0)
    supernet = Supernet(space.skeleton, space.width, space.num_classes).train()
    architecture = Architecture(len(supernet.layers), len(supernet.layers[0].candidates))
    costs = relative_costs(space_costs(config).tables[config.space.skeleton].macs.astype(float), torch.device("cpu"))
    weights_opt = torch.optim.SGD(supernet.parameters(), lr=0.01, momentum=0.9)
    arch_opt = torch.optim.Adam(architecture.parameters(), lr=0.01)
    images = torch.randn(batch, 3, *space.input_size)
    labels = torch.randint(0, space.num_classes, (batch, *space.input_size))
    path = largest(space.skeleton)

    def step() -> None:
        if mode == "path":
            loss = F.cross_entropy(supernet(images, path), labels)
        else:
            with torch.no_grad():
                mix = architecture.weights(batch, 1.0)
            loss = F.cross_entropy(supernet.mix(images, mix), labels)
        weights_opt.zero_grad()
        loss.backward()
        weights_opt.step()
        if mode == "mixed + arch":
            mix = architecture.weights(batch, 1.0)
            loss = F.cross_entropy(supernet.mix(images, mix), labels) + expected_cost(mix, costs)
            arch_opt.zero_grad()
            loss.backward()
            arch_opt.step()

    start = peak_mib()
    step()
    grown = peak_mib() - start
    times = []
    for _ in range(steps):
        begin = time.perf_counter()
        step()
        times.append(time.perf_counter() - begin)
    queue.put((grown, statistics.median(times)))


def measure(config: str, mode: str, batch: int, steps: int, threads: int) -> tuple[float, float]:
    context = mp.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=one_run, args=(config, mode, batch, steps, threads, queue))
    process.start()
    result = queue.get()
    process.join()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="experiments/quickstart.yaml")
    parser.add_argument("--batches", type=int, nargs="+", default=[2, 4, 8])
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    config = load(args.config)
    one_skeleton(parser, config)
    print(f"{platform.processor() or platform.machine()}, torch {torch.__version__}, {args.threads} thread(s); "
          f"skeleton {config.space.skeleton} width {config.space.width} input {list(config.space.input_size)}")
    print("| batch | mode | peak memory growth (MiB) | step (s) |\n|---|---|---|---|")
    for batch in args.batches:
        found = {mode: measure(args.config, mode, batch, args.steps, args.threads) for mode in MODES}
        for mode, (mib, seconds) in found.items():
            print(f"| {batch} | {mode} | {mib:.0f} | {seconds:.3f} |")
        path_mib, path_s = found["path"]
        print(f"| {batch} | ratio mixed / path | {found['mixed'][0] / path_mib:.1f}x | "
              f"{found['mixed'][1] / path_s:.1f}x |")


if __name__ == "__main__":
    main()
