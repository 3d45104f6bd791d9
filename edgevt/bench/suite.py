"""``run_bench``: time every (backend, precision, batch) of a bundle against the PyTorch eager baseline.

The baseline is the torch backend on the checkpoint the bundle was exported from (manifest
``source.checkpoint``), in FP32, at each batch size. Every row is opened first and warmed up, then
timed in interleaved rounds (``edgevt.bench.rounds``): each round runs a slice of every row, in a
rotated order, so a burst of load from another process hits all rows alike. Each row's speed-up is
computed per round (baseline median / row median in that round, same batch size) and reported as
the median over rounds with its spread. An efficiency column gives achieved GFLOP/s (FLOPs per clip
from torch's flop counter on the source model) and its share of the CPU's paper peak
(``edgevt.bench.efficiency``). Configurations that cannot run here (backend not installed,
precision not in the bundle) become *skipped* rows with the reason, so the report says what was not
measured instead of leaving it out silently.
"""
from __future__ import annotations

import os
import platform
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from edgevt.bench.latency import Case, make_inputs, sample_clips
from edgevt.bench.rounds import ORDERS, RatioSpread, ratio_spread, round_means, run_rounds, warm_up
from edgevt.bundle import PRECISION_NAMES, PRECISIONS, STORED_PRECISIONS, artifact_key, base_precision
from edgevt.errors import EdgevtError
from edgevt.stats import LatencyStats

BASELINE_BACKEND = "torch"
BASELINE_PRECISION = "fp32"


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
    speedup: float | None = None  # median over rounds of (baseline mean / this mean), same batch size
    samples_ms: list = field(default_factory=list)
    # Interleaved rounds: this row's mean (ms) in each round, the per-round speed-ups and their
    # summary (RatioSpread.to_dict()), and the ratio of the pooled p50s for comparison.
    rounds_ms: list = field(default_factory=list)
    speedup_spread: dict | None = None
    speedup_pooled: float | None = None
    # The same from the process's CPU time per run (time preempted by other processes not counted):
    # its mean per round, the median CPU ms over all runs, and the per-round CPU-time speed-ups.
    rounds_cpu_ms: list = field(default_factory=list)
    cpu_p50_ms: float | None = None
    cpu_speedup: float | None = None
    cpu_speedup_spread: dict | None = None
    # Efficiency: achieved GFLOP/s at the p50 latency, its share of the peak of the cores it used.
    gflops: float | None = None
    peak_share: float | None = None
    efficiency_note: str = ""
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
    efficiency: dict = field(default_factory=dict)  # FLOPs per clip, the CPU peak and its assumptions

    def ok_rows(self) -> list[BenchRow]:
        return [r for r in self.rows if r.status == "ok"]

    def to_dict(self) -> dict:
        return {"format": "edgevt-bench", "format_version": 2, "bundle": self.bundle, "config": self.config,
                "provenance": self.provenance, "eval": self.eval, "efficiency": self.efficiency,
                "rows": [r.to_dict() for r in self.rows]}


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
    """A comma list of precisions; ``auto`` = every precision the bundle has a model artifact for
    (``int8`` once: each backend runs the INT8 flavour that fits it; ``int8-cpu`` / ``int8-tensorrt``
    name a flavour, to time the other one too)."""
    names = split_list(value, "--precision")
    if names == ["auto"]:
        have = {base_precision(k.split(".")[-1]) for k in bundle.artifacts
                if k.startswith(("model.", "engine.model.")) and k.split(".")[-1] in STORED_PRECISIONS}
        names = [p for p in PRECISIONS if p in have] or ["fp32"]
    bad = [p for p in names if p not in PRECISION_NAMES]
    if bad:
        raise EdgevtError(f"--precision: unknown {', '.join(bad)}; choose from {', '.join(PRECISION_NAMES)} or auto")
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
            try:  # int8: the flavour that fits this backend, shown by its name (int8-cpu, int8-tensorrt)
                stored, shown = bundle.resolve_precision(p, name)
            except EdgevtError as e:
                skipped += [BenchRow(name, p, b, "skipped", reason=str(e)) for b in batches]
                continue
            key = artifact_key("model", stored, engine=name == "tensorrt")
            for b in batches:
                if not usable[name][0]:
                    skipped.append(BenchRow(name, shown, b, "skipped", reason=usable[name][1]))
                elif key not in bundle.artifacts:
                    skipped.append(BenchRow(name, shown, b, "skipped", artifact=key,
                                            reason=f"bundle has no {key} (export with --precision {p})"))
                else:
                    cases.append(Case(name, shown, b, key, str(bundle.artifact_path(key))))
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


