"""``run_bench``: time every (backend, precision, batch) of a bundle against the PyTorch eager baseline.

The baseline is the torch backend on the checkpoint the bundle was exported from (manifest
``source.checkpoint``), in FP32, at each batch size; every other row carries its speed-up against
the baseline at the same batch size (ratio of p50 latencies). Configurations that cannot run here
(backend not installed, precision not in the bundle) become *skipped* rows with the reason, so the
report says what was not measured instead of leaving it out silently.
"""
from __future__ import annotations

import os
import platform
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from edgevt.bench.latency import Case, LatencyStats, make_inputs, sample_clips, time_backend
from edgevt.errors import EdgevtError

BASELINE_BACKEND = "torch"
BASELINE_PRECISION = "fp32"
PRECISIONS = ("fp32", "fp16", "int8")


@dataclass
class BenchRow:
    backend: str
    precision: str
    batch: int
    status: str  # ok | skipped | failed
    reason: str = ""
    baseline: bool = False
    artifact: str = ""
    stats: LatencyStats | None = None
    speedup: float | None = None  # baseline p50 / this p50, same batch size
    samples_ms: list = field(default_factory=list)
    describe: dict = field(default_factory=dict)

    @property
    def label(self) -> str:
        return f"{self.backend} {self.precision} b{self.batch}"

    def to_dict(self, with_samples: bool = True) -> dict:
        d = asdict(self)
        d["stats"] = self.stats.to_dict() if self.stats else None
        if not with_samples:
            d.pop("samples_ms")
        return d


@dataclass
class BenchResult:
    rows: list[BenchRow]
    config: dict
    provenance: dict
    bundle: str = ""
    eval: dict = field(default_factory=dict)  # the bundle manifest's eval section, for accuracy vs latency

    def ok_rows(self) -> list[BenchRow]:
        return [r for r in self.rows if r.status == "ok"]

    def to_dict(self) -> dict:
        return {"format": "edgevt-bench", "format_version": 1, "bundle": self.bundle, "config": self.config,
                "provenance": self.provenance, "eval": self.eval, "rows": [r.to_dict() for r in self.rows]}


def split_list(value: str | list | tuple, what: str) -> list[str]:
    items = value if isinstance(value, (list, tuple)) else str(value).split(",")
    items = [str(i).strip() for i in items if str(i).strip()]
    if not items:
        raise EdgevtError(f"{what}: give at least one value")
    return items


def resolve_backends(value) -> list[str]:
    """A comma list of backend names; ``auto`` = every backend usable on this machine."""
    from edgevt.backends import available_backends

    names = split_list(value, "--backend")
    if names == ["auto"]:
        names = [n for n, ok, _ in available_backends() if ok]
        if not names:
            raise EdgevtError("no usable backend on this machine; see `edgevt info`")
    return names


def resolve_precisions(value, bundle) -> list[str]:
    """A comma list of precisions; ``auto`` = every precision the bundle has a model artifact for."""
    names = split_list(value, "--precision")
    if names == ["auto"]:
        have = {k.split(".")[-1] for k in bundle.artifacts if k.startswith(("model.", "engine.model."))}
        names = [p for p in PRECISIONS if p in have] or ["fp32"]
    bad = [p for p in names if p not in PRECISIONS]
    if bad:
        raise EdgevtError(f"--precision: unknown {', '.join(bad)}; choose from {', '.join(PRECISIONS)} or auto")
    return names


def parse_batches(value) -> list[int]:
    try:
        batches = [int(b) for b in split_list(value, "--batch")]
    except ValueError:
        raise EdgevtError(f"--batch: expected comma-separated integers, got {value!r}") from None
    if min(batches) < 1:
        raise EdgevtError(f"--batch: sizes must be >= 1, got {value!r}")
    return batches


def source_checkpoint(bundle) -> Path | None:
    """The checkpoint the bundle came from, if it is still on disk (absolute, or relative to the bundle)."""
    ckpt = (bundle.manifest.get("source") or {}).get("checkpoint")
    if not ckpt:
        return None
    for candidate in (Path(ckpt), bundle.path / ckpt, bundle.path.parent / ckpt):
        if candidate.is_file():
            return candidate
    return None


