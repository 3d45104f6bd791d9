"""Build TensorRT engines from a bundle's ONNX graphs (``edgevt build``), on TensorRT 10.x and 11.x.

Precision lives in the graph (FP16-converted or Q/DQ INT8 ONNX), so the build path is chosen by a
feature test on the installed TensorRT, never by catching errors:

- TensorRT 11.x has no precision builder flags (``not hasattr(trt.BuilderFlag, "FP16")``), and from
  10.12 strongly typed networks are the recommended path: build strongly typed, no precision flags.
- Older 10.x (JetPack 6 ships 10.3): weakly typed; a Q/DQ graph needs ``BuilderFlag.INT8`` (plus
  ``FP16`` so the non-quantized layers are not FP32), an FP16 graph needs ``FP16``.

Every engine gets a JSON sidecar (TensorRT version, GPU name + compute capability, profile,
precision, source ONNX hash, ClipSpec) because engines carry no metadata and only load on the
TensorRT version and GPU that built them; ``check_engine_compatible`` refuses anything else with a
message that says how to rebuild. Engine, sidecar and timing cache are written atomically.

The functions above ``build_engine`` are plain logic, testable without TensorRT.
"""
from __future__ import annotations

import datetime
import json
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from edgevt.bundle import PRECISIONS, ROLES, EngineSidecar, engine_file, read_sidecar, sidecar_path  # noqa: F401
from edgevt.errors import EdgevtError
from edgevt.fileio import atomic_write_bytes

TRT_HINT = "pip install 'edgevt[tensorrt]'"
CACHE_DIR = "trt_cache"


# -- pure logic ---------------------------------------------------------------------------------------
def parse_version(version: str) -> tuple[int, int, int]:
    """"10.3.0.30" -> (10, 3, 0)."""
    nums = [int(n) for n in re.findall(r"\d+", version)[:3]]
    if not nums:
        raise EdgevtError(f"cannot read a TensorRT version from {version!r}")
    return tuple((nums + [0, 0])[:3])  # type: ignore[return-value]


@dataclass(frozen=True)
class BuildPath:
    """How to build: a strongly typed network, or weakly typed with these BuilderFlag names."""

    strongly_typed: bool
    flags: tuple[str, ...] = ()
    reason: str = ""


def choose_build_path(version: str, has_precision_flags: bool, has_strongly_typed: bool,
                      precision: str) -> BuildPath:
    """Pick the build path from what the installed TensorRT offers (a feature test, not a guess).

    ``has_precision_flags`` is ``hasattr(trt.BuilderFlag, "FP16")`` (False on 11.x);
    ``has_strongly_typed`` is ``hasattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED")``.
    """
    if precision not in PRECISIONS:
        raise EdgevtError(f"unknown precision {precision!r}; choose fp32, fp16 or int8")
    v = parse_version(version)
    if v[0] < 10:
        raise EdgevtError(f"TensorRT {version} is too old: edgevt builds with TensorRT 10.x or 11.x ({TRT_HINT})")
    if not has_precision_flags:
        if not has_strongly_typed:
            raise EdgevtError(f"TensorRT {version} has neither precision flags nor strongly typed networks")
        return BuildPath(True, (), "no precision builder flags (TensorRT 11.x): strongly typed, precision from the graph")
    if has_strongly_typed and v >= (10, 12, 0):
        return BuildPath(True, (), f"TensorRT {v[0]}.{v[1]} >= 10.12: strongly typed, precision from the graph")
    flags = {"fp32": (), "fp16": ("FP16",), "int8": ("INT8", "FP16")}[precision]
    return BuildPath(False, flags, f"TensorRT {v[0]}.{v[1]} < 10.12: weakly typed"
                     + (f" with {'+'.join(flags)} so the graph's precision is honoured" if flags else ""))


def network_flags(trt, strongly_typed: bool) -> int:
    """Network creation flags; the enum's value differs between 10.x and 11.x, so never a literal."""
    return (1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)) if strongly_typed else 0


