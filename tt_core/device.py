"""Device selection shared by training, planning and benchmarks."""

from __future__ import annotations

import torch

from tt_core.errors import ConfigError
from tt_core.threads import LoadWatch, choose_threads


def resolve_device(name: str = "auto") -> torch.device:
    """'auto' picks cuda > mps > cpu; an explicit device that is absent is a usage error."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"--device: unknown device {name!r}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"--device: {name!r} requested but CUDA is not available here")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"--device: {name!r} requested but MPS is not available here")
    return device


COMPUTE_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}  # plan.dtype, bench variants


def has_bf16_matrix_units() -> bool:
    """Whether this CPU multiplies bf16 matrices in hardware (AMX or AVX512-BF16); without
    them torch emulates bf16 and it is slower than fp32."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line for line in f if line.startswith("flags")), "").split()
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


def planning_dtype(setting: str, device: torch.device) -> tuple[str, str]:
    """plan.dtype resolved for `device`: (fp32 | bf16, why). `auto` is bf16 where the
    device multiplies bf16 matrices in hardware (CUDA with bf16 support; a CPU with AMX
    or AVX512-BF16, where bf16 plans 25 envs ~15 % faster than fp32 and one env as fast:
    docs/benchmarks.md#bf16-planning-on-a-cpu), fp32 elsewhere."""
    if setting != "auto":
        return setting, "plan.dtype"
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return "bf16", "auto: this GPU computes in bf16"
    if device.type == "cpu" and has_bf16_matrix_units():
        return "bf16", "auto: this CPU has bf16 matrix units"
    return "fp32", f"auto: {'this CPU has no bf16 matrix units' if device.type == 'cpu' else 'no bf16 here'}"


def describe(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return device.type


def available_memory(device: torch.device) -> int | None:
    """Bytes a new allocation can still get on `device`: free memory on CUDA, the
    kernel's MemAvailable on a Linux CPU; None where it cannot be told."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    if device.type == "cpu":
        try:
            with open("/proc/meminfo", encoding="ascii") as f:
                for line in f:
                    if line.startswith("MemAvailable:"):
                        return int(line.split()[1]) * 1024
        except OSError:
            return None
    return None


def set_compute_threads(requested: int | None, device: torch.device | str) -> tuple[LoadWatch | None, str]:
    """On a CPU, set torch's intra-op threads (tt_core/threads.py) and return the watch
    that lowers them while other processes keep the cores busy (None when `requested`
    fixes the count), with a line saying what was chosen and why; elsewhere (None, "")."""
    if torch.device(device).type != "cpu":
        return None, ""
    threads, why = choose_threads(requested)
    torch.set_num_threads(threads)
    if requested is not None or threads == 1:
        return None, f"{threads} CPU thread{'s' if threads > 1 else ''} ({why})"
    return LoadWatch(threads, torch.set_num_threads), (
        f"{threads} CPU threads ({why}); fewer while other processes keep these cores busy "
        "(device.threads fixes the count)")
