"""Efficiency: FLOPs per clip, achieved GFLOP/s and its share of the CPU's peak.

FLOPs come from torch's own counter (``torch.utils.flop_counter.FlopCounterMode``) on the PyTorch
model, once per model, for one clip through the same module the torch backend runs (preprocessing +
model). It counts matmul/convolution FLOPs (2 per multiply-add); elementwise work (normalisation,
activations, temporal shifts) is not counted, so achieved figures are a slight under-count.

The peak is a paper figure from the CPU flags, not a measurement:
cores x fp32 SIMD lanes (avx512f: 16, avx2: 8, else 4) x 2 (a fused multiply-add is 2 FLOPs)
x FMA units per core (assumed 2 on avx512f/avx2 cores, as on server Xeon/EPYC; 1 otherwise)
x clock (lscpu's "CPU max MHz" when it says, else the highest "cpu MHz" in /proc/cpuinfo).
Every function here takes text so tests can feed fake /proc/cpuinfo and lscpu output.
"""
from __future__ import annotations

import os
import re
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path

# Backends whose rows run on the CPU of this machine (a CPU peak means something for them).
CPU_BACKENDS = ("ort-cpu", "torch")


@dataclass
class CpuPeak:
    """Peak fp32 FLOP/s of some cores of this CPU, with how it was derived."""

    cores: int
    isa: str  # avx512f | avx2 | sse (128-bit)
    lanes: int  # fp32 lanes per SIMD register
    fma_units: int
    mhz: float
    mhz_source: str
    assumptions: list[str] = field(default_factory=list)

    @property
    def per_core_gflops(self) -> float:
        return self.lanes * 2 * self.fma_units * self.mhz / 1e3

    @property
    def gflops(self) -> float:
        return self.cores * self.per_core_gflops

    def for_cores(self, cores: int) -> CpuPeak:
        return CpuPeak(cores, self.isa, self.lanes, self.fma_units, self.mhz, self.mhz_source, list(self.assumptions))

    def formula(self) -> str:
        return (f"{self.cores} cores x {self.lanes} fp32 lanes ({self.isa}) x 2 (FMA) x {self.fma_units} FMA units "
                f"x {self.mhz / 1e3:.2f} GHz ({self.mhz_source}) = {self.gflops:.1f} GFLOP/s")

    def to_dict(self) -> dict:
        return asdict(self) | {"gflops": self.gflops, "per_core_gflops": self.per_core_gflops,
                               "formula": self.formula()}


def cpu_flags(cpuinfo: str) -> set[str]:
    """The feature flags of the first processor in /proc/cpuinfo text (x86 'flags', ARM 'Features')."""
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return set(value.split())
    return set()


def simd_lanes(flags: set[str]) -> tuple[int, str]:
    """fp32 lanes of the widest vector FMA the flags promise: avx512f 16, avx2 8, else 4 (SSE/NEON)."""
    if "avx512f" in flags:
        return 16, "avx512f"
    if "avx2" in flags:
        return 8, "avx2"
    return 4, "128-bit (sse/neon)"


def fma_units(flags: set[str]) -> tuple[int, str]:
    """FMA units per core: not in any flag, so assumed; the assumption is returned with the number."""
    if "avx512f" in flags or "avx2" in flags:
        return 2, ("2 FMA units per core assumed (server avx512/avx2 cores: Xeon Skylake-SP and later, EPYC); "
                   "some client and low-end Xeon parts have 1, which halves the peak")
    return 1, "1 FMA unit per core assumed (no avx2/avx512 flag)"


def clock_mhz(cpuinfo: str, lscpu: str | None = None) -> tuple[float | None, str]:
    """(MHz, where it came from): lscpu's 'CPU max MHz' (the turbo ceiling) when present, else the
    highest 'cpu MHz' line of /proc/cpuinfo (on VMs this is usually the nominal clock)."""
    if lscpu:
        m = re.search(r"^\s*CPU max MHz:\s*([0-9.]+)", lscpu, re.MULTILINE)
        if m and float(m.group(1)) > 0:
            return float(m.group(1)), "lscpu CPU max MHz"
    mhz = [float(v) for v in re.findall(r"^cpu MHz\s*:\s*([0-9.]+)", cpuinfo, re.MULTILINE)]
    if mhz and max(mhz) > 0:
        return max(mhz), "/proc/cpuinfo cpu MHz"
    return None, "no clock in /proc/cpuinfo or lscpu"