def profile_shapes(inputs: list[tuple[str, tuple]], batch: tuple[int, int, int]) -> dict[str, dict]:
    """{input: {"min": [...], "opt": [...], "max": [...]}} for network inputs given as (name, dims)
    with -1 (or None/str) for dynamic axes; only the first axis (the batch) may be dynamic."""
    out = {}
    for name, dims in inputs:
        shapes: dict = {"min": [], "opt": [], "max": []}
        for i, d in enumerate(dims):
            dynamic = not isinstance(d, int) or d < 0
            if dynamic and i != 0:
                raise EdgevtError(f"input {name!r} has a dynamic axis {i} besides the batch; re-export it with a "
                                  "fixed size (TensorRT needs one optimisation profile range per axis)")
            for k, b in zip(("min", "opt", "max"), batch):
                shapes[k].append(b if dynamic else d)
        out[name] = shapes
    return out


def dla_decision(dla_core: int | None, family: str | None, batch: tuple[int, int, int],
                 precision: str = "fp16") -> str | None:
    """None when no DLA was asked for; raises when the request cannot work; returns a note otherwise."""
    if dla_core is None:
        return None
    if dla_core < 0:
        raise EdgevtError(f"--dla-core {dla_core}: must be >= 0")
    if family == "3d":
        raise EdgevtError("--dla-core: DLA runs 2D layers only and this is a 3D model (Conv3d/pooling over "
                          "time would all fall back to the GPU); build without --dla-core")
    if not batch[0] == batch[1] == batch[2]:
        raise EdgevtError(f"--dla-core needs a fixed batch (DLA has no dynamic shapes): use --batch "
                          f"{batch[1]},{batch[1]},{batch[1]}")
    note = f"DLA core {dla_core} with GPU fallback for layers DLA cannot run"
    if precision == "fp32":
        note += " (DLA runs FP16/INT8 only: an fp32 graph runs almost entirely on the GPU; build fp16 or int8)"
    return note


def timing_cache_file(trt_version: str, compute_capability: str) -> str:
    """Timing caches are only valid for one TensorRT version and GPU architecture: name them so."""
    return f"timing-trt{trt_version}-sm{compute_capability.replace('.', '')}.cache"


def rebuild_hint(engine_path: str | Path, sidecar: EngineSidecar) -> str:
    bundle = Path(engine_path).parent
    return (f"rebuild it on this machine: `edgevt build {bundle} --precision {sidecar.precision} "
            f"--role {sidecar.role}`")


def check_engine_compatible(engine_path: str | Path, sidecar: EngineSidecar, trt_version: str, gpu: str,
                            compute_capability: str) -> None:
    """Refuse an engine built by another TensorRT version or for another GPU (it would fail to
    deserialize, or run with tactics tuned for other hardware)."""
    if sidecar.tensorrt != trt_version:
        raise EdgevtError(f"{engine_path}: built with TensorRT {sidecar.tensorrt}, this machine has "
                          f"{trt_version}; engines only load on the version that built them -- "
                          + rebuild_hint(engine_path, sidecar))
    if sidecar.compute_capability != compute_capability or sidecar.gpu != gpu:
        raise EdgevtError(f"{engine_path}: built for {sidecar.gpu} (sm {sidecar.compute_capability}), this is "
                          f"{gpu} (sm {compute_capability}) -- " + rebuild_hint(engine_path, sidecar))


def check_sidecar_matches(engine_path: str | Path, data: bytes, sidecar: EngineSidecar) -> None:
    """The sidecar describes this very engine (not one left over from an earlier build)."""
    import hashlib

    if sidecar.engine_sha256 and hashlib.sha256(data).hexdigest() != sidecar.engine_sha256:
        raise EdgevtError(f"{engine_path}: the engine does not match its sidecar (altered or from another build) -- "
                          + rebuild_hint(engine_path, sidecar))


# -- the machine ------------------------------------------------------------------------------------------
def import_tensorrt():
    try:
        import tensorrt as trt
    except ImportError:
        raise EdgevtError(f"tensorrt not installed: {TRT_HINT} (on Jetson it comes with JetPack)") from None
    return trt


