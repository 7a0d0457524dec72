"""Dataclass schemas for every config section (plain dataclasses: no Hydra import here).

:mod:`prunerun.config.hydra` stores them in Hydra's ConfigStore and holds the sweep callback.

OmegaConf checks types when a config is composed (``prune.fraction=abc`` fails there);
``__post_init__`` checks ranges and choices when :func:`to_config` turns the composed
config into these objects, which the runner does before any work starts.
"""
from __future__ import annotations

import dataclasses
import difflib
import typing
from dataclasses import dataclass, field
from typing import Any

from omegaconf import MISSING, DictConfig, OmegaConf

from prunerun.counting import COUNTINGS
from prunerun.errors import UserError

NORMALIZATIONS = ("none", "l1", "l2", "minmax")
SELECTIONS = ("global", "per_layer")
SPLITS = ("train", "val", "test")
BN_MODES = ("eval", "train")
LEVELS = ("auto", "unit", "weight")
DECAYS = ("exp", "linear")
SALIENCY_LOSSES = ("cross_entropy", "nll_logits")
AT_UNITS = ("epoch", "step")
OPTIMIZERS = ("sgd", "adamw")
LR_SCHEDULES = ("step", "cosine", "constant")
FINETUNE_SCHEDULES = ("constant", "cosine")
PRECISIONS = ("fp32", "bf16", "fp16")


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise UserError(message)


def _check_choice(value: str, choices: tuple[str, ...], key: str) -> None:
    _check(value in choices, f"{key}={value!r} is not one of {', '.join(choices)}")


@dataclass
class DatasetConfig:
    """A dataset and its split sizes; ``-1`` takes the rest (train) or the official split (test)."""

    name: str = MISSING
    root: str = MISSING
    target: str | None = None  # a dataset of your own: package.module:builder, registered with @register_dataset(name)
    download: bool = False
    train_size: int = -1
    val_size: int = 0
    test_size: int = -1
    val_fraction: float = 0.0  # > 0: hold out this fraction of the training pool as val (overrides val_size)
    augment: bool = False  # random crops and flips on training images (datasets read from disk)
    image_size: int = 0  # crop side of imagenet/birds200/flowers102 (224) and nvgesture (112); 0: the default
    frames: int = 8  # nvgesture: frames per clip
    num_workers: int = 0  # DataLoader processes reading datasets from disk
    channels: int = 3  # synthetic: channels of the images
    classes: int = 10  # synthetic: number of classes
    noise: float = 1.0  # synthetic: noise added to each class template (which has unit variance)

    def __post_init__(self) -> None:
        _check(self.val_size >= 0, f"dataset.val_size={self.val_size} must be >= 0")
        for key in ("train_size", "test_size"):
            value = getattr(self, key)
            _check(value == -1 or value > 0, f"dataset.{key}={value} must be > 0, or -1 for all")
        _check(0 <= self.val_fraction < 1, f"dataset.val_fraction={self.val_fraction} must be in [0, 1)")
        for key in ("image_size", "num_workers"):
            _check(getattr(self, key) >= 0, f"dataset.{key}={getattr(self, key)} must be >= 0")
        _check(self.frames >= 1, f"dataset.frames={self.frames} must be >= 1")
        _check(self.noise >= 0, f"dataset.noise={self.noise} must be >= 0")


