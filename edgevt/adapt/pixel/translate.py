"""``translate(TranslateConfig) -> TranslateResult``: labeled source clips rendered as target clips.

The library call behind ``edgevt translate`` and ``edgevt adapt --pixel``. Methods:

- ``gan``: trains the CycleGAN of ``gan.py`` on source and target clips (both sampled through one
  ClipSpec, so videos of other sizes or frame counts are resampled), with a frozen source
  classifier for the semantic loss (``classifier``, or a small one trained here on the source);
- ``fda`` / ``hist``: no training; each source clip is restyled after one target frame.

Output folder (written in a staging folder, replacing ``out`` only if it is an earlier translation):

    source.txt, labels.txt   the translated clips as a ``path label`` list: ``--source`` of edgevt adapt
    source/<class>/*.mp4     every source video, every frame translated
    translator.pt            the translator with its metadata (spec, domains, losses): weights_only-loadable
    grids/*.png              source | translated | target frame, one row per class (during training)
    checkpoints/last.pt      the training state (gan), for ``--resume`` with more ``--steps``
    classifier.pt            the frozen source classifier of the semantic loss (gan)
    translate.json           what was asked and measured: losses, seconds, temporal consistency

While a GAN trains, its checkpoints and grids live in ``.<out>.work/`` beside ``out``; an
interrupted run resumes from there with ``resume=True``.
"""
from __future__ import annotations

import json
import random
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from edgevt.adapt.pixel.fda import DEFAULT_BETA, fda_clip, hist_match_clip
from edgevt.adapt.pixel.gan import CycleGAN, GanConfig, ImagePool, ResnetGenerator, shift_frames, warp_error
from edgevt.adapt.pixel.grid import write_grid
from edgevt.adapt.pixel.metrics import temporal_consistency
from edgevt.errors import EdgevtError
from edgevt.fileio import atomic_write_text, check_replaceable, replace_dir, staging_dir
from edgevt.spec import ClipSpec

METHODS = ("gan", "fda", "hist")
MIN_TARGET_CLIPS = {"gan": 4, "fda": 1, "hist": 1}
FORMAT = "edgevt-translator"
TRAIN_FORMAT = "edgevt-translator-train"
MARKER = "translate.json"
BANK_FRAMES = 64  # target frames kept in an fda/hist translator


@dataclass
class TranslateConfig:
    source: str | None = None  # labeled source clips (folder tree or 'path label' list)
    target: str | None = None  # target-domain clips (labels, if any, are ignored)
    out: str = "runs/translate"
    method: str = "gan"
    size: int = 64
    num_frames: int = 8
    frame_stride: int = 2
    # gan
    steps: int = 300
    batch_size: int = 2  # clips per domain per step
    gan: GanConfig = field(default_factory=GanConfig)
    classifier: str | None = None  # edgevt checkpoint for the semantic loss; None: train one on the source
    classifier_epochs: int = 15
    grid_every: int = 100
    checkpoint_every: int = 100
    resume: bool = False
    translator: str | None = None  # apply this saved translator instead of training one
    # fda
    beta: float = DEFAULT_BETA
    seed: int = 0
    device: str = "auto"
    skip_bad: bool = False
    progress: bool = True

    def validate(self) -> None:
        def check(ok, msg):
            if not ok:
                raise EdgevtError(msg)

        check(self.method in METHODS, f"unknown --method {self.method!r}; use gan, fda or hist")
        check(self.source is not None and self.target is not None, "translate needs --source and --target")
        check(self.size >= 16 and self.num_frames >= 1 and self.frame_stride >= 1,
              "need --size >= 16, --frames >= 1, --stride >= 1")
        check(self.method != "gan" or self.size % 4 == 0, f"--method gan needs --size divisible by 4, got {self.size}")
        check(self.steps >= 1 and self.batch_size >= 1, "--steps and --batch-size must be >= 1")
        check(0 < self.beta < 0.5, f"--beta must be in (0, 0.5), got {self.beta}")

    def request(self) -> dict:
        """What determines the output (a later identical request may reuse it)."""
        d = asdict(self)
        for k in ("out", "progress", "resume", "device", "grid_every", "checkpoint_every"):
            d.pop(k)
        return d