def apply_threads(threads: int | None) -> dict:
    """Pin torch's intra-op threads (onnxruntime gets them per session) and say what is in effect."""
    import torch

    if threads is not None:
        if threads < 1:
            raise EdgevtError(f"--threads must be >= 1, got {threads}")
        torch.set_num_threads(threads)
    return {"requested": threads, "torch_intra_op": torch.get_num_threads(),
            "torch_inter_op": torch.get_num_interop_threads(), "cpu_count": os.cpu_count(),
            "affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
            "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS")}


def plan_cases(bundle, backends: list[str], precisions: list[str], batches: list[int],
               baseline: bool = True) -> tuple[list[Case], list[BenchRow]]:
    """The configurations to time, and the skipped ones with their reason."""
    from edgevt.backends import available_backends

    usable = {name: (ok, reason) for name, ok, reason in available_backends()}
    ckpt = source_checkpoint(bundle)
    cases: list[Case] = []
    skipped: list[BenchRow] = []
    if baseline:
        for b in batches:
            if BASELINE_BACKEND not in usable or not usable[BASELINE_BACKEND][0]:
                skipped.append(BenchRow(BASELINE_BACKEND, BASELINE_PRECISION, b, "skipped", baseline=True,
                                        reason=usable.get(BASELINE_BACKEND, (0, "torch backend not registered"))[1]))
            elif ckpt is None:
                skipped.append(BenchRow(BASELINE_BACKEND, BASELINE_PRECISION, b, "skipped", baseline=True,
                                        reason="source checkpoint "
                                               f"{(bundle.manifest.get('source') or {}).get('checkpoint')!r} "
                                               "not found; no PyTorch baseline"))
            else:
                cases.append(Case(BASELINE_BACKEND, BASELINE_PRECISION, b, "checkpoint", str(ckpt), baseline=True))
    for name in backends:
        if name not in usable:
            raise EdgevtError(f"unknown backend {name!r}; choose from {', '.join(usable)}")
        for p in precisions:
            if name == BASELINE_BACKEND:
                if p == BASELINE_PRECISION and baseline:
                    continue  # already the baseline row
                for b in batches:
                    if ckpt is None:
                        skipped.append(BenchRow(name, p, b, "skipped", reason="source checkpoint not found"))
                    elif not usable[name][0]:
                        skipped.append(BenchRow(name, p, b, "skipped", reason=usable[name][1]))
                    else:
                        cases.append(Case(name, p, b, "checkpoint", str(ckpt)))
                continue
            key = f"engine.model.{p}" if name == "tensorrt" else f"model.{p}"
            for b in batches:
                if not usable[name][0]:
                    skipped.append(BenchRow(name, p, b, "skipped", reason=usable[name][1]))
                elif key not in bundle.artifacts:
                    skipped.append(BenchRow(name, p, b, "skipped", artifact=key,
                                            reason=f"bundle has no {key} (export with --precision {p})"))
                else:
                    cases.append(Case(name, p, b, key, str(bundle.artifact_path(key))))
    return cases, skipped


def open_case(case: Case, bundle, threads: int | None, max_batch: int = 1):
    """Open the backend for one case. Threads go to the backend as an option it may honour;
    TensorRT providers get an optimisation profile that covers every benchmarked batch size."""
    from edgevt.backends import open_backend

    opts = {"precision": case.precision}
    if threads is not None:
        opts["threads"] = threads
    if case.backend == "ort-trt":
        opts["batch"] = (1, case.batch, max_batch)
    artifact = case.path if case.artifact == "checkpoint" else bundle.path
    return open_backend(case.backend, artifact, **opts)


