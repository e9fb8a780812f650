"""Where networks run: the one device choice of colorkit (``auto``: CUDA, then Apple MPS, then the
CPU), the autocast precision and the memory format. Training, evaluation, inference and
colorizing all ask here.
"""

from __future__ import annotations

import torch

from colorkit.kernel.errors import UsageError


def pick_device(name: str, local_rank: int = 0) -> torch.device:
    """``auto`` picks CUDA, then Apple MPS, then the CPU; other names are checked."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", local_rank % max(1, torch.cuda.device_count()))
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UsageError(f"--device {name!r}: not a device name (use auto, cpu, cuda, cuda:N or mps)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"--device {name}: CUDA is not available on this machine; use --device cpu")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise UsageError(f"--device {name}: MPS is not available on this machine; use --device cpu")
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", local_rank % max(1, torch.cuda.device_count()))
    return device


def resolve_precision(name: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype (``None`` for fp32)."""
    if name == "auto":
        if device.type == "cuda" and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return None
    if name == "fp32":
        return None
    if name == "fp16" and device.type == "cpu":
        raise UsageError("train.precision=fp16 needs a GPU; use bf16 or fp32 on the CPU")
    return torch.bfloat16 if name == "bf16" else torch.float16


def uses_channels_last(setting: str, device: torch.device) -> bool:
    """Whether ``train.channels_last`` (``auto``, ``true``, ``false``) puts the networks in the
    channels-last memory format on ``device``. ``auto`` does on CUDA only: on the CPU, at one
    thread on this project's 2-core Intel Xeon machine, channels-last made the paper's GAN step
    (batch 32, 32 px) 30% slower (4.6 s against 3.5 s) and U-Net inference 65% slower (27 against
    16 ms an image). Training and loading a checkpoint use this one rule, so validation and
    ``colorkit eval`` run the same kernels."""
    return setting == "true" or (setting == "auto" and device.type == "cuda")
