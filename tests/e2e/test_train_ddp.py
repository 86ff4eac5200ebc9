"""`tsva train` under torchrun: 2 CPU processes on the gloo backend (DistributedDataParallel), tiny
and fast; one checkpoint written by rank 0, one report line, weights in step on both ranks."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from tsva.export.checkpoint import load_checkpoint


@pytest.mark.slow
def test_train_under_torchrun_with_two_cpu_processes(tmp_path):
    torchrun = Path(sys.executable).with_name("torchrun")
    if not torchrun.exists():
        torchrun = shutil.which("torchrun")
    out = tmp_path / "run"
    # --standalone: a rendezvous on a free local port (an explicit --master-port 0 never meets).
    cmd = [str(torchrun), "--standalone", "--nproc-per-node", "2",
           "-m", "tsva.common.cli", "train", "--width", "4", "--depth", "2", "--patch-size", "32",
           "--batch-size", "2", "--steps", "4", "--pool-pairs", "8", "--val-pairs", "2", "--val-every", "2",
           "--threads", "1", "--device", "cpu", "--no-progress", "--defocus", "1,2", "-o", str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300,
                          env={**__import__("os").environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("done: 4 steps") == 1, done.stdout  # one report per job
    assert "2 processes (gloo)" in done.stdout
    net, ckpt = load_checkpoint(out / "last.pt")
    assert ckpt["world_size"] == 2 and ckpt["step"] == 4 and len(ckpt["history"]) == 2
    assert all(torch.isfinite(p).all() for p in net.parameters())
