"""Export stage: checkpoint -> bundle (ONNX, FP16, INT8 Q/DQ, streaming forms).

Library API (imported lazily: ``import edgevt.export`` stays light)::

    from edgevt.export import ExportConfig, export_bundle
    bundle = export_bundle("model.pt", "bundle/", ExportConfig(precisions=("fp32", "fp16", "int8"),
                                                               calib="target/train", eval="target/val"))
"""

_LAZY = {"ExportConfig": "edgevt.export.exporter", "export_bundle": "edgevt.export.exporter",
         "register_form": "edgevt.export.exporter", "ExportContext": "edgevt.export.exporter",
         "export_onnx": "edgevt.export.onnx"}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'edgevt.export' has no attribute {name!r}")


__all__ = list(_LAZY)