@dataclass
class TranslateResult:
    list: str  # the translated 'path label' list
    out: str
    report: dict


def is_translation(path: str | Path) -> bool:
    try:
        return json.loads((Path(path) / MARKER).read_text()).get("name") == FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def _umask() -> int:
    import os

    mask = os.umask(0)
    os.umask(mask)
    return mask


def _device(name: str) -> torch.device:
    from edgevt.env import check_torch_device

    check_torch_device(name)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def _open(cfg: TranslateConfig, spec: ClipSpec, method: str):
    """Source (labeled) and target clips, both sampled through ``spec``: other sizes and frame
    counts are resampled, not refused."""
    from edgevt.adapt.data import labels_of, open_labeled, open_unlabeled

    labels = labels_of(cfg.source)
    source = open_labeled(cfg.source, spec, labels, train=True, seed=cfg.seed, skip_bad=cfg.skip_bad)
    target = open_unlabeled(cfg.target, spec, cfg.seed, skip_bad=cfg.skip_bad)
    need = MIN_TARGET_CLIPS[method]
    if len(target) < need:
        raise EdgevtError(f"--target {cfg.target} has {len(target)} readable clip(s); --method {method} needs "
                          f"at least {need} (in practice dozens)")
    return source, target, labels


def _fingerprint(ds) -> dict:
    """Which clips: count and a hash of their paths and labels."""
    import hashlib

    h = hashlib.sha256()
    for r in ds.records:
        h.update(f"{r.path}\t{r.label}\n".encode())
    return {"clips": len(ds.records), "sha256": h.hexdigest()[:16]}


def to_unit(clips_u8: torch.Tensor) -> torch.Tensor:
    """uint8 [B, T, H, W, 3] -> float [B, T, 3, H, W] in [-1, 1]."""
    return clips_u8.to(torch.float32).movedim(-1, -3) / 127.5 - 1.0


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """float [N, 3, H, W] in [-1, 1] -> uint8 [N, H, W, 3]."""
    return ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).movedim(-3, -1).cpu().numpy()


# -- the translator: what translates frames, and how it is saved -------------------------------------------------
class Translator:
    """Translates whole videos. ``gan``: a source->target generator; ``fda``/``hist``: a bank of
    target frames, one drawn per clip (deterministic per clip index and seed)."""

    def __init__(self, method: str, spec: ClipSpec, generator: ResnetGenerator | None = None,
                 bank: np.ndarray | None = None, beta: float = DEFAULT_BETA, seed: int = 0, meta: dict | None = None):
        self.method, self.spec, self.generator, self.bank, self.beta, self.seed = method, spec, generator, bank, beta, seed
        self.meta = meta or {}

    @torch.no_grad()
    def video(self, frames: np.ndarray, index: int = 0, device: torch.device | str = "cpu") -> np.ndarray:
        """uint8 [F, H, W, 3] (at the spec's size) -> translated uint8 [F, H, W, 3]."""
        if self.method == "gan":
            self.generator.eval().to(device)
            out = [to_uint8(self.generator(to_unit(torch.from_numpy(frames[i:i + 64])[None].to(device))[0]))
                   for i in range(0, len(frames), 64)]
            return np.concatenate(out)
        rng = np.random.default_rng((self.seed, index))
        target_frame = self.bank[int(rng.integers(len(self.bank)))]
        return fda_clip(frames, target_frame, self.beta) if self.method == "fda" else hist_match_clip(frames, target_frame)

    def state(self) -> dict:
        d = {"format": FORMAT, "format_version": 1, "method": self.method, "spec": self.spec.to_dict(),
             "beta": self.beta, "seed": self.seed, **self.meta}
        if self.generator is not None:
            d["state_dict"] = {k: v.detach().cpu() for k, v in self.generator.state_dict().items()}
        if self.bank is not None:
            d["target_bank"] = torch.from_numpy(np.ascontiguousarray(self.bank))
        return d

    @classmethod
    def load(cls, path: str | Path, spec: ClipSpec | None = None) -> Translator:
        """A saved translator; with ``spec``: refused (one line) unless it was made for that frame size."""
        p = Path(path)
        if not p.exists():
            raise EdgevtError(f"{p}: no such translator")
        try:
            d = torch.load(p, map_location="cpu", weights_only=True)
        except Exception as e:
            raise EdgevtError(f"{p}: not an edgevt translator ({type(e).__name__})") from None
        if not isinstance(d, dict) or d.get("format") != FORMAT:
            raise EdgevtError(f"{p}: not an edgevt translator (no '{FORMAT}' marker); make one with `edgevt translate`")
        own = ClipSpec.from_dict(d["spec"])
        if spec is not None and tuple(own.size) != tuple(spec.size):
            raise EdgevtError(f"{p}: translator made for {own.size[0]}x{own.size[1]} frames, this run's ClipSpec has "
                              f"{spec.size[0]}x{spec.size[1]}; pass --size {own.size[0]} or train a new translator")
        gen = None
        if d["method"] == "gan":
            g = d.get("gan", {})
            gen = ResnetGenerator(g.get("ngf", 16), g.get("blocks", 3))
            gen.load_state_dict(d["state_dict"])
        bank = d["target_bank"].numpy() if "target_bank" in d else None
        meta = {k: v for k, v in d.items() if k not in ("format", "format_version", "method", "spec", "beta", "seed",
                                                          "state_dict", "target_bank")}
        return cls(d["method"], own, gen, bank, d.get("beta", DEFAULT_BETA), d.get("seed", 0), meta)


