"""A tiny checkpoint and its bundle (fp32, fp16, int8 cpu flavour) for the eval tests."""
import pytest
import torch


@pytest.fixture(scope="session")
def ev_ckpt(tmp_path_factory, tiny_spec):
    from edgevt.models.checkpoint import save_checkpoint
    from edgevt.models.zoo import create_model

    torch.manual_seed(1)
    model = create_model("tsn_tinycnn", tiny_spec.num_classes, num_frames=tiny_spec.num_frames).eval()
    path = tmp_path_factory.mktemp("evckpt") / "tsn.pt"
    save_checkpoint(path, model, tiny_spec, arch="tsn_tinycnn")
    return path


@pytest.fixture(scope="session")
def ev_bundle(tmp_path_factory, ev_ckpt, motiondigits):
    from edgevt.export.exporter import ExportConfig, export_bundle

    root = tmp_path_factory.mktemp("evbundle")
    cfg = ExportConfig(precisions=("fp32", "fp16", "int8"), calib=motiondigits / "target" / "train", flavour="cpu",
                       calib_clips=6, calib_cache=root / "cache")
    return export_bundle(ev_ckpt, root / "bundle", cfg)
