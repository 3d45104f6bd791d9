"""What an adaptation run is asked to do (``AdaptConfig``) and what it produced (``AdaptResult``)."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

from edgevt.adapt.selftrain import CONSISTENCY
from edgevt.data.transforms import augment_names
from edgevt.errors import EdgevtError
from edgevt.models.zoo import INPUTS
from edgevt.spec import ClipSpec

DEFAULT_SIZE = 64  # --size without --init

ALIGNMENTS = ("dann", "cdan", "mmd", "coral")  # feature alignment losses
TWO_DOMAIN = ALIGNMENTS + ("selftrain",)  # strategies that train on labeled source + unlabeled target
META = ("maml", "fomaml", "reptile")
STRATEGIES = ("finetune",) + TWO_DOMAIN + META + ("fewshot", "bn", "auto")
MODES = ("linear", "partial", "full")
SCHEDULES = ("cosine", "dann", "constant")
# --strategy auto's candidates in the order they run (edgevt.adapt.auto; its PREFER says which wins near-ties);
# "pixel" runs only with --pixel, "labeled" only with --target-labeled
AUTO_RUNGS = ("source_only", "source_only_plain", "bn", "bn_plain", "pixel", "labeled", "selftrain", "dann+selftrain")


@dataclass
class AdaptConfig:
    """One adaptation run. Paths are folders (``<class>/<video>``) or ``path label`` lists.

    source: labeled training clips. target: target-domain clips (unlabeled for dann/cdan/mmd/coral;
    labeled for fewshot). source_test / target_test: labeled clips for the final report.
    """

    source: str | None = None
    out: str = "runs/adapt"
    strategy: str = "finetune"
    target: str | None = None
    source_test: str | None = None
    target_test: str | None = None
    extra_domains: list[str] = field(default_factory=list)  # more labeled domains for meta-training
    skip_bad: bool = False  # skip unreadable videos (and list them) instead of stopping
    # model and clip
    model: str | None = None  # registry name; None: from --init, else tsn_tinycnn
    weights: str = "none"  # none | pretrained | torchvision weight name | path
    init: str | None = None  # an edgevt checkpoint to start from (same architecture)
    temporal: str = "conv"  # TSN/TSM temporal head: avg | conv
    temporal_dim: int = 256
    shift_direction: str = "bidirectional"  # TSM: bidirectional | causal (streams with no offline/online gap)
    num_frames: int = 8
    frame_stride: int = 2
    # frame side; None: 64, or with --init the checkpoint's. With --init another size fine-tunes that
    # model at this size (progressive resizing: train at 112, finish at 224; conv nets with global pooling)
    size: int | None = None
    sampling: str = "dense"
    input: str = "rgb"  # TSN/TSM frame encoder input: rgb | diff (frame differences: motion, not scene)
    mean: tuple | None = None  # None: the model's default normalisation
    std: tuple | None = None
    # what trains
    mode: str = "partial"  # linear | partial | full
    unfreeze: int = 2  # partial: backbone stages trained, counted from the top
    freeze_bn: str = "auto"  # auto (when batch_size < 16) | always | never
    cache_features: str = "auto"  # auto | on | off
    augment: str = "none"  # none | basic (crop + colour jitter) | appearance (domain randomisation) | invert; a+b for both
    limit_per_class: int | None = None  # keep only this many labeled training clips per class
    val_split: float = 0.0  # share of labeled training clips held out for early stopping
    # optimisation
    epochs: int = 10
    batch_size: int = 32
    lr: float = 1e-3
    backbone_lr_mult: float = 0.1  # pretrained layers learn this much slower than new ones
    weight_decay: float = 1e-2
    schedule: str = "cosine"
    warmup: float = 0.05  # share of steps with linear warm-up
    label_smoothing: float = 0.0
    patience: int = 0  # early stopping: epochs without val improvement (0: off)
    amp: bool = True  # used on CUDA only
    # domain alignment
    adv_weight: float = 1.0
    importance_weighting: bool = False
    # target-side losses (edgevt.adapt.selftrain); None: on for --strategy selftrain, off otherwise
    self_train: float | None = None  # weight of the pseudo-label loss
    pl_threshold: float = 0.8  # confidence a pseudo-label needs
    consistency: str = "speed"  # second view of a target clip: speed | crop | none
    im_weight: float | None = None  # information maximisation
    mcc_weight: float = 0.0  # minimum class confusion
    target_labeled: str | None = None  # a few labeled target clips mixed into the labeled training set
    target_val: str | None = None  # labeled target clips for choosing (auto) and early stopping; never a test split
    budget: float = 1.0  # auto: scales every recipe's epochs
    rungs: str = "all"  # auto: which candidates of AUTO_RUNGS to run, comma-separated, or all
    bn_adapt: bool = False  # re-estimate BatchNorm statistics on the target clips at the end
    # before training, re-estimate every BatchNorm's statistics on the source clips: a pretrained
    # backbone given another input than it was trained on (frame differences) then normalises it
    bn_source: bool = False
    pixel: str = "none"  # pixel-level adaptation first: gan | fda | hist | none (edgevt.adapt.pixel)
    # meta-learning / few-shot
    ways: int = 5
    shots: int = 1
    queries: int = 5
    inner_steps: int = 5
    inner_lr: float = 0.1
    meta_batch: int = 4
    episodes_per_epoch: int = 50
    fewshot_method: str = "finetune"  # finetune | prototype
    # run
    seed: int = 0
    checkpoint_every: int = 0  # steps between resumable checkpoints (0: only at epoch ends)
    resume: bool = False
    device: str = "auto"
    workers: int = 0
    progress: bool = True

    def validate(self) -> None:
        def check(ok: bool, msg: str) -> None:
            if not ok:
                raise EdgevtError(msg)

        check(self.strategy in STRATEGIES, f"unknown strategy {self.strategy!r}; use one of {', '.join(STRATEGIES)}")
        check(self.mode in MODES, f"unknown --mode {self.mode!r}; use linear, partial or full")
        check(self.schedule in SCHEDULES, f"unknown --schedule {self.schedule!r}; use {', '.join(SCHEDULES)}")
        check(self.freeze_bn in ("auto", "always", "never"), "--freeze-bn must be auto, always or never")
        check(self.shift_direction in ("bidirectional", "causal"),
              f"--shift-direction must be bidirectional or causal, got {self.shift_direction!r}")
        check(self.cache_features in ("auto", "on", "off"), "--cache-features must be auto, on or off")
        check(self.fewshot_method in ("finetune", "prototype"), "--fewshot-method must be finetune or prototype")
        if self.augment is True or self.augment is False:  # the old boolean form
            self.augment = "basic" if self.augment else "none"
        augment_names(self.augment)  # one line naming the value when it is not a known augmentation
        check(self.input in INPUTS, f"unknown --input {self.input!r}; use one of {', '.join(INPUTS)}")
        check(self.size is None or self.size >= 16, f"--size must be >= 16 pixels, got {self.size}")
        check(self.lr > 0, f"--lr must be > 0, got {self.lr}")
        from edgevt.env import check_torch_device

        check_torch_device(self.device)  # cuda without a GPU: one line now, not torch's RuntimeError later
        check(self.epochs >= 1 and self.batch_size >= 1, "--epochs and --batch-size must be >= 1")
        check(0.0 <= self.val_split < 1.0, f"--val-split must be in [0, 1), got {self.val_split}")
        check(self.ways >= 2 and self.shots >= 1 and self.queries >= 1, "need --ways >= 2, --shots >= 1, --queries >= 1")
        check(self.consistency in CONSISTENCY, f"unknown --consistency {self.consistency!r}; use {', '.join(CONSISTENCY)}")
        check(self.budget > 0, f"--budget must be > 0, got {self.budget}")
        if self.rungs != "all":
            chosen = self.auto_rungs
            unknown = [r for r in chosen if r not in AUTO_RUNGS]
            check(not unknown, f"unknown --rungs {', '.join(unknown)}; use all or some of {', '.join(AUTO_RUNGS)}")
            check(any(r in chosen for r in AUTO_RUNGS[:2]),
                  "--rungs needs a source-only candidate (source_only or source_only_plain): the others start from it")
            for bn, src in (("bn", "source_only"), ("bn_plain", "source_only_plain")):
                check(bn not in chosen or src in chosen, f"--rungs {bn} re-estimates BatchNorm of {src}: list {src} too")
            check("pixel" not in chosen or self.pixel != "none",
                  "--rungs pixel trains on source clips translated to the target's look: pass --pixel fda|hist|gan")
            check("labeled" not in chosen or self.target_labeled,
                  "--rungs labeled fine-tunes on a few labeled target clips: pass --target-labeled FILE")
        check(0.0 < self.pl_threshold <= 1.0, f"--pl-threshold must be in (0, 1], got {self.pl_threshold}")
        for name in ("self_train", "im_weight", "mcc_weight", "adv_weight"):
            v = getattr(self, name)
            check(v is None or v >= 0, f"--{name.replace('_', '-')} must be >= 0, got {v}")
        if self.strategy == "fewshot":
            check(self.target is not None, "--strategy fewshot needs --target with labeled target clips")
            check(self.init is not None or self.weights != "none",
                  "--strategy fewshot adapts an existing model: pass --init META_OR_SOURCE_CKPT")
        else:
            check(self.source is not None, f"--strategy {self.strategy} needs --source with labeled clips")
        if self.strategy in TWO_DOMAIN + ("bn", "auto") or self.bn_adapt or self.uses_target_losses:
            check(self.target is not None, f"--strategy {self.strategy} needs --target with (unlabeled) target clips")
        check(self.pixel in ("none", "gan", "fda", "hist"), f"unknown --pixel {self.pixel!r}; use gan, fda, hist or none")
        if self.pixel != "none":
            check(self.source is not None and self.target is not None,
                  f"--pixel {self.pixel} translates --source clips towards --target clips: pass both")
        if self.strategy == "bn":
            check(self.init is not None, "--strategy bn re-estimates BatchNorm of a trained model: pass --init CKPT")

    def clip_spec(self, labels: list[str], mean: tuple, std: tuple, streaming: str = "window") -> ClipSpec:
        """The ClipSpec this run trains with (T, frame stride, size and sampling come from here only;
        the model gives the normalisation and its stream form)."""
        return ClipSpec(num_frames=self.num_frames, frame_stride=self.frame_stride, size=(self.size or DEFAULT_SIZE,) * 2,
                        mean=tuple(self.mean) if self.mean else mean, std=tuple(self.std) if self.std else std,
                        sampling=self.sampling, labels=list(labels), streaming=streaming)

    @staticmethod
    def clip_fields(spec: ClipSpec) -> dict:
        """The AdaptConfig fields that make ``spec``'s clips (T, frame stride, size, sampling): the
        inverse of ``clip_spec``, for callers that hold a ClipSpec (``AdaptConfig(**clip_fields(spec), ...)``)."""
        h, w = spec.size
        if h != w:
            raise EdgevtError(f"adapt trains on square clips (--size); got size {h}x{w}")
        return {"num_frames": spec.num_frames, "frame_stride": spec.frame_stride, "size": h, "sampling": spec.sampling}

    @property
    def auto_rungs(self) -> tuple[str, ...]:
        """The --strategy auto candidates to run, in ladder order."""
        if self.rungs == "all":
            return AUTO_RUNGS
        names = [r.strip() for r in self.rungs.split(",") if r.strip()]
        return tuple(r for r in AUTO_RUNGS if r in names) + tuple(r for r in names if r not in AUTO_RUNGS)

    @property
    def self_train_weight(self) -> float:
        return (1.0 if self.strategy == "selftrain" else 0.0) if self.self_train is None else self.self_train

    @property
    def im(self) -> float:
        return (0.3 if self.strategy == "selftrain" else 0.0) if self.im_weight is None else self.im_weight

    @property
    def uses_target_losses(self) -> bool:
        return self.self_train_weight > 0 or self.im > 0 or self.mcc_weight > 0

    def to_dict(self) -> dict:
        d = asdict(self)
        d["mean"] = list(self.mean) if self.mean else None
        d["std"] = list(self.std) if self.std else None
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "AdaptConfig":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


@dataclass
class AdaptResult:
    checkpoint: str  # final model checkpoint (edgevt format)
    report: dict  # what report.json holds
    out: str
