"""A Triton Inference Server model repository for a bundle (``edgevt deploy triton BUNDLE -o REPO``).

Layout (NAME defaults to the bundle folder's name)::

    REPO/
      edgevt-repo.json        what was emitted, from which bundle (spec, form, models)
      README.md               how to start the server and point `edgevt run` at it
      NAME/                   backend "python": the bundle through edgevt's own backend (any machine)
        config.pbtxt  labels.txt  1/model.py  1/bundle/ (the artifacts of one form + a manifest)
      NAME_window_onnx/       platform onnxruntime_onnx, dynamic_batching   (GPU/CPU servers
      NAME_window_plan/       platform tensorrt_plan,    dynamic_batching    with those backends)
      NAME_stateful_onnx/ NAME_stateful_plan/   sequence_batching, shift buffers as implicit state
      NAME_incremental_onnx/ ...                sequence_batching (the encoder has no state)
      NAME_head_onnx/ NAME_head_plan/           dynamic_batching: the last T embeddings -> logits

The python model speaks edgevt's sequence protocol, one sequence per camera (CORRID, START and
END as control inputs): a request carries the camera's next frames ``FRAMES`` uint8 [k, H, W, 3]
and ``DECIDE`` uint8 [k] (1 where a decision ends); the reply ``LOGITS`` float32 [k, C] holds the
logits of the window ending at each marked frame. The model keeps each sequence's form state
(frame window, embedding ring, shift buffers) keyed by CORRID; START resets it, END frees it.
``edgevt run BUNDLE SOURCE --backend triton://HOST:PORT/NAME`` is its client.

The platform models are the bundle's ONNX graphs (``1/model.onnx``) or TensorRT engines
(``1/model.plan``, copied when the bundle holds one for that role and precision; otherwise build it
on the serving GPU with ``edgevt build`` and copy it there). Their state is Triton's implicit state
with a zero ``initial_state``; the sequence is delimited by the request's sequence flags (the
graphs have no control tensors, and Triton refuses control inputs a graph does not have).
"""
from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from edgevt.bundle import FORM_ROLES
from edgevt.errors import EdgevtError

REPO_MARKER = "edgevt-repo.json"
PLATFORMS = ("python", "onnxruntime_onnx", "tensorrt_plan")
SUFFIX = {"onnxruntime_onnx": "onnx", "tensorrt_plan": "plan"}
TRITON_DTYPES = {"uint8": "TYPE_UINT8", "int8": "TYPE_INT8", "int32": "TYPE_INT32", "int64": "TYPE_INT64",
                 "float16": "TYPE_FP16", "float32": "TYPE_FP32", "float64": "TYPE_FP64", "bool": "TYPE_BOOL"}


def is_repository(path: str | Path) -> bool:
    """True for a folder written by ``write_triton_repository`` (the only kind it replaces)."""
    try:
        return json.loads((Path(path) / REPO_MARKER).read_text()).get("format") == "edgevt-triton-repo"
    except (OSError, ValueError, AttributeError):
        return False


def model_name(bundle_path: Path) -> str:
    name = re.sub(r"[^A-Za-z0-9_-]+", "_", Path(bundle_path).resolve().name).strip("_") or "edgevt"
    return name if name[0].isalpha() else f"m_{name}"


def spec_json(spec) -> str:
    """The ClipSpec as one canonical JSON line: what a served model and a bundle compare."""
    return json.dumps(spec.to_dict(), sort_keys=True, separators=(",", ":"))


def default_form(bundle, precision: str = "fp32") -> str:
    """The form `edgevt run` picks for this bundle (``Bundle.stream_form``)."""
    return bundle.stream_form(precision)


# -- protobuf text helpers ----------------------------------------------------------------------------
def _q(s: str) -> str:
    return '"' + str(s).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _dims(dims) -> str:
    return "[ " + ", ".join(str(int(d)) for d in dims) + " ]"


def _tensors(kind: str, tensors: list[tuple[str, str, list]], extra: str = "") -> str:
    rows = [f'  {{ name: {_q(n)} data_type: {TRITON_DTYPES[dt]} dims: {_dims(d)}{extra} }}' for n, dt, d in tensors]
    return f"{kind} [\n" + ",\n".join(rows) + "\n]\n"