@dataclass
class ModelConfig:
    """A registered model (or any torchvision classifier, or your own builder); optional pretrained
    weights, then the classifier is sized for the dataset."""

    name: str = MISSING
    weights: str | None = None  # imagenet: torchvision's ImageNet weights from the torch hub cache (offline)
    checkpoint: str | None = None  # path of a state dict (torch.save(model.state_dict(), PATH)) to load
    arch: str | None = None  # model=torchvision: a torchvision classification builder (resnet18, vit_b_16, ...)
    target: str | None = None  # model=custom: package.module:function returning an nn.Module
    kwargs: dict[str, Any] = field(default_factory=dict)  # model=torchvision|custom: keyword arguments of the builder

    def __post_init__(self) -> None:
        _check(self.weights in (None, "imagenet"), f"model.weights={self.weights!r} is not one of: imagenet, null")
        _check(self.checkpoint is None or bool(self.checkpoint.strip()),
               "model.checkpoint is empty; give a state dict path, or null")
        _check(self.name != "torchvision" or bool(self.arch),
               "model=torchvision needs model.arch, a torchvision classification model (e.g. model.arch=resnet18)")
        _check(self.name != "custom" or bool(self.target) and ":" in self.target,
               f"model=custom needs model.target=package.module:function (a function returning an nn.Module), "
               f"not {self.target!r}")
        _check(self.arch is None or self.name == "torchvision",
               f"model.arch={self.arch} applies to model=torchvision only (this is model={self.name})")
        _check(self.target is None or self.name == "custom",
               f"model.target={self.target} applies to model=custom only (this is model={self.name})")
        _check(not self.kwargs or self.name in ("torchvision", "custom"),
               f"model.kwargs applies to model=torchvision and model=custom only (this is model={self.name})")

    @property
    def label(self) -> str:
        """The model in result tables: its name, with the architecture or target of a generic builder."""
        if self.name == "torchvision":
            return f"torchvision.{self.arch}"
        return f"custom:{self.target}" if self.name == "custom" else self.name

    def options(self) -> dict[str, Any]:
        """The builder's extra keywords (model.arch, model.target, model.kwargs), where set."""
        found = {"arch": self.arch, "target": self.target}
        options = {key: value for key, value in found.items() if value is not None}
        if self.name in ("torchvision", "custom"):
            options["kwargs"] = dict(self.kwargs)
        return options


@dataclass
class ScorerConfig:
    """Criterion that ranks units (low saliency is pruned first) and the options some criteria take."""

    name: str = MISSING
    target: str | None = None  # a scorer of your own: package.module:function, registered with @register_scorer(name)
    bins: int = 10  # mutual_info: quantisation bins of the per-example mean activation
    probes: int = 32  # obd: Rademacher probes per scoring batch for diag(H) ≈ E[v ⊙ Hv]
    joint_lambda: float = 0.5  # joint: (1 − λ)·taylor + λ·activation, after l2 normalisation
    unit_batch: int = 16  # oracle_*/mrp: units ablated together in one pass over the cached input
    temperature: float = 200.0  # grasp: logits divided by this before the cross-entropy (Wang et al. 2020)
    samples_per_class: int = 10  # grasp: examples of every class in each class-balanced scoring batch
    hessian_lambda: float = 1.0  # taylor2: Δw·(∇C + λ·HΔw), thesis Table 2.1 (λ = 1 there)
    loss_change_limit: int = 20000  # loss_change: refuse layers with more weights (one pass per weight)

    def __post_init__(self) -> None:
        _check(self.bins >= 2, f"scorer.bins={self.bins} must be >= 2")
        _check(self.probes >= 1, f"scorer.probes={self.probes} must be >= 1")
        _check(0 <= self.joint_lambda <= 1, f"scorer.joint_lambda={self.joint_lambda} must be in [0, 1]")
        _check(self.unit_batch >= 1, f"scorer.unit_batch={self.unit_batch} must be >= 1")
        _check(self.temperature > 0, f"scorer.temperature={self.temperature} must be > 0")
        _check(self.samples_per_class >= 1, f"scorer.samples_per_class={self.samples_per_class} must be >= 1")
        _check(self.loss_change_limit >= 1, f"scorer.loss_change_limit={self.loss_change_limit} must be >= 1")


