"""Giving memory back to the OS after bursts of large tiles (glibc malloc; a no-op elsewhere).

Why: a tile's buffers (request bytes, decoded shots, padded canvases, the stitched result) are
megabytes each. glibc serves blocks above its mmap threshold with their own mappings, returned on
free, but it raises that threshold (up to 32 MiB) each time such a block is freed, so after the
first tiles every buffer comes from the heap arenas, which keep the pages: RSS stayed at its burst
peak. Two measures, both standard glibc tuning (the same as MALLOC_MMAP_THRESHOLD_=131072 in the
environment, but needing no launcher support):
- configure(): a fixed mmap threshold (128 KiB, glibc's own starting value), which also turns the
  dynamic raising off, so large buffers are unmapped when freed;
- IdleTrimmer: malloc_trim(0) once no tile has been in work for a moment, for what the arenas
  still hold (small objects, fragments).
An allocator swap (jemalloc/mimalloc via LD_PRELOAD) would do the same but needs a system library
in every image and launcher; these two lines of libc need nothing.
"""
from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging

log = logging.getLogger(__name__)

M_MMAP_THRESHOLD = -3  # mallopt parameter numbers from glibc's malloc.h
MMAP_THRESHOLD_BYTES = 128 * 1024


def _glibc():
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt, libc.malloc_trim  # noqa: B018 (both must exist: glibc)
    except (OSError, AttributeError):
        return None
    return libc


_LIBC = _glibc()


def configure(mmap_threshold: int = MMAP_THRESHOLD_BYTES) -> bool:
    """Fixes glibc's mmap threshold; True when it was set."""
    if _LIBC is None:
        return False
    ok = bool(_LIBC.mallopt(M_MMAP_THRESHOLD, mmap_threshold))
    log.debug("malloc mmap threshold %d bytes: %s", mmap_threshold, "set" if ok else "refused")
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