def target_bank(target, seed: int, n: int = BANK_FRAMES) -> np.ndarray:
    """Up to ``n`` target frames, one per target video (a random frame of each), in a seeded order."""
    rng = np.random.default_rng((seed, 7))
    order = rng.permutation(len(target))[:n]
    frames = []
    for i in order:
        v = target.video(int(i))
        frames.append(v[int(rng.integers(len(v)))])
    return np.stack(frames)


# -- GAN training ----------------------------------------------------------------------------------------------
def source_classifier(cfg: TranslateConfig, spec: ClipSpec, work: Path, device, say):
    """The frozen source classifier for the semantic loss, as a function of clips in [-1, 1]."""
    from edgevt.models.checkpoint import model_from_checkpoint

    path = Path(cfg.classifier) if cfg.classifier else work / "classifier" / "model.pt"
    if cfg.classifier is None and not path.exists():
        from rich.console import Console

        from edgevt.adapt import AdaptConfig, adapt

        say(f"training the source classifier for the semantic loss ({cfg.classifier_epochs} epochs)")
        # motion is the label: a frame-difference model judges whether the translation kept it
        adapt(AdaptConfig(source=cfg.source, out=str(path.parent), model="tsm_tinycnn", input="diff",
                          num_frames=spec.num_frames, frame_stride=spec.frame_stride, size=spec.size[0],
                          mode="full", epochs=cfg.classifier_epochs, batch_size=16, lr=3e-3, seed=cfg.seed,
                          progress=False, device=str(device), skip_bad=cfg.skip_bad),
              console=Console(stderr=True, quiet=not cfg.progress))
    model, cspec = model_from_checkpoint(str(path))
    if (cspec.num_frames, tuple(cspec.size)) != (spec.num_frames, tuple(spec.size)):
        raise EdgevtError(f"--classifier {path}: made for {cspec.num_frames} frames of {cspec.size[0]}x{cspec.size[1]}, "
                          f"this translation samples {spec.num_frames} of {spec.size[0]}x{spec.size[1]}; "
                          f"pass matching --frames/--size or drop --classifier")
    model.eval().requires_grad_(False).to(device)
    mean = torch.tensor(cspec.mean, device=device).view(3, 1, 1)
    std = torch.tensor(cspec.std, device=device).view(3, 1, 1)

    def classify(x):  # [-1, 1] [B, T, 3, H, W] -> logits
        return model(((x + 1) / 2 - mean) / std)

    return classify, path


def _sample(ds, n: int, rng: np.random.Generator) -> torch.Tensor:
    idx = rng.choice(len(ds), size=n, replace=len(ds) < n)
    return torch.from_numpy(np.stack([ds.clip(int(i), rng) for i in idx]))


