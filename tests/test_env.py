import pytest
import torch

from edgevt.env import check_torch_device, environment
from edgevt.errors import EdgevtError


def test_environment_names_the_versions():
    env = environment()
    assert env["torch"] == torch.__version__ and "onnxruntime" in env


def test_check_torch_device(monkeypatch):
    check_torch_device("auto")
    check_torch_device("cpu")
    with pytest.raises(EdgevtError, match="--device 'tpu': choose auto, cpu, cuda"):
        check_torch_device("tpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(EdgevtError, match="--device cuda: no CUDA GPU is visible.*use --device cpu") as e:
        check_torch_device("cuda")
    assert "\n" not in str(e.value)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    check_torch_device("cuda")
    check_torch_device("cuda:0")
    with pytest.raises(EdgevtError, match="only 1 CUDA device"):
        check_torch_device("cuda:1")
