"""Experiment configuration: YAML files validated by pydantic, with `a.b=value` overrides from the command line.

Importing this module loads neither torch nor the data stack: dataset kinds are known by their class names
(engine/data/classes.py), skeletons by the space's registry, read when a configuration is validated.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import import_module
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from engine.data.classes import DATASET_CLASSES, IGNORE_INDEX
from engine.errors import ConfigError
from engine.paths import RunPaths

OPERATIONAL = ("*.checkpoint_every", "*.log_every", "*.num_workers", "supernet.device", "*.train.device",
               "latency.agent", "latency.store", "search.workers", "search.scheduler", "search.storage",
               "search.dnas.checkpoint_every", "retrain.workers", "audit.workers", "runs_dir", "name")
"""Settings that change how a stage runs, not what it computes: changing one does not make a stage rerun."""

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


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SpaceConfig(_Strict):
    skeleton: str | list[str] = Field("small", description="a skeleton, or a list of them searched together (one "
                                      "supernet each, one front over all: [small, large, xlarge])")
    width: float = Field(1.0, gt=0, le=4)
    num_classes: int | None = Field(None, ge=1, description="None: the classes of the data")
    input_size: tuple[int, int] = (1024, 2048)

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
        if min(value) < 32:
            raise ValueError(f"input size {list(value)} is below 32 pixels")
        return value


class ClassSpec(_Strict):
    """A class of a folder data set: its name and, optionally, the colour the report draws it in."""

    name: str = Field(min_length=1, max_length=64, description="the class's name, as reports and metrics.json show it")
    color: tuple[int, int, int] | None = Field(None, description="RGB, 0..255 each")

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
                              "cityscapes, folder (<root>/<split>/images + <root>/<split>/labels), or a kind "
                              "added with engine.data.register_dataset")
    root: Path | None = Field(None, description="the data set's folder (every kind but synthetic)")
    classes: list[ClassSpec] | None = Field(
        None, description="kind folder: the class names in id order (label value 0 is the first), each a name or "
        "{name, color: [r, g, b]}; the network's head, per-class IoU and the report follow them")
    ignore_index: int = Field(IGNORE_INDEX, ge=0, le=255, description="kind folder: the label value that is no class "
                              "(borders, unlabelled pixels), left out of the loss and the metric")
    label_map: dict[int, int] | None = Field(None, description="kind folder: label value in the PNG -> class id (or "
                                             "ignore_index); values not listed must be class ids or ignore_index "
                                             "(which stays ignored)")
    train_split: str = "train"
    val_split: str = "val"
    test_split: str | None = Field(None, description="scored only after the search: the retrained picks and the "
                                   "hand-made comparison report val and test mIoU (CamVid: test/ + testannot/)")
    val_from_train: int | None = Field(None, ge=1, description="hold out this many training images (a fixed seed, "
                                       "the same in every run) as the validation set the search scores on; "
                                       "data.val_split is then free to be the test split (Cityscapes: val)")
    crop: tuple[int, int] = (256, 512)
    scale: tuple[float, float] = (0.5, 2.0)
    jitter: float = Field(0.2, ge=0, le=1)
    eval_size: tuple[int, int] | None = None
    synthetic_size: tuple[int, int] = (256, 512)
    synthetic_train: int = Field(512, ge=1)
    synthetic_val: int = Field(64, ge=1)

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

    calibration_images: int = Field(64, ge=0)
    val_images: int | None = Field(None, ge=1)
    batch_size: int = Field(8, ge=1)


class TrainConfig(_Strict):
    """Supernet or stand-alone training; batch_size is the global batch, split evenly over ranks."""

    steps: int = Field(1000, ge=1)
    batch_size: int = Field(8, ge=1)
    optimizer: Optimizer = "sgd"
    lr: float = Field(0.05, gt=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    weight_decay: float = Field(4e-5, ge=0)
    schedule: Schedule = "poly"
    warmup_steps: int = Field(0, ge=0)
    sampling: Sampling = "uniform"
    sandwich_paths: int = Field(2, ge=0, le=64, description="random paths between the largest and the smallest")
    extremes_every: int = Field(4, ge=1, description="sandwich_rare: the extremes on one step in this many")
    distill: bool = True
    zero_init_residual: bool = Field(True, description="training from fresh weights (the supernet, a stand-alone "
                                     "network from scratch): every residual block starts as the identity (its last "
                                     "BN scale zeroed; Goyal et al. 2017, BigNAS), so deep networks train as fast as "
                                     "shallow ones at first; an inherited start keeps the supernet's weights")
    class_weights: Literal["none", "median_frequency"] = Field(
        "none", description="median_frequency: cross-entropy weighted by median-frequency balancing (SegNet's "
        "CamVid protocol), so thin and rare classes count")
    amp: bool = True
    device: str = Field("auto", pattern=r"^(auto|cpu|cuda(:\d+)?)$")
    checkpoint_every: int = Field(100, ge=1)
    log_every: int = Field(10, ge=1)
    num_workers: int = Field(0, ge=0)


class AgentConfig(_Strict):
    """Where the device agent (`python -m hardware.agent` on the target) listens and how to authenticate."""

    url: str = Field("http://127.0.0.1:8765", pattern=r"^https?://[^\s/]+(/.*)?$")
    token_file: Path | None = Field(None, description="None: $SQUEEZENAS_AGENT_TOKEN")
    timeout_s: float = Field(900.0, gt=0, description="one measurement, TensorRT engine build included")
    retries: int = Field(3, ge=0)


class LatencyConfig(_Strict):
    """The latency stage: which device measures, how (protocol), how many genotypes, and the predictor's target."""

    device: Literal["local", "agent"] = "local"
    backend: Backend = "torch-cpu"
    device_name: str | None = Field(None, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$",
                                    description="None: this machine's name, or the agent's")
    agent: AgentConfig = AgentConfig()
    measurements: int = Field(60, ge=8, description="genotypes measured to fit the predictor, spread over MACs")
    heldout: int = Field(20, ge=2, description="random genotypes measured only to test the predictor")
    active: int = Field(0, ge=0, description="extra genotypes chosen where the predictor is least sure near the front")
    pool: int = Field(2000, ge=16, le=100_000, description="random genotypes the measured ones are chosen from")
    statistic: Literal["median", "mean", "p90", "min"] = Field(
        "median", description="the value of a measurement's timed runs the search uses; min (the fastest run, as "
        "timeit advises) is the steadiest on a shared CPU, whose other load only ever adds time")
    warmup: int = Field(5, ge=0, le=1000)
    repeats: int = Field(20, ge=1, le=10000)
    batch: int = Field(1, ge=1)
    threads: int = Field(1, ge=1, le=1024, description="CPU threads (torch-cpu, onnxruntime-cpu)")
    store: Path | None = Field(None, description="None: the shared cache ($SQUEEZENAS_MEASUREMENTS or ~/.cache)")


