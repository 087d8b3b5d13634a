"""The GPU check: what the engine's GPU paths do on the GPU at hand, in one command, in a few minutes.

    python -m benchmarks.gpu_check [--repeats 50] [--steps 20]

Runs, each in turn, printing what ran, what was skipped and why, and what failed (the rest still runs):
1. latency of the six released SqueezeNAS networks at 1x3x1024x2048: the torch-cuda-fp16 backend (fp16, CUDA
   graphs, hardware/backends.py) beside eager fp32 timed with CUDA events, median ms and the ratio;
2. a supernet training step (Small skeleton, 19 classes, sandwich rule, batch 8 at 512x1024) with AMP and in fp32:
   images/s and the ratio;
3. a DNAS round (a weight step and an architecture step through the Gumbel-mixed supernet, batch 2 at 256x512);
4. a 1-GPU NCCL process group through torchrun: an all_reduce checked for its value;
5. the tensorrt-fp16 backend on lat_small when the tensorrt package imports.
On a machine without CUDA it says so and exits 0. Exit code 1 when a step that could run failed.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
import traceback
from typing import Callable

import torch

ROWS: list[tuple[str, str, str]] = []  # (step, status, figures or reason)


def step(name: str, run: Callable[[], str]) -> None:
    print(f"-- {name}", flush=True)
    try:
        ROWS.append((name, "ran", run()))
    except Skipped as reason:
        ROWS.append((name, "skipped", str(reason)))
    except Exception as error:  # a check reports and moves on: the next step may still tell something
        traceback.print_exc()
        ROWS.append((name, "FAILED", f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"))


class Skipped(Exception):
    """A step that cannot run here; the message says why."""


def eager_fp32_ms(model: torch.nn.Module, shape: tuple[int, ...], repeats: int) -> float:
    model = model.float().cuda().eval()
    x = torch.randn(*shape, device="cuda")
    times = []
    with torch.inference_mode():
        for _ in range(10):
            model(x)
        for _ in range(repeats):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            model(x)
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end))
    return statistics.median(times)


def released_latency(repeats: int) -> str:
    from hardware.backends import backend
    from hardware.protocol import MeasurementProtocol, measure
    from spaces.squeezenas import NAMES, released

    protocol = MeasurementProtocol(warmup=10, repeats=repeats, batch=1, size=(1024, 2048), threads=1)
    cuda = backend("torch-cuda-fp16")
    lines = []
    for name in NAMES:
        fp16 = measure(released(name), cuda, protocol).stats.median_ms
        fp32 = eager_fp32_ms(released(name), protocol.shape, repeats)
        lines.append(f"{name} fp16+graph {fp16:.2f} ms, eager fp32 {fp32:.2f} ms (x{fp32 / fp16:.1f})")
    return "; ".join(lines)


def training_speed(steps: int) -> str:
    from engine.config import TrainConfig
    from engine.training.distributed import World
    from engine.training.sampling import step_paths
    from engine.training.trainer import build_state, train_step
    from spaces import Supernet

    world = World(0, 1, 0, torch.device("cuda"))
    images = torch.randn(8, 3, 512, 1024, device="cuda")
    labels = torch.randint(0, 19, (8, 512, 1024), device="cuda")
    rates = {}
    for amp in (True, False):
        torch.manual_seed(0)
        supernet = Supernet("small", 1.0, 19).cuda().train()
        settings = TrainConfig(steps=steps + 2, batch_size=8, amp=amp, sampling="sandwich")
        state = build_state(supernet, settings, world)
        for index in range(steps + 2):
            if index == 2:  # two warm-up steps (cuDNN autotuning, allocator)
                torch.cuda.synchronize()
                start = time.perf_counter()
            train_step(state, images, labels, step_paths("small", "sandwich", 0, index), settings, world)
        torch.cuda.synchronize()
        rates[amp] = 8 * steps / (time.perf_counter() - start)
    peak = torch.cuda.max_memory_allocated() / 2**30
    return (f"sandwich step (4 paths), batch 8 at 512x1024: AMP {rates[True]:.1f} images/s, fp32 {rates[False]:.1f} "
            f"images/s (x{rates[True] / rates[False]:.2f}); peak memory {peak:.1f} GiB")


def dnas_round() -> str:
    from engine.config import ExperimentConfig
    from engine.search.dnas import arch_step, build_state, relative_costs, weight_step
    from spaces.costs import cost_table

    config = ExperimentConfig(name="gpu-check", space={"skeleton": "small", "input_size": [256, 512]})
    state = build_state(config, 19, torch.device("cuda"))
    costs = relative_costs(cost_table("small", (256, 512), 1.0, 19).macs.astype(float), torch.device("cuda"))
    images = torch.randn(2, 3, 256, 512, device="cuda")
    labels = torch.randint(0, 19, (2, 256, 512), device="cuda")
    torch.cuda.reset_peak_memory_stats()
    torch.cuda.synchronize()
    start = time.perf_counter()
    weight_loss = weight_step(state, images, labels, 5.0)
    arch = arch_step(state, images, labels, 5.0, 1.0, costs)
    torch.cuda.synchronize()
    return (f"one round at batch 2, 256x512: {time.perf_counter() - start:.2f} s, weight loss {weight_loss:.3f}, "
            f"arch loss {arch['loss']:.3f}, peak memory {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB")


def nccl_group() -> str:
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=1", "-m", "benchmarks.gpu_check",
               "--nccl-worker"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    if result.returncode != 0:
        raise RuntimeError(f"torchrun exited {result.returncode}: {result.stderr.strip().splitlines()[-1:]}")
    return result.stdout.strip().splitlines()[-1]


def nccl_worker() -> None:
    import torch.distributed as dist

    dist.init_process_group("nccl")
    tensor = torch.full((4,), float(dist.get_rank() + 1), device=f"cuda:{os.environ.get('LOCAL_RANK', 0)}")
    dist.all_reduce(tensor)
    expected = sum(range(1, dist.get_world_size() + 1))
    assert torch.all(tensor == expected), tensor
    print(f"NCCL {'.'.join(map(str, torch.cuda.nccl.version()))}: all_reduce over {dist.get_world_size()} rank(s) "
          f"gave {tensor[0].item():g} as expected")
    dist.destroy_process_group()


def tensorrt_latency(repeats: int) -> str:
    from hardware.backends import TensorRTFP16, backend
    from hardware.protocol import MeasurementProtocol, measure
    from spaces.squeezenas import released

    missing = TensorRTFP16.missing()
    if missing:
        raise Skipped(missing)
    protocol = MeasurementProtocol(warmup=10, repeats=repeats, batch=1, size=(1024, 2048), threads=1)
    trt = backend("tensorrt-fp16")
    return f"lat_small {measure(released('lat_small'), trt, protocol).stats.median_ms:.2f} ms ({trt.version})"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=50, help="timed runs per latency figure")
    parser.add_argument("--steps", type=int, default=20, help="timed training steps per precision")
    parser.add_argument("--nccl-worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.nccl_worker:
        nccl_worker()
        return 0
    if not torch.cuda.is_available():
        print(f"no GPU: torch {torch.__version__} sees no CUDA device; nothing to check here")
        return 0
    print(f"{torch.cuda.get_device_name()}, torch {torch.__version__}, CUDA {torch.version.cuda}")
    step("released networks: torch-cuda-fp16 (CUDA graphs) vs eager fp32", lambda: released_latency(args.repeats))
    step("supernet training step: AMP vs fp32", lambda: training_speed(args.steps))
    step("DNAS round on the GPU", dnas_round)
    step("NCCL process group through torchrun", nccl_group)
    step("tensorrt-fp16 backend", lambda: tensorrt_latency(args.repeats))
    print("\n| step | status | figures or reason |\n| --- | --- | --- |")
    for name, status, text in ROWS:
        print(f"| {name} | {status} | {text} |")
    return 1 if any(status == "FAILED" for _, status, _ in ROWS) else 0


if __name__ == "__main__":
    sys.exit(main())