def _params(params: dict) -> str:
    rows = [f"  {{ key: {_q(k)} value: {{ string_value: {_q(v)} }} }}" for k, v in params.items()]
    return "parameters [\n" + ",\n".join(rows) + "\n]\n"


def _instances(count: int, kind: str) -> str:
    return f"instance_group [ {{ count: {int(count)} kind: {kind} }} ]\n"


CONTROLS = ('  control_input [\n'
            '    { name: "START" control [ { kind: CONTROL_SEQUENCE_START fp32_false_true: [ 0, 1 ] } ] },\n'
            '    { name: "END" control [ { kind: CONTROL_SEQUENCE_END fp32_false_true: [ 0, 1 ] } ] },\n'
            '    { name: "CORRID" control [ { kind: CONTROL_SEQUENCE_CORRID data_type: TYPE_UINT64 } ] }\n'
            '  ]\n')


def python_config(name: str, spec, form: str, *, precision: str = "fp32", max_streams: int = 16,
                  instances: int = 1, threads: int = 0, idle_s: float = 60.0) -> str:
    """config.pbtxt of the python-backend model (edgevt's sequence protocol)."""
    h, w = spec.size
    return (f"name: {_q(name)}\nbackend: \"python\"\n"
            f"# direct sequence batching: {max_streams} sequence slots per instance, one per camera\n"
            f"max_batch_size: {int(max_streams)}\n"
            + _tensors("input", [("FRAMES", "uint8", [-1, h, w, 3]), ("DECIDE", "uint8", [-1])],
                       " allow_ragged_batch: true")
            + _tensors("output", [("LOGITS", "float32", [-1, spec.num_classes])])
            + "sequence_batching {\n"
            f"  max_sequence_idle_microseconds: {int(idle_s * 1e6)}\n"
            + CONTROLS + "}\n"
            + _instances(instances, "KIND_CPU")
            + _params({"edgevt_spec": spec_json(spec), "edgevt_form": form, "edgevt_precision": precision,
                       "edgevt_threads": str(int(threads))}))


def platform_config(name: str, platform: str, inputs: list, outputs: list, *, state: dict | None = None,
                    sequence: bool = False, max_batch: int = 8, instances: int = 1, gpu: bool = True,
                    idle_s: float = 60.0) -> str:
    """config.pbtxt for an ONNX graph / TensorRT plan. ``inputs``/``outputs``: (name, dtype, shape)
    with the graph's own shapes (a str/None first axis is the dynamic batch). ``state``: {input:
    output} of buffers carried by Triton's implicit state (left out of the input/output lists)."""
    state = dict(state or {})
    batched = all(len(s) > 0 and not isinstance(s[0], int) for _, _, s in inputs + outputs)

    def dims(shape):
        shape = list(shape[1:] if batched else shape)
        if any(not isinstance(d, int) for d in shape):
            raise EdgevtError(f"{name}: a dynamic axis besides the batch ({shape}); Triton needs fixed dims here")
        return shape

    ins = [(n, dt, dims(s)) for n, dt, s in inputs if n not in state]
    outs = [(n, dt, dims(s)) for n, dt, s in outputs if n not in state.values()]
    shapes = {n: (dt, dims(s)) for n, dt, s in inputs}
    text = f"name: {_q(name)}\nplatform: {_q(platform)}\nmax_batch_size: {max_batch if batched else 0}\n"
    text += _tensors("input", ins) + _tensors("output", outs)
    if sequence or state:
        text += "sequence_batching {\n" + f"  max_sequence_idle_microseconds: {int(idle_s * 1e6)}\n"
        if state:
            rows = []
            for i, (si, so) in enumerate(state.items()):
                dt, d = shapes[si]
                rows.append(f"    {{ input_name: {_q(si)} output_name: {_q(so)} data_type: {TRITON_DTYPES[dt]} "
                            f"dims: {_dims(d)}\n      initial_state: {{ data_type: {TRITON_DTYPES[dt]} "
                            f"dims: {_dims(d)} zero_data: true name: {_q(f'zero_{i}')} }} }}")
            text += "  state [\n" + ",\n".join(rows) + "\n  ]\n"
        text += "}\n"
    elif batched:
        text += "dynamic_batching { max_queue_delay_microseconds: 500 }\n"
    return text + _instances(instances, "KIND_GPU" if gpu else "KIND_CPU")


