"""Soak test of the streaming loop: >= 100,000 frames through `edgevt run`'s loop in each stream form,
resident memory (RSS) sampled as it goes; the growth after warm-up must stay under 5%.

Each run is the loop ``edgevt run`` drives (``edgevt.stream``), in this process so that its RSS is
what is measured, with a JSONL sink writing every decision (as ``edgevt run --jsonl`` does):

- ``window``, ``incremental`` (TSN-TinyCNN bundle) and ``stateful`` (causal TSM-TinyCNN bundle):
  one generated video file of ``--frames`` frames, drop none (every window), stride 1;
- ``window-live``, ``incremental-live``, ``stateful-live``: a ``--segment``-frame file read as a live source that ends and is reopened by
  ``--reconnect`` over and over (the FFmpeg URL path), drop none: the reconnect, gap and segment
  machinery for ``--frames`` frames too.

RSS is sampled every ``--every`` frames. Warm-up is the first ``--warmup`` share of the frames
(onnxruntime's arenas, the JSONL buffer and the allocator settle there); growth is the largest
sample after warm-up over the sample at the end of warm-up, minus one.

    nice -n 19 python benchmarks/soak.py                    # 100,000 frames per form
    nice -n 19 python benchmarks/soak.py --frames 5000      # quick look

Writes benchmarks/results/soak.{md,json} (``--name``).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))


def rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


class RssSampler:
    """A sink that samples RSS every ``every`` kept frames (by the newest frame of each decision)."""

    needs_image = False

    def __init__(self, every: int):
        self.every, self.samples, self._next = every, [], 0

    def start(self, info):
        pass

    def decision(self, d):
        if d.frame >= self._next:
            self.samples.append((int(d.frame), rss_mb()))
            self._next = d.frame + self.every

    def event(self, e):
        pass

    def gap(self, g):
        pass

    def close(self, summary):
        self.samples.append((int(summary.source_frames), rss_mb()))


def write_video(path: Path, frames: int, size: int = 32, seed: int = 0) -> None:
    """A moving bright square over slowly changing noise, written in chunks (never all in memory)."""
    import cv2

    rng = np.random.default_rng(seed)
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 25.0, (size, size))
    if not w.isOpened():
        raise SystemExit(f"cannot write {path}")
    bg = rng.integers(0, 60, (size, size, 3), dtype=np.uint8)
    for i in range(frames):
        img = bg.copy()
        x, y = (3 * i) % (size - 8), (i // 7) % (size - 8)
        img[y:y + 8, x:x + 8] = 230
        w.write(img)
        if i % 500 == 0:
            bg = rng.integers(0, 60, (size, size, 3), dtype=np.uint8)
    w.release()


def make_bundles(root: Path, size: int, t: int) -> dict:
    import torch

    from edgevt.export.exporter import ExportConfig, export_bundle
    from edgevt.models.checkpoint import save_checkpoint
    from edgevt.models.zoo import create_model
    from edgevt.spec import ClipSpec

    spec = ClipSpec(num_frames=t, frame_stride=1, size=(size, size), labels=[f"c{i}" for i in range(6)])
    out = {}
    for arch, kw in (("tsn_tinycnn", {}), ("tsm_tinycnn", {"shift_direction": "causal"})):
        torch.manual_seed(0)
        model = create_model(arch, spec.num_classes, num_frames=t, **kw).eval()
        ckpt = root / f"{arch}.pt"
        save_checkpoint(ckpt, model, spec, arch=arch, model_kwargs=kw)
        out[arch] = export_bundle(ckpt, root / arch, ExportConfig(forms=["stream"], threads=1),
                                  log=lambda m: None).path
    return out


def soak_one(name: str, source, bundle: Path, form: str, frames: int, every: int, warmup: float, tmp: Path,
             live: bool) -> dict:
    import edgevt
    import edgevt.stream.loop as loop_mod
    from edgevt.stream.sinks import JsonlSink
    from edgevt.stream.sources import SourceInfo, parse_source

    sampler = RssSampler(every)
    jsonl = tmp / f"{name}.jsonl"
    opts = dict(form=form, backend="ort-cpu", backend_options={"threads": 1}, max_frames=frames,
                sinks=[JsonlSink(jsonl), sampler])
    original = loop_mod.parse_source
    if live:  # the file read through FFmpeg's URL path: it 'disconnects' at its end and is reopened
        loop_mod.parse_source = lambda s: SourceInfo("url", str(s), True)
        opts.update(reconnect=True, backoff=(0.01, 0.05))
    opts.update(drop="none")  # every window is processed, live run included (the reader outruns it otherwise)
    t0 = time.perf_counter()
    cpu0 = time.process_time()
    try:
        st = edgevt.stream(source, bundle, **opts)
        for _ in st:
            pass
    finally:
        loop_mod.parse_source = original
    wall = time.perf_counter() - t0
    s = st.summary
    lines = 0
    with open(jsonl) as f:
        for line in f:
            json.loads(line)  # every line parses
            lines += 1
    jsonl_mb = jsonl.stat().st_size / 2**20
    jsonl.unlink()
    samples = sampler.samples
    warm_frame = warmup * s.source_frames
    warm = [r for f, r in samples if f <= warm_frame]
    after = [r for f, r in samples if f > warm_frame]
    base = warm[-1] if warm else samples[0][1]
    peak_after = max(after) if after else base
    return {"name": name, "form": s.form, "drop": s.drop, "frames": s.frames, "source_frames": s.source_frames,
            "decisions": s.decisions, "dropped": s.dropped, "skipped_frames": s.skipped_frames, "gaps": s.gaps,
            "ended": s.ended, "wall_s": round(wall, 1), "cpu_s": round(time.process_time() - cpu0, 1),
            "fps": round(s.frames / wall, 1), "jsonl_lines": lines, "jsonl_mb": round(jsonl_mb, 1),
            "rss_first_mb": round(samples[0][1], 1), "rss_warm_mb": round(base, 1),
            "rss_peak_after_warmup_mb": round(peak_after, 1), "rss_end_mb": round(samples[-1][1], 1),
            "growth_after_warmup_pct": round((peak_after / base - 1) * 100, 2),
            "growth_after_warmup_mb": round(peak_after - base, 2),
            "end_vs_warm_pct": round((samples[-1][1] / base - 1) * 100, 2),
            "samples": [[f, round(r, 2)] for f, r in samples]}


def git_commit() -> str:
    try:
        root = Path(__file__).resolve().parent.parent
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", "edgevt",
                                "benchmarks/soak.py"], cwd=root, capture_output=True, text=True)
        return rev.stdout.strip() + (" + uncommitted changes under edgevt/" if dirty.stdout.strip() else "")
    except OSError:
        return "unknown"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", type=int, default=100_000, help="Frames per form (>= 100,000 for the claim).")
    ap.add_argument("--segment", type=int, default=2000, help="Length of the looped file of the live run.")
    ap.add_argument("--every", type=int, default=1000, help="Sample RSS every N frames.")
    ap.add_argument("--warmup", type=float, default=0.1, help="Share of the frames counted as warm-up.")
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--frames-per-clip", type=int, default=8, help="T.")
    ap.add_argument("--limit", type=float, default=5.0, help="Largest growth after warm-up allowed, percent.")
    ap.add_argument("--forms", default="window,incremental,stateful,window-live,incremental-live,stateful-live")
    ap.add_argument("--name", default="soak")
    args = ap.parse_args()

    os.environ.setdefault("OMP_NUM_THREADS", "1")
    from _common import write_results

    load0 = os.getloadavg()
    commit = git_commit()  # what is measured is the code loaded now
    with tempfile.TemporaryDirectory(prefix="edgevt-soak-") as d:
        tmp = Path(d)
        t0 = time.perf_counter()
        video, short = tmp / "long.mp4", tmp / "segment.mp4"
        write_video(video, args.frames + 16, args.size)
        write_video(short, args.segment, args.size, seed=1)
        bundles = make_bundles(tmp, args.size, args.frames_per_clip)
        setup_s = time.perf_counter() - t0
        rows = []
        for name in [f.strip() for f in args.forms.split(",") if f.strip()]:
            live = name.endswith("-live")
            form = name.removesuffix("-live")
            bundle = bundles["tsm_tinycnn" if form == "stateful" else "tsn_tinycnn"]
            r = soak_one(name, short if live else video, bundle, form, args.frames, args.every, args.warmup, tmp,
                         live)
            r["passed"] = r["growth_after_warmup_pct"] < args.limit and r["frames"] >= args.frames
            rows.append(r)
            print(f"{name}: {r['frames']} frames, {r['decisions']} decisions, {r['gaps']} gaps, RSS "
                  f"{r['rss_warm_mb']} -> peak {r['rss_peak_after_warmup_mb']} MB "
                  f"({r['growth_after_warmup_pct']:+.2f}%), {r['wall_s']} s", flush=True)
    load1 = os.getloadavg()
    md = [f"# Soak: {args.frames:,} frames per stream form through the `edgevt run` loop", "",
          f"TSN-TinyCNN (window, incremental) and causal TSM-TinyCNN (stateful) bundles, T={args.frames_per_clip}, "
          f"{args.size}x{args.size}, ort-cpu 1 thread, JSONL sink on every decision; RSS sampled every "
          f"{args.every} frames; warm-up = first {args.warmup:.0%} of the frames. window-live: a "
          f"{args.segment}-frame file read as a live source and reopened by --reconnect at each end "
          "(drop none, so that every window is inferred here too). RSS is the whole process's (torch and "
          "onnxruntime loaded), so the MB column shows the absolute growth as well.", "",
          "| run | frames | decisions | gaps | ended | RSS after warm-up MB | peak after MB | end MB | growth | "
          "wall s | pass (< {:.0f}%) |".format(args.limit),
          "|---|---:|---:|---:|---|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        md.append(f"| {r['name']} | {r['frames']:,} | {r['decisions']:,} | {r['gaps']} | {r['ended']} | "
                  f"{r['rss_warm_mb']} | {r['rss_peak_after_warmup_mb']} | {r['rss_end_mb']} | "
                  f"{r['growth_after_warmup_pct']:+.2f}% ({r['growth_after_warmup_mb']:+.1f} MB) | {r['wall_s']} | "
                  f"{'yes' if r['passed'] else 'NO'} |")
    cmd = "nice -n 19 python benchmarks/soak.py" + "".join(f" {a}" for a in sys.argv[1:])
    md += ["", f"Command: `{cmd}`. Load average {load0[0]:.1f} at the start, {load1[0]:.1f} at the end; "
           f"setup (video + bundles) {setup_s:.0f} s; {os.cpu_count()} CPUs; commit {commit}."]
    path = write_results(args.name, "\n".join(md), {
        "command": cmd, "commit": commit, "load_average": {"start": load0, "end": load1},
        "config": vars(args), "rows": rows, "passed": all(r["passed"] for r in rows)})
    print(f"wrote {path}")
    sys.exit(0 if all(r["passed"] for r in rows) else 1)


if __name__ == "__main__":
    main()
