"""Accuracy of any artifact on labeled clips, through the backend registry.

``evaluate(artifact, data)`` takes a checkpoint (``torch`` backend), an ONNX file or a bundle
(``ort-cpu`` by default, ``precision=`` picks model.fp32/fp16/int8), or a TensorRT engine (the
``tensorrt`` backend, where it is installed). Clips are decoded and sampled once with the
artifact's ClipSpec (evaluation sampling), so rows for different precisions or backends are
computed on identical inputs. ``evaluate_all(bundle, data)`` evaluates every precision in the
bundle and stores the results in the manifest's ``eval`` section.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from edgevt.errors import EdgevtError
from edgevt.metrics import top1 as top1_of
from edgevt.spec import ClipSpec

@dataclass
class EvalResult:
    artifact: str
    backend: str
    precision: str
    data: str
    clips: int
    top1: float  # percent
    top5: float | None  # percent; None with fewer than 6 classes
    per_class: dict  # label -> {"clips": n, "top1": percent}
    confusion: list  # [true][pred] counts, label order of the spec
    labels: list
    latency: dict | None = None  # LatencyStats (ms per batch) over full batches after the first
    batch_size: int = 0
    device: dict = field(default_factory=dict)
    confusion_png: str | None = None
    agreement_with: dict = field(default_factory=dict)  # other precision -> % same top-1

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class ClipSet:
    """Decoded, sampled clips shared by every artifact evaluated on them."""

    clips: np.ndarray  # uint8 [N, T, H, W, 3]
    labels: np.ndarray
    paths: list
    source: str
    spec: ClipSpec


def load_eval_clips(data, spec: ClipSpec, max_clips: int | None = None, skip_bad: bool = True) -> ClipSet:
    """skip_bad: skip unreadable videos with a warning (default); False: the first one is an error."""
    from edgevt.data.datasets import load_clips

    if max_clips is not None and max_clips < 1:
        raise EdgevtError(f"--max-clips {max_clips}: must be >= 1 (omit it to evaluate every clip)")
    clips, labels, paths = load_clips(data, spec, max_clips, labeled=True, what="evaluation", skip_bad=skip_bad)
    if (labels < 0).any():
        raise EdgevtError(f"{data}: evaluation needs labeled clips (class folders or a 'path label' list)")
    return ClipSet(clips, labels, paths, str(data), spec)


# -- what to open ------------------------------------------------------------------------------
def open_backend_for(art, backend: str | None, precision: str | None, threads: int | None):
    """(backend name, opened Backend) for an Artifact (``edgevt.bundle.open_artifact``)."""
    from edgevt.backends import open_backend

    name = backend or art.default_backend
    opts = {}
    if threads:
        opts["threads"] = threads
    if art.kind == "bundle" or precision:
        opts["precision"] = precision or "fp32"
    target = art.bundle if art.bundle is not None and name != "torch" else art.path
    return name, open_backend(name, target, **opts)


def _model_inputs(backend, clips: np.ndarray, spec: ClipSpec) -> tuple[str, np.ndarray]:
    from edgevt.models.preprocess import model_input

    info = backend.inputs[0]
    float_input = info.dtype.startswith("float") and len(info.shape) == 5 and info.shape[2] == 3
    x = model_input(clips, spec, float_input)
    if info.dtype == "float16":
        x = x.astype(np.float16)
    return info.name, x


# -- metrics -----------------------------------------------------------------------------------
def accuracy_metrics(logits: np.ndarray, labels: np.ndarray, names: list[str]) -> dict:
    n_cls = logits.shape[1]
    pred = logits.argmax(1)
    top1 = top1_of(logits, labels)
    top5 = None
    if n_cls > 5:
        top5_idx = np.argsort(-logits, axis=1)[:, :5]
        top5 = float((top5_idx == labels[:, None]).any(1).mean() * 100)
    conf = np.zeros((n_cls, n_cls), dtype=np.int64)
    np.add.at(conf, (labels, pred), 1)
    per_class = {}
    for i, name in enumerate(names[:n_cls]):
        n = int(conf[i].sum())
        per_class[name] = {"clips": n, "top1": float(conf[i, i] / n * 100) if n else None}
    return {"top1": top1, "top5": top5, "per_class": per_class, "confusion": conf.tolist()}


def predict(backend, clips: np.ndarray, spec: ClipSpec, batch_size: int = 8, progress=None) -> tuple[np.ndarray, dict]:
    """Logits for every clip and the latency of full batches (the first one is warm-up)."""
    from edgevt.stats import LatencyStats

    name, x = _model_inputs(backend, clips, spec)
    out_name = backend.outputs[0].name
    logits, samples, timings = [], [], []
    for i in range(0, len(x), batch_size):
        xb = x[i:i + batch_size]
        t0 = time.perf_counter()
        out = backend.run({name: xb})[out_name]
        dt = time.perf_counter() - t0
        if len(xb) == batch_size:
            samples.append(dt)
            timings.append(backend.last_timing)
        logits.append(np.asarray(out, dtype=np.float32))
        if progress is not None:
            progress(len(xb))
    lat = None
    if samples:
        keep = samples[1:] or samples
        tks = timings[1:] or timings
        lat = LatencyStats.from_samples(keep, batch_size, tks).to_dict()
    return np.concatenate(logits), lat


def evaluate(artifact, data=None, *, precision: str | None = None, backend: str | None = None,
             batch_size: int = 8, max_clips: int | None = None, clipset: ClipSet | None = None,
             out_dir: str | Path | None = None, threads: int | None = None, progress=None,
             return_logits: bool = False, skip_bad: bool = True):
    """Evaluate one artifact on labeled clips (``data`` or an already loaded ``clipset``).

    out_dir: where to write the confusion matrix PNG (none written when None).
    skip_bad: skip unreadable videos in ``data`` with a warning; False makes the first one an error.
    """
    from edgevt.bundle import open_artifact

    art = open_artifact(artifact)
    spec = art.spec
    if clipset is None:
        if data is None:
            raise EdgevtError("evaluate needs data (a labeled folder or list) or a loaded clipset")
        clipset = load_eval_clips(data, spec, max_clips, skip_bad=skip_bad)
    _check_same_spec(clipset.spec, spec, artifact)
    name, be = open_backend_for(art, backend, precision, threads)
    try:
        logits, lat = predict(be, clipset.clips, spec, batch_size, progress)
        desc = be.describe()
    finally:
        be.close()
    if logits.shape[1] != len(spec.labels):
        raise EdgevtError(f"{artifact}: outputs {logits.shape[1]} classes but its spec has {len(spec.labels)} labels")
    # the name of what ran: int8-cpu / int8-tensorrt for an INT8 graph (the flavour that fit the backend)
    prec = desc.get("precision_name") or precision or desc.get("precision") or "fp32"
    m = accuracy_metrics(logits, clipset.labels, spec.labels)
    res = EvalResult(artifact=str(art.path), backend=name, precision=prec,
                     data=clipset.source, clips=len(clipset.labels), labels=list(spec.labels), latency=lat,
                     batch_size=batch_size, device=desc, **m)
    if out_dir is not None:
        from edgevt.eval.report import save_confusion_png

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        png = out / f"confusion.{name}.{prec}.png"
        save_confusion_png(np.asarray(m["confusion"]), spec.labels,
                           f"{Path(res.artifact).name} {name} {prec}: top-1 {m['top1']:.1f}%", png)
        res.confusion_png = str(png)
    return (res, logits) if return_logits else res


def _check_same_spec(a: ClipSpec, b: ClipSpec, artifact) -> None:
    keys = ("num_frames", "frame_stride", "size", "resize", "pixel_format", "sampling", "short_clip")
    da, db = a.to_dict(), b.to_dict()
    diff = [k for k in keys if da[k] != db[k]]
    if diff:
        raise EdgevtError(f"{artifact}: its ClipSpec differs from the clips' ({', '.join(diff)}); rows would "
                          "not be comparable -- load the clips with this artifact's spec")


def evaluate_all(bundle, data=None, *, backend: str | None = None, batch_size: int = 8,
                 max_clips: int | None = None, out_dir: str | Path | None = None, threads: int | None = None,
                 save: bool = True, include_checkpoint: bool = False, progress=None,
                 skip_bad: bool = True, precisions: list[str] | None = None) -> list[EvalResult]:
    """Every precision of a bundle's model on the same clips; stored in the manifest's ``eval``.

    precisions: names to evaluate (default: fp32, fp16, int8 as the bundle has them; int8 is the
    flavour that fits the backend, ``int8-cpu``/``int8-tensorrt`` name one, e.g. to see the other)."""
    from edgevt.bundle import open_artifact

    art = open_artifact(bundle, verify=True)
    if art.kind != "bundle":
        raise EdgevtError(f"{art.path}: evaluating every precision needs a bundle folder (from `edgevt export`)")
    b = art.bundle
    from edgevt.bundle import PRECISIONS, STORED_PRECISIONS, base_precision

    have = {base_precision(k.split(".", 1)[1]) for k in b.artifacts
            if k.startswith("model.") and k.split(".", 1)[1] in STORED_PRECISIONS}
    if not have:
        raise EdgevtError(f"{b.path}: bundle has no model.<precision> artifacts")
    precisions = list(precisions) if precisions else [p for p in PRECISIONS if p in have]
    clipset = load_eval_clips(data, b.spec, max_clips, skip_bad=skip_bad)
    from edgevt.metrics import top1_agreement

    results, logits = [], []
    rows = []
    if include_checkpoint:
        rows.append(("torch", "fp32"))
    rows += [(backend, p) for p in precisions]
    for be_name, p in rows:
        r, lg = evaluate(b, precision=p, backend=be_name, batch_size=batch_size, clipset=clipset, out_dir=out_dir,
                         threads=threads, progress=progress, return_logits=True)
        results.append(r)
        logits.append(lg)
    ref = next((lg for r, lg in zip(results, logits) if r.precision == "fp32" and r.backend != "torch"), None)
    if ref is not None:
        for r, lg in zip(results, logits):
            r.agreement_with["fp32"] = top1_agreement(lg, ref)
    if save:
        for r in results:
            d = r.to_dict()
            d.pop("device", None)
            d["device"] = {k: r.device.get(k) for k in ("device", "cpu", "threads", "providers", "key", "flavour")
                           if k in r.device}
            d["when"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            b.manifest.setdefault("eval", {})[f"{r.backend}.{r.precision}"] = d
        b.save()
    return results
