"""edgevt checkpoints: plain dicts of tensors and JSON-like values, loadable with weights_only=True.

A checkpoint carries everything needed to rebuild the model and to sample its input: the
architecture name, constructor arguments, the ClipSpec (with labels) and what produced it.
"""
from __future__ import annotations

import re
import warnings
from pathlib import Path

import torch
from torch import nn

from edgevt.errors import EdgevtError
from edgevt.fileio import atomic_path
from edgevt.spec import ClipSpec

FORMAT = "edgevt-checkpoint"
FORMAT_VERSION = 1


def atomic_torch_save(obj, path: str | Path) -> None:
    """torch.save through a temporary file and a rename: never a half-written checkpoint."""
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def save_checkpoint(path: str | Path, model: nn.Module, spec: ClipSpec, *, arch: str | None = None,
                    model_kwargs: dict | None = None, **extra) -> None:
    """Save weights + ClipSpec + metadata (strategy, metrics, provenance... as plain values)."""
    ckpt = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "arch": arch or getattr(model, "arch"),
        "model_kwargs": dict(model_kwargs or {}),
        "spec": spec.to_dict(),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        **extra,
    }
    atomic_torch_save(ckpt, path)


def load_checkpoint(path: str | Path) -> dict:
    """Load and check an edgevt checkpoint; a clear error for anything else."""
    p = Path(path)
    if not p.exists():
        raise EdgevtError(f"{p}: no such checkpoint")
    try:
        with warnings.catch_warnings():  # torch's notes on odd pickles would print before our one line
            warnings.simplefilter("ignore")
            ckpt = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:
        raise EdgevtError(f"{p}: not an edgevt checkpoint ({type(e).__name__}: {str(e).splitlines()[0][:120]})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise EdgevtError(f"{p}: not an edgevt checkpoint (no '{FORMAT}' marker); create one with `edgevt adapt`")
    if ckpt.get("format_version", 0) > FORMAT_VERSION:
        raise EdgevtError(f"{p}: checkpoint format {ckpt['format_version']} is newer than this edgevt; upgrade")
    _check_fields(ckpt, p)
    return ckpt


def _check_fields(ckpt: dict, p: Path) -> None:
    """The marker alone proves nothing: every field the loaders read must be there and well formed,
    so that an edited or half-written checkpoint is a one-line error, never a KeyError deep inside."""
    def bad(what: str) -> EdgevtError:
        return EdgevtError(f"{p}: damaged edgevt checkpoint ({what}); re-create it with `edgevt adapt`")

    missing = [k for k in ("arch", "spec", "state_dict") if k not in ckpt]
    if missing:
        raise bad(f"missing {', '.join(repr(k) for k in missing)}")
    if not isinstance(ckpt["arch"], str) or not ckpt["arch"]:
        raise bad(f"'arch' is {ckpt['arch']!r}, not a model name")
    if not isinstance(ckpt.get("model_kwargs", {}), dict):
        raise bad("'model_kwargs' is not a mapping")
    sd = ckpt["state_dict"]
    if not isinstance(sd, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in sd.items()):
        raise bad("'state_dict' is not a mapping of names to tensors")
    if not isinstance(ckpt["spec"], dict):
        raise bad("'spec' is not a mapping")
    try:
        ClipSpec.from_dict(ckpt["spec"])
    except EdgevtError as e:
        raise bad(f"its ClipSpec: {e}") from None
    except Exception as e:  # a wrongly typed field fails inside validate()
        raise bad(f"its ClipSpec: {type(e).__name__}: {str(e).splitlines()[0][:120] if str(e) else ''}") from None


def model_from_checkpoint(ckpt: dict | str | Path, source: str | Path | None = None) -> tuple[nn.Module, ClipSpec]:
    """Rebuild the model (eval mode) and its ClipSpec from a checkpoint dict or path.
    ``source``: the file a dict was loaded from, named in errors."""
    from edgevt.models.zoo import create_model

    where = str(source) if source is not None else "checkpoint"
    if not isinstance(ckpt, dict):
        where = str(ckpt)
        ckpt = load_checkpoint(ckpt)
    spec = ClipSpec.from_dict(ckpt["spec"])
    kwargs = dict(ckpt.get("model_kwargs", {}))
    kwargs.setdefault("num_frames", spec.num_frames)
    try:
        model = create_model(ckpt["arch"], spec.num_classes, weights="none", **kwargs)
    except TypeError as e:  # model_kwargs the constructor does not take
        raise EdgevtError(f"{where}: damaged edgevt checkpoint (model_kwargs do not fit {ckpt['arch']}: {e}); "
                          "re-create it with `edgevt adapt`") from None
    try:
        model.load_state_dict(ckpt["state_dict"])
    except RuntimeError as e:
        text = str(e)
        counts = [(kind, len(re.findall(r'"[^"]+"', m.group(1))))
                  for kind in ("missing", "unexpected")
                  for m in [re.search(kind.capitalize() + r' key\(s\) in state_dict: ([^\n]*)', text)] if m]
        lines = [line.strip() for line in text.splitlines()[1:] if line.strip()]
        detail = (", ".join(f"{n} {kind} weight name(s)" for kind, n in counts) if counts
                  else (lines[0] if lines else text.splitlines()[0])[:160])
        raise EdgevtError(f"{where}: damaged edgevt checkpoint (its weights do not fit {ckpt['arch']}: {detail}); "
                          "re-create it with `edgevt adapt`") from None
    return model.eval(), spec