class Constraints(_Strict):
    max_latency_ms: float | None = Field(None, gt=0)
    max_macs: float | None = Field(None, gt=0)


class DnasConfig(_Strict):
    """The differentiable search (engine/search/dnas.py): one genotype per cost weight in `lambdas`."""

    lambdas: list[float] = Field([0.0, 0.5, 1.0, 2.0], min_length=1,
                                 description="weights of E[cost] relative to the uniform mixture's cost")
    cost: Literal["macs", "lookup"] = Field("macs", description="lookup: per-block latency table of the device")
    warmup_steps: int = Field(100, ge=0, description="weight steps with uniform logits, shared by all lambdas")
    steps: int = Field(200, ge=1, description="rounds of one weight batch and one architecture batch per lambda")
    batch_size: int = Field(8, ge=1)
    lr: float = Field(0.05, gt=0, description="weights: SGD with momentum, cosine over warm-up and search")
    momentum: float = Field(0.9, ge=0, lt=1)
    weight_decay: float = Field(4e-5, ge=0)
    arch_lr: float = Field(0.01, gt=0, description="architecture logits: Adam")
    arch_weight_decay: float = Field(5e-4, ge=0)
    temperature: tuple[float, float] = Field((5.0, 0.2), description="Gumbel-softmax temperature, start and end")
    schedule: Literal["exponential", "linear", "constant"] = "exponential"
    checkpoint_every: int = Field(50, ge=1)

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
    """search.accuracy_surrogate: MSuNAS's loop (engine/search/surrogate.py). Each of `search.rounds` rounds fits
    an inherited-mIoU predictor to the subnets truly evaluated so far, runs `search.generations` generations of
    `search.algorithm` on it, and truly evaluates `per_round` of what it found."""

    enabled: bool = False
    initial: int | None = Field(12, ge=8, description="subnets truly evaluated before the first fit, the "
                                "extremes and random ones (None: search.population)")
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


class SearchConfig(_Strict):
    """The search stage: NSGA-II (pymoo) over genotypes and/or DNAS; every evaluation an Optuna trial; Dask scores."""

    strategies: list[Literal["nsga2", "dnas"]] = Field(["nsga2"], min_length=1)
    dnas: DnasConfig = DnasConfig()
    algorithm: Algorithm = Field(
        "nsga2", description="pymoo's algorithm of the evolutionary strategy (engine/search/operators.py)")
    population: int = Field(24, ge=4)
    generations: int = Field(8, ge=1)
    offspring: int | None = Field(None, ge=1, description="None: the population size")
    mutation_rate: float | None = Field(None, gt=0, le=1, description="None: 1 / layers")
    accuracy_surrogate: SurrogateConfig = SurrogateConfig()
    rounds: int = Field(3, ge=1, description="NSGA-II's generations in this many rounds (at most one a generation); "
                        "after each but the last the front is measured and the latency predictor refit")
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
    storage: str | None = Field(None, description="SQLAlchemy URL; None: sqlite:///runs/<name>/study.db")
    workers: int = Field(1, ge=1, description="> 1: a Dask LocalCluster with this many processes")
    scheduler: str | None = Field(None, description="address of a running Dask scheduler (overrides workers)")


