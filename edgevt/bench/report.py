"""Bench results as a rich table, JSON (with provenance), markdown and PNG plots.

Every writer is atomic (temporary file + rename), so an interrupted run never leaves a report
that looks complete.
"""
from __future__ import annotations

import json
from pathlib import Path

from edgevt.bench.suite import BenchResult, BenchRow, machine_busy
from edgevt.fileio import atomic_write_bytes


def _fmt(x: float | None, nd: int = 2) -> str:
    return "-" if x is None else f"{x:.{nd}f}"


def _ratio(value: float | None, spread: dict | None) -> str:
    """A speed-up: the median over rounds, with half the IQR across rounds as a share."""
    if value is None:
        return "-"
    if spread and spread.get("rounds", 0) > 1:
        return f"{value:.2f}x ±{spread['rel_half_iqr']:.0%}"
    return f"{value:.2f}x"


def _speedup(r: BenchRow) -> str:
    return "1.00x (baseline)" if r.baseline else _ratio(r.speedup, r.speedup_spread)


def _cpu_speedup(r: BenchRow) -> str:
    if r.baseline:
        return "1.00x (baseline)" if r.rounds_cpu_ms else "-"
    return _ratio(r.cpu_speedup, r.cpu_speedup_spread)


def _ratio_iqr(r: BenchRow) -> str:
    sp = r.speedup_spread
    if r.baseline or not sp:
        return "-"
    return f"{sp['p25']:.2f}-{sp['p75']:.2f} (n={sp['rounds']})"


def _gflops(r: BenchRow) -> str:
    return "—" if r.gflops is None else (f"{r.gflops:.1f}" if r.gflops < 100 else f"{r.gflops:.0f}")


def _peak(r: BenchRow) -> str:
    if r.peak_share is None:
        return "—"
    return f"{r.peak_share:.1%}" if r.peak_share < 0.1 else f"{r.peak_share:.0%}"


def _split(r: BenchRow) -> str:
    s = r.stats
    if s is None or s.compute_ms is None:
        return "not separated"
    return f"{s.h2d_ms:.2f} / {s.compute_ms:.2f} / {s.d2h_ms:.2f}"


COLUMNS = ["backend", "precision", "batch", "p50 ms", "p90 ms", "p95 ms", "p99 ms", "mean ms", "min ms",
           "max ms", "clips/s", "vs PyTorch eager", "ratio IQR (rounds)", "vs eager (CPU time)", "GFLOP/s", "% of peak",
           "h2d / compute / d2h ms", "runs", "noise"]


def drifted(r: BenchRow) -> float | None:
    """The row's ratio drift (second half of the rounds vs the first) when above DRIFT_FLAG."""
    from edgevt.bench.rounds import DRIFT_FLAG

    d = (r.speedup_spread or {}).get("drift")
    return d if d is not None and abs(d) > DRIFT_FLAG else None


def _noise(r: BenchRow) -> str:
    s = r.stats
    cell = f"NOISY ({s.noise})" if s.noisy else f"ok (CV {s.cv:.0%})"
    d = drifted(r)
    return cell + (f"; ratio drift {d:+.0%}" if d is not None else "")


def row_cells(r: BenchRow) -> list[str]:
    s = r.stats
    if s is None:
        return [r.backend, r.precision, str(r.batch)] + ["-"] * (len(COLUMNS) - 4) + [f"{r.status}: {r.reason}"]
    return [r.backend, r.precision, str(r.batch), _fmt(s.p50_ms), _fmt(s.p90_ms), _fmt(s.p95_ms), _fmt(s.p99_ms),
            _fmt(s.mean_ms), _fmt(s.min_ms), _fmt(s.max_ms), _fmt(s.throughput, 1), _speedup(r), _ratio_iqr(r),
            _cpu_speedup(r), _gflops(r), _peak(r), _split(r), str(s.runs), _noise(r)]


# What an 80-column terminal can show; the markdown and JSON always carry every column.
COMPACT_COLUMNS = ["backend", "precision", "batch", "p50 ms", "p99 ms", "clips/s", "vs PyTorch eager",
                   "% of peak", "noise"]
_COMPACT_HEADERS = {"precision": "prec", "vs PyTorch eager": "vs eager", "% of peak": "peak"}
# Cells that must never be cut to '…'; the last column (noise / status reason) wraps instead.
_KEY = set(COMPACT_COLUMNS) - {"noise"}
_WRAP_LAST_AT = 24


def _justify(c: str) -> str:
    return "right" if c.endswith(("ms", "/s", "peak")) or c in ("batch", "runs") else "left"


