"""Versions, CPU and GPUs of this machine: provenance for reports, checkpoints and manifests."""
from __future__ import annotations

import platform


def environment() -> dict:
    """Versions and devices; reused as provenance by reports and benchmarks."""
    import cv2
    import numpy
    import onnx
    import onnxruntime
    import torch

    info = {
        "edgevt": __import__("edgevt").__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": cpu_name(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "cuda_available": torch.cuda.is_available(),
        "cuda": torch.version.cuda,
        "gpus": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        if torch.cuda.is_available() else [],
        "onnx": onnx.__version__,
        "onnxruntime": onnxruntime.__version__,
        "onnxruntime_providers": onnxruntime.get_available_providers(),
        "opencv": cv2.__version__,
        "numpy": numpy.__version__,
    }
    try:
        import tensorrt

        info["tensorrt"] = tensorrt.__version__
    except ImportError:
        info["tensorrt"] = None
    return info


def cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def check_torch_device(device: str, option: str = "--device") -> None:
    """A one-line EdgevtError for a torch device that cannot be used here (``cuda`` without a
    visible GPU, an unknown name), before any work starts -- instead of torch's
    ``RuntimeError: Found no NVIDIA driver`` deep inside training. ``auto`` always passes."""
    from edgevt.errors import EdgevtError

    d = str(device).strip().lower()
    if d in ("auto", "cpu"):
        return
    if d != "cuda" and not (d.startswith("cuda:") and d[5:].isdigit()):
        raise EdgevtError(f"{option} {device!r}: choose auto, cpu, cuda or cuda:N")
    import torch

    n = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if n == 0:
        raise EdgevtError(f"{option} {device}: no CUDA GPU is visible to torch here (torch {torch.__version__}, "
                          f"CUDA {torch.version.cuda or 'not built in'}); use {option} cpu or auto")
    if ":" in d and int(d[5:]) >= n:
        raise EdgevtError(f"{option} {device}: only {n} CUDA device(s) visible (cuda:0..cuda:{n - 1})")
