"""Fixtures for the export tests: a slightly trained TSM-TinyCNN checkpoint and one full bundle."""
import pytest
import torch


def train_briefly(model, spec, source, steps: int = 30, seed: int = 0):
    """A few optimiser steps so that predictions differ between clips (random-init models tend to
    predict one class for everything, which would hide INT8 errors)."""
    from edgevt.data.datasets import LabelMap, load_dataset
    from edgevt.models.preprocess import FramesClassifier

    torch.manual_seed(seed)
    ds = load_dataset(source, spec, LabelMap(spec.labels), cache=True)
    x = torch.stack([ds[i][0] for i in range(len(ds))])
    y = torch.tensor(ds.labels)
    net = FramesClassifier(model, spec).train()
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    for _ in range(steps):
        loss = torch.nn.functional.cross_entropy(net(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


@pytest.fixture(scope="session")
def ex_ckpt(tmp_path_factory, tiny_spec, motiondigits):
    from edgevt.models.checkpoint import save_checkpoint
    from edgevt.models.zoo import create_model

    torch.manual_seed(0)
    model = create_model("tsm_tinycnn", tiny_spec.num_classes, num_frames=tiny_spec.num_frames)
    train_briefly(model, tiny_spec, motiondigits / "target" / "train")
    path = tmp_path_factory.mktemp("exckpt") / "tsm.pt"
    save_checkpoint(path, model, tiny_spec, arch="tsm_tinycnn")
    return path


@pytest.fixture(scope="session")
def ex_bundle(tmp_path_factory, ex_ckpt, motiondigits):
    """fp32 + fp16 + int8 (tensorrt flavour), calibrated on target-train, gated on target-test."""
    from edgevt.export.exporter import ExportConfig, export_bundle

    root = tmp_path_factory.mktemp("exbundle")
    cfg = ExportConfig(precisions=("fp32", "fp16", "int8"), calib=motiondigits / "target" / "train",
                       eval=motiondigits / "target" / "test", max_drop=100.0, calib_cache=root / "cache")
    return export_bundle(ex_ckpt, root / "bundle", cfg)
