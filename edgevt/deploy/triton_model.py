"""Triton python-backend model: an edgevt bundle with one stream state per sequence (camera).

Copied by ``edgevt deploy triton`` to ``REPO/NAME/1/model.py``, next to ``bundle/`` (the artifacts of
one streaming form and their manifest). The server's Python must be able to import edgevt and
onnxruntime (start it with their site-packages on PYTHONPATH). Protocol: see edgevt.deploy.triton.
"""
import json
import threading
import time
from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils


def _array(tensor) -> np.ndarray:
    # DLPack, not as_numpy(): the stub's numpy bridge predates numpy 2 and misreads item sizes there
    # (a float32 output came back as "output tensor shape does not match size").
    try:
        return np.from_dlpack(tensor)
    except Exception:
        return tensor.as_numpy()


def _tensor(name: str, a: np.ndarray):
    if a.size == 0:  # DLPack refuses empty tensors as "not contiguous"; 0 bytes cannot be misread either
        return pb_utils.Tensor(name, a)
    return pb_utils.Tensor.from_dlpack(name, np.ascontiguousarray(a).__dlpack__())


class TritonPythonModel:
    def initialize(self, args):
        from edgevt.stream.loop import open_model

        config = json.loads(args["model_config"])
        params = {k: v.get("string_value", "") for k, v in config.get("parameters", {}).items()}
        self.form = params.get("edgevt_form", "window")
        threads = int(params.get("edgevt_threads", "0") or 0)
        options = {"threads": threads} if threads > 0 else {}
        bundle = Path(__file__).resolve().parent / "bundle"
        self.backends, self.spec, self.form = open_model(bundle, form=self.form, backend="ort-cpu",
                                                         precision=params.get("edgevt_precision", "fp32"),
                                                         **options)
        self.sequences = {}  # CORRID -> SequenceRunner
        self.last_used = {}  # CORRID -> monotonic time of its last request
        # Triton frees the slot of a sequence that idles out but does not tell the model: drop its state too.
        idle_us = int(config.get("sequence_batching", {}).get("max_sequence_idle_microseconds", 0) or 60_000_000)
        self.idle_s = 2 * idle_us / 1e6
        self.lock = threading.Lock()

    @staticmethod
    def _scalar(request, name, default=0):
        t = pb_utils.get_input_tensor_by_name(request, name)
        return default if t is None else _array(t).reshape(-1)[0]

    def _one(self, request):
        from edgevt.deploy.sequence import SequenceRunner

        corrid = int(self._scalar(request, "CORRID"))
        start = bool(self._scalar(request, "START"))
        end = bool(self._scalar(request, "END"))
        frames = _array(pb_utils.get_input_tensor_by_name(request, "FRAMES"))
        decide = _array(pb_utils.get_input_tensor_by_name(request, "DECIDE"))
        frames = frames.reshape(frames.shape[-4:])  # [1, k, H, W, 3] (batched config) -> [k, H, W, 3]
        runner = None if start else self.sequences.get(corrid)
        if runner is None:
            if not start:
                raise ValueError(f"edgevt: unknown sequence {corrid} (server restarted or the sequence idled "
                                 "out); start it again")
            runner = self.sequences[corrid] = SequenceRunner(self.backends, self.spec, self.form)
        logits = runner.push(np.ascontiguousarray(frames), decide)
        self.last_used[corrid] = time.monotonic()
        if end:
            self.sequences.pop(corrid, None)
            self.last_used.pop(corrid, None)
        return pb_utils.InferenceResponse(output_tensors=[_tensor("LOGITS", logits[None])])

    def execute(self, requests):
        responses = []
        with self.lock:
            now = time.monotonic()
            for corrid in [c for c, t in self.last_used.items() if now - t > self.idle_s]:
                self.sequences.pop(corrid, None)
                self.last_used.pop(corrid, None)
            for request in requests:
                try:
                    responses.append(self._one(request))
                except Exception as e:  # one bad request must not take the others down
                    msg = str(e).splitlines()[0] if str(e) else type(e).__name__
                    responses.append(pb_utils.InferenceResponse(output_tensors=[], error=pb_utils.TritonError(msg)))
        return responses

    def finalize(self):
        self.sequences.clear()
        for b in self.backends.values():
            b.close()