def onnx_io(path: Path) -> tuple[list, list]:
    """(inputs, outputs) of an ONNX graph as (name, numpy dtype, shape with str for dynamic axes)."""
    import onnx

    from edgevt.bundle import load_onnx_graph

    m = load_onnx_graph(path)
    init = {i.name for i in m.graph.initializer}

    def rows(values):
        out = []
        for vi in values:
            if vi.name in init:
                continue
            tt = vi.type.tensor_type
            dt = onnx.helper.tensor_dtype_to_np_dtype(tt.elem_type).name
            shape = [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in tt.shape.dim]
            out.append((vi.name, dt, shape))
        return out

    return rows(m.graph.input), rows(m.graph.output)


# -- the repository -------------------------------------------------------------------------------------
@dataclass
class TritonRepository:
    path: Path
    name: str  # the python model: what `edgevt run --backend triton://HOST:PORT/NAME` talks to
    form: str
    models: dict = field(default_factory=dict)  # model name -> {"platform", "role", "form", "files"}


README = """# Triton model repository for `{bundle}`

Written by `edgevt deploy triton`. Models:

| model | platform | what it serves |
|---|---|---|
{rows}

## Start the server

CPU-only, or any server with the python backend: load the python model alone (the platform models
need the onnxruntime / tensorrt backends). The python model imports edgevt: start the server in an
environment where `python -c "import edgevt"` works (the stub uses the server's environment: put the
site-packages of that environment on `PYTHONPATH`).

```bash
PYTHONPATH=$(python -c "import sysconfig; print(sysconfig.get_paths()['purelib'])") \\
  tritonserver --model-repository={repo} --model-control-mode=explicit --load-model={name} \\
               --grpc-port 8001 --http-port 8000 --metrics-port 8002
# or, with the server from the nvidia-pytriton wheel: python -m edgevt.deploy.server {repo} --model {name}
edgevt run {bundle} SOURCE --backend triton://127.0.0.1:8001/{name}
```

A GPU server with the onnxruntime and tensorrt backends loads the platform models too
(`tritonserver --model-repository={repo}`). `*_plan` models need `1/model.plan`: build the engine on
that GPU (`edgevt build BUNDLE`) and copy `engine.<role>.<precision>` there, unless it is already in
place. The per-frame forms (`*_stateful_*`, `*_incremental_*`) are sequence models: send each
camera's frames as one sequence (`sequence_id`, `sequence_start`, `sequence_end`); the shift buffers
are Triton's implicit state, zero at the sequence start. The head (`*_head_*`) takes the last T
embeddings of a camera, which the client keeps.
"""


