"""What machine a measurement ran on: recorded by training runs and printed by the benchmarks."""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any

import torch

__all__ = ["cpu_name", "describe_machine"]


def cpu_name() -> str:
    """The CPU model (``/proc/cpuinfo``'s ``model name`` on Linux), else what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def describe_machine() -> dict[str, Any]:
    """CPU, core count, load, Python and torch versions, torch threads and DREAM's C++ kernel."""
    from dream_rl.dream.kernels import dispatch, native

    return {
        "cpu": cpu_name(),
        "logical_cpus": os.cpu_count(),
        "load_average": [round(v, 2) for v in os.getloadavg()] if hasattr(os, "getloadavg") else None,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "native_kernel": "yes" if dispatch.native_available() else f"no ({native.unavailable_reason()})",
    }
