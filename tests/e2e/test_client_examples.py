"""The runnable examples/ work against a real gateway process (each run as its own process)."""
import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def run_example(name, *args):
    proc = subprocess.run([sys.executable, str(EXAMPLES / name), *map(str, args)], capture_output=True,
                          text=True, timeout=180, cwd=EXAMPLES)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_fuse_pair(gateway, tmp_path):
    out = run_example("fuse_pair.py", "-o", tmp_path / "fused.png", "--server", gateway.address)
    assert "was Y1" in out and (tmp_path / "fused.png").stat().st_size > 0


def test_stream_tiles(gateway):
    out = run_example("stream_tiles.py", "--tiles", 6, "--window", 3, "--size", 128, 160, "--server", gateway.address)
    assert "6 fused, 0 failed" in out


def test_find_focus(gateway):
    out = run_example("find_focus.py", "--server", gateway.address)
    assert "sharpest plane 5 at z = +0.50 um" in out
