"""The differentiable search (DNAS) of FBNet and SqueezeNAS: one genotype per cost weight lambda.

Every layer of a supernet mixes all its candidates (spaces.Supernet.mix) with Gumbel-softmax weights drawn per image
from per-layer architecture logits, uniform at the start, at a temperature annealed from temperature[0] to
temperature[1] (exponential, linear or constant). Network weights (SGD) and logits (Adam) are trained by separate
optimisers on alternating batches: a weight step on one batch with cross-entropy (ignore 255), then an architecture step
on the next with cross-entropy + lambda * E[cost] / E_uniform[cost]. E[cost] is the sum over layers of sum_i w_i *
cost_i, cost_i the candidate's MACs or its latency in the per-block lookup table measured on the target device
(hardware/lookup.py); dividing by the same sum under uniform weights makes lambda unit-free (lambda = 1 weighs the
starting mixture's cost as one nat of cross-entropy). The first `warmup_steps` weight steps, with uniform logits, are
shared by every lambda; each lambda then sees the same batches. The genotype is the per-layer argmax of the logits.

Memory: the mixed forward runs all candidates of every layer and keeps their activations for the backward pass, about
sum_i activations(candidate_i) / activations(one candidate) times a single path's (benchmarks/dnas_memory.py measures
it), so the batch that fits is that much smaller than for one-shot supernet training.

Both phases run in the shared training loop (engine/training/loop.py) with its standard hooks: a warm-up step is one
weight step, a search round one weight step and one architecture step. Writes runs/<name>/dnas/warmup/ and
dnas/lambda_<value>/ (checkpoint.pt, log.csv, result.json; under dnas/<skeleton>/ when the run has several); a killed
search resumes from its last checkpoint and a part whose result exists is not redone.
"""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from engine.config import DnasConfig, ExperimentConfig
from engine.data.classes import IGNORE_INDEX
from engine.data.loader import step_batches
from engine.data.splits import train_set
from engine.files import write_json
from engine.paths import CHECKPOINT
from engine.training import checkpoint
from engine.training.distributed import World
from engine.training.hooks import MetricsLog, standard_hooks
from engine.training.loop import Data, Loop, Step
from engine.training.optim import build_optimizer, build_scheduler
from spaces import Genotype, Supernet

WARMUP_FIELDS = ("step", "weight_loss", "lr", "elapsed_s")
SEARCH_FIELDS = ("round", "temperature", "weight_loss", "ce", "cost", "loss", "entropy", "argmax")
LOG_EVERY = 10
HINT = "lower search.dnas.lr or search.dnas.arch_lr"


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
    """The stateful parts of a DNAS phase, saved by name in its checkpoint."""

    supernet: Supernet
    architecture: Architecture
    weights_optimizer: torch.optim.Optimizer
    arch_optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR


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


def segmentation_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits.float(), labels, ignore_index=IGNORE_INDEX)


def weight_step(state: DnasState, images: torch.Tensor, labels: torch.Tensor, temperature: float) -> float:
    """One SGD step of the supernet's weights through Gumbel-mixed layers; the logits stay fixed."""
    with torch.no_grad():
        weights = state.architecture.weights(images.shape[0], temperature)
    loss = segmentation_loss(state.supernet.mix(images, weights), labels)
    state.weights_optimizer.zero_grad(set_to_none=True)
    loss.backward()
    state.weights_optimizer.step()
    state.scheduler.step()
    return loss.item()


def arch_step(state: DnasState, images: torch.Tensor, labels: torch.Tensor, temperature: float, lam: float,
              costs: torch.Tensor) -> dict[str, float]:
    """One Adam step of the logits on cross-entropy + lambda * relative expected cost; the weights stay fixed."""
    state.supernet.requires_grad_(False)
    try:
        weights = state.architecture.weights(images.shape[0], temperature)
        ce = segmentation_loss(state.supernet.mix(images, weights), labels)
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