def natural_width(renderable) -> int:
    """Columns a rich renderable takes when nothing squeezes it."""
    from rich.console import Console
    from rich.measure import Measurement

    console = Console(width=10_000)
    return Measurement.get(console, console.options, renderable).maximum


def _full_table(result: BenchResult, last_max: int | None = None):
    from rich.table import Table

    t = Table(title=f"edgevt bench: {result.bundle}")
    for c in COLUMNS:
        t.add_column(c, justify=_justify(c), max_width=last_max if c == COLUMNS[-1] else None)
    for r in result.rows:
        cells = row_cells(r)
        style = "bold" if r.baseline else ("dim" if r.status != "ok" else None)
        if r.stats is not None and r.stats.noisy:
            cells[-1] = f"[yellow]{cells[-1]}[/]"
        t.add_row(*cells, style=style)
    return t


def _compact_table(result: BenchResult):
    """Key columns in a light box: fits 80 columns. Short cells here; the details go under the table."""
    from rich import box
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    t = Table(title=f"edgevt bench: {result.bundle}", box=box.SIMPLE_HEAD, collapse_padding=True,
              show_edge=False, pad_edge=False,
              caption="vs eager: median over rounds of eager/row, ± half the IQR; peak: share of the "
                      "CPU's paper peak; all columns: --wide or bench.md",
              caption_justify="left")
    for c in COMPACT_COLUMNS:
        t.add_column(_COMPACT_HEADERS.get(c, c), justify=_justify(c), no_wrap=c in _KEY,
                     overflow="fold" if c not in _KEY else "ellipsis")
    pick = [COLUMNS.index(c) for c in COMPACT_COLUMNS]
    notes = []
    for r in result.rows:
        full = row_cells(r)
        cells = [full[i] for i in pick]
        style = "bold" if r.baseline else ("dim" if r.status != "ok" else None)
        if r.baseline:
            cells[COMPACT_COLUMNS.index("vs PyTorch eager")] = "baseline"
        if r.stats is None:
            # A status reason is a sentence; a narrow column would cut it into word shards.
            cells[-1] = r.status
            notes.append(f"{r.label} {r.status}: {r.reason}")
        elif r.stats.noisy:
            cells[-1] = f"[yellow]{cells[-1]}[/]"
        t.add_row(*cells, style=style)
    if not notes:
        return t
    return Group(t, *(Text(n, style="dim") for n in notes))


def rich_table(result: BenchResult, width: int | None = None, wide: bool = False):
    """The bench table for a terminal ``width`` columns wide: every column when it fits (or ``wide``),
    otherwise the key columns (COMPACT_COLUMNS). ``width=None``: every column."""
    # The last cell (noise, or a skip reason) may wrap; every other column must fit whole.
    if wide or width is None or natural_width(_full_table(result, last_max=_WRAP_LAST_AT)) <= width:
        return _full_table(result)
    return _compact_table(result)


