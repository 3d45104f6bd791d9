"""A tiny checkpoint and a bundle with its FP32 ONNX export (uint8 frames -> logits)."""
import pytest
import torch


@pytest.fixture(scope="session")
def bench_bundle(tmp_path_factory, tiny_spec):
    from edgevt.bundle import Bundle
    from edgevt.models.checkpoint import save_checkpoint
    from edgevt.models.preprocess import FramesClassifier
    from edgevt.models.zoo import create_model

    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("benchbundle")
    model = create_model("tsn_tinycnn", tiny_spec.num_classes, num_frames=tiny_spec.num_frames).eval()
    ckpt = root / "tiny.pt"
    save_checkpoint(ckpt, model, tiny_spec, arch="tsn_tinycnn")
    b = Bundle.staging(root / "tiny.bundle", tiny_spec, source={"checkpoint": str(ckpt), "arch": "tsn_tinycnn"})
    x = torch.randint(0, 256, (2, tiny_spec.num_frames, *tiny_spec.size, 3), dtype=torch.uint8)
    torch.onnx.export(FramesClassifier(model, tiny_spec).eval(), (x,), str(b.path / "model.onnx"),
                      input_names=["frames"], output_names=["logits"],
                      dynamic_shapes={"frames": {0: torch.export.Dim("batch", min=1, max=64)}},
                      external_data=False, verbose=False)
    b.add_artifact("model.fp32", "model.onnx", kind="onnx", form="window", role="model", precision="fp32")
    return b.commit().path
