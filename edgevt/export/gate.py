"""The INT8 accuracy gate: measure what INT8 costs, and keep the most sensitive layers in higher
precision until the drop is within ``max_drop`` points *and* INT8 agrees with FP32 on at least
``min_agreement`` percent of the clips.

With labels the drop is FP32 top-1 minus INT8 top-1 (points); without labels it is the share of
clips whose INT8 top-1 differs from FP32's (points of disagreement). Agreement is judged in both
cases: a graph that changes 1 decision in 8 fails even when its top-1 happens to tie with FP32's
(on a model near chance, changed decisions cancel out in top-1). With fewer than ``min_clips``
clips one changed decision moves agreement by more than ``100 / min_clips`` points: the gate still
runs, and its result says ``enough_clips: false`` with a note (the exporter warns).

Sensitivity is the per-layer error against FP32: both graphs expose every quantized op's output
and input activation; a layer's score is how much its output's relative error grows over its
input's (so errors inherited from earlier layers are not blamed on it). The top-ranked layers are
excluded from quantization (``nodes_to_exclude``) in growing groups (1, 2, 4, ...) and the graph is
re-quantized with the cached calibration ranges and re-measured each time (``run_gate``: the same
loop for every form; a form of two graphs ranks the layers of both).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import onnx

from edgevt.errors import EdgevtError
from edgevt.export.onnx import ort_session
from edgevt.metrics import top1, top1_agreement  # noqa: F401  (top1: the gate's metric)
from edgevt.export.precision import weighted_nodes


class GateRefused(EdgevtError):
    """The accuracy gate would not pass this INT8 graph (the export may go on without it)."""

DEFAULT_MIN_AGREEMENT = 97.0  # % of clips whose INT8 top-1 must equal FP32's
# Fewer clips than this and one changed decision moves agreement by more than 2 points: the result
# is flagged as judged on too few clips.
MIN_GATE_CLIPS = 50
# a graph that keeps this share of its quantized layers in higher precision is mostly float: its INT8
# speed-up is likely gone (the 224x224 Lite0 passed only with 64 layers kept and ran at 1.03x FP32)
MOSTLY_FLOAT = 0.5


@dataclass
class GateResult:
    passed: bool
    max_drop: float
    labeled: bool
    metric: str  # "top1_drop" | "disagreement"
    fp32: float | None  # top-1 (labeled) or None
    int8: float | None
    drop: float  # points
    agreement: float  # % of decisions (eval windows) with the same top-1 as FP32
    clips: int  # eval videos
    min_agreement: float = DEFAULT_MIN_AGREEMENT
    min_clips: int = MIN_GATE_CLIPS
    enough_clips: bool = True  # clips >= min_clips
    note: str | None = None  # why the verdict is weak (too few clips) or which criterion failed
    kept_high_precision: list = field(default_factory=list)
    steps: list = field(default_factory=list)  # every tried exclusion set and its drop
    sensitivity: list = field(default_factory=list)  # [(node, score)] top of the ranking
    layers: int | None = None  # quantized layers the sensitivity ranking covered (when it ran)
    mostly_float: bool = False  # at least MOSTLY_FLOAT of them kept in higher precision
    decisions: int | None = None  # eval windows judged (several per clip with ExportConfig.eval_windows)

    def to_dict(self) -> dict:
        return asdict(self)


def logit_error(fp32_logits: np.ndarray, int8_logits: np.ndarray) -> float:
    """||INT8 - FP32|| / ||FP32|| over all eval logits: how far INT8 moved the scores, continuous
    where agreement counts flips (a few hundred decisions change agreement in steps of 0.2-0.4 points)."""
    f = np.asarray(fp32_logits, dtype=np.float64)
    return float(np.linalg.norm(np.asarray(int8_logits, dtype=np.float64) - f) / max(np.linalg.norm(f), 1e-12))


def measure(fp32_logits: np.ndarray, int8_logits: np.ndarray, labels: np.ndarray | None) -> dict:
    agreement = top1_agreement(fp32_logits, int8_logits)
    both = {"agreement": agreement, "logit_error": logit_error(fp32_logits, int8_logits)}
    if labels is not None and len(labels) > 0 and bool((labels >= 0).all()):
        a, b = top1(fp32_logits, labels), top1(int8_logits, labels)
        return {"labeled": True, "fp32": a, "int8": b, "drop": a - b, **both}
    return {"labeled": False, "fp32": None, "int8": None, "drop": 100.0 - agreement, **both}


def _with_outputs(model: onnx.ModelProto, names: list[str]) -> onnx.ModelProto:
    m = onnx.ModelProto()
    m.CopyFrom(model)
    have = {o.name for o in m.graph.output}
    for n in names:
        if n not in have:
            m.graph.output.append(onnx.helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, None))
    return m


def quantized_nodes(fp32: onnx.ModelProto, qdq: onnx.ModelProto) -> list[onnx.NodeProto]:
    """Nodes of the FP32 graph that take a dequantized input in the Q/DQ graph (weighted ops and
    the others the quantizer covered: Add, Concat, pooling...), in graph order."""
    dq_out = {o for n in qdq.graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    quantized = {n.name for n in qdq.graph.node if n.op_type not in ("QuantizeLinear", "DequantizeLinear")
                 and any(i in dq_out for i in n.input)}
    return [n for n in fp32.graph.node if n.name in quantized]


def layer_sensitivity(fp32_path: str | Path, qdq_path: str | Path, inputs,
                      tmp_dir: str | Path) -> list[tuple[str, float]]:
    """[(node name, score)] for every quantized node, most sensitive first.

    ``qdq_path`` must be the Q/DQ graph with FP32 tensors (before any FP16 conversion), so that
    the original tensor names and types line up with ``fp32_path``. Weighted ops come first at
    equal score (they are where INT8 pays off, but also where it usually hurts). ``inputs``: rows of
    the graph's first input, or {input name: rows} for a graph with several inputs.
    """
    fp32 = onnx.load(str(fp32_path))
    qdq = onnx.load(str(qdq_path))
    produced = {o for n in qdq.graph.node for o in n.output} | {i.name for i in qdq.graph.input}
    weighted = {n.name for n in weighted_nodes(fp32)}
    nodes = quantized_nodes(fp32, qdq)
    # Only float tensors can be compared (and probed as FLOAT outputs): with the cpu flavour the
    # quantizer also feeds dequantized tensors into Shape and friends, whose outputs are int64.
    inferred = onnx.shape_inference.infer_shapes(fp32)
    g = inferred.graph
    floats = {v.name for v in [*g.value_info, *g.input, *g.output]
              if v.type.tensor_type.elem_type == onnx.TensorProto.FLOAT}
    # A quantizer that quantizes op outputs (cpu flavour) fuses Conv+Relu: the Q/DQ graph's Conv then
    # writes the Relu's tensor, which the FP32 graph has too -- compare that one (else the layer, often
    # the most sensitive, e.g. the first conv, would never be ranked, so never kept in high precision).
    q_out = {n.name: n.output[0] for n in qdq.graph.node if n.output}
    fp32_produced = {o for n in fp32.graph.node for o in n.output}
    outs = {n.name: (n.output[0] if n.output[0] in produced else q_out.get(n.name, n.output[0])) for n in nodes}
    pairs = [(n.name, n.input[0], outs[n.name]) for n in nodes
             if n.input[0] in produced and outs[n.name] in produced and outs[n.name] in fp32_produced
             and n.input[0] in floats and outs[n.name] in floats]
    names = sorted({t for _, i, o in pairs for t in (i, o)})
    tmp = Path(tmp_dir)
    sessions = {}
    for tag, model in (("fp32", fp32), ("qdq", qdq)):
        p = tmp / f"probe.{tag}.onnx"
        onnx.save_model(_with_outputs(model, names), str(p))
        sessions[tag] = ort_session(p, optimization="basic")
    # ||q - f|| / ||f|| over all clips, accumulated batch by batch: holding every probed tensor of
    # every clip (as float64) took 5.6 GB for the demo's Lite0-S4 at 64x64.
    wanted = [o.name for o in sessions["fp32"].get_outputs() if o.name in names]
    wanted = [n for n in wanted if n in {o.name for o in sessions["qdq"].get_outputs()}]
    sq_diff = dict.fromkeys(wanted, 0.0)
    sq_ref = dict.fromkeys(wanted, 0.0)
    bad_shape = set()
    feeds = inputs if isinstance(inputs, dict) else {sessions["fp32"].get_inputs()[0].name: inputs}
    rows = len(next(iter(feeds.values())))
    first = sessions["fp32"].get_inputs()[0].shape
    step = 1 if first and first[0] == 1 else 4  # fixed batch-1 graphs (stateful) take one row a run
    for i in range(0, rows, step):
        res = {tag: s.run(wanted, {k: v[i:i + step] for k, v in feeds.items()}) for tag, s in sessions.items()}
        for k, n in enumerate(wanted):
            f, q = res["fp32"][k], res["qdq"][k]
            if f.shape != q.shape:
                bad_shape.add(n)
                continue
            f = f.astype(np.float64)
            sq_diff[n] += float(np.sum((q.astype(np.float64) - f) ** 2))
            sq_ref[n] += float(np.sum(f ** 2))

    def rel_err(t: str) -> float:
        if t not in sq_diff or t in bad_shape:
            return 0.0
        return float(np.sqrt(sq_diff[t]) / max(np.sqrt(sq_ref[t]), 1e-12))

    scores = [(name, rel_err(o) - rel_err(i)) for name, i, o in pairs]
    return sorted(scores, key=lambda s: (-s[1], s[0] not in weighted))


def exclusion_schedule(ranked: list[str], already: list[str]) -> list[list[str]]:
    """Growing exclusion sets: top 1, 2, 4, 8, ... of the ranking, then all of it."""
    sets, k = [], 1
    while k < len(ranked):
        sets.append(already + ranked[:k])
        k *= 2
    sets.append(already + ranked)
    return sets


@dataclass
class GateOutcome:
    summary: dict  # the last quantization's summary (nodes_excluded, qdq_nodes, ...)
    result: GateResult
    logits: np.ndarray  # INT8 logits on the eval clips, of the delivered graph(s)
    kept: list  # [{"node", "reason"}] kept in higher precision


def best_calibration(tried: dict[str, dict], max_drop: float = 1.0,
                     min_agreement: float = DEFAULT_MIN_AGREEMENT) -> str:
    """``--calib-method auto``: of the calibration methods whose measurement (``measure``) the gate
    would pass (``failures``), the one whose INT8 logits are closest to FP32's (``logit_error``); when
    none passes, the same among all of them (the gate then repairs the closest). Ties (or
    measurements without ``logit_error``) go to the best agreement, the smallest drop, then the
    earliest in ``tried``.

    Not the best agreement: on the demo model's 240 target-val decisions percentile and minmax both
    agreed on 98.3%, but percentile's logits were 0.95% off FP32's and minmax's 1.7%; on target-test
    (60 clips, never seen by the gate) percentile changed 1 decision and minmax 2."""
    order = list(tried)

    def key(m: str) -> tuple:
        t = tried[m]
        err = t.get("logit_error")
        return (not failures(t, max_drop, min_agreement), -(err if err is not None else float("inf")),
                t["agreement"], -t["drop"], -order.index(m))
    return max(order, key=key)


def failures(m: dict, max_drop: float, min_agreement: float) -> list[str]:
    """What a measurement fails: the drop over ``max_drop``, agreement under ``min_agreement``."""
    out = []
    if m["drop"] > max_drop:
        out.append(f"{'top-1 drop' if m.get('labeled', True) else 'disagreement'} {m['drop']:.2f} points > --max-drop {max_drop}")
    if m["agreement"] < min_agreement:
        out.append(f"agreement with FP32 {m['agreement']:.1f}% < --min-agreement {min_agreement}")
    return out


def too_few_clips(clips: int, min_clips: int) -> str | None:
    """The note for a gate judged on fewer than ``min_clips`` clips (None when there are enough)."""
    if clips >= min_clips:
        return None
    return (f"judged on only {clips} clips (fewer than {min_clips}): one changed decision moves agreement by "
            f"{100.0 / max(clips, 1):.1f} points -- give more --eval clips")


def run_gate(quantize: Callable[[list[str]], dict], int8_logits: Callable[[], np.ndarray],
             rank: Callable[[], list[tuple[str, float]]], *, fp32_logits: np.ndarray, labels: np.ndarray,
             max_drop: float, kept: list[dict], log: Callable[[str], None] = lambda m: None,
             summary: dict | None = None, min_agreement: float = DEFAULT_MIN_AGREEMENT,
             min_clips: int = MIN_GATE_CLIPS, clips: int | None = None,
             logits: np.ndarray | None = None) -> GateOutcome:
    """The INT8 accuracy gate for any form: measure; while the drop is over ``max_drop`` or the
    agreement with FP32 under ``min_agreement``, keep the most sensitive layers (``rank()``) in higher
    precision in growing groups, re-quantize (``quantize(exclude)``) and re-measure. ``kept`` holds
    the layers excluded from the start (with reasons); ``summary`` is the first quantization's summary
    when the caller already ran it, ``logits`` that graph's INT8 logits when the caller measured them. ``clips``: how many videos the eval rows (decisions) come from
    (default: one row per clip); ``min_clips`` counts videos.

    Raises EdgevtError when the gate fails, or passes only with no layer left in INT8."""
    base = [k["node"] for k in kept]
    if summary is None:
        summary, logits = quantize(base), None
    logits = int8_logits() if logits is None else logits
    m = measure(fp32_logits, logits, labels)
    steps = [{"excluded": len(base), "drop": m["drop"], "int8": m["int8"], "agreement": m["agreement"]}]
    ranking: list = []
    kept = list(kept)
    failed = failures(m, max_drop, min_agreement)
    if failed:
        log(f"INT8 {'; '.join(failed)}; ranking layers by sensitivity")
        ranking = rank()
        ranked = [n for n, _ in ranking if n not in base]
        for exclude in exclusion_schedule(ranked, base):
            summary = quantize(exclude)
            logits = int8_logits()
            m = measure(fp32_logits, logits, labels)
            steps.append({"excluded": len(exclude), "drop": m["drop"], "int8": m["int8"], "agreement": m["agreement"]})
            log(f"  {len(exclude)} layers in higher precision: drop {m['drop']:.2f} points, "
                f"agreement {m['agreement']:.1f}%")
            failed = failures(m, max_drop, min_agreement)
            if not failed:
                break
        kept += [{"node": n, "reason": "accuracy gate (sensitivity rank)"}
                 for n in summary["nodes_excluded"] if n not in base]
    decisions = int(len(labels))
    clips = decisions if clips is None else int(clips)
    few = too_few_clips(clips, min_clips)
    layers = len(ranking) or None
    n_kept = len(kept) - len(base)  # kept by the ranking (base: excluded from the start)
    mostly_float = bool(layers and n_kept >= MOSTLY_FLOAT * layers)
    float_note = (f"kept {n_kept} of {layers} quantized layers in higher precision: expect little INT8 speed-up "
                  "-- time it (edgevt bench) or export fp16") if mostly_float else None
    result = GateResult(passed=not failed, max_drop=max_drop, labeled=m["labeled"],
                        metric="top1_drop" if m["labeled"] else "disagreement", fp32=m["fp32"], int8=m["int8"],
                        drop=m["drop"], agreement=m["agreement"], clips=clips, decisions=decisions,
                        min_agreement=min_agreement, min_clips=min_clips, enough_clips=few is None,
                        note="; ".join(failed + [x for x in (few, float_note) if x]) or None, kept_high_precision=kept,
                        steps=steps, sensitivity=[(n, round(sc, 5)) for n, sc in ranking[:10]], layers=layers,
                        mostly_float=mostly_float)
    if result.passed and summary["qdq_nodes"]["QuantizeLinear"] == 0:
        # every quantized layer had to be kept in higher precision: that is not an INT8 graph
        raise GateRefused(f"INT8 accuracy gate: the drop is within --max-drop {max_drop} and agreement at least "
                          f"--min-agreement {min_agreement} only with no layer left in INT8; this model does not "
                          "quantize well here -- export fp16 instead, or calibrate on more/other target clips")
    if not result.passed:
        raise GateRefused(f"INT8 accuracy gate failed on {result.clips} clips ({decisions} decisions): "
                          f"{'; '.join(failed)}, even with "
                          f"{len(kept)} layers kept in higher precision; calibrate on more target clips, try "
                          "--calib-method or the other --flavour, or export without int8")
    return GateOutcome(summary, result, logits, kept)