@dataclass
class ScheduleConfig:
    """When and how much to prune: ``one_shot``/``iterative`` (units, Molchanov et al. 2017 §2),
    ``at_init``/``gradual`` (weights at initialisation, SNIP/GRASP/FORCE) or ``scheduled`` (a table
    of training step or epoch → fraction, Evci thesis Table 2.2)."""

    name: str = MISSING
    units_per_step: int = 1
    finetune_steps: int = 30
    final_finetune_steps: int = 300
    rescore: bool = True  # false: rank once before the first step and keep that order (Molchanov fig. 3)
    at: list[int] = field(default_factory=list)  # scheduled: epochs (pruned at their end) or steps ...
    fractions: list[float] = field(default_factory=list)  # ... and the fraction pruned by each of them
    at_unit: str = "epoch"  # scheduled: `at` counts epochs or training updates
    f_nz: list[float] = field(default_factory=list)  # scheduled, weights: after training, remove units whose
    # fraction of non-zero incoming or outgoing weights is <= f, one evaluation per f (thesis fig. 2.11)

    def __post_init__(self) -> None:
        _check(self.units_per_step >= 1, f"schedule.units_per_step={self.units_per_step} must be >= 1")
        _check(self.finetune_steps >= 0, f"schedule.finetune_steps={self.finetune_steps} must be >= 0")
        _check(
            self.final_finetune_steps >= 0,
            f"schedule.final_finetune_steps={self.final_finetune_steps} must be >= 0",
        )
        _check_choice(self.at_unit, AT_UNITS, "schedule.at_unit")
        _check(len(self.at) == len(self.fractions),
               f"schedule.at has {len(self.at)} entries but schedule.fractions {len(self.fractions)}; give one fraction per time")
        _check(all(a >= 1 for a in self.at) and list(self.at) == sorted(set(self.at)),
               f"schedule.at={list(self.at)} must be increasing epochs or steps, counted from 1")
        _check(all(0 <= f < 1 for f in self.fractions) and list(self.fractions) == sorted(self.fractions),
               f"schedule.fractions={list(self.fractions)} must lie in [0, 1) and not decrease")
        for f in self.f_nz:
            _check(0 <= f < 1, f"schedule.f_nz has {f}: every value must lie in [0, 1)")


@dataclass
class TrainConfig:
    """Dense training; ``steps`` counts minibatch updates. The optimizer serves fine-tuning too."""

    steps: int = 2000
    batch_size: int = 32
    lr: float = 0.01
    momentum: float = 0.9  # sgd only
    weight_decay: float = 5e-4  # sgd: L2 added to the gradient; adamw: decoupled
    eval_every: int = 250
    eval_batch_size: int = 500
    lr_milestones: list[int] = field(default_factory=list)  # step: updates after which lr is multiplied by lr_gamma
    lr_gamma: float = 0.1
    optimizer: str = "sgd"  # sgd | adamw
    schedule: str = "step"  # step (lr_milestones) | cosine (to 0 at the last update) | constant
    warmup_steps: int = 0  # linear warm-up from lr/warmup_steps to lr over the first updates, then the schedule
    precision: str = "fp32"  # fp32 | bf16 | fp16: autocast of training and evaluation forwards (fp16 with a GradScaler)
    channels_last: bool = False  # conv weights and 4-d input batches in channels-last memory format
    compile: bool = False  # torch.compile the model for dense training

    def __post_init__(self) -> None:
        _check(self.steps >= 0, f"train.steps={self.steps} must be >= 0")
        for key in ("batch_size", "eval_every", "eval_batch_size"):
            _check(getattr(self, key) >= 1, f"train.{key}={getattr(self, key)} must be >= 1")
        _check(self.lr > 0, f"train.lr={self.lr} must be > 0")
        _check(0 <= self.momentum < 1, f"train.momentum={self.momentum} must be in [0, 1)")
        _check(self.weight_decay >= 0, f"train.weight_decay={self.weight_decay} must be >= 0")
        _check(list(self.lr_milestones) == sorted(set(self.lr_milestones)) and all(m >= 1 for m in self.lr_milestones),
               f"train.lr_milestones={list(self.lr_milestones)} must be increasing update counts >= 1")
        _check(0 < self.lr_gamma <= 1, f"train.lr_gamma={self.lr_gamma} must be in (0, 1]")
        _check_choice(self.optimizer, OPTIMIZERS, "train.optimizer")
        _check_choice(self.schedule, LR_SCHEDULES, "train.schedule")
        _check(self.warmup_steps >= 0, f"train.warmup_steps={self.warmup_steps} must be >= 0")
        _check_choice(self.precision, PRECISIONS, "train.precision")
        _check(self.schedule == "step" or not self.lr_milestones,
               f"train.lr_milestones applies to train.schedule=step (this is train.schedule={self.schedule})")

    def key(self) -> dict[str, Any]:
        """The fields that decide the trained weights, the options added later left out at their
        defaults (so that dense states cached before they existed stay valid)."""
        values = dataclasses.asdict(self)
        return {k: v for k, v in values.items() if not (k in _LATER_TRAIN_OPTIONS and v == _LATER_TRAIN_OPTIONS[k])}


