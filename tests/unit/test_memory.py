"""The gateway's glibc tuning (tsva.server.memory), in a fresh interpreter each (it changes the
process's allocator): tile-sized buffers are reused without page faults while tiles flow, and
malloc_trim gives a burst's memory back."""
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc tuning")

_SCRIPT = textwrap.dedent("""
    import resource, sys
    import numpy as np
    from tsva.server import memory

    def faults():
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt

    def rss_mib():
        for line in open("/proc/self/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024

    if sys.argv[1] == "tuned":
        assert memory.configure()
    else:                                            # every large buffer its own mapping
        assert memory.configure(mmap_threshold=128 * 1024)
    tile = 1224 * 1024 * 3 * 2                       # one pair's bytes
    np.ones(tile, np.uint8)                          # first use maps the pages
    before = faults()
    for _ in range(20):
        np.ones(tile, np.uint8)                      # allocated, written, freed: a tile's life
    per_tile = (faults() - before) / 20
    burst = [np.ones(tile, np.uint8) for _ in range(30)]   # ~225 MB held at once
    peak = rss_mib()
    del burst
    memory.trim()
    print(per_tile, peak - rss_mib())
""")


def _run(mode: str) -> tuple[float, float]:
    out = subprocess.run([sys.executable, "-c", _SCRIPT, mode], capture_output=True, text=True, check=True)
    per_tile, returned = out.stdout.split()
    return float(per_tile), float(returned)


def test_tile_buffers_are_reused_without_page_faults():
    tuned, _ = _run("tuned")
    mapped, _ = _run("mapped")
    # As its own mapping a pair's 7.3 MB is faulted in anew for every tile (hundreds of faults,
    # fewer where the kernel backs part of it with huge pages); tuned, it comes from the heap
    # already mapped.
    assert tuned < 10, tuned
    assert mapped > 100, mapped


def test_trim_gives_a_burst_back():
    _, returned = _run("tuned")
    assert returned > 150, f"only {returned:.0f} MiB of a ~225 MB burst returned"
