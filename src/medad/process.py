"""Settings of the process the ``medad`` command runs in: memory allocator and garbage collector.

They change how fast the process runs, never what it computes (issue 16: end to end against the
study's public code on the CPU).

* `keep_freed_memory`: a CPU training step frees and allocates the same tens of MiB of
  activations and gradients every step. By default glibc hands freed blocks above its thresholds
  back to the kernel (heap trimming, ``munmap``) and takes them back as fresh pages, each zeroed
  by a page fault: ~6,000 faults per step of the paper's AE at 64² with batch 64, 1.15× the step
  time on a 2-core machine. Fixed thresholds keep that memory in the process for the next step.
* `loading_modules`: importing torch and medad creates some 400,000 objects that live until the
  process ends; the cyclic garbage collector's full passes over them while they load free nothing
  (~0.5 s of start-up). It is paused meanwhile and what they created is frozen (left out of every
  later pass).
* `freeze_at_exit`: the interpreter collects garbage again at exit, over the same objects (~0.5 s
  after every command that loaded torch); everything alive is frozen first. Objects are still
  released, files were closed by the commands that wrote them, and ``atexit`` handlers run.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import gc
import sys
from collections.abc import Iterator

#: glibc's ``mallopt`` parameters (malloc.h)
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
#: blocks from this size are mapped on their own and returned when freed: glibc's largest
#: dynamic threshold on 64-bit systems, so only data much larger than a training step's tensors
MMAP_THRESHOLD = 32 << 20
#: free memory kept at the top of the heap rather than trimmed
TRIM_THRESHOLD = 1 << 30


def keep_freed_memory() -> bool:
    """Keep memory freed by one training step for the next (glibc on Linux; see the module
    docs). Returns whether the allocator took the settings (False elsewhere)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # a libc without mallopt (musl)
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
        mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    )


@contextlib.contextmanager
def loading_modules() -> Iterator[None]:
    """Pause the cyclic garbage collector while heavy modules load; freeze what they created.

    Nothing is frozen when no module was loaded (they were already): a process that runs the
    command several times (tests) does not freeze the garbage of earlier runs."""
    enabled, modules = gc.isenabled(), len(sys.modules)
    gc.disable()
    try:
        yield
    finally:
        if len(sys.modules) > modules:
            gc.freeze()
        if enabled:
            gc.enable()


_exit_registered = False


def freeze_at_exit() -> None:
    """Freeze every live object when the interpreter exits (see the module docs); once."""
    global _exit_registered
    if not _exit_registered:
        atexit.register(gc.freeze)
        _exit_registered = True
