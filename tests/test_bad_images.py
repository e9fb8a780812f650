"""Bad models and awkward photos: a model whose weights or predictions are not finite is an error
naming it, before anything is written; training's decoder and colorize's reader agree on the EXIF
orientation and on how large a photo may be."""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from colorkit.kernel.errors import ColorkitError
from cli_helpers import invoke, one_line_error

pytestmark = pytest.mark.usefixtures("one_torch_thread")

WEIGHTS = Path(__file__).resolve().parents[1] / "plugins" / "weights"


def _photo(path: Path, h: int = 40, w: int = 56, colour: bool = False) -> Path:
    rng = np.random.default_rng(0)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 256, (h, w, 3) if colour else (h, w), dtype=np.uint8)).save(path)
    return path


def _spoilt_model(tmp_path: Path, where: str) -> Path:
    """The shipped small model (colorkit-cifar10) with NaN in its weights (``where="weights"``) or
    only in a batch-norm statistic, a buffer (``where="buffer"``: finite weights, NaN predictions)."""
    state = torch.load(WEIGHTS / "colorkit-cifar10.pt", weights_only=True)
    gen = state["gen"]
    if where == "weights":
        for key, value in gen.items():
            if key.endswith("weight") and value.is_floating_point():
                value.fill_(float("nan"))
    else:
        key = next(k for k in gen if k.endswith("running_var"))
        gen[key] = torch.full_like(gen[key], float("nan"))
    path = tmp_path / f"nan-{where}.pt"
    torch.save(state, path)
    return path


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


@pytest.mark.parametrize("where", ["weights", "buffer"])
def test_a_model_that_predicts_non_finite_colour_is_an_error_naming_it_and_nothing_is_written(tmp_path, where):
    model = _spoilt_model(tmp_path, where)
    photos = tmp_path / "photos"
    _photo(photos / "a.jpg"), _photo(photos / "b.png")
    out = tmp_path / "out"
    line = one_line_error(invoke(["colorize", photos, "--model", model, "--out", out, "-q"]), code=1)
    assert str(model) in line and "not finite" in line and "retrain" in line, line
    assert _files(out) == []
    _photo(tmp_path / "colour" / "c.png", colour=True)
    result = invoke(["eval", model, "--images", tmp_path / "colour", "-q", "--json", tmp_path / "r.json"])
    line = one_line_error(result, code=1)
    assert str(model) in line and "not finite" in line, line
    assert not (tmp_path / "r.json").exists()


def test_a_model_with_nan_weights_is_not_evaluated_or_exported(tmp_path):
    model = _spoilt_model(tmp_path, "weights")
    line = one_line_error(invoke(["eval", model, "--dataset", "samples", "--limit", "2", "-q"]), code=1)
    assert str(model) in line and "not finite" in line, line
    for fmt, name in (("onnx", "m.onnx"), ("torchscript", "m.ts")):
        line = one_line_error(invoke(["export", model, "--format", fmt, "--out", tmp_path / name]), code=1)
        assert str(model) in line and "not finite" in line, line
        assert not (tmp_path / name).exists()


def test_colorize_array_refuses_a_non_finite_prediction_of_a_bare_generator():
    from colorkit.engine.inference import colorize_array
    from colorkit.kernel.interfaces import Generator

    class Overflowing(Generator):  # finite weights, a prediction that overflows
        def __init__(self) -> None:
            super().__init__()
            self.scale = torch.nn.Parameter(torch.tensor(3e38))

        def forward(self, l: torch.Tensor) -> torch.Tensor:  # noqa: E741
            return (l + 2.0).repeat(1, 2, 1, 1) * self.scale * 10.0

    with pytest.raises(ColorkitError, match="generator Overflowing: its prediction is not finite"):
        colorize_array(Overflowing(), np.full((16, 16), 128, dtype=np.uint8), working_size=16)


# -- photos: one rule for training's decoder and colorize's reader ---------------------------------


def _rotated_jpeg(path: Path, orientation: int = 6) -> Path:
    """A colour JPEG stored 32 wide x 48 tall whose EXIF says to show it rotated (6: 90 degrees
    clockwise, so 48 wide x 32 tall): a gradient, so every orientation gives other pixels."""
    y, x = np.mgrid[0:48, 0:32]
    rgb = np.stack([x * 7, y * 5, 255 - y * 5], axis=-1).astype(np.uint8)
    exif = Image.Exif()
    exif[0x0112] = orientation
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rgb).save(path, quality=95, exif=exif)
    return path


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_training_decodes_a_photo_in_the_orientation_colorize_reads_it(tmp_path, orientation):
    from colorkit.engine.colorizer import read_image
    from colorkit.plugins._decode import decode_image

    path = _rotated_jpeg(tmp_path / "rotated.jpg", orientation)
    shown = read_image(path).rgb
    assert shown.shape == ((32, 48, 3) if orientation != 3 else (48, 32, 3))
    arr, _ = decode_image(path)
    assert arr is not None and np.array_equal(arr, shown)
    arr, _ = decode_image(path.read_bytes(), size=32)  # the centre square of the photo as shown
    top, left = (shown.shape[0] - 32) // 2, (shown.shape[1] - 32) // 2
    assert np.array_equal(arr, shown[top : top + 32, left : left + 32])


