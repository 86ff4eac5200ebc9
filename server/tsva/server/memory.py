"""Memory for a stream of multi-megabyte tiles (glibc malloc; a no-op elsewhere): reused while
tiles flow, given back to the OS once they stop.

Why: a tile's buffers (request bytes, decoded shots, the fused tile, the reply) are megabytes each.
Served as their own mappings (what a fixed 128-KiB mmap threshold gave here), every tile maps
fresh pages and the kernel zero-fills them: ~12,000 page faults per 1224x1024 pair, more system CPU than
all of the gateway's own work (26 of 44 ms per fused megapixel with a model that costs nothing,
benchmarks/serving_path.py). Kept in the heap and never trimmed, RSS stays at a burst's peak. So:
- configure(): an mmap threshold of 32 MiB (glibc's largest; a tile's buffers come from the heap
  and are reused hot), a trim threshold of 1 GiB (free() does not hand pages back mid-load), which
  also turns glibc's dynamic thresholds off, and one arena for all threads (malloc_trim shrinks
  only the main arena's top; per-thread arenas kept ~75 MB more after a burst; a tile's few large
  allocations do not contend for its lock);
- IdleTrimmer: malloc_trim(0) once no tile has been in work for a moment, which returns the free
  pages after a burst.
The same as MALLOC_MMAP_THRESHOLD_, MALLOC_TRIM_THRESHOLD_ and MALLOC_ARENA_MAX in the environment,
but needing no launcher support. An allocator swap (jemalloc/mimalloc via LD_PRELOAD) would need a system library
in every image and launcher; these lines of libc need nothing.
"""
from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging

log = logging.getLogger(__name__)

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD, M_ARENA_MAX = -1, -3, -8  # mallopt parameters, glibc's malloc.h
MMAP_THRESHOLD_BYTES = 32 * 1024 * 1024   # glibc refuses more (HEAP_MAX_SIZE / 2 on 64-bit)
TRIM_THRESHOLD_BYTES = 1024 * 1024 * 1024


def _glibc():
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt, libc.malloc_trim  # noqa: B018 (both must exist: glibc)
    except (OSError, AttributeError):
        return None
    return libc


_LIBC = _glibc()


def configure(mmap_threshold: int = MMAP_THRESHOLD_BYTES, trim_threshold: int = TRIM_THRESHOLD_BYTES) -> bool:
    """Fixes glibc's mmap and trim thresholds and its arenas to one (before the gateway starts its
    threads); True when all three were set."""
    if _LIBC is None:
        return False
    settings = ((M_MMAP_THRESHOLD, mmap_threshold), (M_TRIM_THRESHOLD, trim_threshold), (M_ARENA_MAX, 1))
    ok = all([bool(_LIBC.mallopt(param, value)) for param, value in settings])
    log.debug("malloc mmap threshold %d, trim threshold %d bytes, one arena: %s", mmap_threshold, trim_threshold,
              "set" if ok else "refused")
    return ok


def trim() -> bool:
    """malloc_trim(0): returns free heap pages to the OS; True when some were."""
    return bool(_LIBC.malloc_trim(0)) if _LIBC is not None else False


class IdleTrimmer:
    """Trims once, `delay_s` after the last of the tiles in work has finished."""

    def __init__(self, delay_s: float = 1.0):
        self.delay_s = delay_s
        self._busy = 0
        self._pending: asyncio.TimerHandle | None = None

    @contextlib.contextmanager
    def working(self):
        self._busy += 1
        if self._pending is not None:
            self._pending.cancel()
            self._pending = None
        try:
            yield
        finally:
            self._busy -= 1
            if self._busy == 0 and _LIBC is not None:
                loop = asyncio.get_running_loop()
                self._pending = loop.call_later(self.delay_s, self._trim_soon, loop)

    def _trim_soon(self, loop: asyncio.AbstractEventLoop) -> None:
        self._pending = None
        if self._busy == 0:
            loop.run_in_executor(None, trim)  # malloc_trim walks the heaps: off the event loop
