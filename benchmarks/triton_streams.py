"""Many cameras through one Triton server vs as many independent local loops.

For 1, 2, 4 and 8 concurrent streams of the same generated video (--drop none), each stream runs
either through one local Triton Inference Server (the nvidia-pytriton wheel's, CPU-only, serving
the python model of `edgevt deploy triton`; one sequence per stream) or as its own local
streaming loop on ort-cpu (one inference thread each). Reported per setting: aggregate decisions/s,
decision latency p50/p99 over every decision of every stream, frames lost (decision points never
decided, frames skipped) and decisions that differ from a single local reference run. Then one run
with 4 streams where the server is killed (SIGKILL) and restarted mid-stream: the gap each stream
recorded, and whether its decisions are complete and unchanged.

    python benchmarks/triton_streams.py                    # builds a demo-sized bundle (untrained head)
    python benchmarks/triton_streams.py --bundle demo/bundle

The server runs `--instances` python-model instances with `--threads` onnxruntime threads each (the
same total inference threads as the local loops use at 2 streams on this 2-core machine). Writes
benchmarks/results/triton_streams.{md,json}.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import write_results  # noqa: E402


def make_bundle(root: Path, size: int, t: int) -> Path:
    """tsm_efficientnet_lite0_s4 (ImageNet prefix, causal shift, untrained blocks): window + stateful forms."""
    import torch

    from edgevt.export.exporter import ExportConfig, export_bundle
    from edgevt.models.checkpoint import save_checkpoint
    from edgevt.models.zoo import create_model
    from edgevt.spec import ClipSpec

    spec = ClipSpec(num_frames=t, frame_stride=1, size=(size, size), labels=[f"c{i}" for i in range(6)])
    torch.manual_seed(0)
    arch, kw = "tsm_efficientnet_lite0_s4", {"shift_direction": "causal"}
    model = create_model(arch, 6, num_frames=t, weights="pretrained", **kw).eval()
    ckpt = root / "model.pt"
    save_checkpoint(ckpt, model, spec, arch=arch, model_kwargs=kw)
    return export_bundle(ckpt, root / "bundle", ExportConfig(forms=["stateful"])).path


class GapSink:
    """Collects the gap records a stream writes (the JSONL sink's gap lines)."""

    needs_image = False

    def __init__(self):
        self.gaps = []

    def start(self, info):
        pass

    def decision(self, d):
        pass

    def event(self, e):
        pass

    def gap(self, g):
        self.gaps.append(g)

    def close(self, summary):
        pass


def run_streams(n: int, video: Path, bundle: Path, backend: str, options: dict, on_decision=None,
                realtime: bool = False, max_frames: int | None = None) -> dict:
    import edgevt

    barrier = threading.Barrier(n)
    out = [None] * n
    errors = []

    def one(i):
        sink = GapSink()
        try:
            st = edgevt.stream(video, bundle, backend=backend, drop="none", backend_options=options, sinks=[sink],
                               realtime=realtime, max_frames=max_frames)
            barrier.wait(timeout=120)
            t0 = time.perf_counter()
            rows = []
            for d in st:
                rows.append((d.frame, d.label, d.probs.copy(), d.latency))
                if on_decision:
                    on_decision()
            out[i] = {"t0": t0, "t1": time.perf_counter(), "rows": rows, "summary": st.summary, "gaps": sink.gaps}
        except Exception as e:  # reported in the results, and the run fails
            errors.append(f"stream {i}: {type(e).__name__}: {e}")

    threads = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(n)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    if errors:
        raise SystemExit("; ".join(errors))
    wall = max(o["t1"] for o in out) - min(o["t0"] for o in out)
    lat = np.array([r[3] for o in out for r in o["rows"]]) * 1e3
    return {"streams": out, "wall_s": wall, "decisions": int(sum(len(o["rows"]) for o in out)),
            "decisions_per_s": sum(len(o["rows"]) for o in out) / wall, "p50_ms": float(np.percentile(lat, 50)),
            "p99_ms": float(np.percentile(lat, 99))}


def compare(res: dict, ref: list, expected: int) -> dict:
    """Frames lost (decision points never decided + frames skipped) and decisions unlike the reference."""
    lost = differ = 0
    maxdiff = 0.0
    for o in res["streams"]:
        rows = o["rows"]
        lost += expected - len(rows) + o["summary"].skipped_frames + o["summary"].dropped
        for (f, lab, p, _), (rf, rlab, rp, _) in zip(rows, ref):
            if f != rf or lab != rlab:
                differ += 1
            maxdiff = max(maxdiff, float(np.abs(p - rp).max()))
    return {"frames_lost": int(lost), "decisions_differ": int(differ), "max_prob_diff": maxdiff}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bundle", type=Path, default=None, help="default: build a demo-sized bundle in a temp folder")
    ap.add_argument("--frames", type=int, default=300, help="frames per generated stream video")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--num-frames", type=int, default=8, help="T of the generated bundle")
    ap.add_argument("--streams", default="1,2,4,8")
    ap.add_argument("--form", default=None, help="form the served model runs (default: the bundle's)")
    ap.add_argument("--instances", type=int, default=2, help="python-model instances of the server")
    ap.add_argument("--threads", type=int, default=1, help="onnxruntime threads per server instance / local loop")
    ap.add_argument("--max-streams", type=int, default=4, help="sequence slots per server instance")
    ap.add_argument("--realtime-frames", type=int, default=125,
                    help="frames per stream of the latency runs, replayed at the video's 25 fps (0: skip them)")
    ap.add_argument("--kill-streams", type=int, default=4, help="streams in the kill/restart run (0: skip it)")
    ap.add_argument("--name", default="triton_streams")
    args = ap.parse_args()

    from edgevt.data.synth import make_stream_video
    from edgevt.deploy.server import TritonServer
    from edgevt.deploy.triton import write_triton_repository
    from edgevt.bundle import Bundle

    counts = [int(s) for s in args.streams.split(",")]
    tmp = Path(tempfile.mkdtemp(prefix="edgevt-triton-bench."))
    bundle = args.bundle or make_bundle(tmp, args.size, args.num_frames)
    spec = Bundle.load(bundle).spec
    video = tmp / "stream.mp4"
    make_stream_video(video, "target", args.frames, spec.size[0], 0)
    repo = write_triton_repository(bundle, tmp / "repo", form=args.form, platforms=("python",),
                                   max_streams=args.max_streams, instances=args.instances, threads=args.threads)
    local_opts = {"threads": args.threads}
    form = repo.form
    expected = args.frames - spec.num_frames + 1  # decision points at stride 1
    print(f"bundle {bundle} ({form} form), {args.frames}-frame video, expected {expected} decisions/stream",
          flush=True)
    ref = run_streams(1, video, bundle, "ort-cpu", {**local_opts}, None)["streams"][0]["rows"]
    rows, data = [], {"bundle": str(bundle), "form": form, "frames": args.frames, "spec": spec.to_dict(),
                      "server": {"instances": args.instances, "threads": args.threads, "max_streams": args.max_streams},
                      "local_threads": args.threads, "runs": []}
    srv = TritonServer(repo.path, [repo.name]).start(timeout=180)
    url = f"triton://{srv.url}/{repo.name}"
    try:
        for n in counts:
            for kind, backend, opts in (("local", "ort-cpu", {**local_opts, "form": None}), ("triton", url, {})):
                opts = {k: v for k, v in opts.items() if v is not None}
                if kind == "local":
                    res = run_streams(n, video, bundle, backend, {"threads": args.threads}, None)
                else:
                    res = run_streams(n, video, bundle, backend, opts, None)
                cmp = compare(res, ref, expected)
                run = {"streams": n, "kind": kind, "wall_s": res["wall_s"], "decisions": res["decisions"],
                       "decisions_per_s": res["decisions_per_s"], "p50_ms": res["p50_ms"], "p99_ms": res["p99_ms"],
                       **cmp}
                if args.realtime_frames:  # camera-like: frames arrive at 25 fps, latency without read-ahead queueing
                    rt = run_streams(n, video, bundle, backend, opts if kind == "triton" else {"threads": args.threads},
                                     None, realtime=True, max_frames=args.realtime_frames)
                    rcmp = compare(rt, ref, args.realtime_frames - spec.num_frames + 1)
                    run["realtime"] = {"frames": args.realtime_frames, "decisions": rt["decisions"],
                                       "p50_ms": rt["p50_ms"], "p99_ms": rt["p99_ms"], **rcmp}
                data["runs"].append(run)
                print(f"{n} {kind:6s} {res['decisions_per_s']:7.1f} dec/s  p50 {res['p50_ms']:7.1f} ms  "
                      f"p99 {res['p99_ms']:7.1f} ms  lost {cmp['frames_lost']}  differ {cmp['decisions_differ']} "
                      f"(max |dp| {cmp['max_prob_diff']:.1e})"
                      + (f"  | 25 fps: p50 {run['realtime']['p50_ms']:.1f} p99 {run['realtime']['p99_ms']:.1f} ms "
                         f"lost {run['realtime']['frames_lost']}" if "realtime" in run else ""), flush=True)
        kill = None
        if args.kill_streams:
            n = args.kill_streams
            state = {"count": 0, "killed": None, "back": None}
            lock = threading.Lock()
            new_srv = []

            def restart():
                time.sleep(1.0)
                s2 = TritonServer(repo.path, [repo.name], grpc_port=srv.grpc_port, http_port=srv.http_port,
                                  metrics_port=srv.metrics_port)
                new_srv.append(s2)
                s2.start(timeout=180)
                state["back"] = time.perf_counter()

            def on_decision():
                with lock:
                    state["count"] += 1
                    if state["killed"] is None and state["count"] >= n * expected // 3:
                        srv.kill()
                        state["killed"] = time.perf_counter()
                        threading.Thread(target=restart, daemon=True).start()

            res = run_streams(n, video, bundle, url, {"backoff": (0.25, 1.0), "retry_for": 120}, on_decision)
            cmp = compare(res, ref, expected)
            gaps = [g for o in res["streams"] for g in o["gaps"]]
            kill = {"streams": n, "decisions": res["decisions"], "expected": n * expected,
                    "server_down_s": (state["back"] or 0) - (state["killed"] or 0),
                    "gaps": len(gaps), "recovered": sum(g.recovered for g in gaps),
                    "gap_s": [round(g.end_time - g.start_time, 2) for g in gaps],
                    "attempts": [g.attempts for g in gaps], "reasons": sorted({g.reason for g in gaps}), **cmp}
            data["kill_restart"] = kill
            print(f"kill/restart: {kill}", flush=True)
            for s2 in new_srv:
                s2.close()
    finally:
        srv.close()

    by = {(r["streams"], r["kind"]): r for r in data["runs"]}
    md = [f"# {args.streams.replace(',', ', ')} concurrent streams: one Triton server vs independent local loops", "",
          f"Bundle `{bundle}` ({form} form, T={spec.num_frames}, {spec.size[0]}x{spec.size[1]}), "
          f"{args.frames}-frame generated video per stream, `--drop none`, stride 1. Server: the nvidia-pytriton "
          f"tritonserver (CPU), python model with {args.instances} instance(s) x {args.threads} onnxruntime "
          f"thread(s), {args.max_streams} sequence slots per instance, on 127.0.0.1 (gRPC). Local: one ort-cpu "
          f"loop per stream, {args.threads} thread(s) each, threads of one process. Latency: capture of the newest "
          "frame to decision, over every decision of every stream. Differ: decisions whose frame or label differs "
          "from one local reference run (max |dp|: largest probability difference).", "",
          "Two runs per setting: as fast as the loop goes (throughput; its latency includes the frames the "
          "reader has queued ahead in the ring), and replayed at the video's 25 fps like a camera "
          f"({args.realtime_frames} frames per stream; latency without read-ahead).", "",
          "| streams | local dec/s | Triton dec/s | Triton / local | local p50 / p99 ms | Triton p50 / p99 ms "
          "| at 25 fps: local p50 / p99 ms | at 25 fps: Triton p50 / p99 ms "
          "| frames lost (local, Triton) | decisions differ (Triton) |",
          "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for n in counts:
        a, b = by[(n, "local")], by[(n, "triton")]
        ra, rb = a.get("realtime"), b.get("realtime")
        lost = (a["frames_lost"] + (ra or {}).get("frames_lost", 0), b["frames_lost"] + (rb or {}).get("frames_lost", 0))
        differ = b["decisions_differ"] + (rb or {}).get("decisions_differ", 0)
        rt = (f"{ra['p50_ms']:.1f} / {ra['p99_ms']:.1f} | {rb['p50_ms']:.1f} / {rb['p99_ms']:.1f}" if ra and rb
              else "- | -")
        md.append(f"| {n} | {a['decisions_per_s']:.1f} | {b['decisions_per_s']:.1f} | "
                  f"{b['decisions_per_s'] / a['decisions_per_s']:.2f}x | {a['p50_ms']:.1f} / {a['p99_ms']:.1f} | "
                  f"{b['p50_ms']:.1f} / {b['p99_ms']:.1f} | {rt} | {lost[0]}, {lost[1]} | "
                  f"{differ} (max |dp| {max(b['max_prob_diff'], (rb or {}).get('max_prob_diff', 0)):.1e}) |")
    if kill:
        md += ["", f"Server killed (SIGKILL) after a third of the decisions and restarted 1 s later "
               f"({kill['streams']} streams through it): down {kill['server_down_s']:.1f} s until ready; "
               f"{kill['gaps']} gap records ({kill['recovered']} recovered; {kill['gap_s']} s; attempts "
               f"{kill['attempts']}); decisions {kill['decisions']} of {kill['expected']} expected, frames lost "
               f"{kill['frames_lost']}, {kill['decisions_differ']} differ from local (max |dp| "
               f"{kill['max_prob_diff']:.1e})."]
    import os
    import shutil

    md += ["", f"Load average at the end: {os.getloadavg()[0]:.2f} (2 cores, shared)."]
    print(write_results(args.name, "\n".join(md), data))
    shutil.rmtree(tmp, ignore_errors=True)  # the generated bundle, video and repository


if __name__ == "__main__":
    main()
