"""Shared helpers for benchmark scripts: provenance and writing result tables."""
from __future__ import annotations

import json
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def provenance() -> dict:
    from edgevt.env import environment

    return {"date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), **environment()}


def write_results(name: str, markdown: str, data: dict) -> Path:
    """Write results/<name>.md (table + provenance line) and results/<name>.json."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    prov = provenance()
    md = markdown.rstrip() + (f"\n\n_{prov['date']}; CPU: {prov['cpu']}; torch {prov['torch']} "
                              f"({prov['torch_threads']} threads); onnxruntime {prov['onnxruntime']}_\n")
    (RESULTS / f"{name}.md").write_text(md)
    (RESULTS / f"{name}.json").write_text(json.dumps({"provenance": prov, **data}, indent=2, default=str))
    return RESULTS / f"{name}.md"
