"""The differentiable search (DNAS) of FBNet and SqueezeNAS: one genotype per cost weight lambda.

Every layer of a supernet mixes all its candidates (spaces.Supernet.mix) with Gumbel-softmax weights drawn per
image from per-layer architecture logits, uniform at the start, at a temperature annealed from temperature[0] to
temperature[1] (exponential, linear or constant). Network weights (SGD) and logits (Adam) are trained by separate
optimisers on alternating batches: a weight step on one batch with cross-entropy (ignore 255), then an
architecture step on the next with cross-entropy + lambda * E[cost] / E_uniform[cost]. E[cost] is the sum over
layers of sum_i w_i * cost_i, cost_i the candidate's MACs or its latency in the per-block lookup table measured on
the target device (hardware/lookup.py); dividing by the same sum under uniform weights makes lambda unit-free
(lambda = 1 weighs the starting mixture's cost as one nat of cross-entropy). The first `warmup_steps` weight
steps, with uniform logits, are shared by every lambda; each lambda then sees the same batches. The genotype is
the per-layer argmax of the logits.

Memory: the mixed forward runs all candidates of every layer and keeps their activations for the backward pass,
about sum_i activations(candidate_i) / activations(one candidate) times a single path's (benchmarks/dnas_memory.py
measures it), so the batch that fits is that much smaller than for one-shot supernet training.

Writes runs/<name>/dnas/warmup/ and dnas/lambda_<value>/ (checkpoint.pt, log.csv, result.json); a killed search
resumes from its last checkpoint and a part whose result exists is not redone.
"""

from __future__ import annotations

import csv
import json
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
import torch.nn.functional as F
from rich.progress import Progress
from torch import nn

from engine.config import DnasConfig, ExperimentConfig
from engine.data.loader import step_batches
from engine.data.splits import train_set
from engine.errors import TrainingDiverged
from engine.files import write_json
from engine.training import checkpoint
from engine.training.loop import IGNORE
from engine.training.optim import build_optimizer, build_scheduler
from spaces import Genotype, Supernet


class Architecture(nn.Module):
    """Per-layer architecture logits [layers, candidates], zero (uniform) at the start."""

    def __init__(self, layers: int, candidates: int):
        super().__init__()
        self.logits = nn.Parameter(torch.zeros(layers, candidates))

    def weights(self, batch: int, temperature: float, noise: bool = True) -> list[torch.Tensor]:
        """Mixing weights per layer, [batch, candidates] each: Gumbel-softmax samples per image, or (noise=False)
        the tempered softmax of the logits, whose limit at a zero temperature is the one-hot argmax."""
        logits = self.logits.unsqueeze(0).expand(batch, -1, -1)
        mixed = F.gumbel_softmax(logits, tau=temperature, dim=-1) if noise else F.softmax(logits / temperature, -1)
        return list(mixed.unbind(1))

    def probabilities(self) -> np.ndarray:
        return F.softmax(self.logits.detach(), -1).cpu().numpy()

    def genotype(self, skeleton_name: str) -> Genotype:
        return Genotype(skeleton_name, tuple(int(i) for i in self.logits.detach().argmax(-1)))


def expected_cost(weights: list[torch.Tensor], costs: torch.Tensor) -> torch.Tensor:
    """The batch mean of sum over layers of sum_i w_i * cost_i (costs [layers, candidates])."""
    return sum((w * c).sum(-1) for w, c in zip(weights, costs.unbind(0))).mean()


def temperature_at(settings: DnasConfig, round_: int) -> float:
    """The Gumbel-softmax temperature of search round `round_` (0-based) of settings.steps."""
    start, end = settings.temperature
    progress = round_ / max(1, settings.steps - 1)
    if settings.schedule == "exponential":
        return start * (end / start) ** progress
    if settings.schedule == "linear":
        return start + (end - start) * progress
    return start


@dataclass
class DnasState:
    supernet: Supernet
    architecture: Architecture
    weights_optimizer: torch.optim.Optimizer
    arch_optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    step: int = 0  # weight steps taken (warm-up included)
    seconds: float = 0.0

    def payload(self) -> dict:
        return {"supernet": self.supernet.state_dict(), "architecture": self.architecture.state_dict(),
                "weights_optimizer": self.weights_optimizer.state_dict(),
                "arch_optimizer": self.arch_optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                "step": self.step, "seconds": self.seconds, "rng": checkpoint.rng_state()}

    def restore(self, saved: dict, rng: bool = True) -> None:
        self.supernet.load_state_dict(saved["supernet"])
        self.architecture.load_state_dict(saved["architecture"])
        self.weights_optimizer.load_state_dict(saved["weights_optimizer"])
        self.arch_optimizer.load_state_dict(saved["arch_optimizer"])
        self.scheduler.load_state_dict(saved["scheduler"])
        self.step, self.seconds = saved["step"], saved["seconds"]
        if rng:
            checkpoint.set_rng_state(saved["rng"])


