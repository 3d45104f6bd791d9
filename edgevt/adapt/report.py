"""Evaluation summaries (accuracy, per-class accuracy, confusion) and report.json / report.md."""
from __future__ import annotations

import json
from pathlib import Path

import torch

from edgevt.fileio import atomic_write_text


def summarise(preds: torch.Tensor, labels: torch.Tensor, names: list[str]) -> dict:
    c = len(names)
    conf = torch.zeros(c, c, dtype=torch.long)
    for t, p in zip(labels.tolist(), preds.tolist()):
        conf[t, p] += 1
    per_class = {}
    for i, n in enumerate(names):
        total = int(conf[i].sum())
        per_class[n] = float(conf[i, i]) / total if total else None
    return {"accuracy": int((preds == labels).sum()) / len(labels) if len(labels) else None, "clips": len(labels),
            "per_class": per_class, "confusion": conf.tolist()}


def reverse_time(x: torch.Tensor) -> torch.Tensor:
    return x.flip(1)


def single_frame(x: torch.Tensor) -> torch.Tensor:
    """Every position of the clip shows its middle frame: no motion left to see."""
    t = x.shape[1]
    return x[:, t // 2:t // 2 + 1].expand_as(x).contiguous()


def write_report(out: Path, report: dict) -> None:
    atomic_write_text(out / "report.json", json.dumps(report, indent=1))
    atomic_write_text(out / "report.md", markdown(report))


def markdown(report: dict) -> str:
    lines = [f"# edgevt adapt: {report['strategy']} on {report['model']}", ""]
    lines.append(f"- checkpoint: `{report['checkpoint']}`")
    lines.append(f"- trained: {report['train']['steps']} steps in {report['train']['seconds']:.1f} s"
                 f"{' (stopped early)' if report['train'].get('stopped_early') else ''}")
    lines.append(f"- feature cache: {report['feature_cache']}")
    lines.append("")
    evals = report.get("eval", {})
    if evals:
        lines += ["| split | clips | accuracy |", "|---|---:|---:|"]
        for split, e in evals.items():
            acc = "n/a" if e["accuracy"] is None else f"{100 * e['accuracy']:.1f}%"
            lines.append(f"| {split} | {e['clips']} | {acc} |")
        for split, e in evals.items():
            names = list(e["per_class"])
            lines += ["", f"## {split}: confusion (rows: true, columns: predicted)", "",
                      "| true \\ pred | " + " | ".join(names) + " | recall |",
                      "|---|" + "---:|" * (len(names) + 1)]
            for name, row in zip(names, e["confusion"]):
                rec = e["per_class"][name]
                lines.append(f"| {name} | " + " | ".join(str(v) for v in row) +
                             f" | {'n/a' if rec is None else f'{100 * rec:.0f}%'} |")
    if report.get("fewshot"):
        lines += ["", "## few-shot", "", "```", json.dumps(report["fewshot"], indent=1), "```"]
    return "\n".join(lines) + "\n"