def gpu_identity(device_id: int = 0) -> tuple[str, str]:
    """(GPU name, compute capability "major.minor") from torch, else from the CUDA driver."""
    try:
        import torch

        if torch.cuda.is_available():
            major, minor = torch.cuda.get_device_capability(device_id)
            return torch.cuda.get_device_name(device_id), f"{major}.{minor}"
    except Exception:
        pass
    import ctypes

    try:
        cuda = ctypes.CDLL("libcuda.so.1")
    except OSError:
        raise EdgevtError("no CUDA driver found (libcuda); TensorRT needs an NVIDIA GPU") from None
    dev, name, major, minor = ctypes.c_int(), ctypes.create_string_buffer(256), ctypes.c_int(), ctypes.c_int()
    if cuda.cuInit(0) != 0 or cuda.cuDeviceGet(ctypes.byref(dev), device_id) != 0:
        raise EdgevtError(f"no CUDA device {device_id}")
    cuda.cuDeviceGetName(name, 256, dev)
    cuda.cuDeviceGetAttribute(ctypes.byref(major), 75, dev)  # CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR
    cuda.cuDeviceGetAttribute(ctypes.byref(minor), 76, dev)  # ..._MINOR
    return name.value.decode(), f"{major.value}.{minor.value}"


def _parser_errors(parser) -> str:
    """Every parser error, node by node: name, operator, reason."""
    lines = []
    for i in range(parser.num_errors):
        e = parser.get_error(i)
        node = e.node_name() if hasattr(e, "node_name") else ""
        op = e.node_operator() if hasattr(e, "node_operator") else ""
        where = f"node {e.node()}" + (f" {node!r}" if node else "") + (f" ({op})" if op else "")
        lines.append(f"  {where}: {e.desc()} [{e.code()}]")
    return "\n".join(lines)


@dataclass
class BuildResult:
    key: str
    engine: Path
    sidecar: EngineSidecar
    size_bytes: int


