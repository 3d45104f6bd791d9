"""The artifact contract: what a bundle is, what its files are called, and how every verb opens one.

A bundle is a folder with ``edgevt.json`` (the manifest) and its artifacts. Manifest layout (JSON)::

    {"format": "edgevt-bundle", "format_version": 1,
     "spec": {...ClipSpec...}, "source": {"checkpoint": ..., "sha256": ..., "arch": ...},
     "calibration": {"manifest_sha256": ..., "domain": ..., "clips": ...},   (INT8 bundles)
     "tools": {...versions...},
     "artifacts": {"model.fp32": {"file": "model.onnx", "sha256": ..., "kind": "onnx",
                                  "form": "window", "role": "model", "precision": "fp32",
                                  "inputs": [...], "outputs": [...], "parity": {...}, ...}, ...},
     "checks": {...}, "eval": {...}}

This module holds the one list of the contract's names: ``PRECISIONS``, the INT8 flavours
(``INT8_FLAVOURS``, their stored names ``INT8_STORED``, which backends each is for ``FLAVOUR_BACKENDS``,
the names a verb accepts ``PRECISION_NAMES``), ``ROLES``, ``FORMS`` and the roles each form needs
(``FORM_ROLES``), the artifact keys (``artifact_key``: ``<role>.<precision>``,
``engine.<role>.<precision>`` for TensorRT engines) and file names (``onnx_file``, ``engine_file``),
and the engine sidecar format (``EngineSidecar``, ``read_sidecar``).

``open_artifact(path) -> Artifact`` is how every verb (eval, run, bench, build, the backends) finds
out what a path is -- a bundle, a checkpoint, an ONNX file or an engine -- and its ClipSpec.

Every file is hashed; ``Bundle.load`` verifies the hashes so that a missing or altered file is caught
before it is run. Writes are atomic: a new bundle is assembled in a unique ``.<dir>.*.partial`` folder
beside it and renamed into place; an existing destination is replaced only if it is itself a bundle
(or an empty folder); the manifest of an existing bundle is replaced through a temporary file.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from edgevt.errors import EdgevtError
from edgevt.fileio import atomic_write_text, check_replaceable, file_sha256, replace_dir, staging_dir
from edgevt.spec import STREAMING_FORMS, ClipSpec

MANIFEST = "edgevt.json"
FORMAT = "edgevt-bundle"
FORMAT_VERSION = 1

# -- the contract's names (defined here only) ------------------------------------------------------
PRECISIONS = ("fp32", "fp16", "int8")
# INT8 comes in two flavours, one per kind of device (edgevt.export.precision says what each is):
# ``tensorrt`` (symmetric int8 Q/DQ, FP16 scales: TensorRT and onnxruntime's TensorRT/CUDA providers)
# and ``cpu`` (what onnxruntime runs fastest on a CPU). A bundle may hold both. The TensorRT flavour's
# graphs keep the historic name (``model.int8``, ``model.int8.onnx``: engines, DeepStream and Triton
# build from it); the CPU flavour's are ``model.int8-cpu`` / ``model.int8-cpu.onnx``.
INT8_FLAVOURS = ("tensorrt", "cpu")
EXPORT_FLAVOURS = ("auto", *INT8_FLAVOURS)  # `edgevt export --flavour`; auto: both (the target is unknown)
INT8_STORED = {"tensorrt": "int8", "cpu": "int8-cpu"}  # flavour -> the precision its artifacts are keyed by
FLAVOUR_BACKENDS = {"cpu": ("ort-cpu",), "tensorrt": ("tensorrt", "ort-trt", "ort-cuda")}  # which device runs which
STORED_PRECISIONS = (*PRECISIONS, *(v for v in INT8_STORED.values() if v not in PRECISIONS))


def int8_name(flavour: str) -> str:
    """The explicit precision name of an INT8 flavour: ``int8-tensorrt``, ``int8-cpu``."""
    return f"int8-{check_flavour(flavour)}"


# What a user may ask for: fp32, fp16, int8 (the INT8 graph that fits the backend), or an explicit
# flavour (int8-tensorrt, int8-cpu) to run the other one.
PRECISION_NAMES = (*PRECISIONS, *(f"int8-{f}" for f in INT8_FLAVOURS))


def check_flavour(flavour: str, what: str = "--flavour", choices: tuple = INT8_FLAVOURS) -> str:
    if flavour not in choices:
        raise EdgevtError(f"{what} {flavour!r}: choose from {', '.join(choices)}")
    return flavour


def flavour_for_backend(backend: str | None) -> str:
    """The INT8 flavour a backend should run: ``cpu`` on onnxruntime CPU (and when unknown: a bundle's
    default backend is ort-cpu), ``tensorrt`` on every GPU backend."""
    if backend is None or backend in FLAVOUR_BACKENDS["cpu"]:
        return "cpu"
    return "tensorrt"


def base_precision(name: str) -> str:
    """fp32 | fp16 | int8 of any precision name (``int8-cpu`` -> ``int8``)."""
    return "int8" if name.startswith("int8") else check_precision(name)


def stored_precision(name: str) -> str:
    """The precision an artifact key or file name uses: ``int8-tensorrt`` -> ``int8``; stored names
    (fp32, fp16, int8, int8-cpu) as they are."""
    if name in STORED_PRECISIONS:
        return name
    if name.startswith("int8-"):
        return INT8_STORED[check_flavour(name[5:], "INT8 flavour")]
    return check_precision(name)
ROLES = ("model", "encoder", "head", "stateful")
FORMS = STREAMING_FORMS  # window | incremental | stateful (the ClipSpec's ``streaming`` values)
FORM_ROLES = {"window": ("model",), "incremental": ("encoder", "head"), "stateful": ("stateful", "head")}
CHECKPOINT_SUFFIXES = (".pt", ".pth", ".ckpt")
ONNX_SUFFIXES = (".onnx",)
ENGINE_SUFFIXES = (".engine", ".plan", ".trt")
SIDECAR_FORMAT = "edgevt-engine"


def check_precision(precision: str, what: str = "precision") -> str:
    if precision not in PRECISION_NAMES:
        raise EdgevtError(f"unknown {what} {precision!r}; choose from {', '.join(PRECISION_NAMES)}")
    return precision


def check_role(role: str, what: str = "role") -> str:
    if role not in ROLES:
        raise EdgevtError(f"unknown {what} {role!r}; choose from {', '.join(ROLES)}")
    return role


def check_form(form: str, what: str = "--form") -> str:
    if form not in FORMS:
        raise EdgevtError(f"{what} {form!r}: choose from {', '.join(FORMS)}")
    return form


def artifact_key(role: str, precision: str, engine: bool = False) -> str:
    """``model.fp32``, ``encoder.int8``, ``model.int8-cpu``; ``engine.model.fp16`` for a TensorRT engine.
    ``precision`` is a stored name or an explicit flavour (``int8-tensorrt`` -> ``model.int8``)."""
    key = f"{check_role(role)}.{stored_precision(precision)}"
    return f"engine.{key}" if engine else key


def check_key(kind: str, form: str = "window", precision: str | None = None) -> str:
    """Key of an export check in the manifest's ``checks``, one schema for every form:
    ``parity.fp32`` / ``int8`` / ``gate`` / ``onnx`` for the window form, ``parity.stateful.fp32`` /
    ``int8.stateful`` ... for a stream form; the CPU INT8 flavour's as ``int8-cpu``, ``gate.int8-cpu``,
    ``parity.int8-cpu`` (``gate.stateful.int8-cpu`` ...)."""
    parts = [kind] + ([] if form == "window" else [check_form(form, "form")]) + ([precision] if precision else [])
    return ".".join(parts)


def onnx_file(role: str, precision: str) -> str:
    """The ONNX file of an artifact: ``model.onnx``, ``model.fp16.onnx``, ``head.int8.onnx``,
    ``model.int8-cpu.onnx``..."""
    stored = stored_precision(precision)
    return f"{check_role(role)}{'' if stored == 'fp32' else '.' + stored}.onnx"


def engine_file(role: str, precision: str) -> str:
    return f"{check_role(role)}.{stored_precision(precision)}.engine"


def sidecar_path(engine_path: str | Path) -> Path:
    p = Path(engine_path)
    return p.with_name(p.name + ".json")


@dataclass
class EngineSidecar:
    """The JSON beside a TensorRT engine (engines carry no metadata of their own)."""

    tensorrt: str
    gpu: str
    compute_capability: str  # "8.7"
    precision: str
    role: str
    profile: dict  # {input: {min, opt, max}}
    source_onnx: dict  # {"key", "file", "sha256"}
    spec: dict
    strongly_typed: bool
    flags: list = field(default_factory=list)
    workspace_mib: int | None = None
    opt_level: int | None = None
    dla: str | None = None
    engine_sha256: str = ""
    build_seconds: float = 0.0
    built_at: str = ""
    edgevt: str = ""
    state: dict = field(default_factory=dict)
    format: str = SIDECAR_FORMAT

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "EngineSidecar":
        if d.get("format") != SIDECAR_FORMAT:
            raise EdgevtError("not an edgevt engine sidecar")
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in d.items() if k in known})


def read_sidecar(engine_path: str | Path) -> EngineSidecar:
    sc = sidecar_path(engine_path)
    if not sc.exists():
        raise EdgevtError(f"{engine_path}: no sidecar {sc.name}, so its TensorRT version and GPU are unknown; "
                          "rebuild it with `edgevt build BUNDLE`")
    try:
        return EngineSidecar.from_dict(json.loads(sc.read_text()))
    except (json.JSONDecodeError, TypeError, EdgevtError) as e:
        raise EdgevtError(f"{sc}: unreadable engine sidecar ({e}); rebuild with `edgevt build BUNDLE`") from None


def is_bundle(path: str | Path) -> bool:
    """True if ``path`` is a folder holding an edgevt bundle manifest (the only kind edgevt replaces)."""
    mf = Path(path) / MANIFEST
    try:
        return json.loads(mf.read_text()).get("format") == FORMAT
    except (OSError, ValueError, AttributeError):
        return False


class Bundle:
    def __init__(self, path: Path, manifest: dict):
        self.path = Path(path)
        self.manifest = manifest

    # -- creation -------------------------------------------------------------------------------
    @classmethod
    def staging(cls, path: str | Path, spec: ClipSpec, source: dict | None = None) -> "Bundle":
        """Start a new bundle in a staging folder beside ``path``; ``commit()`` moves it into place.

        Refuses (before any work) a ``path`` that exists and is not a bundle or an empty folder."""
        final = Path(path)
        check_replaceable(final, is_bundle, "an edgevt bundle")
        stage = staging_dir(final)
        manifest = {"format": FORMAT, "format_version": FORMAT_VERSION, "spec": spec.to_dict(),
                    "source": dict(source or {}), "tools": {}, "artifacts": {}, "checks": {}, "eval": {}}
        b = cls(stage, manifest)
        b._final = final
        return b

    def commit(self) -> "Bundle":
        """Write the manifest and atomically replace the destination folder."""
        final = getattr(self, "_final", None)
        self.save()
        if final is None:
            return self
        replace_dir(self.path, final, is_bundle, "an edgevt bundle")
        self.path = final
        self._final = None
        return self

    # -- loading --------------------------------------------------------------------------------
    @classmethod
    def load(cls, path: str | Path, verify: bool = True) -> "Bundle":
        p = Path(path)
        if p.is_file() and p.name == MANIFEST:
            p = p.parent
        mf = p / MANIFEST
        if not mf.exists():
            raise EdgevtError(f"{p}: not an edgevt bundle (no {MANIFEST}); create one with `edgevt export`")
        try:
            manifest = json.loads(mf.read_text())
        except json.JSONDecodeError as e:
            raise EdgevtError(f"{mf}: corrupt manifest ({e})") from None
        if manifest.get("format") != FORMAT:
            raise EdgevtError(f"{mf}: not an edgevt bundle manifest")
        b = cls(p, manifest)
        if verify:
            b.verify()
        return b

    def verify(self, keys: list[str] | None = None) -> None:
        for key in keys or list(self.artifacts):
            a = self.artifacts[key]
            f = self.path / a["file"]
            if not f.exists():
                raise EdgevtError(f"{self.path}: artifact {key} is missing its file {a['file']}; re-run the export")
            if file_sha256(f) != a["sha256"]:
                raise EdgevtError(f"{f}: hash does not match the manifest (file altered or corrupt); "
                                  "re-run the export")

    # -- access ---------------------------------------------------------------------------------
    @property
    def spec(self) -> ClipSpec:
        return ClipSpec.from_dict(self.manifest["spec"])

    @property
    def artifacts(self) -> dict:
        return self.manifest["artifacts"]

    def artifact(self, key: str) -> dict:
        if key not in self.artifacts:
            have = ", ".join(sorted(self.artifacts)) or "none"
            raise EdgevtError(f"{self.path}: bundle has no artifact {key!r} (it has: {have})")
        return self.artifacts[key]

    def artifact_path(self, key: str) -> Path:
        return self.path / self.artifact(key)["file"]

    def add_artifact(self, key: str, file: str, **meta) -> dict:
        """Record a file already written inside the bundle folder (hash computed here)."""
        f = self.path / file
        if not f.exists():
            raise EdgevtError(f"{f}: cannot add a missing artifact")
        entry = {"file": file, "sha256": file_sha256(f), **meta}
        self.artifacts[key] = entry
        return entry

    def save(self) -> None:
        atomic_write_text(self.path / MANIFEST, json.dumps(self.manifest, indent=2, sort_keys=False))

    # -- INT8 flavours ----------------------------------------------------------------------------
    def int8_flavours(self) -> dict:
        """{flavour: stored precision} of the INT8 graphs here. A bundle from before flavours has one
        ``*.int8`` set whose entry says its flavour (``tensorrt`` when it says none)."""
        out: dict = {}
        for key, a in self.artifacts.items():
            role, _, stored = key.partition(".")
            if role in ROLES and stored in INT8_STORED.values():
                out.setdefault(a.get("flavour") or "tensorrt", stored)
        return {f: out[f] for f in INT8_FLAVOURS if f in out}

    def resolve_precision(self, precision: str | None, backend: str | None = None) -> tuple[str, str]:
        """(stored precision for the artifact keys, name to show) of what a verb asked for on a backend.

        fp32/fp16 are themselves. ``int8`` is the flavour that fits ``backend``
        (``flavour_for_backend``); a bundle holding only the other flavour (one from before both were
        exported) runs that one, named as what it is. ``int8-cpu``/``int8-tensorrt`` ask for a flavour
        explicitly and fail with a one-line error when the bundle lacks it."""
        precision = check_precision(precision or "fp32")
        if base_precision(precision) != "int8":
            return precision, precision
        have = self.int8_flavours()
        if not have and precision == "int8":  # no INT8 here at all: the historic key, for the caller's message
            return INT8_STORED["tensorrt"], precision
        if precision == "int8":
            want = flavour_for_backend(backend)
            flavour = want if want in have else next(iter(have))
        else:
            flavour = precision[5:]
            if flavour not in have:
                raise EdgevtError(f"{self.path}: no {precision} graph (INT8 here: "
                                  f"{', '.join(int8_name(f) for f in have) or 'none'}); re-export with "
                                  f"--precision int8 --flavour {flavour} (or auto)")
        return have.get(flavour, INT8_STORED[flavour]), int8_name(flavour)

    # -- forms -----------------------------------------------------------------------------------
    def has_form(self, form: str, precision: str = "fp32") -> bool:
        """Whether every artifact the form needs is here at this (stored) precision."""
        return all(artifact_key(r, precision) in self.artifacts for r in FORM_ROLES[check_form(form)])

    def stream_form(self, precision: str = "fp32") -> str:
        """The form the loop runs by default: the ClipSpec's ``streaming`` when its artifacts exist
        at this (stored) precision, else ``window``."""
        form = self.spec.streaming
        return form if self.has_form(form, precision) else "window"


# -- opening any artifact -------------------------------------------------------------------------
KINDS = ("bundle", "checkpoint", "onnx", "engine")


@dataclass
class Artifact:
    """What a path given to a verb is: ``kind`` (bundle | checkpoint | onnx | engine), the file or
    folder, its ClipSpec, and the Bundle when it is one."""

    kind: str
    path: Path
    spec: ClipSpec
    bundle: Bundle | None = None

    @property
    def default_backend(self) -> str:
        return {"checkpoint": "torch", "onnx": "ort-cpu", "bundle": "ort-cpu", "engine": "tensorrt"}[self.kind]


def artifact_kind(path: str | Path | Bundle) -> str:
    """bundle | checkpoint | onnx | engine, from what is at ``path`` (a one-line error otherwise)."""
    if isinstance(path, Bundle):
        return "bundle"
    p = Path(path)
    if p.is_dir() or p.name == MANIFEST:
        return "bundle"
    if not p.exists():
        raise EdgevtError(f"{p}: no such checkpoint, ONNX file, engine or bundle")
    suffix = p.suffix.lower()
    if suffix in CHECKPOINT_SUFFIXES:
        return "checkpoint"
    if suffix in ONNX_SUFFIXES:
        return "onnx"
    if suffix in ENGINE_SUFFIXES:
        return "engine"
    raise EdgevtError(f"{p}: expected a bundle folder (from `edgevt export`), a checkpoint (.pt), an ONNX file "
                      "or a TensorRT engine")


def load_onnx_graph(path: str | Path):
    """The ONNX graph without its weights (cheap), or a clear error for a file that is not ONNX."""
    import onnx

    try:
        return onnx.load(str(path), load_external_data=False)
    except Exception as e:
        raise EdgevtError(f"{path}: not a readable ONNX model ({type(e).__name__}: {str(e).splitlines()[0][:120]}); "
                          "re-export it with `edgevt export`") from None


def onnx_spec(path: str | Path) -> ClipSpec:
    """The ClipSpec the exporter wrote into an ONNX file's metadata."""
    props = {p.key: p.value for p in load_onnx_graph(path).metadata_props}
    if "edgevt.spec" not in props:
        raise EdgevtError(f"{path}: no ClipSpec in its metadata (not exported by edgevt); "
                          "use the bundle folder or re-export with `edgevt export`")
    return ClipSpec.from_json(props["edgevt.spec"])


def open_artifact(path: str | Path | Bundle, *, verify: bool = False) -> Artifact:
    """What ``path`` is and its ClipSpec: the one place every verb finds that out.

    verify: check every bundle file's hash now (otherwise a backend checks the files it opens)."""
    kind = artifact_kind(path)
    if kind == "bundle":
        b = path if isinstance(path, Bundle) else Bundle.load(path, verify=verify)
        return Artifact("bundle", b.path, b.spec, b)
    p = Path(path)
    if kind == "checkpoint":
        from edgevt.models.checkpoint import load_checkpoint

        return Artifact(kind, p, ClipSpec.from_dict(load_checkpoint(p)["spec"]))
    if kind == "onnx":
        return Artifact(kind, p, onnx_spec(p))
    return Artifact(kind, p, ClipSpec.from_dict(read_sidecar(p).spec))