def physical_cores(cpuinfo: str) -> int | None:
    """Physical cores from /proc/cpuinfo ('physical id' x 'cpu cores'); None when it does not say."""
    sockets: dict[str, int] = {}
    phys = None
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        key, value = key.strip(), value.strip()
        if key == "physical id":
            phys = value
        elif key == "cpu cores" and phys is not None and value.isdigit():
            sockets[phys] = int(value)
    return sum(sockets.values()) or None


def peak_from_text(cpuinfo: str, lscpu: str | None = None, cores: int | None = None) -> CpuPeak | None:
    """The peak of ``cores`` cores (default: the physical cores cpuinfo lists, else the processors)."""
    flags = cpu_flags(cpuinfo)
    mhz, source = clock_mhz(cpuinfo, lscpu)
    if mhz is None:
        return None
    lanes, isa = simd_lanes(flags)
    units, why = fma_units(flags)
    assumptions = [why]
    if not flags:
        assumptions.append("no CPU flags found: 128-bit SIMD assumed")
    if cores is None:
        cores = physical_cores(cpuinfo) or max(1, len(re.findall(r"^processor\s*:", cpuinfo, re.MULTILINE)))
    if source.startswith("/proc"):
        assumptions.append("clock: the 'cpu MHz' the kernel reports (no turbo ceiling known); "
                           "a core that boosts higher has a higher peak")
    assumptions.append("AVX-512 code may run at a lower clock than the one used here")
    return CpuPeak(int(cores), isa, lanes, units, mhz, source, assumptions)


def machine_peak(cores: int | None = None) -> CpuPeak | None:
    """The peak of this machine (reads /proc/cpuinfo and, when installed, lscpu). None off Linux."""
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
    except OSError:
        return None
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10, check=False,
                               env={**os.environ, "LC_ALL": "C"}).stdout
    except (OSError, subprocess.SubprocessError):
        lscpu = None
    return peak_from_text(cpuinfo, lscpu, cores)


def cores_used(threads: int | None, available: int) -> int:
    """Cores a row can use: its thread count, at most the cores available (all of them by default)."""
    return max(1, min(threads or available, available))


def count_flops(module, example) -> int:
    """FLOPs of one forward pass of ``module`` on ``example`` (a tensor or a tuple), torch's counter."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    args = example if isinstance(example, tuple) else (example,)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        module(*args)
    return int(counter.get_total_flops())


def flops_per_clip(checkpoint: str | Path) -> tuple[int | None, str]:
    """FLOPs for one clip of the checkpoint's model through the torch backend's module (uint8 frames
    [1, T, H, W, 3] -> logits). Returns (flops, how) or (None, why not)."""
    import torch

    from edgevt.models.checkpoint import model_from_checkpoint
    from edgevt.models.preprocess import FramesClassifier

    try:
        model, spec = model_from_checkpoint(checkpoint)
    except Exception as e:  # a checkpoint this edgevt cannot load: no efficiency column, not a crash
        return None, f"cannot load {checkpoint}: {type(e).__name__}: {e}"
    x = torch.randint(1, 256, (1, spec.num_frames, *spec.size, 3), dtype=torch.uint8)
    flops = count_flops(FramesClassifier(model, spec).eval(), x)
    return flops, f"torch.utils.flop_counter on {Path(checkpoint).name}, 1 clip {spec.num_frames}x{spec.size[0]}x{spec.size[1]}"


def achieved_gflops(flops_per_clip: int | None, batch: int, latency_ms: float | None) -> float | None:
    """GFLOP/s of a batch of ``batch`` clips taking ``latency_ms``."""
    if not flops_per_clip or not latency_ms or latency_ms <= 0:
        return None
    return flops_per_clip * batch / (latency_ms / 1e3) / 1e9