def build_engine(bundle, key: str, *, batch=(1, 1, 8), workspace_mib: int | None = 1024, dla_core: int | None = None,
                 opt_level: int | None = None, verbose: bool = False, device_id: int = 0, log=print) -> BuildResult:
    """Build one engine from the bundle's ONNX artifact ``key`` (e.g. "model.int8"); register it as
    ``engine.<key>`` in the bundle (the caller saves the manifest)."""
    import edgevt
    from edgevt.backends.base import parse_batch
    from edgevt.fileio import file_sha256

    trt = import_tensorrt()
    art = bundle.artifact(key)
    role, precision = key.split(".", 1)
    onnx_path = bundle.path / art["file"]
    batch = parse_batch(batch)
    family = None
    arch = bundle.manifest.get("source", {}).get("arch")
    if arch:
        try:
            from edgevt.models.zoo import model_info

            family = model_info(arch).family
        except EdgevtError:
            family = None
    dla_note = dla_decision(dla_core, family, batch, precision)
    gpu, cc = gpu_identity(device_id)
    path = choose_build_path(trt.__version__, hasattr(trt.BuilderFlag, "FP16"),
                             hasattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED"), precision)
    log(f"{key}: TensorRT {trt.__version__} on {gpu} (sm {cc}); {path.reason}")

    logger = trt.Logger(trt.Logger.VERBOSE if verbose else trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(network_flags(trt, path.strongly_typed))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        raise EdgevtError(f"{onnx_path}: TensorRT's ONNX parser failed:\n{_parser_errors(parser)}")

    config = builder.create_builder_config()
    if workspace_mib:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_mib) << 20)
    if opt_level is not None:
        if not 0 <= opt_level <= 5:
            raise EdgevtError(f"--opt-level {opt_level}: TensorRT's builder optimisation level is 0..5")
        config.builder_optimization_level = int(opt_level)
    for flag in path.flags:
        config.set_flag(getattr(trt.BuilderFlag, flag))

    inputs = [(network.get_input(i).name, tuple(network.get_input(i).shape)) for i in range(network.num_inputs)]
    profile_dims = profile_shapes(inputs, batch)
    profile = builder.create_optimization_profile()
    for name, s in profile_dims.items():
        profile.set_shape(name, s["min"], s["opt"], s["max"])
    config.add_optimization_profile(profile)

    if dla_note:
        if builder.num_DLA_cores == 0:
            raise EdgevtError("--dla-core: this device has no DLA (DLA exists on Jetson AGX/NX Orin and Xavier)")
        if dla_core >= builder.num_DLA_cores:
            raise EdgevtError(f"--dla-core {dla_core}: this device has {builder.num_DLA_cores} DLA core(s)")
        config.default_device_type = trt.DeviceType.DLA
        config.DLA_core = int(dla_core)
        if hasattr(trt.BuilderFlag, "GPU_FALLBACK"):
            config.set_flag(trt.BuilderFlag.GPU_FALLBACK)
        log(f"{key}: {dla_note}")

    cache_dir = bundle.path / CACHE_DIR
    cache_dir.mkdir(exist_ok=True)
    cache_path = cache_dir / timing_cache_file(trt.__version__, cc)
    cache = config.create_timing_cache(cache_path.read_bytes() if cache_path.exists() else b"")
    config.set_timing_cache(cache, False)  # False: refuse a cache from another device instead of ignoring it

    t0 = time.perf_counter()
    plan = builder.build_serialized_network(network, config)
    seconds = time.perf_counter() - t0
    if plan is None:
        raise EdgevtError(f"{key}: TensorRT could not build an engine from {onnx_path.name} "
                          "(see the TensorRT messages above; try --verbose)")
    data = bytes(plan)

    engine_path = bundle.path / engine_file(role, precision)
    sidecar = EngineSidecar(
        tensorrt=trt.__version__, gpu=gpu, compute_capability=cc, precision=precision, role=role,
        profile=profile_dims, source_onnx={"key": key, "file": art["file"], "sha256": file_sha256(onnx_path)},
        spec=bundle.manifest["spec"], strongly_typed=path.strongly_typed, flags=list(path.flags),
        workspace_mib=workspace_mib, opt_level=opt_level, dla=dla_note, build_seconds=round(seconds, 2),
        built_at=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        edgevt=edgevt.__version__, state=dict(art.get("state", {})))
    import hashlib

    sidecar.engine_sha256 = hashlib.sha256(data).hexdigest()
    # Sidecar first, engine last: an engine file only ever appears next to its sidecar.
    atomic_write_bytes(sidecar_path(engine_path), json.dumps(sidecar.to_dict(), indent=2).encode())
    atomic_write_bytes(engine_path, data)
    atomic_write_bytes(cache_path, bytes(config.get_timing_cache().serialize()))
    bundle.add_artifact(f"engine.{key}", engine_path.name, kind="engine", role=role, precision=precision,
                        sidecar=sidecar_path(engine_path).name, tensorrt=trt.__version__, gpu=gpu,
                        compute_capability=cc, profile=profile_dims, source=key, state=sidecar.state)
    return BuildResult(f"engine.{key}", engine_path, sidecar, len(data))


def build_bundle(bundle_path: str | Path, *, precisions: list[str] | None = None, role: str = "model",
                 batch=(1, 1, 8), workspace_mib: int | None = 1024, dla_core: int | None = None,
                 opt_level: int | None = None, verbose: bool = False, log=print) -> list[BuildResult]:
    """Build engines for ``role`` at each precision the bundle has (or the ones asked for); saves the
    manifest after each engine so a later failure keeps the engines already built."""
    from edgevt.bundle import Bundle

    if role not in ROLES:
        raise EdgevtError(f"--role {role!r}: choose from {', '.join(ROLES)}")
    import_tensorrt()  # fail fast with the install hint before touching the bundle
    bundle = Bundle.load(bundle_path)
    have = [p for p in PRECISIONS if f"{role}.{p}" in bundle.artifacts]
    if precisions is None:
        precisions = have
    missing = [p for p in precisions if p not in have]
    if missing or not precisions:
        raise EdgevtError(f"{bundle.path}: no {role} ONNX graph for {', '.join(missing) or 'any precision'} "
                          f"(it has: {', '.join(have) or 'none'}); export it first with `edgevt export`")
    results = []
    for p in precisions:
        results.append(build_engine(bundle, f"{role}.{p}", batch=batch, workspace_mib=workspace_mib,
                                    dla_core=dla_core, opt_level=opt_level, verbose=verbose, log=log))
        bundle.save()
    return results
