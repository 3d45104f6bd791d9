import os

import pytest
import torch

# Two cores: keep torch from oversubscribing them when tests run.
torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture(scope="session")
def motiondigits(tmp_path_factory):
    """A tiny MotionDigits-DA set (6 classes, 3 train / 2 test clips per class per domain)."""
    from edgevt.data.synth import SynthConfig, generate

    out = tmp_path_factory.mktemp("md") / "motiondigits"
    cfg = SynthConfig(size=32, frames=12, per_class={"source_train": 3, "source_test": 2,
                                                     "target_train": 3, "target_test": 2})
    generate(out, cfg)
    return out


@pytest.fixture(scope="session")
def tiny_spec(motiondigits):
    from edgevt.spec import ClipSpec

    labels = (motiondigits / "labels.txt").read_text().split()
    return ClipSpec(num_frames=4, frame_stride=2, size=(32, 32), labels=labels)


@pytest.fixture(scope="session")
def make_tiny_checkpoint(tmp_path_factory, tiny_spec):
    """Factory: an untrained tiny edgevt checkpoint for ``tiny_spec`` (arch, seed) -> path."""
    from edgevt.models.checkpoint import save_checkpoint
    from edgevt.models.zoo import create_model

    def make(arch: str = "tsn_tinycnn", seed: int = 0):
        torch.manual_seed(seed)
        model = create_model(arch, tiny_spec.num_classes, num_frames=tiny_spec.num_frames).eval()
        path = tmp_path_factory.mktemp("ckpt") / f"{arch}_{seed}.pt"
        save_checkpoint(path, model, tiny_spec, arch=arch)
        return path

    return make


# Tiny TSN/TSM checkpoints, bundles with their streaming forms, and a short target-domain video
# (the stream and deploy tests share them).
@pytest.fixture(scope="session")
def stream_assets(tmp_path_factory, tiny_spec):
    from edgevt.data.synth import make_stream_video
    from edgevt.export.exporter import ExportConfig, export_bundle
    from edgevt.models.checkpoint import save_checkpoint
    from edgevt.models.zoo import create_model

    root = tmp_path_factory.mktemp("stream")
    out = {"root": root, "spec": tiny_spec}
    for arch in ("tsn_tinycnn", "tsm_tinycnn"):
        torch.manual_seed(0)
        # TSM trained with the causal shift: its bundle streams by default in the stateful form.
        kw = {"shift_direction": "causal"} if arch.startswith("tsm") else {}
        model = create_model(arch, tiny_spec.num_classes, num_frames=tiny_spec.num_frames, **kw).eval()
        ckpt = root / f"{arch}.pt"
        save_checkpoint(ckpt, model, tiny_spec, arch=arch, model_kwargs=kw)
        # fp32 window + the model's stream form, through the exporter (parity on random frames)
        out[arch] = export_bundle(ckpt, root / arch, ExportConfig(forms=["stream"], threads=1)).path
        out[arch + ".pt"] = ckpt
        out[arch + ".model"] = model
    video = root / "stream.mp4"
    make_stream_video(video, "target", 90, 32, seed=0)
    out["video"] = video
    return out
