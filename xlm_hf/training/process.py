"""What a training script may set up for its process before it starts: thread count, host memory reuse, logging.

Each is the script's explicit choice, called from its `main` (the library never changes process state on its own).
"""

from __future__ import annotations

import ctypes
import logging
import sys

import torch

logger = logging.getLogger(__name__)


def pin_cpu_threads() -> None:
    """Keep the CPU thread count fixed for the whole run. `torch.set_num_threads` also turns off MKL's dynamic
    threading, which a torch process otherwise starts with (MKL may then use fewer threads than asked for a call, and
    a product split otherwise sums in another order). A plausible source, not a proven one, of the rare run-to-run
    differences seen in the kill-and-resume tests: two runs with one seed whose first step differed in the last bits,
    which Adam then amplified."""
    torch.set_num_threads(torch.get_num_threads())


def reuse_freed_memory() -> bool:
    """Make glibc's malloc keep freed memory for reuse instead of returning it to the system (this process only).

    By default glibc serves every allocation above its mmap threshold (128 KiB, adapting up to 32 MiB) with fresh
    pages from the kernel, and gives them back when they are freed. A training step allocates and frees the same large
    tensors every time (the output layer's logits and gradients, vocabulary-sized weight gradients, autocast's weight
    copies), so each step pays a page fault per 4 KiB of them again (its share of a CPU step: `benchmarks/README.md`).
    Raised mmap and trim thresholds keep those blocks in the heap, where the next step reuses them;
    the process then keeps its peak memory until it exits. (PyTorch's `THP_MEM_ALLOC_ENABLE=1`, huge pages for large
    tensors, was measured too: faster in bf16, not in fp32.) Returns whether the settings took (False off glibc, e.g.
    macOS or musl, where nothing changes)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    largest = ctypes.c_int(2**31 - 1)
    m_trim_threshold, m_mmap_threshold = -1, -3  # <malloc.h>
    took = mallopt(m_mmap_threshold, largest) == 1 and mallopt(m_trim_threshold, largest) == 1
    logger.info("Freed host memory is %s for reuse (glibc mallopt).", "kept" if took else "not kept")
    return took


def prepare_process(reuse_memory: bool = True) -> None:
    """What every training script does first: a fixed CPU thread count (`pin_cpu_threads`), and freed host memory kept
    for reuse (`reuse_freed_memory`) unless the script's `--reuse_freed_memory false`."""
    pin_cpu_threads()
    if reuse_memory:
        reuse_freed_memory()


def setup_logging(level: int) -> None:
    """Script logging: one format for our logs and for the transformers/datasets libraries, at `level`."""
    import datasets
    import transformers

    logging.basicConfig(
        format="%(asctime)s - %(levelname)s - %(name)s - %(message)s",
        datefmt="%m/%d/%Y %H:%M:%S",
        handlers=[logging.StreamHandler(sys.stdout)],
    )
    logging.getLogger("xlm_hf").setLevel(level)
    logging.getLogger("__main__").setLevel(level)
    datasets.utils.logging.set_verbosity(level)
    transformers.utils.logging.set_verbosity(level)
    transformers.utils.logging.enable_default_handler()
    transformers.utils.logging.enable_explicit_format()