def build_state(config: ExperimentConfig, num_classes: int, device: torch.device) -> DnasState:
    settings = config.search.dnas
    torch.manual_seed(config.seed)
    supernet = Supernet(config.space.skeleton, config.space.width, num_classes).to(device)
    layers, candidates = len(supernet.layers), len(supernet.layers[0].candidates)
    architecture = Architecture(layers, candidates).to(device)
    weights_optimizer = build_optimizer(supernet, "sgd", settings.lr, settings.momentum, settings.weight_decay)
    arch_optimizer = torch.optim.Adam(architecture.parameters(), lr=settings.arch_lr,
                                      weight_decay=settings.arch_weight_decay)
    scheduler = build_scheduler(weights_optimizer, settings.warmup_steps + settings.steps, 0, "cosine")
    return DnasState(supernet, architecture, weights_optimizer, arch_optimizer, scheduler)


def segmentation_loss(logits: torch.Tensor, labels: torch.Tensor, where: str) -> torch.Tensor:
    loss = F.cross_entropy(logits.float(), labels, ignore_index=IGNORE)
    if not torch.isfinite(loss):
        raise TrainingDiverged(f"DNAS loss is not finite at {where}; lower search.dnas.lr or arch_lr")
    return loss


def weight_step(state: DnasState, images: torch.Tensor, labels: torch.Tensor, temperature: float) -> float:
    """One SGD step of the supernet's weights through Gumbel-mixed layers; the logits stay fixed."""
    with torch.no_grad():
        weights = state.architecture.weights(images.shape[0], temperature)
    loss = segmentation_loss(state.supernet.mix(images, weights), labels, f"weight step {state.step}")
    state.weights_optimizer.zero_grad(set_to_none=True)
    loss.backward()
    state.weights_optimizer.step()
    state.scheduler.step()
    state.step += 1
    return loss.item()


def arch_step(state: DnasState, images: torch.Tensor, labels: torch.Tensor, temperature: float, lam: float,
              costs: torch.Tensor) -> dict[str, float]:
    """One Adam step of the logits on cross-entropy + lambda * relative expected cost; the weights stay fixed."""
    state.supernet.requires_grad_(False)
    try:
        weights = state.architecture.weights(images.shape[0], temperature)
        ce = segmentation_loss(state.supernet.mix(images, weights), labels, f"architecture step {state.step}")
        cost = expected_cost(weights, costs)
        loss = ce + lam * cost
        state.arch_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        state.arch_optimizer.step()
    finally:
        state.supernet.requires_grad_(True)
    return {"ce": ce.item(), "cost": cost.item(), "loss": loss.item()}


def relative_costs(costs: np.ndarray, device: torch.device) -> torch.Tensor:
    """Per-layer candidate costs divided by the uniform mixture's expected cost (sum over layers of the mean)."""
    reference = costs.mean(axis=1).sum()
    if not reference > 0:
        raise ValueError("every candidate of every layer costs 0: nothing for lambda to weigh")
    return torch.as_tensor(costs / reference, dtype=torch.float32, device=device)


def entropy(probabilities: np.ndarray) -> float:
    """Mean per-layer entropy of the architecture distribution, in nats (log(candidates) when uniform)."""
    return float(-(probabilities * np.log(np.clip(probabilities, 1e-12, None))).sum(1).mean())


class SearchLog:
    """log.csv of one lambda's search, trimmed to the checkpoint's round on resume."""

    FIELDS = ("round", "temperature", "weight_loss", "ce", "cost", "loss", "entropy", "argmax")

    def __init__(self, path: Path, resume_round: int):
        self.path = path
        rows = []
        if path.exists():
            with path.open() as handle:
                rows = [r for r in csv.DictReader(handle) if int(r["round"]) <= resume_round]
        with path.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, self.FIELDS)
            writer.writeheader()
            writer.writerows(rows)

    def log(self, row: dict) -> None:
        with self.path.open("a", newline="") as handle:
            csv.DictWriter(handle, self.FIELDS).writerow(row)


