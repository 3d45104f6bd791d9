"""SIGTERM stops a verb like Ctrl-C: what it was writing is removed, the exit code is 143.

Before, Python's default for SIGTERM ended the process at once: a killed ``edgevt export`` left its
hidden ``.<bundle>.*.partial`` staging folder (and its temporary files) behind."""
import os
import signal
import subprocess
import sys
import textwrap
import time

# Runs `edgevt export` with the work inside the staging step replaced by a marker file and a long
# sleep, so that the signal lands while the staging folder exists.
SCRIPT = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    import edgevt.export.exporter as ex
    from edgevt.cli import main

    def slow(bundle, *args, **kwargs):
        Path(sys.argv[3]).write_text(str(bundle.path))
        time.sleep(120)

    ex._export_into = slow
    main(["export", sys.argv[1], "--out", sys.argv[2], "--precision", "fp32"])
""")


def test_sigterm_during_export_leaves_nothing_half_written(tmp_path, make_tiny_checkpoint):
    ckpt = make_tiny_checkpoint()
    out = tmp_path / "bundles" / "tiny.bundle"
    out.parent.mkdir()
    marker = tmp_path / "staging.txt"
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT, str(ckpt), str(out), str(marker)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not marker.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert marker.exists(), proc.communicate(timeout=30)
        staging = marker.read_text()
        assert os.path.isdir(staging)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 143, err
    assert "terminated" in err and "Traceback" not in err
    assert not os.path.exists(staging)
    assert list(out.parent.iterdir()) == []
