"""Training step (forward + backward) of a sampled supernet path vs the same path extracted as a stand-alone network.

    python -m benchmarks.supernet_step [--skeleton small] [--batch 8] [--size 256 512] [--genotypes 4] [--repeats 5]

The two are timed alternately on the same batch, so machine noise hits both alike; the figure is the ratio of
medians per genotype (goal <= 1.10x).
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch
import torch.nn.functional as F

from spaces import Supernet


def step_seconds(run, images: torch.Tensor, labels: torch.Tensor, params) -> float:
    """One forward + backward; gradients are cleared (set to None) first, as an optimizer loop would."""
    for p in params:
        p.grad = None
    start = time.perf_counter()
    F.cross_entropy(run(images), labels, ignore_index=255).backward()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skeleton", default="small")
    parser.add_argument("--width", type=float, default=1.0)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--size", type=int, nargs=2, default=(256, 512))
    parser.add_argument("--genotypes", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    torch.manual_seed(args.seed)
    supernet = Supernet(args.skeleton, args.width).train()
    images = torch.randn(args.batch, 3, *args.size)
    labels = torch.randint(0, supernet.num_classes, (args.batch, *args.size))
    print(f"{platform.processor() or platform.machine()}, torch {torch.__version__}, {torch.get_num_threads()} "
          f"threads; skeleton {args.skeleton} width {args.width}, batch {args.batch}, "
          f"{args.size[0]}x{args.size[1]}, {args.repeats} timed steps each after 1 warm-up")
    print(f"{'genotype':<64} {'supernet s':>10} {'subnet s':>9} {'ratio':>6}")
    ratios = []
    for index in range(args.genotypes):
        genotype = supernet.sample(args.seed + index)
        subnet = supernet.extract(genotype).train()
        runs = {
            "path": (lambda x, g=genotype: supernet(x, g), list(supernet.parameters())),
            "alone": (subnet, list(subnet.parameters())),
        }
        times: dict[str, list[float]] = {name: [] for name in runs}
        for repeat in range(args.repeats + 1):
            for name, (run, params) in runs.items():
                seconds = step_seconds(run, images, labels, params)
                if repeat:
                    times[name].append(seconds)
        a, b = statistics.median(times["path"]), statistics.median(times["alone"])
        ratios.append(a / b)
        print(f"{genotype.key:<64} {a:>10.3f} {b:>9.3f} {a / b:>5.2f}x")
    print(f"median ratio supernet path / stand-alone: {statistics.median(ratios):.3f}x (goal <= 1.10x)")


if __name__ == "__main__":
    main()
