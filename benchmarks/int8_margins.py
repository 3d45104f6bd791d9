"""How close a model's decisions are, and how much INT8 moves them: what agreement with FP32 can reach.

For each bundle, on its data set's target-val windows (the decisions the export's gate judged) and,
with ``--test``, on a target-test list: FP32's and the bundle's CPU-flavour INT8 logits (ort-cpu, as
``edgevt eval`` runs them). Per decision:

- ``gap``: FP32's top-1 logit minus its runner-up's;
- ``shift``: how much INT8 moved that difference (INT8 minus FP32, on the same two classes). Its
  standard deviation ``sigma`` over the decisions is INT8's noise on a decision.

A decision flips when the shift closes its gap (``gap + shift < 0``, counting only those two classes).
``scale for 97% / 99%``: the factor every measured shift would have to be multiplied by for that
agreement (the same decisions, the same shape of INT8's error, less of it): how much quieter INT8
must be. Beside it, the Gaussian view: the agreement expected with the shift Gaussian (0, sigma),
``1 - mean(Phi(-gap / sigma))``, which is close where the shifts are Gaussian and too low where a few
large shifts dominate sigma.

Usage:
    python benchmarks/int8_margins.py --bundles /tmp/int8_all/lite0_tsm_so.bundle,... \\
        --data /tmp/int8_all/lite0_data_60_s0/data,... [--test target_test.txt] --name int8_margins
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import write_results  # noqa: E402
from int8_cpu import window_logits  # noqa: E402


def _phi(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1 + np.vectorize(math.erf)(x / math.sqrt(2)))


def margins(f: np.ndarray, q: np.ndarray) -> dict:
    order = np.argsort(f, axis=1)
    top, second = order[:, -1], order[:, -2]
    rows = np.arange(len(f))
    gap = f[rows, top] - f[rows, second]
    d = q - f
    shift = d[rows, top] - d[rows, second]
    sigma = float(shift.std())

    def expected(s: float) -> float:
        return float(100 * (1 - _phi(-gap / max(s, 1e-12)).mean()))

    def scaled(a: float) -> float:  # the two classes' agreement with every measured shift times a
        return float(100 * (gap + a * shift > 0).mean())

    def needed(goal: float, agreement) -> float:  # the largest x whose agreement(x) is still >= goal
        lo, hi = 0.0, 4.0
        for _ in range(60):
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if agreement(mid) >= goal else (lo, mid)
        return lo

    return {"decisions": int(len(f)), "agreement": float((q.argmax(1) == top).mean() * 100),
            "expected_agreement": expected(sigma), "sigma": sigma, "median_gap": float(np.median(gap)),
            "share_gap_below_sigma": float((gap < sigma).mean() * 100),
            "share_gap_below_2sigma": float((gap < 2 * sigma).mean() * 100),
            "logit_error": float(np.linalg.norm(d) / np.linalg.norm(f)),
            "two_class_agreement": scaled(1.0), "scale_for_97": needed(97.0, scaled), "scale_for_99": needed(99.0, scaled),
            "sigma_for_97": sigma * needed(97.0, lambda a: expected(a * sigma)),
            "sigma_for_99": sigma * needed(99.0, lambda a: expected(a * sigma))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bundles", required=True, help="comma-separated bundles (with a CPU-flavour INT8 graph)")
    ap.add_argument("--data", required=True, help="comma-separated data folders, one per bundle (target_val.txt)")
    ap.add_argument("--val-windows", type=int, default=4, help="windows per target-val clip (as the gate)")
    ap.add_argument("--test", default=None, help="also a target-test list, relative to each data folder "
                                                 "(e.g. target_test.txt or ../data.test60/target_test.txt)")
    ap.add_argument("--test-windows", type=int, default=1, help="windows per target-test clip (1: the centred one)")
    ap.add_argument("--name", default="int8_margins")
    args = ap.parse_args()

    from edgevt.bundle import Bundle

    bundles, datas = args.bundles.split(","), args.data.split(",")
    if len(bundles) != len(datas):
        raise SystemExit("--bundles and --data need the same number of entries")
    res, t0 = {"models": {}, "command": " ".join(sys.argv)}, time.perf_counter()
    for bpath, dpath in zip(bundles, datas):
        b = Bundle.load(bpath)
        sets = {"target-val": (Path(dpath) / "target_val.txt", args.val_windows)}
        if args.test:
            sets["target-test"] = (Path(dpath) / args.test, args.test_windows)
        for what, (listfile, windows) in sets.items():
            f, q = window_logits(b, listfile.resolve(), None, windows)[:2]
            m = margins(f, q)
            res["models"][f"{Path(bpath).stem} {what}"] = {"bundle": bpath, "list": str(listfile), **m}
            print(f"{Path(bpath).stem} {what}: {m}", flush=True)
    res["seconds"] = round(time.perf_counter() - t0, 1)
    md = ["# INT8's noise on a decision against the decisions' margins", "",
          "Per decision: FP32's gap between its top-1 and runner-up logits, and INT8's shift of that difference "
          "(sigma: its standard deviation). Two classes: the agreement counting only those two classes; scale: the factor "
          "every shift would need for 97% / 99% of them; expected: under a Gaussian shift of that sigma.", "",
          "| bundle, decisions | agreement (measured) | two classes | scale for 97% / 99% | expected (Gaussian) | sigma | "
          "median gap | gaps < sigma | gaps < 2 sigma | logits off FP32's |", "|---|---:|---:|---|---:|---:|---:|---:|---:|---:|"]
    for k, m in res["models"].items():
        md.append(f"| {k} ({m['decisions']}) | {m['agreement']:.1f}% | {m['two_class_agreement']:.1f}% | "
                  f"{m['scale_for_97']:.2f}x / {m['scale_for_99']:.2f}x | {m['expected_agreement']:.1f}% | {m['sigma']:.3f} | "
                  f"{m['median_gap']:.2f} | {m['share_gap_below_sigma']:.1f}% | {m['share_gap_below_2sigma']:.1f}% | "
                  f"{100 * m['logit_error']:.2f}% |")
    print(write_results(args.name, "\n".join(md), res))


if __name__ == "__main__":
    main()
