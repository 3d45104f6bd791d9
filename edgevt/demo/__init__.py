"""``edgevt demo``: the whole path on the built-in benchmark, in one command, offline, on a laptop CPU.

Three modules: ``recipes`` (public: what each step runs at each size; benchmarks import it),
``steps`` (the step functions over one shared run cache, ``run_demo``) and ``report`` (report.md
from the step records, filled into templates).
"""
from edgevt.data.splits import split_target_train
from edgevt.demo.recipes import SIZES, DemoSize, adapt_config, adapt_mode, export_config, synth_config, with_clip
from edgevt.demo.steps import (
    DemoContext,
    DemoResult,
    Step,
    cached_adapt,
    cached_data,
    run_cached,
    run_demo,
    run_step,
    steps,
)

__all__ = ["SIZES", "DemoContext", "DemoResult", "DemoSize", "Step", "adapt_config", "adapt_mode", "cached_adapt",
           "cached_data", "export_config", "run_cached", "run_demo", "run_step", "split_target_train", "steps",
           "synth_config", "with_clip"]
