"""Turns what a user has (numpy array, file path, PNG/TIFF bytes) into a `tsva.v1.Image`.

PNG and TIFF files go to the server as they are (smaller than raw pixels; the server decodes and
validates them); other formats Pillow reads (JPEG, BMP, ...) are decoded here and sent as RAW.
Errors name the field (e.g. "shot_a: no such file 'x.png'").
"""
from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Union

import numpy as np

from tsva.common import images
from tsva.client.errors import ImageInputError
from tsva.v1 import tsva_pb2 as pb

ImageSource = Union[np.ndarray, str, os.PathLike, bytes, bytearray, memoryview, pb.Image]

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_TIFF_SIGNATURES = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")  # classic and BigTIFF
_OUTPUT_ENCODINGS = {
    None: pb.IMAGE_ENCODING_UNSPECIFIED,
    "same": pb.IMAGE_ENCODING_UNSPECIFIED,
    "raw": pb.IMAGE_ENCODING_RAW,
    "png": pb.IMAGE_ENCODING_PNG,
    "tif": pb.IMAGE_ENCODING_TIFF,
    "tiff": pb.IMAGE_ENCODING_TIFF,
}


def to_image(source: ImageSource, field: str) -> pb.Image:
    """`source` as an Image message; raises ImageInputError naming `field`."""
    if isinstance(source, pb.Image):
        return source
    if isinstance(source, np.ndarray):
        return array_to_image(source, field)
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes_to_image(bytes(source), field)
    if isinstance(source, (str, os.PathLike)):
        return bytes_to_image(read_image_file(source, field), field, name=str(source))
    raise ImageInputError(f"{field}: cannot send a {type(source).__name__}; pass a numpy array, "
                          f"a file path or PNG/TIFF bytes")


def array_to_image(array: np.ndarray, field: str) -> pb.Image:
    if array.ndim not in (2, 3) or 0 in array.shape:
        raise ImageInputError(f"{field}: array of shape {array.shape}, expected H x W or H x W x C "
                              f"with non-zero sizes")
    try:
        return images.encode_image(images.as_hwc(array, field), pb.IMAGE_ENCODING_RAW)
    except images.ImageError as exc:
        raise ImageInputError(str(exc)) from None


def read_image_file(path: str | os.PathLike, field: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise ImageInputError(f"{field}: no such file {str(path)!r}") from None
    except IsADirectoryError:
        raise ImageInputError(f"{field}: {str(path)!r} is a directory, not an image file") from None
    except OSError as exc:
        raise ImageInputError(f"{field}: cannot read {str(path)!r}: {exc.strerror or exc}") from None


def bytes_to_image(data: bytes, field: str, name: str | None = None) -> pb.Image:
    """PNG/TIFF bytes as they are; any other format Pillow decodes as RAW pixels."""
    if data.startswith(_PNG_SIGNATURE):
        return pb.Image(encoding=pb.IMAGE_ENCODING_PNG, data=data)
    if data.startswith(_TIFF_SIGNATURES):
        return pb.Image(encoding=pb.IMAGE_ENCODING_TIFF, data=data)
    return array_to_image(_decode_with_pillow(data, field, name), field)


def _decode_with_pillow(data: bytes, field: str, name: str | None) -> np.ndarray:
    from PIL import Image as PILImage

    what = repr(name) if name else f"{len(data)} bytes"
    try:
        with PILImage.open(io.BytesIO(data)) as im:
            if im.mode not in ("L", "RGB", "I;16"):
                im = im.convert("L" if im.mode in ("1", "LA", "I", "F") else "RGB")
            return np.asarray(im)
    except PILImage.UnidentifiedImageError:
        raise ImageInputError(f"{field}: {what} is not an image (neither PNG, TIFF nor another format "
                              f"Pillow reads)") from None
    except Exception as exc:  # Pillow raises many types for corrupt files
        raise ImageInputError(f"{field}: {what} is not a readable image ({exc})") from None


def output_encoding(value: str | int | None) -> int:
    """An ImageEncoding value from None/"same", "raw", "png", "tiff" or the enum value itself."""
    if isinstance(value, int):
        if value not in pb.ImageEncoding.values():
            raise ValueError(f"output_encoding: unknown value {value}")
        return value
    try:
        return _OUTPUT_ENCODINGS[value.lower() if isinstance(value, str) else value]
    except KeyError:
        raise ValueError(f"output_encoding: unknown {value!r} (same, raw, png or tiff)") from None


def encoding_for_path(path: str | os.PathLike) -> int:
    """PNG or TIFF by a file name's extension; ValueError for any other."""
    suffix = Path(path).suffix.lower()
    if suffix == ".png":
        return pb.IMAGE_ENCODING_PNG
    if suffix in (".tif", ".tiff"):
        return pb.IMAGE_ENCODING_TIFF
    raise ValueError(f"{str(path)!r}: unknown image type {suffix or '(no extension)'!r}; use .png, .tif or .tiff")