_LATER_TRAIN_OPTIONS = {"optimizer": "sgd", "schedule": "step", "warmup_steps": 0, "precision": "fp32",
                        "channels_last": False, "compile": False}


@dataclass
class PruneConfig:
    """What fraction of units (or weights) to remove, how to rank them and how to remove them."""

    fraction: float = 0.5
    mean_replacement: bool = False
    normalization: str = "l2"
    selection: str = "global"
    score_batches: int = 8
    lr: float = 0.01
    target_flops: float | None = None  # stop once the model needs at most this many FLOPs per example
    flops_lambda: float = 0.0  # FLOPs regularisation Θ − λ·Θ_flops (MFLOPs per map), Molchanov eq. 9
    level: str = "auto"  # unit | weight | auto (weights for at_init/gradual, and for scheduled with a weight scorer)
    num_batches: int = 1  # weights: batches averaged per saliency ("-MB" variants with > 1)
    steps: int = 10  # gradual: pruning iterations T (FORCE: 300 on CIFAR-10)
    decay: str = "exp"  # gradual: kept fraction κ^(t/T) (exp) or 1 − t(1 − κ)/T (linear)
    allow_empty_layers: bool = True  # weights: false keeps at least one weight in every layer
    saliency_loss: str = "cross_entropy"  # weights: cross_entropy | nll_logits (official FORCE code)
    record_saliency: bool = True  # gradual: FORCE saliency of each mask ÷ one-shot SNIP's (FORCE figs. 4, 6)
    counting: str = "floor"  # units of a layer a fraction names: floor (the papers: ⌊256/10⌋ = 25) or round
    coupled: bool = False  # units found in the graph: also prune residual streams, each as one group
    eval_every: int = 1  # pruning steps between val/test evaluations (pruning.csv rows); always the first and last
    final_schedule: str = "constant"  # the final fine-tuning's learning rate: constant (prune.lr) | cosine (to 0)

    def __post_init__(self) -> None:
        _check(
            0 <= self.fraction < 1,
            f"prune.fraction={self.fraction} is outside [0, 1): give the fraction of units to remove, e.g. prune.fraction=0.3",
        )
        _check_choice(self.normalization, NORMALIZATIONS, "prune.normalization")
        _check_choice(self.selection, SELECTIONS, "prune.selection")
        _check(self.score_batches >= 1, f"prune.score_batches={self.score_batches} must be >= 1")
        _check(self.lr > 0, f"prune.lr={self.lr} must be > 0")
        _check(self.target_flops is None or self.target_flops > 0,
               f"prune.target_flops={self.target_flops} must be > 0 (FLOPs per example), or null")
        _check(self.flops_lambda >= 0, f"prune.flops_lambda={self.flops_lambda} must be >= 0")
        _check_choice(self.level, LEVELS, "prune.level")
        _check(self.num_batches >= 1, f"prune.num_batches={self.num_batches} must be >= 1")
        _check(self.steps >= 1, f"prune.steps={self.steps} must be >= 1")
        _check(self.eval_every >= 1, f"prune.eval_every={self.eval_every} must be >= 1")
        _check_choice(self.final_schedule, FINETUNE_SCHEDULES, "prune.final_schedule")
        _check_choice(self.decay, DECAYS, "prune.decay")
        _check_choice(self.saliency_loss, SALIENCY_LOSSES, "prune.saliency_loss")
        _check_choice(self.counting, COUNTINGS, "prune.counting")


