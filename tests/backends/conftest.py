"""A tiny checkpoint, its ONNX export (uint8 frames -> logits) and a bundle holding both forms."""
import shutil

import pytest
import torch


@pytest.fixture(scope="session")
def tiny_ckpt(make_tiny_checkpoint):
    return make_tiny_checkpoint("tsn_tinycnn", seed=0)


@pytest.fixture(scope="session")
def tiny_onnx(tmp_path_factory, tiny_ckpt):
    """Minimal dynamo export with a dynamic batch (the export stage's own API is tested elsewhere)."""
    from edgevt.models.checkpoint import model_from_checkpoint
    from edgevt.models.preprocess import FramesClassifier

    model, spec = model_from_checkpoint(tiny_ckpt)
    wrapped = FramesClassifier(model, spec).eval()
    x = torch.randint(0, 256, (2, spec.num_frames, *spec.size, 3), dtype=torch.uint8)
    path = tmp_path_factory.mktemp("onnx") / "model.onnx"
    torch.onnx.export(wrapped, (x,), str(path), input_names=["frames"], output_names=["logits"],
                      dynamic_shapes={"frames": {0: torch.export.Dim("batch", min=1, max=64)}},
                      external_data=False, verbose=False)
    return path


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory, tiny_ckpt, tiny_onnx, tiny_spec):
    import onnx
    from onnxconverter_common import float16

    from edgevt.bundle import Bundle

    out = tmp_path_factory.mktemp("bundle") / "tiny.bundle"
    b = Bundle.staging(out, tiny_spec, source={"checkpoint": str(tiny_ckpt), "arch": "tsn_tinycnn"})
    shutil.copy(tiny_onnx, b.path / "model.onnx")
    b.add_artifact("model.fp32", "model.onnx", kind="onnx", form="window", role="model", precision="fp32")
    src = onnx.load(str(tiny_onnx))
    own_casts = {n.name for n in src.graph.node if n.op_type == "Cast"}
    fp16 = float16.convert_float_to_float16(src, keep_io_types=True)
    for node in fp16.graph.node:  # the exporter's own Cast(to=FLOAT) must now produce FLOAT16
        if node.op_type == "Cast" and node.name in own_casts:
            for a in node.attribute:
                if a.name == "to" and a.i == onnx.TensorProto.FLOAT:
                    a.i = onnx.TensorProto.FLOAT16
    onnx.save(fp16, str(b.path / "model.fp16.onnx"))
    b.add_artifact("model.fp16", "model.fp16.onnx", kind="onnx", form="window", role="model", precision="fp16")
    return b.commit().path


@pytest.fixture()
def clips(tiny_spec):
    rng = torch.Generator().manual_seed(1)
    return torch.randint(0, 256, (3, tiny_spec.num_frames, *tiny_spec.size, 3), dtype=torch.uint8,
                         generator=rng).numpy()


@pytest.fixture(scope="session")
def torch_logits(tiny_ckpt):
    """Reference: the checkpoint's model in eager PyTorch on uint8 frames."""
    from edgevt.models.checkpoint import model_from_checkpoint
    from edgevt.models.preprocess import FramesClassifier

    model, spec = model_from_checkpoint(tiny_ckpt)
    wrapped = FramesClassifier(model, spec).eval()

    def run(frames):
        with torch.inference_mode():
            return wrapped(torch.from_numpy(frames)).numpy()

    return run