class DnasSearch:
    """The DNAS of one experiment: the shared warm-up, then one search per lambda (module docstring)."""

    def __init__(self, config: ExperimentConfig, costs: np.ndarray, device: torch.device, out: Path):
        """`config` of one skeleton (ExperimentConfig.of_skeleton); checkpoints in `out`."""
        self.config, self.settings, self.device = config, config.search.dnas, device
        self.world = World(0, 1, 0, device)
        self.out = out
        self.dataset = train_set(config.data, config.seed)
        self.costs = relative_costs(costs, device)
        total = self.settings.warmup_steps + 2 * self.settings.steps
        self.batches = step_batches(self.dataset, self.settings.batch_size, config.seed, total)

    def state(self) -> DnasState:
        return build_state(self.config, self.dataset.num_classes, self.device)

    def _stream(self, start: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        with torch.random.fork_rng(devices=[]):  # a data loader draws a seed: keep Gumbel draws resumable
            batches = self.batches(start)
        return ((images.to(self.device), labels.to(self.device)) for images, labels in batches)

    def _pairs(self, start: int) -> Iterator[tuple[tuple[torch.Tensor, torch.Tensor], ...]]:
        """Round r's weight batch and architecture batch: batches warmup_steps + 2r and the one after."""
        stream = self._stream(self.settings.warmup_steps + 2 * start)
        return zip(stream, stream)

    def _loop(self, state: DnasState, folder: Path, step: Step, data: Data, total: int, fields: tuple[str, ...],
              row: Callable[[Loop], dict], description: str, metric: str) -> Loop:
        log = MetricsLog(folder / "log.csv", fields, row, LOG_EVERY)
        hooks = standard_hooks(folder, self.settings.checkpoint_every, log, description, HINT, self.world, metric)
        return Loop(step, data, total, vars(state), hooks)

    def warmup(self) -> dict:
        """Weight steps with uniform logits at the start temperature; dnas/warmup/checkpoint.pt when done."""
        folder = self.out / "warmup"
        done = folder / "result.json"
        if done.exists():
            return json.loads(done.read_text())
        state, temperature = self.state(), self.settings.temperature[0]

        def step(index: int, batch: tuple[torch.Tensor, torch.Tensor]) -> dict[str, float]:
            return {"weight_loss": weight_step(state, *batch, temperature)}

        def row(loop: Loop) -> dict:
            return {"step": loop.step, "weight_loss": loop.output["weight_loss"],
                    "lr": state.scheduler.get_last_lr()[0], "elapsed_s": loop.seconds}

        loop = self._loop(state, folder, step, self._stream, self.settings.warmup_steps, WARMUP_FIELDS, row,
                          "DNAS warm-up (weights only)", "weight_loss")
        loop.run()
        result = {"steps": self.settings.warmup_steps, "seconds": loop.seconds}
        write_json(done, result)
        return result

    def search(self, index: int, lam: float) -> dict:
        """The search for one lambda, from the warm-up's weights; its result (genotype, probabilities, cost)."""
        folder = self.out / f"lambda_{lam:g}"
        done = folder / "result.json"
        if done.exists():
            return json.loads(done.read_text())
        state, skeleton = self.state(), self.config.space.skeleton

        def one_round(round_: int, batches: tuple[tuple[torch.Tensor, torch.Tensor], ...]) -> dict[str, float]:
            temperature = temperature_at(self.settings, round_)
            weight_loss = weight_step(state, *batches[0], temperature)
            return {"temperature": temperature, "weight_loss": weight_loss,
                    **arch_step(state, *batches[1], temperature, lam, self.costs)}

        def row(loop: Loop) -> dict:
            return {"round": loop.step, **loop.output, "entropy": entropy(state.architecture.probabilities()),
                    "argmax": state.architecture.genotype(skeleton).key}

        loop = self._loop(state, folder, one_round, self._pairs, self.settings.steps, SEARCH_FIELDS, row,
                          f"DNAS lambda {lam:g}", "loss")
        if not (folder / CHECKPOINT).exists():  # a fresh start: the warm-up's weights, a seed of lambda's own
            loop.load_parts(checkpoint.load(self.out / "warmup" / CHECKPOINT))
            torch.manual_seed(self.config.seed * 1_000_003 + zlib.crc32(f"{lam:g}".encode()))  # by value, not place
        loop.run()
        return self._result(state, index, lam, done, loop.seconds)

    def _result(self, state: DnasState, index: int, lam: float, done: Path, seconds: float) -> dict:
        genotype = state.architecture.genotype(self.config.space.skeleton)
        probabilities = state.architecture.probabilities()
        layers = np.arange(len(genotype.choices))
        chosen = probabilities[layers, genotype.choices]
        result = {"index": index, "lambda": lam, "key": genotype.key, "names": genotype.names,
                  "relative_cost": float(self.costs.cpu().numpy()[layers, genotype.choices].sum()),
                  "rounds": self.settings.steps,
                  "seconds": seconds, "min_chosen_probability": float(chosen.min()),
                  "entropy": entropy(probabilities), "probabilities": probabilities.round(4).tolist()}
        write_json(done, result)
        return result

    def run(self) -> tuple[dict, list[dict]]:
        """The warm-up and every lambda's search; (warm-up summary, results in the order of the lambdas)."""
        warm = self.warmup()
        return warm, [self.search(i, lam) for i, lam in enumerate(self.settings.lambdas)]