@dataclass
class MeasureConfig:
    """Pruning penalties measured on a copy of the model during dense training (MRP paper §4)."""

    every: int = 100
    scorers: list[str] = field(default_factory=lambda: ["taylor", "mrs", "weight", "activation_mean", "random"])
    fractions: list[float] = field(default_factory=lambda: [0.1])
    layers: list[str] = field(default_factory=lambda: ["all"])
    subset: int = 1000
    split: str = "train"
    batch_size: int = 500
    finetune_steps: int = 0
    finetune_lr: float = 1e-3
    bn_mode: str = "eval"
    weight_scorers: list[str] = field(default_factory=list)  # weight-level penalties (thesis figs. 2.2–2.5)
    weight_layers: list[str] = field(default_factory=lambda: ["all"])  # all and/or conv/linear module names
    record_selected: bool = False  # selected.csv: the units each scorer selects, with their squared activations (MRP figs. 6b, 7)
    latency: bool = False  # after unit pruning: median latency of dense and shrunk models → timing.csv
    latency_batch_size: int = 32
    latency_repeats: int = 20  # timed passes per variant, after 5 warm-up passes

    def __post_init__(self) -> None:
        _check(self.every >= 0, f"measure.every={self.every} must be >= 0 (0 turns measuring off)")
        for f in self.fractions:
            _check(0 < f < 1, f"measure.fractions has {f}: every fraction must lie in (0, 1)")
        _check(self.subset >= 1, f"measure.subset={self.subset} must be >= 1")
        _check_choice(self.split, SPLITS, "measure.split")
        _check(self.batch_size >= 1, f"measure.batch_size={self.batch_size} must be >= 1")
        _check(self.finetune_steps >= 0, f"measure.finetune_steps={self.finetune_steps} must be >= 0")
        _check(self.finetune_lr > 0, f"measure.finetune_lr={self.finetune_lr} must be > 0")
        _check_choice(self.bn_mode, BN_MODES, "measure.bn_mode")
        _check(self.latency_batch_size >= 1, f"measure.latency_batch_size={self.latency_batch_size} must be >= 1")
        _check(self.latency_repeats >= 1, f"measure.latency_repeats={self.latency_repeats} must be >= 1")


@dataclass
class CorrelateConfig:
    """Every criterion and the oracle on the same data after dense training (Molchanov §3.1, Tables 1 and 3)."""

    enabled: bool = False
    scorers: list[str] = field(default_factory=list)  # empty: every registered scorer
    reference: str = "oracle_abs"
    normalizations: list[str] = field(default_factory=lambda: list(NORMALIZATIONS))
    subset: int = 1000
    split: str = "train"

    def __post_init__(self) -> None:
        for name in self.normalizations:
            _check_choice(name, NORMALIZATIONS, "correlate.normalizations")
        _check(self.subset >= 1, f"correlate.subset={self.subset} must be >= 1")
        _check_choice(self.split, SPLITS, "correlate.split")


@dataclass
class AttackConfig:
    """Learning-rate attack (Evci thesis §3.3): at steps start, start + interval, … (``repeats`` times)
    the gradient of ``unit``'s incoming weights in ``layer`` (not its bias) is multiplied by
    ``multiplier`` — a learning-rate multiplier under plain SGD. ``units.csv`` traces the attacked
    unit and ``controls`` other units of the layer every ``record_every`` steps on ``subset`` examples."""

    layer: str | None = None  # null: no attack
    unit: int = 0
    start: int = 50
    repeats: int = 10
    interval: int = 10
    multiplier: float = 100.0
    controls: int = 3
    record_every: int = 50
    subset: int = 500
    split: str = "val"

    def __post_init__(self) -> None:
        for key in ("unit", "start", "controls"):
            _check(getattr(self, key) >= 0, f"attack.{key}={getattr(self, key)} must be >= 0")
        for key in ("repeats", "interval", "record_every", "subset"):
            _check(getattr(self, key) >= 1, f"attack.{key}={getattr(self, key)} must be >= 1")
        _check(self.multiplier > 0, f"attack.multiplier={self.multiplier} must be > 0")
        _check_choice(self.split, SPLITS, "attack.split")

    def attacks_at(self, step: int) -> bool:
        """Whether update number ``step`` (1-based) is attacked."""
        offset = step - self.start
        return offset >= 0 and offset % self.interval == 0 and offset // self.interval < self.repeats


@dataclass
class CacheConfig:
    """Content-addressed dense models (prunerun/checkpoint.py): a sweep over scorers and fractions
    trains each (dataset, model, train, seed) once."""

    enabled: bool = True
    dir: str = "${oc.env:PRUNERUN_CACHE,outputs/cache}"  # $PRUNERUN_CACHE when set, else outputs/cache


