"""``colorkit export``: a model as a file that runs without colorkit's Python code.

The exported graph is the model step of :func:`colorkit.engine.inference.predict_lab`, with the same
normalisation: it takes ``l_star`` (``N x 1 x H x W`` float32, CIE L* in ``[0, 100]``, ``H`` and
``W`` any multiples of the generator's ``size_multiple``) and returns ``ab`` (``N x 2 x H x W``,
CIE a* and b*). What colorize does around it (L* of the photo, resizing to the working shape,
joining the upsampled a*b* to the full-size L*, fitting the gamut) is done by the caller:
``colorkit colorize --backend onnxruntime`` does it with NumPy (:mod:`colorkit.engine.onnx_backend`).

Formats:

* ``onnx``: opset 18, dynamic batch, height and width. The file's metadata holds
  ``colorkit.size_multiple``, ``colorkit.working_size``, ``colorkit.chroma_upsample`` (how
  colorize brings a*b* to the photo's size: ``bilinear`` or ``guided``), ``colorkit.model`` and
  ``colorkit.format`` (see :data:`METADATA_KEYS`). Needs the ``onnx`` extra (``pip install
  "colorkit[onnx]"``).
* ``torchscript``: ``torch.jit.trace`` of the same module; loads with ``torch.jit.load`` and
  carries the same metadata as ``colorkit.json`` in its extra files.
* ``model``: a colorkit model file (half-precision weights, experiment, working size, chroma
  upsampling), the format ``register_models`` ships
  (:func:`colorkit.engine.checkpoints.write_model_file`).

Every file is written to a temporary name in the destination folder and renamed when complete,
so a failed export leaves nothing behind.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from colorkit.engine.chroma_numpy import DEFAULT_CHROMA, check_chroma
from colorkit.kernel import color
from colorkit.kernel.errors import UsageError
from colorkit.kernel.files import atomic_path, check_writable

FORMATS = ("onnx", "torchscript", "model")
#: The format tag an exported ONNX or TorchScript file carries.
EXPORT_FORMAT = "colorkit-export/1"
METADATA_KEYS = ("colorkit.format", "colorkit.model", "colorkit.size_multiple", "colorkit.working_size",
                 "colorkit.chroma_upsample")
ONNX_OPSET = 18


class ExportedColorizer(nn.Module):
    """L* in ``[0, 100]`` to a*b*: a generator with colorize's normalisation around it."""

    def __init__(self, gen: nn.Module) -> None:
        super().__init__()
        self.gen = gen

    def forward(self, l_star: torch.Tensor) -> torch.Tensor:
        out = self.gen(l_star / color.L_SCALE - 1.0)
        return out[:, -2:].float() * color.AB_SCALE  # the a*b* of a 2- or 3-channel output


def metadata(model: Any) -> dict[str, str]:
    """What an exported file says about itself (strings, as ONNX metadata requires)."""
    return {
        "colorkit.format": EXPORT_FORMAT,
        "colorkit.model": model.label,
        "colorkit.size_multiple": str(int(model.gen.size_multiple)),
        "colorkit.working_size": str(int(model.working_size)),
        "colorkit.chroma_upsample": str(getattr(model, "chroma", DEFAULT_CHROMA)),
    }


def example_input(model: Any) -> torch.Tensor:
    """A random L* input of the model's working size (rounded up to its size multiple) to trace with."""
    m = int(model.gen.size_multiple)
    side = m * max(1, -(-model.working_size // m))
    return torch.rand(1, 1, side, side) * 100.0


def export_onnx(module: nn.Module, example: torch.Tensor, meta: dict[str, str], path: Path) -> None:
    """Write ``module`` traced on ``example`` as ONNX to ``path``, with ``meta`` as metadata."""
    try:
        import onnx
    except ImportError:
        raise UsageError('--format onnx needs the onnx package: pip install "colorkit[onnx]"') from None
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's notes on tracing are not the user's concern
        torch.onnx.export(
            module, (example,), str(path), input_names=["l_star"], output_names=["ab"], opset_version=ONNX_OPSET,
            dynamic_axes={"l_star": {0: "batch", 2: "height", 3: "width"}, "ab": {0: "batch", 2: "height", 3: "width"}},
            dynamo=False,
        )
    proto = onnx.load(str(path))
    for key, value in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(proto, str(path))


def export_torchscript(module: nn.Module, example: torch.Tensor, meta: dict[str, str], path: Path) -> None:
    """Write ``module`` traced on ``example`` as TorchScript to ``path``, with ``meta`` as an extra file."""
    import warnings

    with warnings.catch_warnings():
        # TracerWarnings about Python-side shape checks; TorchScript's deprecation notice
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(module, (example,), check_trace=False)
        torch.jit.save(traced, str(path), _extra_files={"colorkit.json": json.dumps(meta)})


def export_model(target: str | Path | None, fmt: str, out: str | Path, *, registry: Any = None,
                 working_size: int | None = None, half: bool = True, chroma: str | None = None) -> Path:
    """Export a model name, run directory or checkpoint to ``out`` in ``fmt`` (see the module docs).

    :param working_size: the working size recorded in the file (default: the model's own).
    :param half: for ``fmt="model"``, store the weights in half precision.
    :param chroma: the chroma upsampling recorded in the file, ``bilinear`` or ``guided``
        (default: the model's own).
    """
    from colorkit.engine.inference import load_model

    if chroma is not None:
        check_chroma(chroma)
    if fmt not in FORMATS:
        raise UsageError(f"--format {fmt!r}: use one of {', '.join(FORMATS)}")
    out = Path(out)
    check_writable(out, "--out")  # before the model loads: a folder, a link, a device... is refused
    if fmt == "model":
        from colorkit.engine.checkpoints import write_model_file
        from colorkit.kernel.models import resolve_model
        from colorkit.kernel.registry import build_registry

        path, _ = resolve_model(target, registry or build_registry())
        with atomic_path(out) as tmp:
            write_model_file(path, tmp, half=half, working_size=working_size, chroma=chroma)
        return out
    model = load_model(target, registry, device="cpu", working_size=working_size, chroma=chroma)
    module = ExportedColorizer(model.gen).eval()
    example = example_input(model)
    meta = metadata(model)
    writer = export_onnx if fmt == "onnx" else export_torchscript
    with torch.no_grad(), atomic_path(out) as tmp:
        writer(module, example, meta, tmp)
    return out
