"""``adapt(config) -> AdaptResult``: the library entry point behind ``edgevt adapt`` and the demo."""
from __future__ import annotations

import contextlib
import hashlib
import json
import time
from dataclasses import replace
from pathlib import Path

import torch
import torch.distributed as dist
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from edgevt.adapt.config import META, TWO_DOMAIN, AdaptConfig, AdaptResult
from edgevt.adapt.data import (check_same_labels, collate, labels_of, open_labeled, open_unlabeled,
                               per_class_subset, split_validation, subset)
from edgevt.adapt.features import (CachedClips, ClipNet, FeatureCache, can_cache, frame_stages, prefix_has_shift,
                                   trainable_split)
from edgevt.adapt.finetune import FinetuneTask, predict
from edgevt.adapt.report import summarise, write_report
from edgevt.adapt.trainer import setup_distributed, train
from edgevt.data.datasets import LabelMap
from edgevt.data.transforms import make_augment
from edgevt.errors import EdgevtError
from edgevt.models.checkpoint import load_checkpoint, model_from_checkpoint, save_checkpoint
from edgevt.models.forms import default_stream_form
from edgevt.models.zoo import create_model, model_info
from edgevt.spec import ClipSpec

DEFAULT_MODEL = "tsn_tinycnn"


def mix_in(train_set, extra):
    """``train_set`` plus the clips of ``extra`` (a few labeled target clips), repeated so that they
    make up about a third of the mixture: a handful among hundreds would barely be seen."""
    reps = max(1, round(0.5 * len(train_set) / len(extra)))
    mixed = subset(train_set, range(len(train_set)))
    mixed.records = mixed.records + [r for _ in range(reps) for r in extra.records]
    if mixed._cache is not None:
        mixed._cache = dict(mixed._cache)
    return mixed


def _fingerprint(ds) -> dict:
    """Which clips trained the model: count and a hash of their paths and labels."""
    h = hashlib.sha256()
    for r in ds.records:
        h.update(f"{r.path}\t{r.label}\t{r.start}\t{r.end}\n".encode())
    return {"clips": len(ds.records), "sha256": h.hexdigest()[:16]}


def _init_checkpoint(cfg: AdaptConfig) -> dict | None:
    if not cfg.init:
        return None
    ckpt = load_checkpoint(cfg.init)
    if cfg.model and cfg.model != ckpt["arch"]:
        raise EdgevtError(f"--init {cfg.init} holds a {ckpt['arch']} model, not --model {cfg.model}; "
                          f"drop --model or pass --model {ckpt['arch']}")
    return ckpt


def _build(cfg: AdaptConfig, labels: LabelMap, init: dict | None) -> tuple[torch.nn.Module, ClipSpec, dict]:
    if init is not None:
        spec = ClipSpec.from_dict(init["spec"])
        check_same_labels(LabelMap(spec.labels), labels, f"--init {cfg.init}", "the data")
        kwargs = dict(init.get("model_kwargs", {}))
        kwargs.setdefault("num_frames", spec.num_frames)
        model, _ = model_from_checkpoint(init, cfg.init)  # weights that do not fit: a one-line error
        if cfg.size is not None and (cfg.size, cfg.size) != tuple(spec.size):
            fixed = model_info(init["arch"]).fixed_input
            if fixed:
                raise EdgevtError(f"--size {cfg.size}: {init['arch']} only accepts {fixed[1]}x{fixed[2]} frames; "
                                  f"drop --size to keep the --init checkpoint's {spec.size[0]}x{spec.size[1]}")
            spec = replace(spec, size=(cfg.size, cfg.size))  # fine-tune at the new size; the model is size-free
        return model, spec, kwargs
    arch = cfg.model or DEFAULT_MODEL
    info = model_info(arch)
    if cfg.input != "rgb" and info.family == "3d":
        raise EdgevtError(f"--input {cfg.input} applies to TSN/TSM models, not the 3D model {arch}")
    kwargs = {"num_frames": cfg.num_frames}
    if info.family != "3d":
        kwargs.update(temporal=cfg.temporal, temporal_dim=cfg.temporal_dim)
    if cfg.input != "rgb":
        kwargs.update(input=cfg.input)
    if cfg.shift_direction != "bidirectional":  # the model refuses it where it does not apply (TSN, 3D)
        kwargs.update(shift_direction=cfg.shift_direction)
    model = create_model(arch, len(labels), weights=cfg.weights, **kwargs)
    # The default stream form is one that computes this model (edgevt.models.forms decides it).
    spec = cfg.clip_spec(labels.names, info.mean, info.std, streaming=default_stream_form(model))
    return model, spec, kwargs