def _label(label: str) -> str:
    if not label.replace("_", "").replace("-", "").isalnum():
        raise ValueError(f"budget label {label!r} must be letters, digits, '_' or '-' (it names a folder)")
    return label


class SelectionConfig(_Strict):
    """The select stage: the highest-mIoU front point under each latency budget (label -> ms, or label -> a place
    along the front's latency range), and the knee."""

    budgets_ms: dict[str, float] = {"small": 35.0, "large": 100.0}
    budgets_span: dict[str, float] = Field(
        {}, description="places along the front's measured latency range, label -> fraction f: the front point "
        "nearest (1 - f) x fastest + f x slowest ms (0: the fastest front point, 1: the most accurate); for a device "
        "whose speed is not known in advance, as the quickstart's CPU")
    knee: bool = True

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

    init: Literal["scratch", "inherited"] = "inherited"
    train: TrainConfig = TrainConfig(steps=500)
    seeds: int = Field(1, ge=1, le=20, description="trainings of each pick (seed, seed + 1, ...): its retrained mIoU "
                       "is their mean, reported with the per-seed values and their spread; the first seed's network "
                       "is the one exported and re-measured")
    workers: int = Field(1, ge=1, le=256, description="> 1: the trainings (every pick under every seed) run at once "
                         "on a Dask LocalCluster of this many single-threaded processes, the largest first; on a CPU "
                         "of 2 cores 2 workers train ~1.4x faster than 1 process of 2 threads (not under torchrun)")
    export: bool = True
    remeasure: bool = True


class AuditConfig(_Strict):
    """Optional stage: does inherited-weight mIoU rank subnets as stand-alone training does? `genotypes` front
    points spread over its latency range, each trained from scratch with `train`, ranked against both proxies."""

    enabled: bool = False
    genotypes: int = Field(6, ge=3)
    random: int = Field(0, ge=0, le=1000, description="random subnets audited beside the front points, with the "
                        "smallest and largest paths (seeded)")
    train: TrainConfig = TrainConfig(steps=500)
    baseline: bool = Field(True, description="also train hand-made networks and their searched matches")
    handmade: list[str] = Field(["k3_e6_g1", "k3_e3_g1"], min_length=1, max_length=13, description="hand-made designs "
                                "(a candidate in every layer: k3_e6_g1 MobileNetV2-like, k3_e3_g1 cheaper)")
    seeds: int = Field(1, ge=1, le=20, description="stand-alone trainings of each baseline network (seed, seed+1..)")
    workers: int = Field(1, ge=1, le=256, description="> 1: the audit's and the baseline comparison's trainings run "
                         "at once on a Dask LocalCluster of this many single-threaded processes, the largest first, "
                         "as retrain.workers (not under torchrun)")


class ExperimentConfig(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    seed: int = Field(0, ge=0, lt=2**31, description="seeds every generator of the run")
    space: SpaceConfig = SpaceConfig()
    data: DataConfig = DataConfig()
    supernet: TrainConfig = TrainConfig()
    evaluation: EvalConfig = EvalConfig()
    samples: int = Field(32, ge=1, description="random genotypes surveyed by the space stage")
    latency: LatencyConfig = LatencyConfig()
    search: SearchConfig = SearchConfig()
    selection: SelectionConfig = SelectionConfig()
    retrain: RetrainConfig = RetrainConfig()
    audit: AuditConfig = AuditConfig()
    runs_dir: Path = Path("runs")

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


def apply_overrides(tree: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply `a.b=value` overrides; values are parsed as YAML scalars or lists."""
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {item!r} is not of the form key.path=value")
        _set(tree, key.strip(), yaml.safe_load(raw))
    return tree


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
        raise ConfigError(f"{config}: no such config file, nor a shipped experiment (shipped: {', '.join(sorted(known))})")
    return known[str(config)]


def load(path: str | Path, overrides: list[str] | None = None) -> ExperimentConfig:
    """Read, override and validate an experiment (a YAML file, or a shipped experiment's name); any problem raises
    ConfigError with a one-line message."""
    path = resolve(path)
    try:
        tree = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a text file (give the experiment's YAML file)") from None
    except OSError as error:
        raise ConfigError(f"{path}: cannot read the config file ({error.strerror})") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML ({str(error).splitlines()[0]})") from None
    if not isinstance(tree, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of keys")
    apply_overrides(tree, overrides or [])
    try:
        return ExperimentConfig.model_validate(tree)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "(top level)"
        raise ConfigError(f"{path}: {where}: {first['msg']}") from None
