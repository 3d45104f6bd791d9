"""MotionDigits-DA adaptation benchmark: domain adaptation, few-label fine-tuning, few-shot.

Writes benchmarks/results/adapt_motiondigits[_quick].{md,json}. Every number comes from runs of
``edgevt.adapt.adapt`` (the library behind ``edgevt adapt``) on freshly generated data.

    python benchmarks/adapt_motiondigits.py --quick      # 1 seed, smaller data: minutes
    python benchmarks/adapt_motiondigits.py              # 3 seeds

Sections
1. Unsupervised DA (labeled source, unlabeled target-train), target-test accuracy: source-only,
   DANN, CDAN, MMD, CORAL, DANN + importance weighting, and the target-trained oracle; share of
   the source-only -> oracle gap each closes. Sanity on the source-only model: single-frame clips
   (no motion) should be at chance, time-reversed clips below chance (reversal maps each motion to
   its partner class).
2. Few labels: fine-tuning with 5 / 20 labeled target clips per class from the pretrained
   EfficientNet-Lite0 vs from scratch.
3. Few-shot: 5-way 1-/5-shot accuracy on held-out target-domain tasks for a meta-learned init vs
   the source-trained init (same inner loop) and prototypes.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edgevt.adapt import AdaptConfig, AdaptResult  # noqa: E402
from edgevt.adapt.data import open_labeled  # noqa: E402
from edgevt.adapt.features import CachedClips, ClipNet, FeatureCache, trainable_split  # noqa: E402
from edgevt.adapt.finetune import predict  # noqa: E402
from edgevt.adapt.meta import evaluate_episodes  # noqa: E402
from edgevt.adapt.report import reverse_time, single_frame  # noqa: E402
from edgevt.data.datasets import LabelMap  # noqa: E402
from edgevt.data.synth import SynthConfig  # noqa: E402
from edgevt.demo import SIZES, DemoContext, cached_adapt, cached_data  # noqa: E402
from edgevt.models.checkpoint import model_from_checkpoint  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def mean_std(values) -> tuple[float, float]:
    a = np.array([v for v in values if v is not None], dtype=float)
    return (float(a.mean()), float(a.std(ddof=0))) if len(a) else (float("nan"), float("nan"))


def fmt(values, pct=True) -> str:
    m, s = mean_std(values)
    k = 100 if pct else 1
    return f"{k * m:.1f} ± {k * s:.1f}" if len(values) > 1 else f"{k * m:.1f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="1 seed and a smaller data set (minutes)")
    ap.add_argument("--seeds", type=int, default=None, help="seeds (default 3, quick 1)")
    ap.add_argument("--data", type=Path, default=Path("/tmp/edgevt_bench_motiondigits"))
    ap.add_argument("--model", default="tsm_tinycnn", help="model of the DA and few-shot sections")
    ap.add_argument("--weights", default="none")
    ap.add_argument("--mode", default="full")
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--unfreeze", type=int, default=3, help="partial mode: stages trained")
    ap.add_argument("--pretrained-model", default="tsm_efficientnet_lite0", help="few-label section: pretrained model")
    ap.add_argument("--epochs", type=int, default=None)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--skip", default="", help="comma list of sections to skip: da,fewlabel,fewshot")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    seeds = list(range(args.seeds or (1 if args.quick else 3)))
    per_class = ({"source_train": 20, "source_test": 10, "target_train": 20, "target_test": 10} if args.quick
                 else {"source_train": 40, "source_test": 15, "target_train": 40, "target_test": 15})
    epochs = args.epochs or (12 if args.quick else 15)
    skip = set(filter(None, args.skip.split(",")))
    t_start = time.time()
    data = args.data / ("quick" if args.quick else "full")
    # data and runs go through the demo's run cache (records in <--data>/.demo/; the demo size is not
    # used): a run whose config, data and --init run match an earlier invocation's is reused
    ctx = DemoContext(args.data.resolve(), SIZES["quick"])
    data = cached_data(ctx, data.name, ctx.out / data.name,
                       SynthConfig(size=64, frames=16, per_class=per_class, seed=0, split="unseen"))
    d = {k: str(data / f"{k}.txt") for k in per_class}
    cache = FeatureCache()  # frozen Lite0 stages: each split is encoded once for all runs
    out_root = ctx.out / "runs"
    common = dict(model=args.model, weights=args.weights, size=args.size, num_frames=8, frame_stride=2,
                  mode=args.mode, unfreeze=args.unfreeze, epochs=epochs, batch_size=32, lr=3e-3, progress=False)
    # the pretrained Lite0 on its cheap CPU path: ImageNet stages frozen and cached, top stages trained
    lite = dict(model=args.pretrained_model, weights="pretrained", mean=(0.5,) * 3, std=(0.5,) * 3, size=64,
                mode="partial", unfreeze=args.unfreeze)
    results: dict = {"config": {"quick": args.quick, "seeds": seeds, "per_class": per_class, "epochs": epochs,
                                "pretrained_model": args.pretrained_model,
                                **{k: v for k, v in common.items() if k != "progress"}},
                     "runs": {"count": 0, "reused": 0, "run_seconds": 0.0}}

    def run(name, seed, **kw):
        cfg = AdaptConfig(**{**common, "source_test": d["source_test"], "target_test": d["target_test"],
                             "out": str(out_root / f"{name}_s{seed}"), "seed": seed, **kw})
        t0 = time.time()
        init_run = Path(cfg.init).parent.name if cfg.init else None  # a run of this cache: rerun it, rerun this
        needs = (data.name,) + ((init_run,) if init_run in ctx.records else ())
        ckpt, report, reused = cached_adapt(ctx, f"{name}_s{seed}", cfg, needs=needs, feature_cache=cache)
        r = AdaptResult(str(ckpt), report, cfg.out)
        results["runs"]["reused"] += reused
        results["runs"]["count"] += 1
        results["runs"]["run_seconds"] += r.report.get("seconds_total", 0.0)
        ev = r.report["eval"]
        print(f"  {name:<14} seed {seed}: source {100 * ev['source_test']['accuracy']:.1f}%  "
              f"target {100 * ev['target_test']['accuracy']:.1f}%  ({time.time() - t0:.0f} s)", flush=True)
        return r

    def eval_sets(checkpoint, mode="linear"):
        """The checkpoint's network and test sets; with mode linear/partial on cached features."""
        model, spec = model_from_checkpoint(checkpoint)
        labels = LabelMap(spec.labels)
        sets = {k: open_labeled(d[k], spec, labels, train=False, seed=0) for k in ("source_test", "target_test")}
        _, _, frozen = trainable_split(model, mode, args.unfreeze)
        if mode == "full":
            return ClipNet(model, spec), sets
        for k, ds in sets.items():
            videos, _ = cache.get(ds, model, spec, frozen, torch.device("cpu"))
            sets[k] = CachedClips(ds, videos)
        return ClipNet(model, spec, cached_stages=frozen), sets

    # -- 1. unsupervised domain adaptation -------------------------------------------------------
    # Alignment starts from the source-only model (a warm start: from scratch the adversary wins
    # before any class structure exists); "source-only, continued" gets the same extra epochs
    # without alignment, so the difference is the alignment alone. The oracle fine-tunes the same
    # source-only model with the target-train labels (from scratch the small model does not learn
    # the cluttered target domain in this budget).
    da_epochs = max(4, epochs * 2 // 3)
    warm = dict(source=d["source_train"], model=None, epochs=da_epochs, batch_size=16, lr=1e-3,
                backbone_lr_mult=1.0, freeze_bn="never")
    da_methods = [("source-only", dict(strategy="finetune", source=d["source_train"])),
                  ("source-only, continued", dict(strategy="finetune", **warm)),
                  ("DANN", dict(strategy="dann", target=d["target_train"], **warm)),
                  ("MMD", dict(strategy="mmd", target=d["target_train"], **warm)),
                  ("CORAL", dict(strategy="coral", target=d["target_train"], **warm)),
                  ("oracle (target labels)", dict(strategy="finetune", **{**warm, "source": d["target_train"]})),
                  ("CDAN", dict(strategy="cdan", target=d["target_train"], **warm)),
                  ("DANN + IW", dict(strategy="dann", target=d["target_train"], importance_weighting=True, **warm))]
    run_names = {"source-only": "source-only", "source-only, continued": "continued", "DANN": "dann", "MMD": "mmd",
                 "CORAL": "coral", "oracle (target labels)": "oracle", "CDAN": "cdan", "DANN + IW": "dann_iw"}
    if "da" not in skip:
        print("1. domain adaptation", flush=True)
        da = {name: {"target": [], "source": [], "disc_acc": []} for name, _ in da_methods}
        sanity = {"single_frame": [], "reversed": [], "source": []}
        for seed in seeds:
            for name, kw in da_methods:
                if name != "source-only":
                    kw = {**kw, "init": str(out_root / f"source-only_s{seed}" / "model.pt")}
                r = run(run_names[name], seed, **kw)
                da[name]["target"].append(r.report["eval"]["target_test"]["accuracy"])
                da[name]["source"].append(r.report["eval"]["source_test"]["accuracy"])
                hist = r.report["train"]["history"]
                if hist and "disc_acc" in hist[-1]:
                    da[name]["disc_acc"].append(hist[-1]["disc_acc"])
                if name == "source-only":
                    net, sets = eval_sets(r.checkpoint, "full")
                    for key, fn in (("single_frame", single_frame), ("reversed", reverse_time), ("source", None)):
                        p, y = predict(net, sets["source_test"], torch.device("cpu"), clip_fn=fn)
                        sanity[key].append(float((p == y).float().mean()))
        so, oracle = np.mean(da["source-only"]["target"]), np.mean(da["oracle (target labels)"]["target"])
        for name in da:
            t = np.mean(da[name]["target"])
            da[name]["gap_closed"] = float((t - so) / (oracle - so)) if oracle > so else None
        results["domain_adaptation"] = da
        results["sanity"] = sanity
        results["da_protocol"] = {"warm_start": "source-only checkpoint", **{k: v for k, v in warm.items() if k != "source"}}
        write(results, args, t_start, cache)

    # -- 2. few labeled target clips: pretrained vs scratch ------------------------------------------
    if "fewlabel" not in skip:
        print("2. few labeled target clips", flush=True)
        fl = {}
        for k in (5, 20):
            for init in ("pretrained", "scratch"):
                key = f"{k}/class {init}"
                fl[key] = []
                for seed in seeds:
                    kw = dict(strategy="finetune", source=d["target_train"], limit_per_class=k,
                              epochs=max(epochs, 20 if k == 5 else epochs))
                    if init == "pretrained":
                        kw.update(lite)
                    r = run(f"fewlabel{k}_{init}", seed, **kw)
                    fl[key].append(r.report["eval"]["target_test"]["accuracy"])
        results["few_labels"] = fl
        write(results, args, t_start, cache)

    # -- 3. few-shot: meta-learned vs source-trained init --------------------------------------------
    if "fewshot" not in skip:
        print("3. few-shot (5-way, held-out target-domain tasks)", flush=True)
        fs: dict = {}
        episodes = 20 if args.quick else 50
        for seed in seeds:
            base_ck = out_root / f"source-only_s{seed}" / "model.pt"  # the source-only model of section 1
            if not base_ck.exists():
                base_ck = Path(run("source", seed, strategy="finetune", source=d["source_train"]).checkpoint)
            # meta-learn the temporal head on the frozen source-trained backbone (cached features)
            meta = run("fs_meta_init", seed, strategy="fomaml", source=d["source_train"], init=str(base_ck),
                       model=None, mode="linear", ways=5, shots=5, queries=5, inner_steps=5, inner_lr=0.05,
                       meta_batch=4, episodes_per_epoch=40, epochs=max(3, epochs // 2), lr=1e-3)
            base = type("R", (), {"checkpoint": str(base_ck)})
            for init_name, ck in (("meta-learned (FOMAML)", meta.checkpoint), ("source-trained", base.checkpoint)):
                net, sets = eval_sets(ck, "linear")  # adapt the head, backbone frozen, for both inits
                for shots in (1, 5):
                    for method in ("finetune", "prototype"):
                        key = f"{init_name} | {method} | {shots}-shot"
                        r = evaluate_episodes(net, sets["target_test"], 5, shots, 5, episodes, method, 5, 0.05,
                                              seed, torch.device("cpu"))
                        fs.setdefault(key, []).append(r["accuracy"])
                        print(f"  {key}: {100 * r['accuracy']:.1f}%", flush=True)
        results["few_shot"] = fs
    write(results, args, t_start, cache)


def write(results: dict, args, t_start: float, cache) -> None:
    """Write what is done so far (called after each section)."""
    from edgevt.env import environment

    results["seconds"] = round(time.time() - t_start, 1)
    results["provenance"] = {"environment": json.loads(json.dumps(environment(), default=str)),
                             "command": "python " + " ".join(sys.argv), "feature_cache_seconds": round(cache.seconds, 1),
                             "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    RESULTS.mkdir(parents=True, exist_ok=True)
    stem = "adapt_motiondigits" + ("_quick" if args.quick else "")
    if args.seeds and args.seeds != (1 if args.quick else 3):
        stem += f"_{args.seeds}seeds"
    if args.skip:
        stem += "_no_" + args.skip.replace(",", "_")
    (RESULTS / f"{stem}.json").write_text(json.dumps(results, indent=1))
    c = results["config"]
    n = len(c["seeds"])
    lines = [f"# MotionDigits-DA adaptation benchmark{' (quick)' if args.quick else ''}", "",
             f"Domain adaptation and few-shot: {c['model']} (weights {c['weights']}, mode {c['mode']}), "
             f"T={c['num_frames']} stride {c['frame_stride']}, {c['size']}x{c['size']}, "
             f"{c['epochs']} epochs; clips per class {c['per_class']}; {n} seed(s), mean ± std; "
             f"{results['runs']['count']} adapt runs taking {results['runs']['run_seconds'] / 60:.1f} min in all "
             f"({results['runs']['reused']} reused from an identical earlier invocation); this invocation "
             f"{results['seconds'] / 60:.1f} min on {results['provenance']['environment'].get('cpu')} "
             f"({results['provenance']['environment'].get('torch_threads')} threads). 6 classes: chance 16.7%.", ""]
    da = results.get("domain_adaptation")
    if da:
        lines += ["## Unsupervised domain adaptation (target-test accuracy %)", "",
                  "Alignment methods and the 'continued' control start from the source-only model and train "
                  f"{results['da_protocol']['epochs']} more epochs (batch {results['da_protocol']['batch_size']}, "
                  f"lr {results['da_protocol']['lr']}) with unlabeled target-train clips; gap closed = "
                  "(method - source-only) / (oracle - source-only) on target-test.", "",
                  "| method | target-test | source-test | gap closed | final disc. acc |", "|---|---:|---:|---:|---:|"]
        for name, r in da.items():
            gap = "—" if r["gap_closed"] is None or name in ("source-only", "oracle (target labels)") else f"{100 * r['gap_closed']:.0f}%"
            disc = fmt(r["disc_acc"]) if r["disc_acc"] else "—"
            lines.append(f"| {name} | {fmt(r['target'])} | {fmt(r['source'])} | {gap} | {disc} |")
        s = results["sanity"]
        lines += ["", "Sanity on the source-only model (source-test, %): "
                  f"clips {fmt(s['source'])}, single frame repeated {fmt(s['single_frame'])} (chance 16.7), "
                  f"time-reversed {fmt(s['reversed'])} (below chance: reversal gives the partner class).", ""]
    fl = results.get("few_labels")
    if fl:
        lines += ["## Few labeled target clips (target-test accuracy %)", "",
                  f"| labeled target clips / class | pretrained {c['pretrained_model']} (ImageNet, 64x64, last "
                  f"{c['unfreeze']} stages + head trained on cached features) | {c['model']} from scratch "
                  f"({c['mode']}, {c['size']}x{c['size']}) | difference |",
                  "|---:|---:|---:|---:|"]
        for k in (5, 20):
            p, s_ = fl[f"{k}/class pretrained"], fl[f"{k}/class scratch"]
            lines.append(f"| {k} | {fmt(p)} | {fmt(s_)} | {100 * (np.mean(p) - np.mean(s_)):+.1f} pts |")
        lines.append("")
    fs = results.get("few_shot")
    if fs:
        lines += ["## Few-shot: 5-way tasks on the held-out target domain (query accuracy %, chance 20)", "",
                  "| init | adaptation | 1-shot | 5-shot |", "|---|---|---:|---:|"]
        combos = sorted({k.rsplit(" | ", 1)[0] for k in fs})
        for combo in combos:
            init, method = combo.split(" | ")
            lines.append(f"| {init} | {method} | {fmt(fs[combo + ' | 1-shot'])} | {fmt(fs[combo + ' | 5-shot'])} |")
        lines.append("")
    lines.append(f"Reproduce: `{results['provenance']['command']}`")
    (RESULTS / f"{stem}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
