"""ICC profiles built byte by byte for the tests (no profile files ship with the test machine):
an RGB matrix/TRC display profile (ICC v2) from its D50-adapted primaries and a gamma."""

from __future__ import annotations

import struct

#: Adobe RGB (1998): its primaries adapted to D50 (the PCS white) and its gamma 563/256.
ADOBE_RGB = {"description": "Adobe RGB (1998) (test copy)", "gamma": 563 / 256,
             "red": (0.60974, 0.31111, 0.01947), "green": (0.20528, 0.62567, 0.06087),
             "blue": (0.14919, 0.06322, 0.74457)}
D50 = (0.9642, 1.0, 0.8249)


def _s15(v: float) -> bytes:
    return struct.pack(">i", round(v * 65536))


def _xyz(xyz: tuple[float, float, float]) -> bytes:
    return b"XYZ " + b"\0" * 4 + b"".join(_s15(v) for v in xyz)


def _desc(text: str) -> bytes:
    ascii_ = text.encode("ascii") + b"\0"
    return (b"desc" + b"\0" * 4 + struct.pack(">I", len(ascii_)) + ascii_ + struct.pack(">II", 0, 0)
            + struct.pack(">HB", 0, 0) + b"\0" * 67)


def _curve(gamma: float) -> bytes:
    return b"curv" + b"\0" * 4 + struct.pack(">IH", 1, round(gamma * 256)) + b"\0\0"


def _text(text: str) -> bytes:
    return b"text" + b"\0" * 4 + text.encode("ascii") + b"\0"


def rgb_profile(description: str, gamma: float, red: tuple[float, float, float], green: tuple[float, float, float],
                blue: tuple[float, float, float]) -> bytes:
    """The bytes of an ICC v2 RGB display profile (matrix and one gamma per channel)."""
    curve = _curve(gamma)
    tags = [(b"desc", _desc(description)), (b"wtpt", _xyz(D50)), (b"rXYZ", _xyz(red)), (b"gXYZ", _xyz(green)),
            (b"bXYZ", _xyz(blue)), (b"rTRC", curve), (b"gTRC", curve), (b"bTRC", curve),
            (b"cprt", _text("no copyright, test data"))]
    offset = 128 + 4 + 12 * len(tags)
    table, data = b"", b""
    for sig, body in tags:
        body += b"\0" * (-len(body) % 4)
        table += sig + struct.pack(">II", offset + len(data), len(body))
        data += body
    size = offset + len(data)
    header = (struct.pack(">I", size) + b"\0" * 4 + struct.pack(">I", 0x02100000) + b"mntrRGB XYZ "
              + struct.pack(">6H", 2026, 1, 1, 0, 0, 0) + b"acsp" + b"\0" * 24 + struct.pack(">I", 0)
              + b"".join(_s15(v) for v in D50) + b"\0" * 4 + b"\0" * 16 + b"\0" * 28)
    assert len(header) == 128, len(header)
    return header + struct.pack(">I", len(tags)) + table + data


def adobe_rgb() -> bytes:
    """An Adobe RGB (1998) profile (the shape of the real one; its own description)."""
    return rgb_profile(**ADOBE_RGB)