@pytest.mark.parametrize("cache", [True, False])
def test_the_imagefolder_dataset_serves_the_photo_as_colorize_reads_it(tmp_path, monkeypatch, cache):
    from colorkit.engine.colorizer import read_image
    from colorkit.kernel.options import build_options
    from colorkit.plugins import imagefolder, imagefolder_data

    monkeypatch.setenv("COLORKIT_CACHE", str(tmp_path / "cache"))
    root = tmp_path / "photos"
    for split in ("train", "val"):
        _photo(root / split / "p.png", colour=True)
    shown = read_image(_rotated_jpeg(root / "test" / "rotated.jpg")).rgb  # 48 wide x 32 tall
    options = build_options(imagefolder.ImageFolderOptions,
                            {"root": str(root), "size": 32, "cache": "auto" if cache else "off"}, "dataset")
    ds = imagefolder_data.ImageFolder(options)
    served = ds.split("test")[0]
    assert tuple(served.shape) == (3, 32, 32)
    assert np.array_equal(served.permute(1, 2, 0).numpy(), shown[:, 8:40])
    if cache:  # a cache decoded by another version of the decoder is never served
        assert ds.decoded == {("test", "crop"): "decoded"}
        again = imagefolder_data.ImageFolder(options)
        again.split("test")
        assert again.decoded == {("test", "crop"): "cache"}
        monkeypatch.setattr(imagefolder_data, "DECODE_VERSION", imagefolder_data.DECODE_VERSION + 1)
        other = imagefolder_data.ImageFolder(options)
        other.split("test")
        assert other.decoded == {("test", "crop"): "decoded"}


def _png_of(pixels: int) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (pixels // 20, 20, 3), dtype=np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


def test_a_large_photo_is_decoded_quietly_up_to_pillows_limit_and_refused_beyond_as_colorize_does(tmp_path,
                                                                                                  monkeypatch):
    """Large photos are ordinary input: up to twice ``PIL.Image.MAX_IMAGE_PIXELS`` (Pillow's own
    refusal limit, about 179 million pixels) they are decoded without Pillow's warning; beyond it
    they are skipped as ``too large`` and colorize refuses them (a ``cannot read`` line)."""
    from colorkit.engine.colorizer import read_image
    from colorkit.plugins import _decode

    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    large, huge = tmp_path / "large.png", tmp_path / "huge.png"
    large.write_bytes(_png_of(1600))  # over the warning limit, under the error limit
    huge.write_bytes(_png_of(2400))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any warning fails the test
        arr, code = _decode.decode_image(large)
        assert code == _decode.OK and arr.shape == (80, 20, 3)
        assert _decode.decode_image(large.read_bytes(), size=16)[1] == _decode.OK
        assert _decode.check_header(str(large)) == _decode.UNSEEN
        assert np.array_equal(read_image(large).rgb, arr)
        assert _decode.decode_image(huge)[1] == _decode.TOO_LARGE
        assert _decode.decode_image(huge.read_bytes(), size=16)[1] == _decode.TOO_LARGE
        assert _decode.check_header(str(huge)) == _decode.TOO_LARGE
        with pytest.raises(Image.DecompressionBombError):
            read_image(huge)


def test_a_half_precision_model_file_keeps_in_float32_what_half_precision_cannot_hold(tmp_path):
    """Batch norm's running variance can pass half precision's 65,504: cast, it would be infinite and
    silence its channels. The model file keeps such a tensor in float32; everything else is half."""
    from colorkit.engine.checkpoints import load_checkpoint, save_checkpoint, write_model_file

    weights = {"conv.weight": torch.randn(4, 1, 3, 3), "bn.running_var": torch.full((4,), 1e6),
               "bn.num_batches_tracked": torch.tensor(3)}
    source = tmp_path / "source.pt"
    save_checkpoint(source, {"experiment": {"gen": {"name": "x"}}, "gen": weights})
    saved = load_checkpoint(write_model_file(source, tmp_path / "model.pt"))["gen"]
    assert saved["conv.weight"].dtype == torch.float16 and saved["bn.running_var"].dtype == torch.float32
    assert torch.equal(saved["bn.running_var"], weights["bn.running_var"]) and saved["bn.num_batches_tracked"] == 3
