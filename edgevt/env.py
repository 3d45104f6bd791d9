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