def _grid(path: Path, gen, source, target, labels, rng_seed: int, device) -> None:
    rows = []
    per_class = {}
    for i, r in enumerate(source.records):
        per_class.setdefault(r.label, i)
    tframes = target_bank(target, rng_seed, n=len(per_class))
    for k, (label, i) in enumerate(sorted(per_class.items())):
        v = source.video(i)
        f = v[len(v) // 2]
        with torch.no_grad():
            gen.eval()
            out = to_uint8(gen(to_unit(torch.from_numpy(f[None, None]).to(device))[0]))[0]
            gen.train()
        rows.append((labels.names[label], f, out, tframes[k % len(tframes)]))
    write_grid(path, rows)


def train_gan(cfg: TranslateConfig, spec: ClipSpec, source, target, labels, work: Path, device, progress, say,
              classify=None) -> dict:
    """Train the CycleGAN in ``work`` (checkpoints, grids); returns its training summary.
    ``classify``: the frozen classifier of the semantic loss (see ``source_classifier``)."""
    gcfg = cfg.gan
    torch.manual_seed(cfg.seed)
    model = CycleGAN(gcfg).to(device)
    opt_g, opt_d = model.optimizers()
    pools = (ImagePool(gcfg.pool_size, random.Random(0)), ImagePool(gcfg.pool_size, random.Random(1)))
    history, start, seconds = [], 0, 0.0
    last = work / "last.pt"
    if last.exists():
        st = torch.load(last, map_location="cpu", weights_only=True)
        if st.get("format") != TRAIN_FORMAT:
            raise EdgevtError(f"{last}: not a translator training checkpoint; remove it or drop --resume")
        if ClipSpec.from_dict(st["spec"]).to_dict() != spec.to_dict() or st.get("gan") != asdict(gcfg):
            raise EdgevtError(f"{last}: training checkpoint from another ClipSpec or GAN configuration; use the same "
                              f"--size/--frames/--stride and GAN options, or drop --resume")
        model.load_state_dict(st["model"])
        opt_g.load_state_dict(st["opt_g"])
        opt_d.load_state_dict(st["opt_d"])
        for pool, frames in zip(pools, (st["pool_t"], st["pool_s"])):
            pool.frames = list(frames.unbind(0)) if len(frames) else []
        history, start, seconds = st["history"], int(st["step"]), float(st["seconds"])
        say(f"resuming from {last} at step {start}")
    model.train()

    def save(step):
        from edgevt.models.checkpoint import atomic_torch_save

        stack = [torch.stack(p.frames) if p.frames else torch.zeros(0) for p in pools]
        atomic_torch_save({"format": TRAIN_FORMAT, "spec": spec.to_dict(), "gan": asdict(gcfg), "step": step,
                           "model": model.state_dict(), "opt_g": opt_g.state_dict(), "opt_d": opt_d.state_dict(),
                           "pool_t": stack[0], "pool_s": stack[1], "history": history,
                           "seconds": seconds + time.perf_counter() - t0}, last)

    task = progress.add_task("translator (CycleGAN)", total=cfg.steps, completed=min(start, cfg.steps), info="")
    t0 = time.perf_counter()
    (work / "grids").mkdir(parents=True, exist_ok=True)
    for step in range(start, cfg.steps):
        rng = np.random.default_rng((cfg.seed, step))
        gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step)
        for k, pool in enumerate(pools):
            pool.rng = random.Random(cfg.seed * 1_000_003 + 2 * step + k)
        xs = to_unit(_sample(source, cfg.batch_size, rng)).to(device)
        xt = to_unit(_sample(target, cfg.batch_size, rng)).to(device)
        losses = model.step(xs, xt, opt_g, opt_d, pools, classify, gen)
        history.append({"step": step + 1, **{k: round(v, 4) for k, v in losses.items()}})
        progress.update(task, advance=1, info="  ".join(f"{k} {v:.3f}" for k, v in losses.items()))
        done = step + 1
        if cfg.grid_every and (done % cfg.grid_every == 0 or done == cfg.steps):
            _grid(work / "grids" / f"step_{done:06d}.png", model.g_st, source, target, labels, cfg.seed, device)
        if (cfg.checkpoint_every and done % cfg.checkpoint_every == 0) or done == cfg.steps:
            save(done)
    if start >= cfg.steps:
        say(f"{last} is already at step {start} >= --steps {cfg.steps}: no more training")
    seconds += time.perf_counter() - t0
    shifts = (torch.rand(cfg.batch_size, 2, generator=torch.Generator().manual_seed(cfg.seed)) * 2 - 1) * gcfg.max_shift
    xs = to_unit(_sample(source, cfg.batch_size, np.random.default_rng((cfg.seed, 1 << 30)))).to(device)
    with torch.no_grad():
        model.g_st.eval()
        fs = xs.flatten(0, 1)
        warp = float(warp_error(model.g_st, fs, shifts.repeat_interleave(xs.shape[1], 0).to(fs)))
        base = float((shift_frames(fs, shifts.repeat_interleave(xs.shape[1], 0).to(fs)) - fs).abs().mean())
    return {"generator": model.g_st, "history": history, "steps": max(start, cfg.steps), "seconds": round(seconds, 1),
            "warp_error": round(warp, 5), "warp_reference": round(base, 5)}


