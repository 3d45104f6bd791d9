"""Data for adaptation runs: domains with one label map, subsets, validation splits, batching."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from edgevt.data.datasets import ClipDataset, LabelMap, load_dataset, resolve_source
from edgevt.errors import EdgevtError


def labels_of(source: str) -> LabelMap | None:
    """The label map a labeled source declares (its labels.txt or class folders)."""
    _, lm = resolve_source(source, None, labeled=True)
    return lm


def check_same_labels(a: LabelMap, b: LabelMap, a_name: str, b_name: str) -> None:
    """Same class names (order does not matter: datasets are re-indexed by one label map)."""
    if set(a.names) != set(b.names):
        only_a = sorted(set(a.names) - set(b.names))
        only_b = sorted(set(b.names) - set(a.names))
        raise EdgevtError(f"label sets differ between {a_name} and {b_name} (only in {a_name}: {only_a[:5]}; "
                          f"only in {b_name}: {only_b[:5]}); give both the same classes")


def check_known_labels(source_labels: LabelMap, found: LabelMap, name: str) -> None:
    """A labeled target set may hold only some of the source's classes (a handful of labeled clips,
    a test set), but no class the source does not have: the model cannot predict it."""
    foreign = sorted(set(found.names) - set(source_labels.names))
    if foreign:
        raise EdgevtError(f"{name} has labels the source does not: {foreign[:5]}; use the source's class names "
                          f"({', '.join(sorted(source_labels.names)[:8])}) or drop those clips")


SUBSET_OK = ("target-val", "target-labeled", "target-test", "source-test")  # sets that may miss a class


def open_labeled(source: str, spec, labels: LabelMap, train: bool, seed: int, transform=None,
                 what: str = "source", skip_bad: bool = False) -> ClipDataset:
    if labels is not None:
        found = labels_of(source)
        if found is not None and what in SUBSET_OK:
            check_known_labels(labels, found, f"--{what} {source}")
        elif found is not None:
            check_same_labels(labels, found, "--source", f"--{what} {source}")
    return load_dataset(source, spec, labels=labels, train=train, seed=seed, transform=transform, cache=True,
                        skip_bad=skip_bad)


def open_unlabeled(source: str, spec, seed: int, what: str = "target", skip_bad: bool = False) -> ClipDataset:
    p = Path(source)
    if p.is_dir() and not any(p.rglob("*.*")):
        raise EdgevtError(f"--{what} {p} is empty; domain adaptation needs unlabeled target videos there")
    try:
        return load_dataset(source, spec, labeled=False, train=True, seed=seed, cache=True, skip_bad=skip_bad)
    except EdgevtError as e:
        if "contains no video files" in str(e) or "no readable clips" in str(e):
            raise EdgevtError(f"--{what} {source} has no videos; domain adaptation needs unlabeled target "
                              "videos (any folder layout)") from None
        raise


def subset(ds: ClipDataset, indices) -> ClipDataset:
    """A view of ``ds`` with only ``indices`` (shares the decoded-video cache)."""
    indices = [int(i) for i in indices]
    view = ClipDataset.__new__(ClipDataset)
    view.__dict__.update(ds.__dict__)
    view.records = [ds.records[i] for i in indices]
    if ds._cache is not None:
        view._cache = {j: ds._cache[i] for j, i in enumerate(indices) if i in ds._cache}
    return view


def per_class_subset(ds: ClipDataset, k: int, seed: int, what: str) -> tuple[list[int], list[int]]:
    """k clips per class (seeded); returns (chosen, rest). Error if a class has fewer than k."""
    rng = np.random.default_rng((seed, 31))
    labels = ds.labels
    chosen = []
    for c in range(len(ds.label_map)):
        idx = np.flatnonzero(labels == c)
        if len(idx) < k:
            raise EdgevtError(f"{what}: class {ds.label_map.names[c]!r} has {len(idx)} clips, fewer than the "
                              f"{k} requested per class; lower the count or add clips")
        chosen += rng.choice(idx, k, replace=False).tolist()
    chosen = sorted(chosen)
    rest = sorted(set(range(len(ds))) - set(chosen))
    return chosen, rest


def split_validation(ds: ClipDataset, share: float, seed: int) -> tuple[list[int], list[int]]:
    """Stratified split: (train indices, validation indices)."""
    rng = np.random.default_rng((seed, 17))
    labels = ds.labels
    train, val = [], []
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        n_val = int(round(share * len(idx)))
        n_val = min(max(n_val, 1), len(idx) - 1) if len(idx) > 1 else 0
        val += idx[:n_val].tolist()
        train += idx[n_val:].tolist()
    return sorted(train), sorted(val)


def collate(dataset, indices, device) -> tuple[torch.Tensor, torch.Tensor]:
    items = [dataset[i] for i in indices]
    x = torch.stack([x for x, _ in items]).to(device)
    y = torch.tensor([y for _, y in items], dtype=torch.long, device=device)
    return x, y
