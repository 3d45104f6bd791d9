"""Splits of a data set's ``path label`` lists: adapt/val splits of target-train, few labeled clips.

Model selection never looks at a test split: target-train is cut into ``target_adapt`` (unlabeled
clips for adaptation and INT8 calibration) and ``target_val`` (labeled, for choosing recipes).
"""
from __future__ import annotations

from pathlib import Path

from edgevt.fileio import atomic_write_text


def _by_class(lines: list[str]) -> dict[str, list[str]]:
    by_class: dict[str, list[str]] = {}
    for ln in lines:
        by_class.setdefault(ln.rsplit(maxsplit=1)[1], []).append(ln)
    return by_class


def read_list(path: str | Path) -> list[str]:
    return [ln for ln in Path(path).read_text().splitlines() if ln.strip()]


def split_target_train(data: Path, val_share: float = 0.25, seed: int = 0) -> tuple[Path, Path]:
    """Split target-train into ``target_adapt.txt`` (its clips are what DANN sees, unlabeled, and what
    INT8 calibrates on) and ``target_val.txt`` (labeled, only used to choose between source-only and
    DANN), so that model selection never looks at target-test. Per class, deterministic per seed."""
    import numpy as np

    by_class = _by_class(read_list(data / "target_train.txt"))
    adapt, val = [], []
    rng = np.random.default_rng(seed)
    for label in sorted(by_class):
        items = by_class[label]
        order = rng.permutation(len(items))
        n_val = max(1, int(round(val_share * len(items)))) if len(items) > 1 else 0
        val += [items[i] for i in order[:n_val]]
        adapt += [items[i] for i in order[n_val:]]
    paths = (data / "target_adapt.txt", data / "target_val.txt")
    atomic_write_text(paths[0], "\n".join(adapt) + "\n")
    atomic_write_text(paths[1], "\n".join(val) + "\n")
    return paths




def few_labeled(list_path: str | Path, per_class: int, out: str | Path, seed: int = 0) -> Path:
    """Write ``out``: ``per_class`` labeled clips of each class drawn from ``list_path`` (seeded),
    the handful of target clips a team labels by hand."""
    import numpy as np

    from edgevt.errors import EdgevtError

    rng = np.random.default_rng((seed, 41))
    chosen = []
    for label, items in sorted(_by_class(read_list(list_path)).items()):
        if len(items) < per_class:
            raise EdgevtError(f"{list_path}: class {label!r} has {len(items)} clips, fewer than {per_class}")
        chosen += [items[i] for i in sorted(rng.choice(len(items), per_class, replace=False))]
    atomic_write_text(out, "\n".join(chosen) + "\n")
    return Path(out)
