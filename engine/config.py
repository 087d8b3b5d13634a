"""Experiment configuration: YAML files validated by pydantic, with `a.b=value` overrides from the command line.

Importing this module loads neither torch nor the data stack: dataset kinds are known by their class names
(engine/data/classes.py), skeletons by the space's registry, read when a configuration is validated.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import import_module
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from engine.data.classes import DATASET_CLASSES, IGNORE_INDEX
from engine.errors import ConfigError
from engine.paths import RunPaths

OPERATIONAL = ("*.checkpoint_every", "*.log_every", "*.num_workers", "data.cache_mb", "supernet.device",
               "*.train.device", "latency.agent", "latency.store", "latency.replay", "search.workers",
               "search.scheduler", "search.storage", "search.dnas.checkpoint_every", "retrain.workers", "audit.workers",
               "runs_dir", "name")
"""Settings that change how a stage runs, not what it computes: changing one does not make a stage rerun."""

ADDED = {"latency.transfer": {"enabled": False, "sources": None, "shots": 12, "min_rows": 30}, "audit.seeds": 1}
"""Settings added to a stage's configuration after runs were made, with the values under which the stage computes what
it computed before: a stage recorded without one stays current while the run keeps that value (engine/runner.py)."""

UNSEEN = ("!data.test_split",)
"""Left out of the configuration of the stages that see train and val only (a stage's config entry '!path')."""



@dataclass(frozen=True)
class OneOf:
    """A setting whose allowed values are the names of a registry (a dict or tuple in another module, imported when a
    value is validated, so this module loads without torch): the registry is the one list of those values."""

    module: str
    registry: str

    def names(self) -> tuple[str, ...]:
        return tuple(getattr(import_module(self.module), self.registry))

    def __call__(self, value: str) -> str:
        known = self.names()
        if value not in known:
            raise ValueError(f"unknown {value!r}; known: {', '.join(known)}")
        return value


def one_of(field: Any) -> OneOf | None:
    """The registry a field's values come from (its validator, also inside list[...]), or None."""
    found = list(field.metadata)
    annotation = field.annotation
    for arg in (annotation, *getattr(annotation, "__args__", ())):
        found += getattr(arg, "__metadata__", ())
    checks = [item.func for item in found if isinstance(getattr(item, "func", None), OneOf)]
    return checks[0] if checks else None


def registered(module: str, registry: str) -> Any:
    """The type of a setting that names an entry of `module.registry` (see OneOf)."""
    return Annotated[str, AfterValidator(OneOf(module, registry))]


DatasetKind = registered("engine.data.classes", "DATASET_CLASSES")
Backend = registered("hardware.backends", "BACKENDS")
Optimizer = registered("engine.training.optim", "OPTIMIZERS")
Schedule = registered("engine.training.optim", "SCHEDULES")
Sampling = registered("engine.training.sampling", "SAMPLING")
Algorithm = registered("engine.search.operators", "ALGORITHMS")
AccuracyRegressor = registered("predictors.accuracy", "KINDS")


MAX_SIDE = 8192
"""The largest height or width of an image size setting (space.input_size, data.crop, data.eval_size, ...): a 8192 x
8192 float batch of one already takes 800 MB."""
MAX_SCALE = 8.0
"""The largest factor data.scale may resize a training image by."""
MAX_WORKERS = 256
"""The most worker processes a setting may ask for; the search caps its own at this machine's cores."""


def _size(name: str, value: tuple[int, int], smallest: int = 1) -> tuple[int, int]:
    """An image size [height, width] between `smallest` and MAX_SIDE pixels a side."""
    if not all(smallest <= side <= MAX_SIDE for side in value):
        raise ValueError(f"{name} {list(value)}: each side must lie in {smallest}..{MAX_SIDE} pixels")
    return value


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SpaceConfig(_Strict):
    """What a network can be: the skeleton (the fixed frame whose layers the search fills with candidate blocks), its
    width, and the input size every network is counted and timed at."""

    skeleton: str | list[str] = Field("small", description="the skeleton searched, or a list of skeletons of one "
                                      "search space searched together (one supernet each, one front over all: "
                                      "[small, large, xlarge])")
    width: float = Field(1.0, gt=0, le=4, description="channel multiplier of every layer (channel counts rounded to "
                         "multiples of 4; 1.0: the paper's networks); smaller is faster and less accurate")
    num_classes: int | None = Field(None, ge=1, description="classes the network's head predicts; null: the number "
                                    "of classes of the data (another number is refused)")
    input_size: tuple[int, int] = Field((1024, 2048), description="[height, width] of the input every network is "
                                        "timed, counted (MACs) and exported at, at least 32 each; set it to the "
                                        "size your images are evaluated at (data.eval_size or their own size)")

    @field_validator("skeleton")
    @classmethod
    def _known_skeleton(cls, value: str | list[str]) -> str | list[str]:
        from spaces.space import SKELETONS, space_of  # the space's registry; spaces/ imports torch, so only here

        names = [value] if isinstance(value, str) else value
        for name in names:
            if name not in SKELETONS:
                raise ValueError(f"unknown skeleton {name!r}; known: {', '.join(SKELETONS)}")
        if not names or len(set(names)) != len(names):
            raise ValueError(f"a list of distinct skeletons, got {names}")
        if len({space_of(name).name for name in names}) > 1:
            raise ValueError(f"skeletons of one search space only, got {names}")
        return names[0] if len(names) == 1 else list(names)

    @property
    def skeletons(self) -> tuple[str, ...]:
        """The skeletons of the run, in the configured order (one for a single skeleton)."""
        return (self.skeleton,) if isinstance(self.skeleton, str) else tuple(self.skeleton)

    @property
    def several(self) -> bool:
        """Whether the run searches several skeletons."""
        return len(self.skeletons) > 1

    @field_validator("input_size")
    @classmethod
    def _positive_size(cls, value: tuple[int, int]) -> tuple[int, int]:
        return _size("input size", value, 32)


class ClassSpec(_Strict):
    """A class of a folder data set: its name and, optionally, the colour the report draws it in."""

    name: str = Field(min_length=1, max_length=64, description="the class's name, as reports and metrics.json show it")
    color: tuple[int, int, int] | None = Field(None, description="[r, g, b], 0..255 each, the colour the report "
                                               "draws the class in; null: a colour of the report's own")

    @field_validator("color")
    @classmethod
    def _rgb(cls, value: tuple[int, int, int] | None) -> tuple[int, int, int] | None:
        if value is not None and not all(0 <= channel <= 255 for channel in value):
            raise ValueError(f"a colour is [r, g, b] with each in 0..255, got {list(value)}")
        return value


class DataConfig(_Strict):
    """Where images come from: synthetic streets (generated, the default), CamVid or Cityscapes under `root`, or
    your own images and PNG labels (`kind: folder`, docs/datasets.md)."""

    kind: DatasetKind = Field("synthetic", description="synthetic (generated streets, no download), camvid, "
                              "cityscapes, folder (`<root>/<split>/images` + `<root>/<split>/labels`), or a kind "
                              "added with engine.data.register_dataset")
    root: Path | None = Field(None, description="the data set's folder, required by every kind but synthetic (the "
                              "layout of each kind: docs/datasets.md)")
    classes: list[ClassSpec] | None = Field(
        None, description="kind folder: the class names in id order (label value 0 is the first), each a name or "
        "{name, color: [r, g, b]}; the network's head, per-class IoU and the report follow them")
    ignore_index: int = Field(IGNORE_INDEX, ge=0, le=255, description="kind folder: the label value that is no class "
                              "(borders, unlabelled pixels), left out of the loss and the metric")
    label_map: dict[int, int] | None = Field(None, description="kind folder: label value in the PNG -> class id (or "
                                             "ignore_index); values not listed must be class ids or ignore_index "
                                             "(which stays ignored)")
    train_split: str = Field("train", description="the split the supernet and every stand-alone network train on "
                             "(its folder under root; synthetic: seeds its scenes)")
    val_split: str = Field("val", description="the split the search scores subnets on and retrained networks "
                           "report val mIoU on (unused with val_from_train)")
    test_split: str | None = Field(None, description="a split scored only after the search: the retrained picks and "
                                   "the hand-made comparison report val and test mIoU (CamVid: test/ + testannot/); "
                                   "null: no test split")
    val_from_train: int | None = Field(None, ge=1, description="hold out this many training images (a fixed seed, "
                                       "the same in every run) as the validation set the search scores on; "
                                       "data.val_split is then free to be the test split (Cityscapes: val)")
    crop: tuple[int, int] = Field((256, 512), description="[height, width] of the random crop every training image "
                                  "is cut to after scaling (a smaller image is padded, its padding ignored by the "
                                  "loss)")
    scale: tuple[float, float] = Field((0.5, 2.0), description="[low, high]: each training image is first resized by "
                                       "a factor drawn uniformly from this range (of its own size)")
    jitter: float = Field(0.2, ge=0, le=1, description="colour jitter of training images: brightness, contrast and "
                          "saturation each scaled by a factor drawn from [1 - jitter, 1 + jitter]; 0: none")
    eval_size: tuple[int, int] | None = Field(None, description="[height, width] every validation and test image is "
                                              "resized to before scoring; null: each at its own size (a warning when "
                                              "that is not space.input_size)")
    cache_mb: int = Field(0, ge=0, le=1_000_000, description="megabytes of decoded training images each training "
                          "process keeps after their first read (4 bytes a pixel: CamVid's 367 frames take 254), so "
                          "a training that revisits them decodes each once; 0: decode on every read")
    synthetic_size: tuple[int, int] = Field((256, 512), description="kind synthetic: [height, width] of the generated "
                                            "scenes")
    synthetic_train: int = Field(512, ge=1, description="kind synthetic: scenes generated for the training split")
    synthetic_val: int = Field(64, ge=1, description="kind synthetic: scenes generated for each other split "
                               "(validation, test)")

    @field_validator("crop", "eval_size", "synthetic_size")
    @classmethod
    def _sizes(cls, value: tuple[int, int] | None, info) -> tuple[int, int] | None:
        return value if value is None else _size(f"data.{info.field_name}", value, 8)

    @field_validator("scale")
    @classmethod
    def _scale_range(cls, value: tuple[float, float]) -> tuple[float, float]:
        if not 0 < value[0] <= value[1] <= MAX_SCALE:
            raise ValueError(f"data.scale {list(value)}: needs 0 < low <= high <= {MAX_SCALE}")
        return value

    @model_validator(mode="after")
    def _distinct_splits(self) -> "DataConfig":
        searched = (self.train_split,) if self.val_from_train else (self.train_split, self.val_split)
        if self.test_split is not None and self.test_split in searched:
            raise ValueError(f"data.test_split {self.test_split!r} is also the train or val split; the test split "
                             f"must be data the search never saw")
        return self

    @field_validator("classes", mode="before")
    @classmethod
    def _names_alone(cls, value: Any) -> Any:
        """A class given by its name alone is a ClassSpec without a colour."""
        return [{"name": entry} if isinstance(entry, str) else entry for entry in value] \
            if isinstance(value, list) else value

    @model_validator(mode="after")
    def _classes_of_a_folder(self) -> "DataConfig":
        if DATASET_CLASSES[self.kind] is not None:
            for name in ("classes", "label_map"):
                if getattr(self, name) is not None:
                    raise ValueError(f"data.{name} is for kind folder; kind {self.kind} has its own classes")
            return self
        if not self.classes:
            raise ValueError(f"data.classes is required for kind {self.kind}: the class names in id order, e.g. "
                             f"[background, road, car]")
        names = self.class_names
        if len(set(names)) != len(names):
            raise ValueError(f"data.classes names a class twice: {list(names)}")
        if self.ignore_index < len(names) and not self.label_map:
            raise ValueError(f"data.ignore_index {self.ignore_index} is also a class id (classes 0..{len(names) - 1}); "
                             f"give data.label_map (label value -> class id) to say where each class comes from")
        for raw, target in (self.label_map or {}).items():
            if not 0 <= raw <= 255 or not (0 <= target < len(names) or target == self.ignore_index):
                raise ValueError(f"data.label_map {raw}: {target}: label values are 0..255 and map to a class id "
                                 f"0..{len(names) - 1} or ignore_index {self.ignore_index}")
        return self

    @property
    def class_names(self) -> tuple[str, ...]:
        """The classes of the data, in id order: data.classes for a folder, the kind's own otherwise."""
        if DATASET_CLASSES[self.kind] is None:
            return tuple(entry.name for entry in self.classes)
        return DATASET_CLASSES[self.kind]

    @property
    def class_colors(self) -> list[tuple[int, int, int] | None] | None:
        """The colours data.classes gives (None where a class has none), or None when it gives none."""
        colors = [entry.color for entry in self.classes or []]
        return colors if any(color is not None for color in colors) else None

    @model_validator(mode="after")
    def _root_for_files(self) -> "DataConfig":
        if self.kind != "synthetic":
            if self.root is None:
                raise ValueError(f"data.root is required for {self.kind}: pass data.root=/path/to/{self.kind}")
            if not self.root.is_dir():
                raise ValueError(f"data.root {self.root} is not a directory")
        return self


class EvalConfig(_Strict):
    """Inherited-weight evaluation: BN recalibration images (0 disables) and the validation subset."""

    calibration_images: int = Field(64, ge=0, description="training images (augmented as in training) whose "
                                    "forward passes recompute each subnet's BatchNorm statistics before it is scored; "
                                    "0: the supernet's running statistics as they are")
    val_images: int | None = Field(None, ge=1, description="score on the first this many validation images only "
                                   "(faster, noisier; retrained networks too); null: every validation image")
    batch_size: int = Field(8, ge=1, description="images per forward pass when recalibrating and scoring")


class TrainConfig(_Strict):
    """A training: the supernet's (`supernet`), the retrain stage's (`retrain.train`) or the audit's and the baseline
    comparison's (`audit.train`); batch_size is the global batch, split evenly over ranks."""

    steps: int = Field(1000, ge=1, description="optimisation steps of the training, each on one batch; the "
                       "training's length (and most of a run's time)")
    batch_size: int = Field(8, ge=1, description="images per step, over all torchrun ranks together (each rank takes "
                            "an even share)")
    optimizer: Optimizer = Field("sgd", description="sgd (Nesterov momentum when momentum > 0) or adamw; biases and "
                                 "normalisation parameters get no weight decay")
    lr: float = Field(0.05, gt=0, description="peak learning rate, reached after warmup_steps, then decayed by "
                      "schedule towards 0 at the last step")
    momentum: float = Field(0.9, ge=0, lt=1, description="SGD's momentum (adamw ignores it)")
    weight_decay: float = Field(4e-5, ge=0, description="weight decay of convolution and linear weights")
    schedule: Schedule = Field("poly", description="the learning rate's decay after the warm-up: poly (power 0.9) "
                               "or cosine")
    warmup_steps: int = Field(0, ge=0, description="steps of linear learning-rate warm-up from lr / warmup_steps to "
                              "lr; raise it when a training diverges early")
    sampling: Sampling = Field("uniform", description="supernet only: the paths a step trains; uniform: one random "
                               "path; sandwich: the largest, sandwich_paths random ones and the smallest; "
                               "sandwich_rare: the sandwich on one step in extremes_every; fair: as many paths as "
                               "candidates, each candidate of each layer in one (FairNAS)")
    sandwich_paths: int = Field(2, ge=0, le=64, description="supernet with sampling sandwich or sandwich_rare: random "
                                "paths trained each step besides the largest and the smallest")
    extremes_every: int = Field(4, ge=1, description="supernet with sampling sandwich_rare: the largest and smallest "
                                "paths are trained on one step in this many; the other steps train sandwich_paths + 2 "
                                "random paths")
    distill: bool = Field(True, description="supernet with a sandwich rule: the other paths of a step also learn the "
                          "largest path's per-pixel class distribution (in-place distillation)")
    zero_init_residual: bool = Field(True, description="training from fresh weights (the supernet, a stand-alone "
                                     "network from scratch): every residual block starts as the identity (its last "
                                     "BN scale zeroed; Goyal et al. 2017, BigNAS), so deep networks train as fast as "
                                     "shallow ones at first; an inherited start keeps the supernet's weights")
    class_weights: Literal["none", "median_frequency"] = Field(
        "none", description="median_frequency: cross-entropy weighted by median-frequency balancing (SegNet's "
        "CamVid protocol), so thin and rare classes count; none: plain cross-entropy")
    amp: bool = Field(True, description="mixed precision (float16 autocast with gradient scaling) when training on "
                      "CUDA; no effect on a CPU")
    device: str = Field("auto", pattern=r"^(auto|cpu|cuda(:\d+)?)$", description="auto: CUDA when torch sees a GPU, "
                        "else the CPU; cpu; cuda (cuda:N too, yet a process takes GPU LOCAL_RANK: 0 without "
                        "torchrun). supernet.device is the device of the run's own process (every stage); "
                        "retrain.train.device and audit.train.device that of their Dask worker processes (workers > 1)")
    checkpoint_every: int = Field(100, ge=1, description="steps between checkpoints (checkpoint.pt in the training's "
                                  "work folder), from which an interrupted training resumes")
    log_every: int = Field(10, ge=1, description="steps between rows of the training's metrics.csv (loss, learning "
                           "rate, images per second; TensorBoard when installed)")
    num_workers: int = Field(0, ge=0, description="DataLoader worker processes preparing training batches; 0: in the "
                             "training process")


class AgentConfig(_Strict):
    """Where the device agent (`python -m hardware.agent` on the target) listens and how to authenticate."""

    url: str = Field("http://127.0.0.1:8765", pattern=r"^https?://[^\s/]+(/.*)?$", description="the agent's "
                     "address, http(s)://host:port (through an SSH tunnel: the tunnel's local end)")
    token_file: Path | None = Field(None, description="file holding the agent's token (at least 16 characters, the "
                                    "same the agent reads); null: the token in $SQUEEZENAS_AGENT_TOKEN")
    timeout_s: float = Field(900.0, gt=0, description="seconds one measurement may take, a TensorRT engine build "
                             "included, before its request fails")
    retries: int = Field(3, ge=0, description="retries of a request that could not connect, timed out or got a 5xx "
                         "answer, each after a longer wait (a 4xx answer is not retried)")


class TransferConfig(_Strict):
    """Transfer of the latency predictor from other devices' measurements of this space (docs/devices.md)."""

    enabled: bool = Field(False, description="measure `shots` genotypes chosen where the sources disagree, instead of "
                          "latency.measurements, and fit the sources' combination beside the plain predictor (the "
                          "one of lower cross-validated error is kept, in the search's refits too); without sources "
                          "in the store the stage measures latency.measurements as usual and says why")
    sources: list[str] | None = Field(None, min_length=1, description="device names in the measurement store to "
                                      "transfer from (each under every backend, input size and thread count it "
                                      "was measured with); null: every device the store holds")
    shots: int = Field(12, ge=5, le=100_000, description="genotypes measured on this device to fit the transfer")
    min_rows: int = Field(30, ge=10, le=100_000, description="measurements of this space a source needs to count")


class LatencyConfig(_Strict):
    """The latency stage: which device measures, how (protocol), how many genotypes, and the predictor's target."""

    device: Literal["local", "agent"] = Field("local", description="local: this machine times the networks with "
                                              "latency.backend; agent: the device agent at latency.agent.url does "
                                              "(docs/devices.md)")
    backend: Backend = Field("torch-cpu", description="what runs a network while it is timed; with an agent, the "
                             "backend the agent serves (a different one is refused)")
    device_name: str | None = Field(None, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$",
                                    description="the device's name in the measurement store, so runs on the same "
                                    "device share measurements; null: this machine's name, or the agent's")
    agent: AgentConfig = AgentConfig()
    measurements: int = Field(60, ge=10, le=100_000, description="genotypes the latency stage measures to fit the latency "
                              "predictor, spread over MACs")
    heldout: int = Field(20, ge=2, le=100_000, description="random genotypes measured only to test the predictor")
    active: int = Field(0, ge=0, le=100_000, description="extra genotypes measured where the predictor is least sure near the "
                        "front (chosen with inherited mIoU, so the stage then needs the supernet); 0: none")
    pool: int = Field(2000, ge=16, le=100_000, description="random genotypes the measured ones are chosen from")
    statistic: Literal["median", "mean", "p90", "min"] = Field(
        "median", description="the value of a measurement's timed runs the search uses; min (the fastest run, as "
        "timeit advises) is the steadiest on a shared CPU, whose other load only ever adds time")
    warmup: int = Field(5, ge=0, le=1000, description="untimed runs before a measurement's timed ones")
    repeats: int = Field(20, ge=1, le=10000, description="timed runs of a measurement, summarised by statistic; a "
                         "stored measurement with fewer timed runs is taken again")
    batch: int = Field(1, ge=1, le=256, description="images in the timed input (batch x 3 x space.input_size); the latency is "
                       "that of one forward pass of the whole batch")
    threads: int = Field(1, ge=1, le=1024, description="CPU threads a measurement runs on (torch-cpu, "
                         "onnxruntime-cpu)")
    store: Path | None = Field(None, description="folder of the measurement store, where every run's measurements "
                               "are kept per device and reused; null: $SQUEEZENAS_MEASUREMENTS, else "
                               "squeezenas-engine/measurements in the user's cache folder (~/.cache)")
    transfer: TransferConfig = TransferConfig()
    replay: Path | None = Field(None, description="HW-NAS-Bench's lookup-table file (hwnasbench_fbnet_lut.json) "
                                "the replay-* backends answer from (FBNet skeletons only)")

    @model_validator(mode="after")
    def _shots_from_the_pool(self) -> "LatencyConfig":
        if self.transfer.enabled and self.transfer.shots > self.pool:
            raise ValueError(f"latency.transfer.shots {self.transfer.shots} exceeds latency.pool {self.pool}, the "
                             f"genotypes they are chosen from; raise the pool or lower the shots")
        return self


class Constraints(_Strict):
    """Limits a subnet must keep to be feasible; an infeasible subnet is still evaluated, but
    NSGA-II ranks it behind the feasible ones and it is never on the front."""

    max_latency_ms: float | None = Field(None, gt=0, description="most latency in ms (measured, else predicted); "
                                         "null: no limit")
    max_macs: float | None = Field(None, gt=0, description="most multiply-accumulates of one forward pass at "
                                   "space.input_size (e.g. 2.5e9); null: no limit")


class DnasConfig(_Strict):
    """The differentiable search (engine/search/dnas.py): one genotype per cost weight in `lambdas`."""

    lambdas: list[float] = Field([0.0, 0.5, 1.0, 2.0], min_length=1,
                                 description="cost weights, one searched genotype each, distinct and >= 0: the "
                                 "architecture loss is cross-entropy + lambda x E[cost] / the uniform mixture's "
                                 "cost; 0 searches for accuracy alone")
    cost: Literal["macs", "lookup"] = Field("macs", description="the cost DNAS weighs; macs: each candidate's MACs; "
                                            "lookup: each block's latency in a table measured on this machine "
                                            "(needs latency.device local)")
    warmup_steps: int = Field(100, ge=0, description="weight steps with uniform logits, shared by all lambdas")
    steps: int = Field(200, ge=1, description="rounds of one weight batch and one architecture batch per lambda")
    batch_size: int = Field(8, ge=1, description="images per weight batch and per architecture batch (the mixed "
                            "forward runs every candidate, so far less fits than in supernet training)")
    lr: float = Field(0.05, gt=0, description="learning rate of the network weights (SGD with momentum, cosine decay "
                      "over warm-up and search)")
    momentum: float = Field(0.9, ge=0, lt=1, description="momentum of the weights' SGD")
    weight_decay: float = Field(4e-5, ge=0, description="weight decay of the network weights")
    arch_lr: float = Field(0.01, gt=0, description="learning rate of the architecture logits (Adam)")
    arch_weight_decay: float = Field(5e-4, ge=0, description="weight decay of the architecture logits (Adam)")
    temperature: tuple[float, float] = Field((5.0, 0.2), description="[start, end] of the Gumbel-softmax "
                                             "temperature, start >= end > 0")
    schedule: Literal["exponential", "linear", "constant"] = Field(
        "exponential", description="how the temperature goes from start to end over the steps (constant: start "
        "throughout)")
    checkpoint_every: int = Field(50, ge=1, description="steps between checkpoints of a DNAS phase, from which an "
                                  "interrupted search resumes")

    @field_validator("lambdas")
    @classmethod
    def _non_negative(cls, value: list[float]) -> list[float]:
        if any(not lam >= 0 for lam in value):
            raise ValueError(f"lambdas must be >= 0, got {value}")
        if len(set(value)) != len(value):
            raise ValueError(f"lambdas must differ, got {value}")
        return value

    @field_validator("temperature")
    @classmethod
    def _cooling(cls, value: tuple[float, float]) -> tuple[float, float]:
        if not 0 < value[1] <= value[0]:
            raise ValueError(f"temperature [start, end] needs start >= end > 0, got {list(value)}")
        return value


class SurrogateConfig(_Strict):
    """The accuracy-surrogate strategy, MSuNAS's loop (engine/search/surrogate.py). Each of `search.rounds` rounds fits
    an inherited-mIoU predictor to the subnets truly evaluated so far, runs `search.generations` generations of
    `search.algorithm` on it, and truly evaluates `per_round` of what it found."""

    enabled: bool = Field(False, description="run the evolution strategy through an accuracy surrogate: far fewer "
                          "subnets scored for a front as good (see the section's intro)")
    initial: int | None = Field(12, ge=8, description="subnets truly evaluated before the first fit, the "
                                "extremes and random ones; null: search.population")
    per_round: int = Field(4, ge=1, description="subnets truly evaluated per round: chosen by `selection`, then "
                           "the surrogate's most uncertain candidates (small batches refit more often; raise it to "
                           "keep many Dask workers busy)")
    selection: Literal["hypervolume", "spread"] = Field(
        "hypervolume", description="hypervolume: greedily the candidates whose optimistic point adds most hypervolume "
        "to the true front; spread: the surrogate's front spread over latency, a quarter kept for the most uncertain")
    optimism: float = Field(1.0, ge=0.0, description="standard deviations of the surrogate's ensemble added to its "
                            "mIoU when judging a candidate's hypervolume gain (selection: hypervolume)")
    local: int = Field(1, ge=0, description="of each round's batch, up to this many mutants of the true front's "
                       "points (one or two layers changed), chosen first by the same hypervolume gain")
    kinds: list[AccuracyRegressor] = Field(["ridge", "gp", "trees", "mlp"], min_length=1,
                                                                description="regressors tried each round")
    members: int = Field(5, ge=1, le=50, description="bootstrap copies of the chosen regressor (its uncertainty)")


RENAMED_STRATEGIES = {"nsga2": "evolution"}
"""Strategy names of configurations, studies and run files made before they were renamed, and their names now."""


class SearchConfig(_Strict):
    """The search stage: an evolutionary search (search.algorithm, pymoo) over genotypes and/or DNAS; every
    evaluation an Optuna trial; Dask scores."""

    strategies: list[Literal["evolution", "dnas"]] = Field(
        ["evolution"], min_length=1, description="evolution (formerly nsga2, still accepted): the evolutionary "
        "search (search.algorithm); dnas: the differentiable search's lambda sweep (search.dnas); both: one joint front")
    dnas: DnasConfig = DnasConfig()
    algorithm: Algorithm = Field(
        "nsga2", description="pymoo's algorithm of the evolutionary strategy (engine/search/operators.py)")
    population: int = Field(24, ge=4, description="subnets the algorithm keeps from generation to generation; the "
                            "first generation is the largest and smallest subnets and random ones")
    generations: int = Field(8, ge=1, description="generations of search.algorithm (with the accuracy surrogate: "
                             "generations on the surrogate in each round)")
    offspring: int | None = Field(None, ge=1, description="new subnets bred each generation; null: the population "
                                  "size")
    mutation_rate: float | None = Field(None, gt=0, le=1, description="probability that a layer's candidate is "
                                        "changed in a bred subnet; null: 1 / the number of layers")
    accuracy_surrogate: SurrogateConfig = SurrogateConfig()
    rounds: int = Field(3, ge=1, description="the evolution's generations in this many rounds (at most one a "
                        "generation); after each but the last the front is measured and the latency predictor refit")
    measure_per_round: int = Field(8, ge=1, description="most subnets measured after a round (the front's unmeasured "
                                   "first, then the least certain near it)")
    measure_limit: int = Field(100, ge=0, description="most subnets the search measures in all; 0: search and front "
                               "on predictions alone (one-shot predictor)")
    recheck: bool = Field(True, description="a search measurement above its prediction interval is taken once more and "
                          "the lower kept (a loaded host or a throttled device inflates measurements); not counted "
                          "in measure_limit")
    constraints: Constraints = Constraints()
    references: bool = Field(True, description="score and measure SqueezeNAS's released networks of the skeletons "
                             "after the search: reference points in evaluations.csv and the report, not trials")
    storage: str | None = Field(None, description="the Optuna study's database, an SQLAlchemy URL; null: "
                                "`sqlite:///<runs_dir>/<name>/study.db`")
    workers: int = Field(1, ge=1, le=MAX_WORKERS, description="processes scoring subnets; > 1: a Dask LocalCluster "
                         "of this many, at most this machine's cores (more are capped, with a log line)")
    scheduler: str | None = Field(None, description="address of a running Dask scheduler whose workers score "
                                  "subnets (overrides workers); null: none")

    @field_validator("strategies", mode="before")
    @classmethod
    def _renamed(cls, value: Any) -> Any:
        return [RENAMED_STRATEGIES.get(name, name) for name in value] if isinstance(value, list) else value


def _label(label: str) -> str:
    if not label.replace("_", "").replace("-", "").isalnum():
        raise ValueError(f"budget label {label!r} must be letters, digits, '_' or '-' (it names a folder)")
    return label


class SelectionConfig(_Strict):
    """The select stage: the highest-mIoU front point under each latency budget (label -> ms, or label -> a place
    along the front's latency range), and the knee."""

    budgets_ms: dict[str, float] = Field({"small": 35.0, "large": 100.0}, description="latency budgets, label -> ms: "
                                         "for each, the most accurate front point measured within it is picked into "
                                         "`selected/<label>/` (labels: letters, digits, '_', '-')")
    budgets_span: dict[str, float] = Field(
        {}, description="places along the front's measured latency range, label -> fraction f: the front point "
        "nearest (1 - f) x fastest + f x slowest ms (0: the fastest front point, 1: the most accurate); for a device "
        "whose speed is not known in advance, as the quickstart's CPU")
    knee: bool = Field(True, description="also pick the front's knee (the point farthest from the line through its "
                       "two ends, where trading latency for mIoU stops paying off) into `selected/knee/`")

    @field_validator("budgets_ms")
    @classmethod
    def _positive_budgets(cls, value: dict[str, float]) -> dict[str, float]:
        for label, budget in value.items():
            if not budget > 0:
                raise ValueError(f"budget {_label(label)} must be a positive number of ms, got {budget}")
            _label(label)
        return value

    @field_validator("budgets_span")
    @classmethod
    def _fractions(cls, value: dict[str, float]) -> dict[str, float]:
        for label, fraction in value.items():
            if not 0 <= fraction <= 1:
                raise ValueError(f"budget {_label(label)} must be a fraction of the front's latency range in [0, 1], "
                                 f"got {fraction}")
            _label(label)
        return value

    @model_validator(mode="after")
    def _labels_once(self) -> "SelectionConfig":
        both = sorted(set(self.budgets_ms) & set(self.budgets_span) | {"knee"} & (set(self.budgets_ms) |
                                                                                  set(self.budgets_span)))
        if both:
            raise ValueError(f"budget labels {both} are given twice (budgets_ms and budgets_span) or name the knee")
        return self


class RetrainConfig(_Strict):
    """The retrain stage: stand-alone training of each picked network, ONNX export and re-measurement."""

    init: Literal["scratch", "inherited"] = Field("inherited", description="inherited: each pick starts from its "
                                                 "path's supernet weights; scratch: from fresh weights")
    train: TrainConfig = TrainConfig(steps=500)
    seeds: int = Field(1, ge=1, le=20, description="trainings of each pick (seed, seed + 1, ...): its retrained mIoU "
                       "is their mean, reported with the per-seed values and their spread; the first seed's network "
                       "is the one exported and re-measured")
    workers: int = Field(1, ge=1, le=MAX_WORKERS, description="> 1: the trainings (every pick under every seed) run at once "
                         "on a Dask LocalCluster of this many single-threaded processes, the largest first; on a CPU "
                         "of 2 cores 2 workers train ~1.4x faster than 1 process of 2 threads (not under torchrun)")
    export: bool = Field(True, description="export the first seed's network to `selected/<label>/model.onnx`, "
                         "checked against torch with ONNX Runtime")
    remeasure: bool = Field(True, description="measure the first seed's network on the experiment's device again, "
                            "beside the search's measurement and prediction (needs the device)")


class AuditConfig(_Strict):
    """Optional stage: does inherited-weight mIoU rank subnets as stand-alone training does? `genotypes` front
    points spread over its latency range, each trained from scratch with `train`, ranked against both proxies."""

    enabled: bool = Field(False, description="run the audit stage (and, with baseline, the baseline stage)")
    genotypes: int = Field(6, ge=3, description="front points of each skeleton audited, spread over the front's "
                           "latency range")
    random: int = Field(0, ge=0, le=1000, description="random subnets audited beside the front points, with the "
                        "smallest and largest paths (seeded)")
    train: TrainConfig = TrainConfig(steps=500)
    baseline: bool = Field(True, description="with enabled, also run the baseline stage: hand-made networks against "
                           "the searched ones of the same measured latency, each trained with audit.train")
    handmade: list[str] = Field(["k3_e6_g1", "k3_e3_g1"], min_length=1, max_length=13, description="hand-made designs, "
                                "each a candidate of the skeleton's space put in every searchable layer (k3_e6_g1: "
                                "MobileNetV2-like; k3_e3_g1, k3_e1_g1: cheaper)")
    seeds: int = Field(1, ge=1, le=20, description="stand-alone trainings of each audited and each baseline network "
                       "(seed, seed+1, ...); with 2 or more, audit.json gives the references' own agreement "
                       "(reference_kendall) beside the proxy's (proxy_kendall)")
    workers: int = Field(1, ge=1, le=MAX_WORKERS, description="> 1: the audit's and the baseline comparison's trainings run "
                         "at once on a Dask LocalCluster of this many single-threaded processes, the largest first, "
                         "as retrain.workers (not under torchrun)")


class ExperimentConfig(_Strict):
    """An experiment: its name and seed, then one section per part of the run."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$", description="the run's name: its directory is "
                      "`<runs_dir>/<name>`, where a later run of the same name resumes")
    seed: int = Field(0, ge=0, lt=2**31, description="seeds every generator of the run")
    space: SpaceConfig = SpaceConfig()
    data: DataConfig = DataConfig()
    supernet: TrainConfig = TrainConfig()
    evaluation: EvalConfig = EvalConfig()
    samples: int = Field(32, ge=1, le=100_000, description="random genotypes the space stage checks against the supernet and "
                         "lists with their MACs and parameters in space.csv")
    latency: LatencyConfig = LatencyConfig()
    search: SearchConfig = SearchConfig()
    selection: SelectionConfig = SelectionConfig()
    retrain: RetrainConfig = RetrainConfig()
    audit: AuditConfig = AuditConfig()
    runs_dir: Path = Field(Path("runs"), description="the folder run directories go in (relative: to the current "
                           "directory)")

    @field_validator("name")
    @classmethod
    def _a_folder_name(cls, value: str) -> str:
        if set(value) == {"."}:
            raise ValueError(f"name {value!r} would put the run directory outside runs_dir; use letters or digits")
        return value

    @model_validator(mode="after")
    def _classes_of_the_data(self) -> "ExperimentConfig":
        classes = len(self.data.class_names)
        if self.space.num_classes is None:
            self.space.num_classes = classes
        elif self.space.num_classes != classes:
            raise ValueError(f"space.num_classes {self.space.num_classes} differs from the {classes} classes of "
                             f"data.kind {self.data.kind} (data.classes)")
        return self

    @model_validator(mode="after")
    def _lookup_on_a_local_device(self) -> "ExperimentConfig":
        if "dnas" in self.search.strategies and self.search.dnas.cost == "lookup" and self.latency.device != "local":
            raise ValueError("search.dnas.cost lookup times single blocks, which needs latency.device local (the "
                             "agent times whole networks); use search.dnas.cost macs with an agent")
        return self

    @model_validator(mode="after")
    def _handmade_designs_of_the_space(self) -> "ExperimentConfig":
        from spaces.space import space_of  # the space's registry, only when validating (as the skeleton)

        if not (self.audit.enabled and self.audit.baseline):
            return self
        names = [candidate.name for candidate in space_of(self.space.skeletons[0]).candidates]
        for design in self.audit.handmade:
            if design not in names:
                raise ValueError(f"audit.handmade: {design!r} is not a candidate of skeleton "
                                 f"{self.space.skeletons[0]!r}; known: {', '.join(names)}")
        if len(set(self.audit.handmade)) != len(self.audit.handmade):
            raise ValueError(f"audit.handmade lists a design twice: {self.audit.handmade}")
        return self

    def for_workers(self) -> str:
        """The configuration as JSON for worker processes, its paths made absolute (runs_dir, data.root,
        latency.store, latency.replay, latency.agent.token_file): a Dask worker started in another folder reads the
        same files."""
        data = self.model_dump(mode="json")
        data["runs_dir"] = str(self.runs_dir.absolute())
        for section, key in (("data", "root"), ("latency", "store"), ("latency", "replay")):
            if data[section][key] is not None:
                data[section][key] = str(Path(data[section][key]).expanduser().absolute())
        if data["latency"]["agent"]["token_file"] is not None:
            data["latency"]["agent"]["token_file"] = str(Path(data["latency"]["agent"]["token_file"]).expanduser()
                                                         .absolute())
        return json.dumps(data)

    def of_skeleton(self, name: str) -> "ExperimentConfig":
        """The experiment restricted to one of its skeletons (same run directory): what runs per skeleton (DNAS)."""
        return self.model_copy(update={"space": self.space.model_copy(update={"skeleton": name})})

    @property
    def run_dir(self) -> Path:
        return self.runs_dir / self.name

    @property
    def paths(self) -> RunPaths:
        return RunPaths(self.run_dir)


def _set(tree: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    for part in parents:
        node = tree.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override {dotted}: {part} is not a section")
        tree = node
    tree[leaf] = value


class _UniqueKeys(yaml.SafeLoader):
    """YAML's safe loader refusing a key given twice in one mapping (plain YAML keeps the last, silently)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} is given twice", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep)


def parse_yaml(text: str) -> Any:
    """YAML text as Python values, a key given twice refused (yaml.YAMLError)."""
    return yaml.load(text, Loader=_UniqueKeys)


def apply_overrides(tree: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply `a.b=value` overrides; values are parsed as YAML scalars or lists."""
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {item!r} is not of the form key.path=value")
        try:
            value = parse_yaml(raw)
        except yaml.YAMLError as error:
            raise ConfigError(f"override {key.strip()}: {raw!r} is not a YAML value "
                              f"({_first_line(error)})") from None
        _set(tree, key.strip(), value)
    return tree


def _first_line(error: yaml.YAMLError) -> str:
    problem = getattr(error, "problem", None)
    return problem or str(error).strip().splitlines()[0]


def shipped() -> dict[str, Path]:
    """The experiments installed with the engine (the `experiments` package), by name: quickstart, camvid, ..."""
    from importlib.resources import files

    return {entry.name.removesuffix(".yaml"): Path(str(entry)) for entry in files("experiments").iterdir()
            if entry.name.endswith(".yaml")}


def resolve(config: str | Path) -> Path:
    """A configuration file's path: the file itself, or a shipped experiment's YAML when given by its bare name
    (`quickstart`) and no such file is here."""
    path = Path(config)
    if path.exists() or path.suffix or len(path.parts) > 1:
        return path
    known = shipped()
    if str(config) not in known:
        raise ConfigError(f"{config}: no such config file, nor a shipped experiment (shipped: "
                          f"{', '.join(sorted(known))})")
    return known[str(config)]


def load(path: str | Path, overrides: list[str] | None = None) -> ExperimentConfig:
    """Read, override and validate an experiment (a YAML file, or a shipped experiment's name); any problem raises
    ConfigError with a one-line message."""
    path = resolve(path)
    try:
        tree = parse_yaml(path.read_text()) or {}
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a text file (give the experiment's YAML file)") from None
    except OSError as error:
        raise ConfigError(f"{path}: cannot read the config file ({error.strerror})") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}:{where} not valid YAML ({_first_line(error)})") from None
    if not isinstance(tree, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of keys")
    apply_overrides(tree, overrides or [])
    try:
        return ExperimentConfig.model_validate(tree)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "(top level)"
        raise ConfigError(f"{path}: {where}: {first['msg']}") from None