class DnasSearch:
    """The DNAS of one experiment: the shared warm-up, then one search per lambda (module docstring)."""

    def __init__(self, config: ExperimentConfig, costs: np.ndarray, device: torch.device):
        self.config, self.settings, self.device = config, config.search.dnas, device
        self.out = config.paths.dnas_dir
        self.dataset = train_set(config.data, config.seed)
        self.costs = relative_costs(costs, device)
        total = self.settings.warmup_steps + 2 * self.settings.steps
        self.batches = step_batches(self.dataset, self.settings.batch_size, config.seed, total)

    def state(self) -> DnasState:
        return build_state(self.config, self.dataset.num_classes, self.device)

    def _stream(self, start: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        with torch.random.fork_rng(devices=[]):  # a data loader draws a seed: keep Gumbel draws resumable
            batches = self.batches(start)
        for images, labels in batches:
            yield images.to(self.device), labels.to(self.device)

    def warmup(self) -> dict:
        """Weight steps with uniform logits at the start temperature; dnas/warmup/checkpoint.pt when done."""
        folder = self.out / "warmup"
        done = folder / "result.json"
        if done.exists():
            return json.loads(done.read_text())
        state = self.state()
        ckpt = folder / "checkpoint.pt"
        if ckpt.exists():
            state.restore(checkpoint.load(ckpt, self.device))
        temperature = self.settings.temperature[0]
        steps = self.settings.warmup_steps
        stream = self._stream(state.step)
        with Progress() as progress:
            task = progress.add_task("DNAS warm-up (weights only)", total=steps, completed=state.step)
            while state.step < steps:
                start = time.perf_counter()
                weight_step(state, *next(stream), temperature)
                state.seconds += time.perf_counter() - start
                progress.update(task, completed=state.step)
                if state.step % self.settings.checkpoint_every == 0 or state.step == steps:
                    checkpoint.save(ckpt, state.payload())
        if not ckpt.exists():  # warmup_steps = 0: the searches start from the initial weights
            checkpoint.save(ckpt, state.payload())
        result = {"steps": steps, "seconds": state.seconds}
        write_json(done, result)
        return result

    def search(self, index: int, lam: float) -> dict:
        """The search for one lambda, from the warm-up's weights; its result (genotype, probabilities, cost)."""
        folder = self.out / f"lambda_{lam:g}"
        done = folder / "result.json"
        if done.exists():
            return json.loads(done.read_text())
        folder.mkdir(parents=True, exist_ok=True)
        state = self.state()
        ckpt = folder / "checkpoint.pt"
        resumed = ckpt.exists()
        state.restore(checkpoint.load(ckpt if resumed else self.out / "warmup" / "checkpoint.pt", self.device),
                      rng=resumed)
        if not resumed:
            state.seconds = 0.0
            torch.manual_seed(self.config.seed * 1_000_003 + zlib.crc32(f"{lam:g}".encode()))  # by value, not place
        warm = self.settings.warmup_steps
        log = SearchLog(folder / "log.csv", state.step - warm)
        self._rounds(state, lam, log, ckpt, warm)
        return self._result(state, index, lam, done)

    def _rounds(self, state: DnasState, lam: float, log: SearchLog, ckpt: Path, warm: int) -> None:
        steps, skeleton = self.settings.steps, self.config.space.skeleton
        stream = self._stream(warm + 2 * (state.step - warm))
        with Progress() as progress:
            task = progress.add_task(f"DNAS lambda {lam:g}", total=steps, completed=state.step - warm)
            while state.step - warm < steps:
                round_ = state.step - warm
                temperature = temperature_at(self.settings, round_)
                start = time.perf_counter()
                weight_loss = weight_step(state, *next(stream), temperature)
                arch = arch_step(state, *next(stream), temperature, lam, self.costs)
                state.seconds += time.perf_counter() - start
                progress.update(task, completed=round_ + 1)
                if (round_ + 1) % 10 == 0 or round_ + 1 == steps:
                    log.log({"round": round_ + 1, "temperature": temperature, "weight_loss": weight_loss, **arch,
                             "entropy": entropy(state.architecture.probabilities()),
                             "argmax": state.architecture.genotype(skeleton).key})
                if (round_ + 1) % self.settings.checkpoint_every == 0 or round_ + 1 == steps:
                    checkpoint.save(ckpt, state.payload())

    def _result(self, state: DnasState, index: int, lam: float, done: Path) -> dict:
        genotype = state.architecture.genotype(self.config.space.skeleton)
        probabilities = state.architecture.probabilities()
        layers = np.arange(len(genotype.choices))
        chosen = probabilities[layers, genotype.choices]
        result = {"index": index, "lambda": lam, "key": genotype.key, "names": genotype.names,
                  "relative_cost": float(self.costs.cpu().numpy()[layers, genotype.choices].sum()),
                  "rounds": self.settings.steps,
                  "seconds": state.seconds, "min_chosen_probability": float(chosen.min()),
                  "entropy": entropy(probabilities), "probabilities": probabilities.round(4).tolist()}
        write_json(done, result)
        return result

    def run(self) -> tuple[dict, list[dict]]:
        """The warm-up and every lambda's search; (warm-up summary, results in the order of the lambdas)."""
        warm = self.warmup()
        return warm, [self.search(i, lam) for i, lam in enumerate(self.settings.lambdas)]