def to_markdown(result: BenchResult, plot_name: str | None = None) -> str:
    env = result.provenance.get("environment", {})
    th = result.provenance.get("threads", {})
    cfg = result.config
    lines = [f"# edgevt bench: `{result.bundle}`", ""]
    lines.append(f"- machine: {env.get('cpu')} ({th.get('cpu_count')} logical CPUs, {len(env.get('gpus') or [])} GPUs"
                 f"{': ' + ', '.join(env['gpus']) if env.get('gpus') else ''}), {env.get('platform')}")
    lines.append(f"- versions: edgevt {env.get('edgevt')}, torch {env.get('torch')}, onnxruntime "
                 f"{env.get('onnxruntime')}, TensorRT {env.get('tensorrt') or 'not installed'}")
    lines.append(f"- threads: requested {th.get('requested') or 'default'}, torch intra-op {th.get('torch_intra_op')}")
    how = f"{cfg.get('runs')} timed runs" if cfg.get("runs") else f"timed for {cfg.get('duration_s')} s"
    lines.append(f"- method: {cfg.get('warmup_s')} s warm-up per configuration, then {how} per configuration, "
                 f"cut into {cfg.get('rounds', 1)} interleaved rounds (order: {cfg.get('order', 'sequential')}; "
                 "each round runs a slice of every row, after 1 untimed run when the row's last run took under 50 ms); "
                 f"{cfg.get('timing')}; inputs: {cfg.get('inputs')}")
    lines.append("- speed-up: per round, PyTorch eager (torch backend, FP32, source checkpoint) median / row median "
                 "at the same batch; the table gives the median over rounds, ± half the IQR as a share of it, "
                 "and the quartiles (ratio IQR); every per-round ratio is in the JSON")
    lines.append("- vs eager (CPU time): the same per-round ratio from the process's CPU time per run "
                 "(`time.process_time`, all threads) instead of wall time: time the process was preempted by "
                 "other processes does not count, so it survives load that steals the core; wall time is what a "
                 "caller waits for. CPU rows only; with several threads it counts every thread's time, spinning "
                 "included")
    lines += efficiency_lines(result.efficiency)
    la = result.provenance.get("load_average")
    if la:
        lines.append(f"- load average (1/5/15 min) before {la.get('before')}, after {la.get('after')} "
                     f"on {la.get('cpus')} CPUs")
    busy = machine_busy(result.provenance)
    if busy:
        lines += ["", f"**Warning: {busy}.**"]
    lines.append("")
    lines.append("| " + " | ".join(COLUMNS) + " |")
    lines.append("|" + "|".join("---" for _ in COLUMNS) + "|")
    for r in result.rows:
        cells = row_cells(r)
        if r.baseline:
            cells[0] = f"**{cells[0]}**"
        lines.append("| " + " | ".join(c.replace("|", "/") for c in cells) + " |")
    noisy = [r.label for r in result.ok_rows() if r.stats.noisy]
    if noisy:
        lines += ["", f"Noisy measurements (machine busy; rerun on a quiet machine before quoting): {', '.join(noisy)}."]
    drift = drift_warning(result)
    if drift:
        lines += ["", f"**{drift}.**"]
    if plot_name:
        lines += ["", f"![latency]({plot_name})"]
    return "\n".join(lines) + "\n"


def drift_warning(result: BenchResult) -> str | None:
    """One line naming the rows whose speed-up drifted between the first and second half of the rounds."""
    from edgevt.bench.rounds import DRIFT_FLAG

    rows = [(r.label, drifted(r)) for r in result.ok_rows() if drifted(r) is not None]
    if not rows:
        return None
    return (f"Speed-up drift: the ratio's median over the second half of the rounds differs from the first half's "
            f"by more than {DRIFT_FLAG:.0%} for " + ", ".join(f"{lab} ({d:+.0%})" for lab, d in rows)
            + "; the load changed during the run and these ratios depend on it: rerun before quoting")


def efficiency_lines(eff: dict | None) -> list[str]:
    """The efficiency columns' method and assumptions, as markdown bullets."""
    if not eff:
        return []
    flops = eff.get("flops_per_clip")
    lines = [f"- FLOPs per clip: {flops / 1e9:.3f} GFLOP ({eff.get('flops_source')}; {eff.get('flops_note')})"
             if flops else f"- FLOPs per clip: — ({eff.get('flops_source') or eff.get('note')})"]
    peak = eff.get("peak")
    if peak:
        lines.append(f"- CPU peak (paper figure, not measured): {peak['formula']}; GFLOP/s = FLOPs per clip x batch / "
                     f"p50; % of peak against {peak['per_core_gflops']:.1f} GFLOP/s per core x the cores the row used "
                     "(its threads)")
        lines.append(f"- peak assumptions: {'; '.join(peak.get('assumptions') or [])}")
        if eff.get("above_peak"):
            lines.append(f"- **{eff['above_peak']}**")
    elif flops:
        lines.append("- CPU peak: unknown here (no /proc/cpuinfo), no % of peak")
    return lines


def write_json(result: BenchResult, path: str | Path) -> Path:
    path = Path(path)
    atomic_write_bytes(path, json.dumps(result.to_dict(), indent=1))
    return path


def write_reports(result: BenchResult, out: str | Path, name: str = "bench") -> dict[str, Path]:
    """Write ``<name>.json``, ``<name>.md`` and ``<name>.png`` (latency plot) under ``out``."""
    from edgevt.bench.plots import accuracy_points, plot_accuracy_vs_latency, plot_latency

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    files = {"json": write_json(result, out / f"{name}.json")}
    plot = plot_latency(result, out / f"{name}.png")
    if plot is not None:
        files["png"] = plot
    points = accuracy_points(result)
    if points:
        files["accuracy_png"] = plot_accuracy_vs_latency(points, out / f"{name}_accuracy.png")
    md = to_markdown(result, plot.name if plot is not None else None)
    if "accuracy_png" in files:
        md += f"\n![accuracy vs latency]({files['accuracy_png'].name})\n"
    atomic_write_bytes(out / f"{name}.md", md)
    files["md"] = out / f"{name}.md"
    return files