def write_triton_repository(bundle_path: str | Path, out: str | Path, *, name: str | None = None,
                            form: str | None = None, precision: str = "fp32",
                            platforms: tuple = PLATFORMS, max_streams: int = 16, instances: int = 1,
                            threads: int = 0, max_batch: int = 8) -> TritonRepository:
    """Write the model repository atomically (replacing only an earlier edgevt repository)."""
    from edgevt.bundle import MANIFEST, Bundle
    from edgevt.fileio import check_replaceable, replace_dir, staging_dir

    bundle = Bundle.load(bundle_path)
    spec = bundle.spec
    bad = [p for p in platforms if p not in PLATFORMS]
    if bad or not platforms:
        raise EdgevtError(f"--platform {','.join(bad) or '(none)'}: choose from {', '.join(PLATFORMS)}")
    if max_streams < 1 or instances < 1 or max_batch < 1:
        raise EdgevtError("--max-streams, --instances and --max-batch must be >= 1")
    if not spec.labels:
        raise EdgevtError(f"{bundle.path}: its ClipSpec has no labels; re-export with labels")
    name = name or model_name(bundle.path)
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_-]*", name):
        raise EdgevtError(f"--name {name!r}: use letters, digits, _ and - (starting with a letter)")
    form = form or default_form(bundle, precision)
    if form not in FORM_ROLES:
        raise EdgevtError(f"--form {form!r}: choose from {', '.join(FORM_ROLES)}")
    keys = [f"{r}.{precision}" for r in FORM_ROLES[form]]
    missing = [k for k in keys if k not in bundle.artifacts]
    if missing:
        raise EdgevtError(f"{bundle.path}: no {' / '.join(missing)} artifact for the {form} form; export it "
                          f"(edgevt export ... --forms {form}) or pick another --form/--precision")
    out = Path(out)
    check_replaceable(out, is_repository, "an edgevt Triton repository")
    stage = staging_dir(out)
    labels = "\n".join(spec.labels) + "\n"
    repo = TritonRepository(out, name, form)
    try:
        if "python" in platforms:
            d = stage / name
            (d / "1" / "bundle").mkdir(parents=True)
            (d / "config.pbtxt").write_text(python_config(name, spec, form, precision=precision,
                                                           max_streams=max_streams, instances=instances,
                                                           threads=threads))
            (d / "labels.txt").write_text(labels)
            shutil.copy(Path(__file__).with_name("triton_model.py"), d / "1" / "model.py")
            manifest = json.loads(json.dumps(bundle.manifest))
            manifest["artifacts"] = {k: manifest["artifacts"][k] for k in keys}
            for k in keys:
                shutil.copy(bundle.artifact_path(k), d / "1" / "bundle" / manifest["artifacts"][k]["file"])
            (d / "1" / "bundle" / MANIFEST).write_text(json.dumps(manifest, indent=2))
            repo.models[name] = {"platform": "python", "form": form, "roles": list(FORM_ROLES[form])}
        for platform in [p for p in platforms if p != "python"]:
            gpu = True
            for f in [f for f in FORM_ROLES if all(f"{r}.{precision}" in bundle.artifacts for r in FORM_ROLES[f])]:
                for role in FORM_ROLES[f]:
                    mname = f"{name}_{'head' if role == 'head' else f}_{SUFFIX[platform]}"
                    if mname in repo.models:
                        continue  # the head is shared by the incremental and stateful forms
                    key = f"{role}.{precision}"
                    art = bundle.artifacts[key]
                    inputs, outputs = onnx_io(bundle.artifact_path(key))
                    state = art.get("state") or {}
                    state = json.loads(state) if isinstance(state, str) else dict(state)
                    d = stage / mname
                    (d / "1").mkdir(parents=True)
                    files = []
                    if platform == "onnxruntime_onnx":
                        shutil.copy(bundle.artifact_path(key), d / "1" / "model.onnx")
                        files.append("1/model.onnx")
                    elif f"engine.{key}" in bundle.artifacts:
                        shutil.copy(bundle.artifact_path(f"engine.{key}"), d / "1" / "model.plan")
                        files.append("1/model.plan")
                    (d / "config.pbtxt").write_text(platform_config(
                        mname, platform, inputs, outputs, state=state, sequence=role in ("stateful", "encoder"),
                        max_batch=max_batch, instances=instances, gpu=gpu))
                    (d / "labels.txt").write_text(labels)
                    repo.models[mname] = {"platform": platform, "form": f, "role": role, "files": files}
        rows = "\n".join(f"| `{m}` | {v['platform']} | {v['form']} form"
                         + (f", {v['role']}" if v.get("role") else " (edgevt sequence protocol)") + " |"
                         for m, v in repo.models.items())
        (stage / "README.md").write_text(README.format(bundle=bundle.path, rows=rows, repo=out, name=name))
        (stage / REPO_MARKER).write_text(json.dumps({
            "format": "edgevt-triton-repo", "bundle": str(bundle.path), "source": bundle.manifest.get("source", {}),
            "spec": spec.to_dict(), "form": form, "precision": precision, "name": name, "models": repo.models},
            indent=2))
        replace_dir(stage, out, is_repository, "an edgevt Triton repository")
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    return repo