def run_bench(bundle_path: str | Path, backends=("ort-cpu",), precisions=("fp32",), batches=(1,),
              warmup_s: float = 2.0, duration_s: float | None = 10.0, runs: int | None = None,
              threads: int | None = None, clips: str | Path | None = None, baseline: bool = True,
              seed: int = 0, progress=None) -> BenchResult:
    """Time each configuration; see the module docstring. ``progress`` is a rich Progress or None."""
    from edgevt.env import environment
    from edgevt.export.bundle import Bundle

    if not warmup_s >= 0:
        raise EdgevtError(f"--warmup-s {warmup_s}: must be >= 0 seconds")
    if runs is not None and runs < 1:
        raise EdgevtError(f"--runs {runs}: must be >= 1 (or omit it to time by --duration-s)")
    if runs is None and duration_s is not None and not duration_s > 0:
        raise EdgevtError(f"--duration-s {duration_s}: must be > 0 seconds")
    if threads is not None and threads < 1:
        raise EdgevtError(f"--threads {threads}: must be >= 1 (omit it for the library default)")
    bundle = Bundle.load(bundle_path)
    spec = bundle.spec
    auto = split_list(backends, "--backend") == ["auto"]
    backends = resolve_backends(backends)
    if auto and baseline:  # torch is already the baseline row; its fp16/int8 rows would only be skips
        backends = [b for b in backends if b != BASELINE_BACKEND]
    precisions = resolve_precisions(precisions, bundle)
    batches = parse_batches(batches)
    thread_info = apply_threads(threads)
    real = None
    if clips is not None:
        real = sample_clips(clips, spec, max(batches), seed)
    load_before = _loadavg()
    cases, rows = plan_cases(bundle, backends, precisions, batches, baseline)
    task = progress.add_task("bench", total=len(cases)) if progress is not None else None
    for case in cases:
        if progress is not None:
            progress.update(task, description=f"bench {case.backend} {case.precision} b{case.batch}")
        row = BenchRow(case.backend, case.precision, case.batch, "ok", baseline=case.baseline,
                       artifact=case.artifact)
        try:
            be = open_case(case, bundle, threads, max(batches))
        except EdgevtError as e:  # the backend says it cannot run this here (precision, device...)
            row.status, row.reason = "skipped", str(e)
            be = None
        except Exception as e:  # e.g. a checkpoint this edgevt can no longer load: keep the other rows
            row.status, row.reason = "failed", f"{type(e).__name__}: {str(e).strip().splitlines()[-1][:200]}"
            be = None
        if be is not None:
            try:
                with be:
                    inputs = make_inputs(be.inputs, case.batch, spec, real, seed)
                    row.stats, row.samples_ms = time_backend(be, inputs, warmup_s, duration_s, runs)
                    row.describe = _plain(be.describe())
            except Exception as e:  # one broken configuration must not lose the others' numbers
                row.status, row.reason = "failed", f"{type(e).__name__}: {e}"
        rows.append(row)
        if progress is not None:
            progress.advance(task)
    _speedups(rows)
    rows.sort(key=lambda r: (not r.baseline, r.status != "ok", r.backend, r.precision, r.batch))
    provenance = {"environment": environment(), "threads": thread_info, "argv": sys.argv,
                  "host": platform.node(), "bundle_sha256": {k: a["sha256"] for k, a in bundle.artifacts.items()},
                  "tensorrt": _tensorrt_info(rows),
                  # Other processes on the machine: a load above the CPU count means the cores were shared.
                  "load_average": {"before": load_before, "after": _loadavg(), "cpus": os.cpu_count()}}
    config = {"backends": backends, "precisions": precisions, "batches": batches, "warmup_s": warmup_s,
              "duration_s": duration_s if runs is None else None, "runs": runs, "threads": threads,
              "inputs": f"real clips from {clips}" if clips is not None else "random uint8 (1..255)",
              "timing": "end to end around Backend.run: host numpy in -> host numpy out",
              "spec": spec.to_dict()}
    return BenchResult(rows, config, provenance, str(bundle.path), dict(bundle.manifest.get("eval") or {}))


def _loadavg() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (OSError, AttributeError):
        return None


def machine_busy(provenance: dict) -> str | None:
    """A one-line warning when the 1-minute load average exceeded the CPU count during the run."""
    la = provenance.get("load_average") or {}
    cpus = la.get("cpus") or 1
    worst = max((v[0] for v in (la.get("before"), la.get("after")) if v), default=None)
    if worst is not None and worst > cpus:
        return (f"machine busy: load average {worst:.1f} on {cpus} CPUs (other processes competed for the cores; "
                "multi-threaded rows suffer most); rerun on a quiet machine before quoting")
    return None


def _speedups(rows: list[BenchRow]) -> None:
    base = {r.batch: r.stats.p50_ms for r in rows if r.baseline and r.status == "ok"}
    for r in rows:
        if r.status == "ok" and r.batch in base and r.stats.p50_ms > 0:
            r.speedup = base[r.batch] / r.stats.p50_ms


def _tensorrt_info(rows: list[BenchRow]) -> dict | None:
    used = [r.describe for r in rows if r.status == "ok" and r.backend in ("tensorrt", "ort-trt")]
    return {"rows": used} if used else None


def _plain(obj):
    """JSON-safe copy of a describe() dict."""
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    if isinstance(obj, np.generic):
        return obj.item()
    return str(obj)