def adapt(cfg: AdaptConfig, feature_cache: FeatureCache | None = None, console: Console | None = None,
          on_step=None) -> AdaptResult:
    """Run one adaptation; writes ``model.pt``, ``last.pt``, ``metrics.json``, ``report.json/.md``
    under ``cfg.out``. ``feature_cache`` may be shared between calls to encode each data set once."""
    cfg.validate()
    if cfg.strategy == "auto":  # auto makes pixel-level adaptation one candidate of its ladder
        from edgevt.adapt.auto import adapt_auto

        return adapt_auto(cfg, feature_cache=feature_cache, console=console)
    info = setup_distributed(cfg.device)
    if cfg.pixel != "none":  # pixel-level adaptation (edgevt.adapt.pixel): train on the translated source clips
        from edgevt.adapt.pixel import pixel_config

        if not info.main:  # under torchrun rank 0 translates once; the others then reuse its output
            dist.barrier()
        cfg = pixel_config(cfg, console=console if info.main else Console(quiet=True))
        if info.world > 1 and info.main:
            dist.barrier()
    t_start = time.perf_counter()
    console = console or Console(stderr=True, quiet=not info.main)
    say = console.print if info.main else (lambda *a, **k: None)
    out = Path(cfg.out)
    if info.main:
        out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)

    # -- labels, spec, model ----------------------------------------------------------------
    init = _init_checkpoint(cfg)
    data_labels = labels_of(cfg.target if cfg.strategy == "fewshot" else cfg.source)
    if init is not None:  # the checkpoint's label order wins; the data must have the same classes
        labels = LabelMap(ClipSpec.from_dict(init["spec"]).labels)
        check_same_labels(labels, data_labels, f"--init {cfg.init}",
                          f"--{'target' if cfg.strategy == 'fewshot' else 'source'}")
    else:
        labels = data_labels
    model, spec, model_kwargs = _build(cfg, labels, init)
    model.arch = model.arch if hasattr(model, "arch") else cfg.model
    pretrained = init is not None or cfg.weights not in ("none", "", None)
    backbone, head, frozen = trainable_split(model, cfg.mode, cfg.unfreeze)
    freeze_bn = cfg.freeze_bn == "always" or (cfg.freeze_bn == "auto" and (cfg.batch_size < 16 or pretrained))

    # -- data -------------------------------------------------------------------------------
    augment = make_augment(cfg.augment)
    train_set = val_set = target_set = None
    extra = []
    if cfg.strategy != "fewshot":
        full = open_labeled(cfg.source, spec, labels, train=True, seed=cfg.seed, transform=augment,
                            skip_bad=cfg.skip_bad)
        idx = list(range(len(full)))
        if cfg.limit_per_class:
            idx, _ = per_class_subset(full, cfg.limit_per_class, cfg.seed, f"--source {cfg.source}")
            full = subset(full, idx)
        if cfg.val_split:
            tr, va = split_validation(full, cfg.val_split, cfg.seed)
            train_set, val_set = subset(full, tr), subset(full, va)
            val_set.train = False
        else:
            train_set = full
        for d in cfg.extra_domains:
            extra.append(open_labeled(d, spec, labels, train=True, seed=cfg.seed, what="extra-domain",
                                      skip_bad=cfg.skip_bad))
        if cfg.target_labeled:
            few = open_labeled(cfg.target_labeled, spec, labels, train=True, seed=cfg.seed, transform=augment,
                               what="target-labeled", skip_bad=cfg.skip_bad)
            train_set = mix_in(train_set, few)
            say(f"--target-labeled: {len(few)} labeled target clips mixed into {len(train_set)} training clips")
    if cfg.target_val:
        target_val = open_labeled(cfg.target_val, spec, labels, train=False, seed=cfg.seed, what="target-val",
                                  skip_bad=cfg.skip_bad)
        if val_set is None:
            val_set = target_val  # early stopping (--patience) then watches the target camera
    two_domain = cfg.strategy in TWO_DOMAIN or cfg.uses_target_losses or cfg.strategy == "bn" or cfg.bn_adapt
    if two_domain:
        target_found = None
        with contextlib.suppress(EdgevtError):
            target_found = labels_of(cfg.target)
        if target_found is not None and len(target_found):
            check_same_labels(labels, target_found, "--source", f"--target {cfg.target}")
        target_set = open_unlabeled(cfg.target, spec, cfg.seed, skip_bad=cfg.skip_bad)
        if len(target_set) < 2:
            raise EdgevtError(f"--target {cfg.target} has {len(target_set)} readable clip(s); adaptation needs at "
                              "least 2 (in practice dozens) unlabeled target clips")
    fewshot_support = fewshot_rest = None
    if cfg.strategy == "fewshot":
        target_set = open_labeled(cfg.target, spec, labels, train=False, seed=cfg.seed, what="target",
                                  skip_bad=cfg.skip_bad)
        sup, rest = per_class_subset(target_set, cfg.shots, cfg.seed, f"--target {cfg.target} (--shots {cfg.shots})")
        fewshot_support, fewshot_rest = subset(target_set, sup), subset(target_set, rest)
    evals = {}
    if cfg.source_test:
        evals["source_test"] = open_labeled(cfg.source_test, spec, labels, train=False, seed=cfg.seed,
                                            what="source-test", skip_bad=cfg.skip_bad)
    if cfg.target_test:
        evals["target_test"] = open_labeled(cfg.target_test, spec, labels, train=False, seed=cfg.seed,
                                            what="target-test", skip_bad=cfg.skip_bad)
    elif fewshot_rest is not None and len(fewshot_rest):
        evals["target_rest"] = fewshot_rest
    if cfg.target_val:
        evals["target_val"] = target_val

    skipped = [(path, why) for ds in [train_set, val_set, target_set, *extra, *evals.values()] if ds is not None
               for path, why in getattr(ds, "skipped", [])]
    if skipped:
        say(f"[yellow]--skip-bad: skipped {len(skipped)} unreadable video(s):[/]")
        for path, why in dict(skipped).items():
            say(f"  {why}", markup=False)

    if cfg.bn_source and train_set is not None:
        from edgevt.adapt.selftrain import reestimate_batchnorm

        model.to(info.device)
        n_bn = reestimate_batchnorm(ClipNet(model, spec).to(info.device), train_set, info.device)
        say(f"--bn-source: BatchNorm statistics re-estimated on {len(train_set)} source clips ({n_bn} layers)")

    # -- frozen-feature cache ------------------------------------------------------------------
    use_cache, why_not = can_cache(model, frozen, augment is not None, spec.sampling)
    if use_cache and cfg.strategy == "bn":  # the frozen stages' statistics change too: nothing to cache
        use_cache, why_not = False, "--strategy bn re-estimates every BatchNorm, the frozen stages' too"
    if use_cache and cfg.self_train_weight > 0 and cfg.consistency != "none":
        use_cache, why_not = False, f"self-training's second view (--consistency {cfg.consistency}) needs pixels"
    if cfg.cache_features == "on" and not use_cache:
        raise EdgevtError(f"--cache-features on is not exact here: {why_not}; use --cache-features auto or off")
    use_cache = use_cache and cfg.cache_features != "off"
    model.to(info.device)
    progress = (Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                         TextColumn("{task.fields[info]}"), console=console, disable=not (cfg.progress and info.main))
                )
    cache_note = f"off ({why_not})" if not use_cache else ""
    with progress:
        if use_cache:
            cache = feature_cache or FeatureCache()
            before = cache.seconds
            n_stages = len(frame_stages(model))

            def wrap(ds):
                if ds is None:
                    return None
                videos, _ = cache.get(ds, model, spec, frozen, info.device, progress)
                return CachedClips(ds, videos)

            train_set, val_set, target_set = wrap(train_set), wrap(val_set), wrap(target_set)
            fewshot_support = wrap(fewshot_support)
            extra = [wrap(d) for d in extra]
            evals = {k: wrap(v) for k, v in evals.items()}
            what = "pooled frame embeddings" if frozen == n_stages else f"outputs of the first {frozen}/{n_stages} stages"
            what += " per clip window (TSM)" if prefix_has_shift(model, frozen) else " per frame"
            cache_note = f"on: {what} of the frozen backbone, encoded in {cache.seconds - before:.1f} s"
            say(f"[green]feature cache[/]: training on cached {what} (frozen, no pixel augmentation: exact)")
        elif cfg.mode != "full":
            say(f"feature cache off: {why_not}")
        net = ClipNet(model, spec, cached_stages=frozen if use_cache else None).to(info.device)

        # -- the strategy --------------------------------------------------------------------------
        ckpt_meta = {"arch": model.arch, "model_kwargs": model_kwargs, "strategy": cfg.strategy,
                     "config": cfg.to_dict()}
        outcome = None
        fewshot_info = None
        if cfg.strategy == "bn":
            pass  # no training: the BatchNorm statistics are re-estimated below
        elif cfg.strategy == "fewshot":
            from edgevt.adapt.meta import fewshot_adapt

            x, y = collate(fewshot_support, range(len(fewshot_support)), info.device)
            net.eval()
            fewshot_adapt(net, x, y, list(range(len(labels))), cfg.fewshot_method, cfg.inner_steps, cfg.inner_lr)
            fewshot_info = {"shots": cfg.shots, "method": cfg.fewshot_method, "support_clips": len(fewshot_support),
                            "inner_steps": cfg.inner_steps, "inner_lr": cfg.inner_lr, "init": cfg.init}
        else:
            lr_backbone = cfg.lr * (cfg.backbone_lr_mult if pretrained else 1.0)
            if cfg.strategy in TWO_DOMAIN or cfg.uses_target_losses:
                from edgevt.adapt.dann import AlignTask

                task = AlignTask(net, train_set, target_set, cfg, info, frozen, freeze_bn, len(labels), val_set,
                                 augment=augment)
            elif cfg.strategy in META:
                from edgevt.adapt.meta import EpisodeSampler, MetaTask

                names = [f"--source {cfg.source}"] + [f"--extra-domain {d}" for d in cfg.extra_domains]
                sampler = EpisodeSampler([train_set] + extra, names, cfg.ways, cfg.shots, cfg.queries, cfg.seed)
                task = MetaTask(net, sampler, cfg, info, frozen, freeze_bn)
            else:
                task = FinetuneTask(net, train_set, cfg, info, frozen, freeze_bn, val_set)
            task.to(info.device)
            new_params = head + [p for n, p in task.named_parameters() if not n.startswith("net.")]
            groups = [{"params": new_params, "lr": cfg.lr}]
            if backbone:
                groups.append({"params": backbone, "lr": lr_backbone})
            outcome = train(task, model, spec, cfg, groups, info, out, ckpt_meta, progress, on_step)

        bn_layers = 0
        if cfg.strategy == "bn" or cfg.bn_adapt:
            from edgevt.adapt.selftrain import reestimate_batchnorm

            if use_cache:  # every BatchNorm, the cached frozen stages' too: from pixels on, the cache is stale
                net = ClipNet(model, spec).to(info.device)
                target_set = target_set.base
                evals = {k: v.base for k, v in evals.items()}
            bn_layers = reestimate_batchnorm(net, target_set, info.device)
            say(f"BatchNorm statistics re-estimated on {len(target_set)} target clips ({bn_layers} layers)")

        # -- evaluation, checkpoint, report (rank 0) -----------------------------------------------
        results = {}
        target_check = None
        if info.main and target_set is not None and cfg.strategy != "fewshot":
            from edgevt.adapt.selftrain import target_scores

            target_check = target_scores(net, target_set, info.device)
            if target_check["collapsed"]:
                say(f"[yellow]warning: predictions on the target clips collapsed: "
                    f"{100 * target_check['largest_class_share']:.0f}% fall in one class "
                    f"(limit {100 * target_check['limit']:.0f}%); lower --self-train or raise --im-weight[/]")
        if info.main:
            for name, ds in evals.items():
                p, y = predict(net, ds, info.device)
                results[name] = summarise(p, y, list(labels.names))
    if info.world > 1:
        dist.barrier()
    final = out / "model.pt"
    report: dict = {}
    if info.main:
        from edgevt.env import environment

        data = {k: _fingerprint(v.base if isinstance(v, CachedClips) else v)
                for k, v in {"source": train_set, "validation": val_set, "target": target_set,
                             "fewshot_support": fewshot_support, **evals}.items() if v is not None}
        paths = {"source": cfg.source, "target": cfg.target, "source_test": cfg.source_test,
                 "target_test": cfg.target_test, "extra_domains": cfg.extra_domains, "init": cfg.init}
        metrics = {k: v["accuracy"] for k, v in results.items()}
        if outcome is not None and outcome.history:
            metrics["train_loss"] = outcome.history[-1].get("loss")
            if "val_acc" in outcome.history[-1]:
                metrics["val_acc"] = max(h["val_acc"] for h in outcome.history)
        provenance = {"data": data, "paths": paths, "environment": json.loads(json.dumps(environment(), default=str)), "seed": cfg.seed,
                      "world_size": info.world}
        save_checkpoint(final, model, spec, arch=model.arch, model_kwargs=model_kwargs, strategy=cfg.strategy,
                        metrics=metrics, provenance=provenance, config=cfg.to_dict())
        report = {"strategy": cfg.strategy, "model": model.arch, "checkpoint": str(final), "labels": list(labels.names),
                  "mode": cfg.mode, "frozen_stages": frozen, "freeze_bn": freeze_bn, "feature_cache": cache_note,
                  "train": {"steps": outcome.steps if outcome else 0,
                            "seconds": outcome.seconds if outcome else time.perf_counter() - t_start,
                            "stopped_early": outcome.stopped_early if outcome else False,
                            "history": outcome.history if outcome else []},
                  "eval": results, "fewshot": fewshot_info, "target_predictions": target_check,
                  "bn_layers_reestimated": bn_layers, "provenance": provenance,
                  "seconds_total": round(time.perf_counter() - t_start, 2)}
        write_report(out, report)
        for name, r in results.items():
            say(f"{name}: accuracy {100 * r['accuracy']:.1f}% on {r['clips']} clips")
        say(f"wrote {final} and {out / 'report.md'}")
    if info.world > 1:
        dist.barrier()
        dist.destroy_process_group()
    return AdaptResult(checkpoint=str(final), report=report, out=str(out))