DEFAULT_ROUNDS = 10


def run_bench(bundle_path: str | Path, backends=("ort-cpu",), precisions=("fp32",), batches=(1,),
              warmup_s: float = 2.0, duration_s: float | None = 10.0, runs: int | None = None,
              threads: int | None = None, clips: str | Path | None = None, baseline: bool = True,
              seed: int = 0, progress=None, rounds: int = DEFAULT_ROUNDS, order: str = "rotate",
              efficiency: bool = True) -> BenchResult:
    """Time each configuration; see the module docstring. ``duration_s`` / ``runs`` are per row, cut
    into ``rounds`` slices. ``progress`` is a rich Progress or None."""
    from edgevt.env import environment
    from edgevt.bundle import Bundle

    if not warmup_s >= 0:
        raise EdgevtError(f"--warmup-s {warmup_s}: must be >= 0 seconds")
    if runs is not None and runs < 1:
        raise EdgevtError(f"--runs {runs}: must be >= 1 (or omit it to time by --duration-s)")
    if runs is None and (duration_s is None or not duration_s > 0):
        raise EdgevtError(f"--duration-s {duration_s}: must be > 0 seconds")
    if threads is not None and threads < 1:
        raise EdgevtError(f"--threads {threads}: must be >= 1 (omit it for the library default)")
    if rounds < 1:
        raise EdgevtError(f"--rounds {rounds}: must be >= 1")
    if order not in ORDERS:
        raise EdgevtError(f"--order {order!r}: choose from {', '.join(ORDERS)}")
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
    cases, skipped = plan_cases(bundle, backends, precisions, batches, baseline)
    n_rounds = min(rounds, runs) if runs is not None else rounds
    task = progress.add_task("bench", total=len(cases) * (n_rounds + 1)) if progress is not None else None

    def say(text: str) -> None:
        if progress is not None:
            progress.update(task, description=text)

    # 1. open every row (one backend per artifact and precision, shared by its batch sizes) and warm it up.
    t_open = time.perf_counter()
    rows: list[BenchRow] = []
    live: list[tuple[BenchRow, object]] = []  # (row, one() -> Timing)
    opened: dict = {}
    with _Closer() as closer:
        for case in cases:
            say(f"open + warm up {case.backend} {case.precision} b{case.batch}")
            row = BenchRow(case.backend, case.precision, case.batch, "ok", baseline=case.baseline,
                           artifact=case.artifact)
            rows.append(row)
            key = (case.backend, case.precision, case.path) + ((case.batch,) if case.backend == "ort-trt" else ())
            try:
                if key not in opened:
                    opened[key] = closer.add(open_case(case, bundle, threads, max(batches)))
                be = opened[key]
            except EdgevtError as e:  # the backend says it cannot run this here (precision, device...)
                row.status, row.reason = "skipped", str(e)
            except Exception as e:  # e.g. a checkpoint this edgevt can no longer load: keep the other rows
                row.status, row.reason = "failed", f"{type(e).__name__}: {str(e).strip().splitlines()[-1][:200]}"
            else:
                try:
                    inputs = make_inputs(be.inputs, case.batch, spec, real, seed)
                    one = _runner(be, inputs)
                    warm_up(one, warmup_s)
                    row.describe = _plain(be.describe())
                    live.append((row, one))
                except Exception as e:  # one broken configuration must not lose the others' numbers
                    row.status, row.reason = "failed", f"{type(e).__name__}: {e}"
            if progress is not None:
                progress.advance(task)

        # 2. interleaved rounds over every live row.
        def on_slice(r, i):
            if progress is not None:
                progress.update(task, advance=1, description=f"round {r + 1}/{n_rounds} {live[i][0].label}")

        def on_error(i, e):
            live[i][0].status, live[i][0].reason = "failed", f"{type(e).__name__}: {e}"

        t_rounds, rounds_unix = time.perf_counter(), time.time()
        slice_s = None if runs is not None else duration_s / n_rounds
        min_per_slice = max(1, -(-5 // n_rounds))  # at least 5 timed runs per row in all
        samples, timings, cpu_samples = run_rounds(
            [one for _, one in live], n_rounds, runs=runs, slice_s=slice_s, min_per_slice=min_per_slice,
            order=order, seed=seed, on_slice=on_slice, on_error=on_error)
        t_done = time.perf_counter()
    for (row, _), per_round, tims, cpu_round in zip(live, samples, timings, cpu_samples):
        flat = [x for rr in per_round for x in rr]
        if row.status == "ok" and flat:
            row.stats = LatencyStats.from_samples(flat, row.batch, tims)
            row.samples_ms = [x * 1e3 for x in flat]
            row.rounds_ms = round_means(per_round)  # speed-ups are per-round ratios of means (bench.rounds)
            row.rounds_cpu_ms = round_means(cpu_round)
            row.cpu_p50_ms = float(np.median([x for rr in cpu_round for x in rr])) * 1e3
        elif row.status == "ok":
            row.status, row.reason = "failed", "no timed runs"
    rows = skipped + rows
    _speedups(rows)
    eff = _efficiency(rows, bundle, threads) if efficiency else {"note": "not computed (efficiency=False)"}
    rows.sort(key=lambda r: (not r.baseline, r.status != "ok", r.backend, r.precision, r.batch))
    provenance = {"environment": environment(), "threads": thread_info, "argv": sys.argv,
                  "host": platform.node(), "bundle_sha256": {k: a["sha256"] for k, a in bundle.artifacts.items()},
                  "tensorrt": _tensorrt_info(rows),
                  # Other processes on the machine: a load above the CPU count means the cores were shared.
                  "load_average": {"before": load_before, "after": _loadavg(), "cpus": os.cpu_count()},
                  # wall seconds of each phase: opening + warm-up, then the timed rounds
                  "phases_s": {"open_warmup": round(t_rounds - t_open, 3), "rounds": round(t_done - t_rounds, 3),
                               "rounds_started_unix": round(rounds_unix, 3)}}
    config = {"backends": backends, "precisions": precisions, "batches": batches, "warmup_s": warmup_s,
              "duration_s": duration_s if runs is None else None, "runs": runs, "threads": threads,
              "rounds": n_rounds, "order": order, "slice_s": slice_s,
              "rewarm_per_slice": "1 untimed run before each slice of a row whose last run took < 50 ms",
              "inputs": f"real clips from {clips}" if clips is not None else "random uint8 (1..255)",
              "timing": "end to end around Backend.run: host numpy in -> host numpy out",
              "spec": spec.to_dict()}
    return BenchResult(rows, config, provenance, str(bundle.path), dict(bundle.manifest.get("eval") or {}), eff)


class _Closer:
    """Closes every backend opened for the rounds, even when one of them fails."""

    def __init__(self):
        self.items: list = []

    def add(self, be):
        self.items.append(be)
        return be

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        for be in reversed(self.items):
            try:
                be.close()
            except Exception:  # a failing close must not hide the numbers
                pass
        return False


def _runner(be, inputs):
    def one():
        be.run(inputs)
        t = be.last_timing
        return type(t)(t.h2d, t.compute, t.d2h)  # copy: backends may reuse the object

    return one


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
    """Per-round speed-ups against the baseline row of the same batch: median over rounds (the
    headline), their spread, and the ratio of the pooled p50s for comparison; the same from CPU
    time for rows that run on the CPU."""
    base = {r.batch: r for r in rows if r.baseline and r.status == "ok" and r.stats is not None}
    for r in rows:
        b = base.get(r.batch)
        if r.status != "ok" or r.stats is None or b is None:
            continue
        if r.stats.p50_ms > 0:
            r.speedup_pooled = b.stats.p50_ms / r.stats.p50_ms
        spread: RatioSpread | None = ratio_spread(b.rounds_ms, r.rounds_ms)
        if spread is not None:
            r.speedup, r.speedup_spread = spread.median, spread.to_dict()
        else:
            r.speedup = r.speedup_pooled
        on_cpu = all((x.describe or {}).get("device", "cpu") == "cpu" and x.backend in ("ort-cpu", "torch")
                     for x in (r, b))
        cpu_spread = ratio_spread(b.rounds_cpu_ms, r.rounds_cpu_ms) if on_cpu else None
        if cpu_spread is not None:  # a GPU row's host CPU time says nothing about its speed
            r.cpu_speedup, r.cpu_speedup_spread = cpu_spread.median, cpu_spread.to_dict()


def _row_cores(row: BenchRow, threads: int | None, available: int) -> int:
    """Cores a row could use: its threads (requested, else what the backend says), at most those
    available; a backend on its library default ("default") may use them all."""
    t = threads or (row.describe or {}).get("threads")
    return max(1, min(t if isinstance(t, int) and t > 0 else available, available))


def _efficiency(rows: list[BenchRow], bundle, threads: int | None) -> dict:
    """FLOPs per clip (once, from the source model), achieved GFLOP/s per row and its share of the
    peak of the cores the row used. GPU rows get GFLOP/s but no share (no GPU peak here)."""
    from edgevt.bench.efficiency import CPU_BACKENDS, achieved_gflops, flops_per_clip, machine_peak

    ckpt = source_checkpoint(bundle)
    if ckpt is None:
        flops, how = None, "no source checkpoint next to the bundle (ONNX-only): FLOPs not counted"
    else:
        flops, how = flops_per_clip(ckpt)
    peak = machine_peak()
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    available = min(affinity, peak.cores) if peak else affinity
    for r in rows:
        if r.status != "ok" or r.stats is None:
            continue
        r.gflops = achieved_gflops(flops, r.batch, r.stats.p50_ms)
        on_cpu = r.backend in CPU_BACKENDS and (r.describe or {}).get("device", "cpu") == "cpu"
        if r.gflops is None:
            r.efficiency_note = "no FLOP count"
        elif not on_cpu:
            r.efficiency_note = "GPU row: no GPU peak known"
        elif peak is None:
            r.efficiency_note = "no CPU peak (no /proc/cpuinfo)"
        else:
            cores = _row_cores(r, threads, available)
            r.peak_share = r.gflops / peak.for_cores(cores).gflops
            r.efficiency_note = f"of {cores}-core peak" + (" (above it: the peak is underestimated)"
                                                           if r.peak_share > 1 else "")
    out = {"flops_per_clip": flops, "flops_source": how,
           "flops_note": "matmul/conv FLOPs (2 per multiply-add); elementwise ops not counted; INT8/FP16 rows "
                         "use the same model FLOPs against the FP32 peak",
           "cores_available": available}
    if peak is not None:
        out["peak"] = peak.to_dict()
        out["peak_per_core_gflops"] = peak.per_core_gflops
        above = [r.label for r in rows if r.peak_share is not None and r.peak_share > 1]
        if above:  # e.g. a VM whose kernel reports the base clock of a core that boosts higher
            out["above_peak"] = (f"{', '.join(above)} ran above the estimated peak, so the estimate is too low here "
                                 f"(most likely the clock: {peak.mhz_source} gives {peak.mhz:.0f} MHz, no boost "
                                 "ceiling known); read % of peak as relative between rows only")
    else:
        out["peak"] = None
    return out


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
