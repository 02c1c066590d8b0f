"""Lines that libraries print and we do not: silenced in the `twolayer` process, recognised elsewhere.

The CUDA build of torch on a machine without a GPU logs `No CUDA runtime is found, using
CUDA_HOME=...` when `torch.utils.cpp_extension` is first imported (by torch.compile and
torch.utils.benchmark); jax logs that it fell back to the cpu. Neither is a failure of ours, and
on stderr either would break the rule that a failure is one line. Only these named loggers and
messages are silenced, never our own output.
"""

from __future__ import annotations

import logging
import re

QUIET_LOGGERS = (
    "torch.utils.cpp_extension",  # "No CUDA runtime is found, using CUDA_HOME=..." (CUDA torch, no GPU)
    "jax._src.xla_bridge",  # "An NVIDIA GPU may be present on this machine, but a CUDA-enabled jaxlib is not installed"
)
CHATTER = re.compile(
    r"No CUDA runtime is found, using CUDA_HOME="
    r"|CUDA-enabled jaxlib is not installed\. Falling back to cpu"
)


def quiet_library_chatter() -> None:
    """Silence the known chatter for the rest of this process (the CLI's, not the suite's subprocess,
    whose stderr `run` reads itself). Older torch releases print the CUDA line rather than log it:
    that cannot be silenced here, but `is_library_chatter` still recognises it."""
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)


def is_library_chatter(line: str) -> bool:
    """Whether `line` is one of the known messages above (tests and the suite's output use this)."""
    return CHATTER.search(line) is not None
