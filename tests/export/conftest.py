"""Fixtures for the export tests: a slightly trained TSM-TinyCNN checkpoint and one full bundle."""
import pytest
import torch
from torch import nn


def fit_classifier(model, spec, source):
    """Least-squares fit of the classifier on the clips' features (one forward pass, no training
    loop), so that predictions differ between clips: random-init models tend to predict one class
    for everything, which would hide INT8 errors."""
    from edgevt.data.datasets import LabelMap, load_dataset
    from edgevt.models.preprocess import FramePreprocess

    ds = load_dataset(source, spec, LabelMap(spec.labels), cache=True)
    x = torch.stack([ds[i][0] for i in range(len(ds))])
    y = torch.as_tensor(ds.labels)
    model.eval()
    with torch.no_grad():
        f = model.clip_features(FramePreprocess(spec)(x))
        a = torch.cat([f, torch.ones(len(f), 1)], 1)
        target = torch.nn.functional.one_hot(y, spec.num_classes).float() * 10
        sol = torch.linalg.lstsq(a, target, driver="gelsd").solution  # [D+1, C]
        model.fc.weight.copy_(sol[:-1].T)
        model.fc.bias.copy_(sol[-1])
    return model


@pytest.fixture(scope="session")
def ex_ckpt(tmp_path_factory, tiny_spec, motiondigits):
    from edgevt.models.checkpoint import save_checkpoint
    from edgevt.models.zoo import create_model

    torch.manual_seed(0)
    model = create_model("tsm_tinycnn", tiny_spec.num_classes, num_frames=tiny_spec.num_frames)
    fit_classifier(model, tiny_spec, motiondigits / "target" / "train")
    path = tmp_path_factory.mktemp("exckpt") / "tsm.pt"
    save_checkpoint(path, model, tiny_spec, arch="tsm_tinycnn")
    return path


@pytest.fixture(scope="session")
def ex_bundle(tmp_path_factory, ex_ckpt, motiondigits):
    """fp32 + fp16 + int8 in both flavours (auto), calibrated on target-train, gated on target-test
    with limits every graph passes (the gate itself is tested in test_gate.py)."""
    from edgevt.export.exporter import ExportConfig, export_bundle

    root = tmp_path_factory.mktemp("exbundle")
    cfg = ExportConfig(precisions=("fp32", "fp16", "int8"), calib=motiondigits / "target" / "train",
                       eval=motiondigits / "target" / "test", max_drop=100.0, min_agreement=0.0,
                       calib_cache=root / "cache")
    return export_bundle(ex_ckpt, root / "bundle", cfg)


class Block(nn.Module):
    """conv-bn-relu6, conv-bn, residual add: the shape of an MBConv block."""

    def __init__(self, c: int = 8):
        super().__init__()
        self.conv1, self.bn1, self.act = nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c), nn.ReLU6()
        self.conv2, self.bn2 = nn.Conv2d(c, c, 1, bias=False), nn.BatchNorm2d(c)

    def forward(self, x):
        return x + self.bn2(self.conv2(self.act(self.bn1(self.conv1(x)))))


def _small_net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU6(), Block(), Block(),
                        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4))
    for m in net.modules():  # BatchNorm statistics far from (0, 1), as a trained model's are
        if isinstance(m, nn.BatchNorm2d):
            m.running_var.uniform_(0.01, 4.0)
            m.running_mean.uniform_(-1, 1)
            m.weight.data.uniform_(0.5, 2.0)
    return net.eval()


@pytest.fixture
def small_net():
    """A maker of a small conv net with BatchNorms and residual adds (``small_net(seed)``), for the
    weight-rounding tests (export.qat, export.adaround)."""
    return _small_net


@pytest.fixture
def initializers():
    """``initializers(bundle, key)``: the named weights of a bundle's ONNX artifact ({name: array})."""
    import onnx
    from onnx import numpy_helper

    def read(bundle, key):
        return {i.name: numpy_helper.to_array(i) for i in onnx.load(str(bundle.artifact_path(key))).graph.initializer}
    return read
