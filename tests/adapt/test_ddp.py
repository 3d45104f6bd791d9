import json
import os
import subprocess
import sys

import torch


def test_torchrun_two_cpu_processes_gloo(motiondigits, tmp_path):
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "edgevt", "adapt", "--source", str(motiondigits / "source_train.txt"),
           "--strategy", "dann", "--target", str(motiondigits / "target_train.txt"),
           "--target-test", str(motiondigits / "target_test.txt"), "--model", "tsn_tinycnn", "--mode", "linear",
           "--frames", "4", "--size", "32", "--epochs", "2", "--batch-size", "3", "--device", "cpu", "-o", str(out),
           "--pixel", "hist"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    ckpt = torch.load(out / "model.pt", weights_only=True)
    assert ckpt["provenance"]["world_size"] == 2
    history = json.loads((out / "metrics.json").read_text())
    # 18 source clips over 2 ranks of batch 3: 3 steps per epoch per rank
    assert [h["step"] for h in history] == [3, 6]
    assert proc.stderr.count("wrote") == 2  # rank 0 alone reports and writes: the model, and ...
    assert proc.stderr.count("translated clips") == 1  # ... the translated source, once (--pixel)
    assert ckpt["provenance"]["paths"]["source"].endswith("pixel_hist/source.txt")
