"""Serving a bundle with engines made for many cameras.

- ``triton``: ``write_triton_repository(bundle, out)`` writes a Triton Inference Server model
  repository: a ``python`` backend model that runs the bundle through edgevt's own backend with
  one state per sequence (camera), plus ``onnxruntime_onnx`` / ``tensorrt_plan`` configs for GPU
  servers (window form with dynamic batching; per-frame forms with sequence batching and implicit
  state).
- ``deepstream``: ``write_deepstream_configs(bundle, out)`` writes nvinfer and nvdspreprocess
  configs for a clip sequence.
- ``server``: start the Triton server shipped in the ``nvidia-pytriton`` wheel on loopback (tests,
  benchmarks, a CPU-only machine).
"""
