"""Peak FLOP/s from fake /proc/cpuinfo and lscpu text; FLOPs from torch's counter."""
import pytest

from edgevt.bench.efficiency import (
    achieved_gflops,
    clock_mhz,
    cores_used,
    count_flops,
    cpu_flags,
    fma_units,
    peak_from_text,
    physical_cores,
    simd_lanes,
)


def cpuinfo(flags: str, mhz=(2600.0, 2600.0), cores_per_socket: int = 2, sockets: int = 1, threads: int = 1) -> str:
    blocks, n = [], 0
    for s in range(sockets):
        for _ in range(cores_per_socket * threads):
            blocks.append(f"processor\t: {n}\nvendor_id\t: GenuineIntel\nmodel name\t: Fake CPU\n"
                          f"cpu MHz\t\t: {mhz[n % len(mhz)]:.3f}\nphysical id\t: {s}\n"
                          f"siblings\t: {cores_per_socket * threads}\ncpu cores\t: {cores_per_socket}\n"
                          f"flags\t\t: fpu sse sse2 {flags}\n")
            n += 1
    return "\n".join(blocks)


def test_simd_width_from_flags():
    assert simd_lanes(cpu_flags(cpuinfo("avx avx2 fma avx512f avx512bw"))) == (16, "avx512f")
    assert simd_lanes(cpu_flags(cpuinfo("avx avx2 fma"))) == (8, "avx2")
    assert simd_lanes(cpu_flags(cpuinfo("avx")))[0] == 4
    assert simd_lanes(cpu_flags("Features\t: fp asimd evtstrm aes"))[0] == 4  # ARM
    assert fma_units({"avx2"})[0] == 2 and "assumed" in fma_units({"avx2"})[1]
    assert fma_units(set())[0] == 1


def test_peak_avx512_two_cores():
    p = peak_from_text(cpuinfo("avx2 avx512f"))
    # 2 cores x 16 lanes x 2 (FMA) x 2 units x 2.6 GHz
    assert p.gflops == pytest.approx(2 * 16 * 2 * 2 * 2.6) and p.per_core_gflops == pytest.approx(166.4)
    assert p.mhz_source == "/proc/cpuinfo cpu MHz"
    assert "2 cores x 16 fp32 lanes (avx512f)" in p.formula()
    assert any("FMA units" in a for a in p.assumptions)
    assert p.for_cores(1).gflops == pytest.approx(166.4)


def test_peak_uses_lscpu_max_mhz_and_physical_cores():
    lscpu = "Model name:  Fake CPU\nCPU max MHz:  3500.0000\nCPU min MHz:  800.0000\n"
    # 2 sockets x 4 cores, hyper-threaded: 16 processors but 8 cores with FMA units
    text = cpuinfo("avx avx2 fma", mhz=(1200.0, 3100.0), cores_per_socket=4, sockets=2, threads=2)
    assert physical_cores(text) == 8
    p = peak_from_text(text, lscpu)
    assert p.mhz == 3500.0 and p.mhz_source == "lscpu CPU max MHz"
    assert p.gflops == pytest.approx(8 * 8 * 2 * 2 * 3.5)
    # without lscpu: the highest cpu MHz line
    assert clock_mhz(text) == (3100.0, "/proc/cpuinfo cpu MHz")
    assert peak_from_text(text, "CPU max MHz: 0\n").mhz == 3100.0
    assert peak_from_text(text, cores=3).cores == 3


def test_peak_without_a_clock_or_flags():
    assert peak_from_text("processor : 0\nflags : avx2\n") is None
    p = peak_from_text("processor : 0\ncpu MHz : 1000\n")
    assert p.lanes == 4 and p.fma_units == 1 and p.cores == 1 and p.gflops == pytest.approx(8.0)
    assert any("no CPU flags" in a for a in p.assumptions)


def test_achieved_and_cores_used():
    assert achieved_gflops(int(1e9), 4, 20.0) == pytest.approx(200.0)
    assert achieved_gflops(None, 1, 5.0) is None and achieved_gflops(10, 1, 0.0) is None
    assert cores_used(1, 2) == 1 and cores_used(None, 2) == 2 and cores_used(8, 2) == 2


def test_count_flops_of_a_linear_layer():
    import torch

    lin = torch.nn.Linear(10, 5)
    assert count_flops(lin, torch.zeros(3, 10)) == 2 * 3 * 10 * 5