@dataclass
class LogConfig:
    """What a job says while it runs (outside a terminal; a terminal shows progress bars)."""

    every_s: float = 60.0  # seconds between progress lines: phase, done/total, rate, time left

    def __post_init__(self) -> None:
        _check(self.every_s >= 0, f"log.every_s={self.every_s} must be >= 0")


@dataclass
class Config:
    dataset: DatasetConfig = MISSING
    model: ModelConfig = MISSING
    scorer: ScorerConfig = MISSING
    schedule: ScheduleConfig = MISSING
    train: TrainConfig = field(default_factory=TrainConfig)
    prune: PruneConfig = field(default_factory=PruneConfig)
    measure: MeasureConfig = field(default_factory=MeasureConfig)
    correlate: CorrelateConfig = field(default_factory=CorrelateConfig)
    attack: AttackConfig = field(default_factory=AttackConfig)
    cache: CacheConfig = field(default_factory=CacheConfig)
    log: LogConfig = field(default_factory=LogConfig)
    seed: int = 0
    device: str = "auto"

    def __post_init__(self) -> None:
        _check(0 <= self.seed < 2**32, f"seed={self.seed} must be in [0, 2**32), the range every generator of a run accepts")
        _check(
            self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:"),
            f"device={self.device!r} is not one of auto, cpu, cuda, cuda:N",
        )

    def builder_options(self) -> dict[str, Any]:
        """The model builder's keywords: ``model.options()``, and ``coupled`` under ``prune.coupled=true``."""
        return {**self.model.options(), **({"coupled": True} if self.prune.coupled else {})}


def check_known_keys(node: Any, schema: type | None = None, prefix: str = "") -> None:
    """Every key of a composed config names a field of its schema: ``+prune.fractoin=0.3`` (a typo
    that ``+`` lets Hydra add) is refused, with the closest option."""
    schema = schema or Config
    fields = [f.name for f in dataclasses.fields(schema)]
    for key in node.keys() if isinstance(node, DictConfig) else ():
        if key not in fields:
            raise UserError(_unknown(prefix, str(key), fields))
        kind = _SECTIONS.get(key) if schema is Config else None
        if kind is not None and not OmegaConf.is_missing(node, key):
            check_known_keys(node[key], kind, f"{prefix}{key}.")


def unknown_key(dotted: str) -> str | None:
    """The message for a key like ``prune.fractoin`` that names no option, None for a known one."""
    schema, prefix = Config, ""
    for part in dotted.split("."):
        fields = [f.name for f in dataclasses.fields(schema)]
        if part not in fields:
            return _unknown(prefix, part, fields)
        schema = _SECTIONS.get(part) if schema is Config else None
        if schema is None:
            return None
        prefix = f"{prefix}{part}."
    return None


def _unknown(prefix: str, key: str, fields: list[str]) -> str:
    close = difflib.get_close_matches(key, fields, n=1)
    hint = f"; did you mean {prefix}{close[0]}?" if close else f"; the options are {', '.join(fields)}"
    return f"{prefix}{key} is not an option{hint}"


def to_config(cfg: DictConfig | Any) -> Config:
    """Composed config → validated :class:`Config` (raises :class:`UserError` on a bad value)."""
    if isinstance(cfg, Config):
        return cfg
    check_known_keys(cfg)
    try:
        return OmegaConf.to_object(cfg)
    except UserError:
        raise
    except Exception as err:  # OmegaConf wraps our errors raised inside __post_init__
        cause = err.__cause__ or err.__context__
        if isinstance(cause, UserError):
            raise cause from None
        if type(err).__name__ == "MissingMandatoryValue":
            key = getattr(err, "full_key", "") or "a value"
            raise UserError(f"{key} is not set; give it on the command line ({key}=...)") from None
        raise UserError(f"invalid config: {err}".splitlines()[0]) from None


# The sections of Config and their schemas, for the check of unknown keys.
_SECTIONS = {name: kind for name, kind in typing.get_type_hints(Config).items() if dataclasses.is_dataclass(kind)}