# -- the whole job --------------------------------------------------------------------------------------------
def translate(cfg: TranslateConfig, console=None) -> TranslateResult:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from edgevt.data.video import write_video

    cfg.validate()
    console = console or Console(stderr=True)
    say = console.print if cfg.progress else (lambda *a, **k: None)
    out = Path(cfg.out)
    what = "an edgevt translation"
    check_replaceable(out, is_translation, what)
    device = _device(cfg.device)
    spec = ClipSpec(num_frames=cfg.num_frames, frame_stride=cfg.frame_stride, size=(cfg.size, cfg.size))
    translator = Translator.load(cfg.translator, spec) if cfg.translator else None
    method = translator.method if translator else cfg.method
    source, target, labels = _open(cfg, spec, method)
    work = out.parent / f".{out.name}.work"
    if not cfg.resume and work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)
    if cfg.resume and not (work / "last.pt").exists() and (out / "checkpoints" / "last.pt").exists():
        shutil.copyfile(out / "checkpoints" / "last.pt", work / "last.pt")
        if (out / "grids").exists():
            shutil.copytree(out / "grids", work / "grids", dirs_exist_ok=True)
        if (out / "classifier.pt").exists() and cfg.classifier is None:
            (work / "classifier").mkdir(exist_ok=True)
            shutil.copyfile(out / "classifier.pt", work / "classifier" / "model.pt")
    t0 = time.perf_counter()
    domains = {"source": cfg.source, "target": cfg.target, "source_clips": _fingerprint(source),
               "target_clips": _fingerprint(target)}
    progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                        TextColumn("{task.fields[info]}"), console=console, disable=not cfg.progress)
    training = classify = classifier_path = None
    if translator is None and method == "gan":  # before the progress display: it trains a model itself
        classify, classifier_path = source_classifier(cfg, spec, work, device, say)
    with progress:
        if translator is None and method == "gan":
            training = train_gan(cfg, spec, source, target, labels, work, device, progress, say, classify)
            translator = Translator("gan", spec, training["generator"], seed=cfg.seed,
                                    meta={"gan": asdict(cfg.gan), "domains": domains, "steps": training["steps"],
                                          "losses": training["history"][-1] if training["history"] else {},
                                          "train_seconds": training["seconds"]})
        elif translator is None:
            translator = Translator(method, spec, bank=target_bank(target, cfg.seed), beta=cfg.beta, seed=cfg.seed,
                                    meta={"domains": domains})
        stage = staging_dir(out)
        try:
            lines, src_videos, out_videos = [], [], []
            task = progress.add_task(f"translating source clips ({method})", total=len(source), info="")
            for i, r in enumerate(source.records):
                frames = source.video(i)
                new = translator.video(frames, i, device)
                name = labels.names[r.label]
                rel = f"source/{name}/{i:05d}_{Path(r.path).stem}.mp4"
                (stage / rel).parent.mkdir(parents=True, exist_ok=True)
                write_video(stage / rel, new)
                lines.append(f"{rel} {name}")
                if len(src_videos) < 64:
                    src_videos.append(frames)
                    out_videos.append(new)
                progress.advance(task)
            (stage / "source.txt").write_text("\n".join(lines) + "\n")
            labels.save(stage / "labels.txt")
            torch.save(translator.state(), stage / "translator.pt")
            if training is not None:
                shutil.copytree(work / "grids", stage / "grids")
                (stage / "checkpoints").mkdir()
                shutil.copyfile(work / "last.pt", stage / "checkpoints" / "last.pt")
                if cfg.classifier is None:
                    shutil.copyfile(classifier_path, stage / "classifier.pt")
            else:
                (stage / "grids").mkdir()
                rows = []
                seen = set()
                for i, r in enumerate(source.records):
                    if r.label in seen:
                        continue
                    seen.add(r.label)
                    v = source.video(i)
                    rng = np.random.default_rng((translator.seed, i))
                    tf = translator.bank[int(rng.integers(len(translator.bank)))] if translator.bank is not None \
                        else target.video(0)[0]
                    rows.append((labels.names[r.label], v[len(v) // 2], translator.video(v, i, device)[len(v) // 2], tf))
                write_grid(stage / "grids" / "translated.png", sorted(rows, key=lambda x: labels.names.index(x[0])))
            report = {"name": FORMAT, "method": method, "request": cfg.request(), "spec": spec.to_dict(),
                      "domains": domains, "clips": len(lines),
                      "temporal_consistency": temporal_consistency(src_videos, out_videos),
                      "seconds_total": round(time.perf_counter() - t0, 1)}
            if training is not None:
                report["train"] = {k: training[k] for k in ("steps", "seconds", "warp_error", "warp_reference")}
                report["train"]["final_losses"] = training["history"][-1] if training["history"] else {}
                report["train"]["history"] = training["history"][::max(1, len(training["history"]) // 50)]
            atomic_write_text(stage / MARKER, json.dumps(report, indent=1, default=str))
            stage.chmod(0o777 & ~_umask())  # mkdtemp makes 0700; the output is read by other users and services
            replace_dir(stage, out, is_translation, what)
        except BaseException:
            shutil.rmtree(stage, ignore_errors=True)
            raise
    shutil.rmtree(work, ignore_errors=True)
    tc = report["temporal_consistency"]
    say(f"wrote {len(lines)} translated clips to {out / 'source.txt'} ({method}; frame-to-frame change "
        f"{tc['translated_frame_change']:.4f} vs source {tc['source_frame_change']:.4f})")
    return TranslateResult(list=str(out / "source.txt"), out=str(out), report=report)


# -- from edgevt adapt -----------------------------------------------------------------------------------------
def translate_source(cfg, method: str | None = None, console=None) -> str:
    """The translated-source list for an ``AdaptConfig``'s source and target (``method``: default
    ``cfg.pixel``), written under ``<cfg.out>/pixel_<method>``; reused when an identical request
    already wrote it. The semantic classifier of ``gan`` is trained here on the source."""
    method = method or cfg.pixel
    size = cfg.size
    frames, stride = cfg.num_frames, cfg.frame_stride
    if cfg.init:
        from edgevt.models.checkpoint import load_checkpoint

        s = ClipSpec.from_dict(load_checkpoint(cfg.init)["spec"])
        size, frames, stride = s.size[0], s.num_frames, s.frame_stride
    tcfg = TranslateConfig(source=cfg.source, target=cfg.target, out=str(Path(cfg.out) / f"pixel_{method}"),
                           method=method, size=size, num_frames=frames, frame_stride=stride, seed=cfg.seed,
                           device=cfg.device, skip_bad=cfg.skip_bad, progress=cfg.progress)
    out = Path(tcfg.out)
    if is_translation(out):
        done = json.loads((out / MARKER).read_text())
        if done.get("request") == json.loads(json.dumps(tcfg.request(), default=str)):
            return str(out / "source.txt")
    return translate(tcfg, console=console).list


def pixel_config(cfg, method: str | None = None, console=None):
    """``cfg`` with its source replaced by the translated source (``--pixel``), pixel set to none."""
    from dataclasses import replace

    return replace(cfg, source=translate_source(cfg, method, console), pixel="none")
