"""Start the Triton Inference Server shipped in the ``nvidia-pytriton`` wheel, on loopback.

The wheel holds a real ``tritonserver`` (2.51) with the ``python`` backend and no others, and it runs
CPU-only. Two things it needs that the wheel does not arrange: the python backend's stub for the
running Python next to ``libtriton_python.so`` (a backend directory is assembled with links), and
an environment where the model's ``model.py`` can import edgevt (its site-packages on PYTHONPATH).

    python -m edgevt.deploy.server REPO --model NAME [--grpc-port 8001]

``TritonServer(repo, models=[...]).start()`` is what the tests and benchmarks use; ``stop()`` ends
the process it started (by its pid) and ``kill()`` ends it at once (a crash, for the retry path).
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

from edgevt.errors import EdgevtError

HINT = "pip install 'edgevt[triton]' (the server comes from the nvidia-pytriton wheel; see scripts/setup)"


def server_root() -> Path | None:
    """pytriton/tritonserver inside the installed wheel (found without importing pytriton)."""
    import importlib.util

    spec = importlib.util.find_spec("pytriton")
    if spec is None or not spec.submodule_search_locations:
        return None
    root = Path(list(spec.submodule_search_locations)[0]) / "tritonserver"
    return root if (root / "bin" / "tritonserver").exists() else None


def available() -> tuple[bool, str]:
    root = server_root()
    if root is None:
        return False, f"no tritonserver binary: {HINT}"
    stub = root / "python_backend_stubs" / f"{sys.version_info.major}.{sys.version_info.minor}"
    if not (stub / "triton_python_backend_stub").exists():
        return False, f"the nvidia-pytriton wheel has no python backend stub for Python {sys.version_info[:2]}"
    return True, str(root / "bin" / "tritonserver")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class TritonServer:
    def __init__(self, repo: str | Path | list, models: list[str] | None = None, *, grpc_port: int | None = None,
                 http_port: int | None = None, metrics_port: int | None = None, log: str | Path | None = None,
                 extra_args: tuple = ()):
        ok, msg = available()
        if not ok:
            raise EdgevtError(msg)
        self.root = server_root()
        self.repos = [Path(r).resolve() for r in (repo if isinstance(repo, (list, tuple)) else [repo])]
        self.models = list(models or [])
        self.grpc_port = grpc_port or free_port()
        self.http_port = http_port or free_port()
        self.metrics_port = metrics_port or free_port()
        self.extra_args = tuple(extra_args)
        self._tmp = tempfile.TemporaryDirectory(prefix="edgevt-triton.")
        self.log_path = Path(log) if log else Path(self._tmp.name) / "server.log"
        self.backends = Path(self._tmp.name) / "backends"
        py = self.backends / "python"
        py.mkdir(parents=True)
        src = self.root / "backends" / "python"
        for f in src.iterdir():
            if f.is_file():
                (py / f.name).symlink_to(f)
        stub = self.root / "python_backend_stubs" / f"{sys.version_info.major}.{sys.version_info.minor}"
        (py / "triton_python_backend_stub").symlink_to(stub / "triton_python_backend_stub")
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def command(self) -> list[str]:
        cmd = [str(self.root / "bin" / "tritonserver"), *[f"--model-repository={r}" for r in self.repos],
               f"--backend-directory={self.backends}", "--grpc-address=127.0.0.1", "--http-address=127.0.0.1",
               f"--grpc-port={self.grpc_port}", f"--http-port={self.http_port}",
               f"--metrics-port={self.metrics_port}", "--allow-metrics=false", "--log-verbose=0", "--exit-timeout-secs=5"]
        if self.models:
            cmd += ["--model-control-mode=explicit", *[f"--load-model={m}" for m in self.models]]
        return cmd + list(self.extra_args)

    def env(self) -> dict:
        env = dict(os.environ)
        paths = [sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"],
                 str(Path(__file__).resolve().parents[2])]  # edgevt itself (an editable install's .pth is not read)
        env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths + [p for p in env.get("PYTHONPATH", "").split(
            os.pathsep) if p]))
        env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
        env.setdefault("OMP_NUM_THREADS", "1")
        return env

    def start(self, timeout: float = 60.0, wait: bool = True) -> "TritonServer":
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.command(), stdout=self._log, stderr=subprocess.STDOUT, env=self.env(),
                                     stdin=subprocess.DEVNULL)
        if wait:
            self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float = 60.0) -> None:
        import urllib.request

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise EdgevtError(f"tritonserver exited ({self.proc.returncode}) at start: {self.log_tail()}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}/v2/health/ready", timeout=1) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.25)
        self.stop()
        raise EdgevtError(f"tritonserver not ready after {timeout:.0f} s: {self.log_tail()}")

    def log_tail(self, n: int = 6) -> str:
        try:
            lines = [ln for ln in self.log_path.read_text(errors="replace").splitlines() if ln.strip()]
        except OSError:
            return ""
        return " | ".join(lines[-n:])

    def _stubs(self) -> list:
        """The python backend's stub processes (children of the server), while it runs."""
        import psutil

        try:
            return psutil.Process(self.proc.pid).children(recursive=True)
        except (psutil.Error, AttributeError):
            return []

    def kill(self) -> None:
        """SIGKILL, as a crash would; the stubs go too (they outlive a killed server, about 1 GB each)."""
        if self.proc is not None and self.proc.poll() is None:
            stubs = self._stubs()
            self.proc.kill()
            self.proc.wait(timeout=30)
            for c in stubs:
                try:
                    c.kill()
                except Exception:
                    pass

    def stop(self, timeout: float = 20.0) -> None:
        if self.proc is not None and self.proc.poll() is None:
            stubs = self._stubs()
            self.proc.terminate()
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
            for c in stubs:  # a clean stop ends them; make sure
                try:
                    c.wait(timeout=5)
                except Exception:
                    try:
                        c.kill()
                    except Exception:
                        pass
        if getattr(self, "_log", None) is not None:
            self._log.close()
            self._log = None

    def close(self) -> None:
        self.stop()
        self._tmp.cleanup()

    def __enter__(self):
        return self.start() if self.proc is None else self

    def __exit__(self, *exc) -> None:
        self.close()


def main(argv: list[str] | None = None) -> None:
    import argparse

    ap = argparse.ArgumentParser(description="Serve an edgevt Triton repository with the nvidia-pytriton server")
    ap.add_argument("repo", type=Path)
    ap.add_argument("--model", action="append", help="load only these models (default: every model)")
    ap.add_argument("--grpc-port", type=int, default=8001)
    ap.add_argument("--http-port", type=int, default=8000)
    ap.add_argument("--metrics-port", type=int, default=8002)
    a = ap.parse_args(argv)
    try:
        srv = TritonServer(a.repo, a.model, grpc_port=a.grpc_port, http_port=a.http_port,
                           metrics_port=a.metrics_port, log="/dev/stderr")
        srv.start()
    except EdgevtError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    print(f"serving {a.repo} on grpc {srv.url} (Ctrl-C stops)", file=sys.stderr)
    try:
        srv.proc.wait()
    except KeyboardInterrupt:
        pass
    finally:
        srv.close()


if __name__ == "__main__":
    main()
