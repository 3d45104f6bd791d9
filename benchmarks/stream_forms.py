"""Do the streaming forms of a bundle make the same decisions as the model that was evaluated?

Streams generated MotionDigits-DA videos (source and target domain, with ground truth per frame)
through every streaming form the bundle holds (window, incremental, stateful) and reports how often
the smoothed decisions match the ground truth, plus the stateful form's agreement with the offline
model on the bundle's own clips. A bidirectionally trained TSM's stateful form is causal, so it can
differ a lot; a model trained with ``--shift-direction causal`` has no such gap.

    python benchmarks/stream_forms.py --bundle demo/bundle       # after `edgevt demo`

Writes benchmarks/results/stream_forms.{md,json}.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import write_results  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bundle", type=Path, default=Path("demo/bundle"))
    ap.add_argument("--frames", type=int, default=600, help="frames per generated stream video")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--name", default="stream_forms")
    args = ap.parse_args()

    from edgevt.bench.streaming import bench_stream
    from edgevt.data.synth import make_stream_video
    from edgevt.bundle import FORMS, Bundle

    bundle = Bundle.load(args.bundle)
    spec = bundle.spec
    forms = [f for f in FORMS if bundle.has_form(f, "fp32")]
    rows, data = [], {"bundle": str(args.bundle), "default_form": spec.streaming, "forms": forms, "runs": []}
    with tempfile.TemporaryDirectory(prefix="edgevt-stream-forms.") as tmp:
        for domain in ("source", "target"):
            video = Path(tmp) / f"{domain}.mp4"
            make_stream_video(video, domain, args.frames, spec.size[0], args.seed)
            for form in forms:
                r = bench_stream(args.bundle, video, backend="ort-cpu", precision="fp32", form=form,
                                 threads=args.threads)
                g = r.ground_truth or {}
                run = {"domain": domain, "form": form, "decisions_scored": g.get("decisions"),
                       "correct": g.get("correct"), "accuracy": g.get("accuracy"), "rule": g.get("rule")}
                data["runs"].append(run)
                acc = "-" if g.get("accuracy") is None else f"{g['accuracy']:.1f}% ({g['correct']}/{g['decisions']})"
                rows.append(f"| {domain} | {form}{' (default)' if form == spec.streaming else ''} | {acc} |")
                print(f"{domain:6s} {form:11s} {acc}", flush=True)
    md = [f"# Streaming forms vs ground truth: `{args.bundle}`", "",
          f"{args.frames}-frame generated MotionDigits-DA stream videos (seed {args.seed}), ort-cpu fp32, "
          f"{args.threads} thread(s). Scored: decisions whose window lies inside one ground-truth segment "
          "(smoothed label). Chance is 1/classes.", "",
          "| domain | form | decisions matching ground truth |", "|---|---|---:|", *rows, "",
          f"Command: `python benchmarks/stream_forms.py --bundle {args.bundle} --frames {args.frames}`"]
    path = write_results(args.name, "\n".join(md), data)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
