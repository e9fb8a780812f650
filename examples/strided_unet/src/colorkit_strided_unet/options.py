"""The options of both components, apart from the networks: this module and the package's
``__init__`` (what colorkit imports to list the plugin) import no torch."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from colorkit.kernel.options import opt


def check_widths(key: str, widths: tuple[int, ...]) -> None:
    if not widths:
        raise ValueError(f"{key} needs at least one width")
    if any(w < 1 for w in widths):
        raise ValueError(f"{key} must all be positive, got {list(widths)}")


@dataclass(frozen=True)
class StridedUNetOptions:
    encoder_widths: tuple[int, ...] = opt(
        (64, 128, 256, 512, 512), "channels of each 4x4 encoder conv (the authors' CIFAR-10 generator)"
    )
    decoder_widths: tuple[int, ...] = opt(
        (512, 256, 128, 64), "channels of each 4x4 stride-2 transposed conv, deepest first; one per stride-2 encoder conv"
    )
    first_stride: Literal[1, 2] = opt(1, "stride of the first encoder conv (the authors' code: 1; pix2pix: 2)")
    dropout: float = opt(0.5, "dropout probability in the first dropout_layers decoder units")
    dropout_layers: int = opt(1, "how many decoder units, deepest first, use dropout (authors: 1 on CIFAR-10, 3 on Places365)")
    output: Literal["ab", "lab"] = opt("ab", "predict a*b* and reuse the input L, or all of L*a*b* (the paper)")

    def __post_init__(self) -> None:
        check_widths("gen.encoder_widths", self.encoder_widths)
        down = self.downsamplings
        if down < 1:
            raise ValueError("gen.encoder_widths needs at least one stride-2 conv (two widths with gen.first_stride=1)")
        if len(self.decoder_widths) != down:
            raise ValueError(
                f"gen.decoder_widths needs one width per stride-2 encoder conv: {down} for "
                f"{len(self.encoder_widths)} encoder widths with gen.first_stride={self.first_stride}, "
                f"got {len(self.decoder_widths)}"
            )
        check_widths("gen.decoder_widths", self.decoder_widths)
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError("gen.dropout must be in [0, 1)")
        if not 0 <= self.dropout_layers <= len(self.decoder_widths):
            raise ValueError(f"gen.dropout_layers must be between 0 and {len(self.decoder_widths)}")

    @property
    def downsamplings(self) -> int:
        """How many encoder convs halve the image (and so how many decoder units there are)."""
        return len(self.encoder_widths) - (1 if self.first_stride == 1 else 0)


@dataclass(frozen=True)
class PatchOptions:
    widths: tuple[int, ...] = opt(
        (64, 128, 256, 512), "channels of each 4x4 conv: all but the last have stride 2, the last stride 1"
    )
    batch_norm: bool = opt(True, "batch norm after every conv but the first")
    dropout: float = opt(0.0, "dropout after each unit (the authors' code: 0)")

    def __post_init__(self) -> None:
        check_widths("disc.widths", self.widths)
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError("disc.dropout must be in [0, 1)")
