"""Tiny TSN (window + incremental) and causal TSM (window + stateful) bundles and a short video."""
import pytest
import torch


@pytest.fixture(scope="session")
def deploy_assets(tmp_path_factory, tiny_spec):
    from edgevt.data.synth import make_stream_video
    from edgevt.export.bundle import Bundle
    from edgevt.export.streaming import export_stream_forms
    from edgevt.models.checkpoint import save_checkpoint
    from edgevt.models.preprocess import FramesClassifier
    from edgevt.models.zoo import create_model

    root = tmp_path_factory.mktemp("deploy")
    out = {"root": root, "spec": tiny_spec}
    for arch in ("tsn_tinycnn", "tsm_tinycnn"):
        torch.manual_seed(0)
        kw = {"shift_direction": "causal"} if arch.startswith("tsm") else {}
        model = create_model(arch, tiny_spec.num_classes, num_frames=tiny_spec.num_frames, **kw).eval()
        ckpt = root / f"{arch}.pt"
        save_checkpoint(ckpt, model, tiny_spec, arch=arch, model_kwargs=kw)
        b = Bundle.staging(root / arch, tiny_spec, {"checkpoint": str(ckpt), "arch": arch})
        x = torch.randint(0, 256, (2, tiny_spec.num_frames, *tiny_spec.size, 3), dtype=torch.uint8)
        torch.onnx.export(FramesClassifier(model, tiny_spec).eval(), (x,), str(b.path / "model.onnx"),
                          input_names=["frames"], output_names=["logits"], external_data=False, verbose=False,
                          dynamic_shapes={"frames": {0: torch.export.Dim("batch", min=1, max=64)}})
        b.add_artifact("model.fp32", "model.onnx", kind="onnx", form="window", role="model", precision="fp32")
        export_stream_forms(model, b)
        out[arch] = b.commit().path
    video = root / "stream.mp4"
    make_stream_video(video, "target", 90, 32, seed=0)
    out["video"] = video
    return out
