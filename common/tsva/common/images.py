"""Conversion between numpy arrays and `tsva.v1.Image` messages (RAW, PNG, TIFF).

Arrays are always uint8 or uint16, row-major HWC with 1 or 3 channels; `decode_image` returns
that shape (grey images as H x W x 1). Every check raises `ImageError` whose message starts with
the field it is about (e.g. "shot_b.data: ..."), so a server can pass it on verbatim.
"""
from __future__ import annotations

import io
import logging
import threading

import numpy as np

from tsva.v1 import tsva_pb2 as pb

ENCODINGS = {
    "raw": pb.IMAGE_ENCODING_RAW,
    "png": pb.IMAGE_ENCODING_PNG,
    "tiff": pb.IMAGE_ENCODING_TIFF,
}
_DTYPE_OF_PIXEL_TYPE = {pb.PIXEL_TYPE_UINT8: np.dtype(np.uint8), pb.PIXEL_TYPE_UINT16: np.dtype("<u2")}
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class ImageError(ValueError):
    """An image message or array that cannot be used; the message names the field."""


def pixel_type_of(dtype: np.dtype) -> int:
    dtype = np.dtype(dtype)
    if dtype == np.uint8:
        return pb.PIXEL_TYPE_UINT8
    if dtype == np.uint16:
        return pb.PIXEL_TYPE_UINT16
    raise ImageError(f"pixel type {dtype} is not supported (uint8 or uint16)")


def encoding_name(encoding: int) -> str:
    try:
        return pb.ImageEncoding.Name(encoding)
    except ValueError:
        return str(encoding)


def decode_image(img: pb.Image, field: str = "image", *, max_width: int | None = None,
                 max_height: int | None = None) -> np.ndarray:
    """The pixels of `img` as an H x W x C uint8/uint16 array (C = 1 or 3).

    RAW data is viewed, not copied (the result is read-only). For PNG/TIFF the decoder's own header
    parser is consulted first: size, channels, bit depth, pages and (TIFF) tiles are checked against
    `max_width`/`max_height` and the decoded-bytes budget (`decode_budget`) before any pixel is
    decoded, so a crafted file costs no memory.
    """
    encoding = img.encoding
    if encoding == pb.IMAGE_ENCODING_RAW:
        array = _decode_raw(img, field)
    elif encoding == pb.IMAGE_ENCODING_PNG:
        array = _decode_png(img.data, field, max_width, max_height)
    elif encoding == pb.IMAGE_ENCODING_TIFF:
        array = _decode_tiff(img.data, field, max_width, max_height)
    elif encoding == pb.IMAGE_ENCODING_UNSPECIFIED:
        raise ImageError(f"{field}.encoding: not set (RAW, PNG or TIFF)")
    else:
        raise ImageError(f"{field}.encoding: unknown value {encoding} (RAW, PNG or TIFF)")
    _check_limits(array.shape[1], array.shape[0], field, max_width, max_height)
    return array


def decode_budget(max_width: int | None, max_height: int | None) -> int | None:
    """Most bytes a decoder may hold for one shot: the largest tile the limits allow (uint16 RGB),
    twice (the decoder's buffer beside the array it hands over). None without limits."""
    if not max_width or not max_height:
        return None
    return 2 * max_width * max_height * 3 * 2


def _check_limits(width: int, height: int, field: str, max_width: int | None, max_height: int | None) -> None:
    if width == 0 or height == 0:
        raise ImageError(f"{field}: size {width}x{height} has a zero dimension")
    if (max_width and width > max_width) or (max_height and height > max_height):
        raise ImageError(f"{field}: size {width}x{height} exceeds the limit {max_width}x{max_height}")


def _check_budget(needed: int, field: str, kind: str, what: str, max_width: int | None,
                  max_height: int | None) -> None:
    budget = decode_budget(max_width, max_height)
    if budget is not None and needed > budget:
        raise ImageError(f"{field}.data: decoding this {kind} ({what}) needs {needed / 2**20:.0f} MiB, "
                         f"more than the {budget / 2**20:.0f} MiB allowed per shot")


def _decode_raw(img: pb.Image, field: str) -> np.ndarray:
    width, height, channels = img.width, img.height, img.channels
    if width == 0:
        raise ImageError(f"{field}.width: must be > 0")
    if height == 0:
        raise ImageError(f"{field}.height: must be > 0")
    if channels not in (1, 3):
        raise ImageError(f"{field}.channels: {channels}, expected 1 or 3")
    dtype = _DTYPE_OF_PIXEL_TYPE.get(img.pixel_type)
    if dtype is None:
        if img.pixel_type == pb.PIXEL_TYPE_UNSPECIFIED:
            raise ImageError(f"{field}.pixel_type: not set (UINT8 or UINT16)")
        raise ImageError(f"{field}.pixel_type: unknown value {img.pixel_type} (UINT8 or UINT16)")
    expected = width * height * channels * dtype.itemsize
    data = img.data  # each read of a bytes field copies it out of the message (upb): read once
    if len(data) != expected:
        raise ImageError(f"{field}.data: {len(data)} bytes, expected {expected} for "
                         f"{width}x{height}x{channels} {dtype.name}")
    return np.frombuffer(data, dtype=dtype).reshape(height, width, channels)


# Pillow modes of a PNG -> (bands decoded, bytes per sample); anything else is refused unopened.
_PNG_MODES = {"1": (1, 1), "L": (1, 1), "LA": (2, 1), "P": (1, 1), "PA": (2, 1), "RGB": (3, 1),
              "RGBA": (4, 1), "I": (1, 4), "I;16": (1, 2), "I;16B": (1, 2)}


def _decode_png(data: bytes, field: str, max_width: int | None, max_height: int | None) -> np.ndarray:
    from PIL import PngImagePlugin

    if not data.startswith(_PNG_SIGNATURE):
        raise ImageError(f"{field}.data: not a PNG file ({len(data)} bytes without the PNG signature)")
    try:
        # Lazy open: Pillow parses the chunks up to the image data (wherever IHDR sits) and
        # decodes nothing until load(), so every check below is made on its own header reading.
        # (PngImageFile rather than Image.open: its error says what is broken, and our limits
        # replace Pillow's decompression-bomb warning.)
        im = PngImagePlugin.PngImageFile(io.BytesIO(data))
    except Exception as exc:  # Pillow raises many types for corrupt files
        raise ImageError(f"{field}.data: not a PNG file ({_reason(exc)})") from None
    with im:
        width, height = im.size
        _check_limits(width, height, field, max_width, max_height)
        rawmode = im.tile[0][3] if im.tile and isinstance(im.tile[0][3], str) else ""  # e.g. "RGB;16B"
        # Pillow silently reduces 16-bit colour (and grey + alpha) PNGs to 8 bits: refuse them
        # rather than lose precision.
        if ";16" in rawmode and not im.mode.startswith("I"):
            raise ImageError(f"{field}.data: 16-bit colour PNG is not supported; send TIFF or RAW")
        if im.mode not in _PNG_MODES:
            raise ImageError(f"{field}.data: PNG mode {im.mode} is not supported")
        bands, itemsize = _PNG_MODES[im.mode]
        converted = 3 if im.mode in ("P", "PA", "RGBA") else 0  # the RGB copy made below
        _check_budget(width * height * (bands * itemsize + converted), field, "PNG",
                      f"{width}x{height} {im.mode}", max_width, max_height)
        try:
            if im.mode in ("P", "PA", "RGBA", "CMYK", "YCbCr"):
                im = im.convert("RGB")  # palette -> RGB; alpha dropped (a scanner tile is opaque)
            elif im.mode in ("1", "LA"):
                im = im.convert("L")
            array = np.asarray(im)
        except Exception as exc:
            raise ImageError(f"{field}.data: undecodable PNG ({_reason(exc)})") from None
    if array.dtype == np.int32:  # Pillow's "I" mode for some 16-bit grey files
        array = array.astype(np.uint16)
    return _as_hwc(array, field, "PNG")


# TIFF compressions whose decoders write into a buffer of the segment's declared size (tifffile's
# decompress(out=...)), so a segment cannot inflate beyond what the header check allowed.
_TIFF_COMPRESSIONS = {1: "none", 5: "LZW", 8: "Deflate", 32946: "Deflate", 32773: "PackBits",
                      34925: "LZMA", 50000: "Zstd"}


class _QuietWhileDecoding(logging.Filter):
    """Drops tifffile's log records while this thread decodes a client's file: its complaints about
    a broken file become the ImageError the client gets, not lines in the server's log."""

    active = threading.local()

    def filter(self, record: logging.LogRecord) -> bool:
        return not getattr(self.active, "on", False)


_TIFF_QUIET = _QuietWhileDecoding()
logging.getLogger("tifffile").addFilter(_TIFF_QUIET)


def _decode_tiff(data: bytes, field: str, max_width: int | None, max_height: int | None) -> np.ndarray:
    import tifffile

    _TIFF_QUIET.active.on = True
    try:
        with tifffile.TiffFile(io.BytesIO(data)) as tif:
            page = _only_page(tif, field)
            _check_tiff_page(page, field, max_width, max_height)
            array = page.asarray(maxworkers=1)  # one segment buffer at a time, as budgeted
            if page.planarconfig == tifffile.PLANARCONFIG.SEPARATE and array.ndim == 3:
                array = np.moveaxis(array, 0, -1)
    except ImageError:
        raise
    except Exception as exc:  # tifffile raises many types for corrupt files
        raise ImageError(f"{field}.data: undecodable TIFF ({_reason(exc)})") from None
    finally:
        _TIFF_QUIET.active.on = False
    return _as_hwc(array, field, "TIFF")


def _only_page(tif, field: str):
    """The TIFF's one page. Page 1 is looked up, not the whole chain counted: a file of a million
    tiny IFDs costs one lookup."""
    try:
        page = tif.pages.first
    except IndexError:
        raise ImageError(f"{field}.data: undecodable TIFF (no readable image file directory: "
                         f"damaged, truncated or not a TIFF)") from None
    try:
        tif.pages[1]
    except IndexError:
        return page
    raise ImageError(f"{field}.data: TIFF holds more than one page; send one image per shot")


def _check_tiff_page(page, field: str, max_width: int | None, max_height: int | None) -> None:
    """Every dimension the decoder would allocate for, from the page's tags, before decoding."""
    if page.imagedepth != 1:
        raise ImageError(f"{field}.data: volumetric TIFF (ImageDepth {page.imagedepth}) is not supported")
    width, height = page.imagewidth, page.imagelength
    _check_limits(width, height, field, max_width, max_height)
    samples = page.samplesperpixel
    if samples not in (1, 3):
        raise ImageError(f"{field}.data: TIFF of {samples} samples per pixel, expected 1 or 3 channels")
    dtype = page.dtype
    if dtype not in (np.uint8, np.uint16) or page.bitspersample not in (8, 16):
        kind = dtype if dtype is not None else f"{page.bitspersample}-bit"
        raise ImageError(f"{field}.data: TIFF pixel type {kind} is not supported (uint8 or uint16)")
    compression = int(page.compression)
    if compression not in _TIFF_COMPRESSIONS:
        raise ImageError(f"{field}.data: TIFF compression {_enum_name(page.compression)} is not supported "
                         f"({', '.join(sorted(set(_TIFF_COMPRESSIONS.values())))})")
    if page.is_tiled:
        tile_w, tile_h = page.tilewidth, page.tilelength
        # TIFF tiles are multiples of 16; a tile beyond the image rounded up to that is a bomb.
        if tile_w > -(-width // 16) * 16 or tile_h > -(-height // 16) * 16 or page.tiledepth != 1:
            raise ImageError(f"{field}.data: TIFF tile {tile_w}x{tile_h}x{page.tiledepth} is larger than "
                             f"the {width}x{height} image")
        segment = tile_w * tile_h
    else:
        segment = min(page.rowsperstrip or height, height) * width
    itemsize = np.dtype(dtype).itemsize
    _check_budget((width * height + segment) * samples * itemsize, field, "TIFF",
                  f"{width}x{height}x{samples} {np.dtype(dtype).name}", max_width, max_height)


def _enum_name(value) -> str:
    return getattr(value, "name", None) or str(int(value))


def _reason(exc: Exception) -> str:
    """A decoder's exception as words: some (IndexError, KeyError) carry only a number."""
    text = str(exc).strip().strip("'")
    if not text or text.lstrip("-").isdigit() or "unpack" in text or "Truncated" in text:
        return "the file is damaged or truncated"
    return text[:200]


def _as_hwc(array: np.ndarray, field: str, kind: str) -> np.ndarray:
    if array.dtype not in (np.uint8, np.uint16):
        raise ImageError(f"{field}.data: {kind} pixel type {array.dtype} is not supported (uint8 or uint16)")
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3 or array.shape[2] not in (1, 3):
        raise ImageError(f"{field}.data: {kind} of shape {array.shape}, expected 1 or 3 channels")
    return array


def as_hwc(array: np.ndarray, field: str = "image") -> np.ndarray:
    """`array` (H x W or H x W x C) as H x W x C, checking dtype and channel count."""
    array = np.asarray(array)
    return _as_hwc(array, field, "array")


def encode_image(array: np.ndarray, encoding: int = pb.IMAGE_ENCODING_RAW, *,
                 out: pb.Image | None = None) -> pb.Image:
    """An Image message holding `array` (H x W or H x W x C, uint8/uint16, C = 1 or 3).

    `encoding` is an ImageEncoding value or one of "raw", "png", "tiff". `out`: an Image field of
    a message being built (e.g. `response.fused`), filled in place and returned; assigning a
    separate Image to a message would copy all its bytes once more.
    """
    if isinstance(encoding, str):
        try:
            encoding = ENCODINGS[encoding.lower()]
        except KeyError:
            raise ImageError(f"encoding: unknown {encoding!r} (raw, png or tiff)") from None
    array = as_hwc(array)
    height, width, channels = array.shape
    _check_limits(width, height, "image", None, None)
    img = pb.Image() if out is None else out
    img.encoding, img.width, img.height, img.channels = encoding, width, height, channels
    img.pixel_type = pixel_type_of(array.dtype)
    if encoding == pb.IMAGE_ENCODING_RAW:
        img.data = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes()
    elif encoding == pb.IMAGE_ENCODING_PNG:
        img.data = _encode_png(array)
    elif encoding == pb.IMAGE_ENCODING_TIFF:
        img.data = _encode_tiff(array)
    else:
        raise ImageError(f"encoding: {encoding_name(encoding)} cannot be written (RAW, PNG or TIFF)")
    return img


def _encode_png(array: np.ndarray) -> bytes:
    from PIL import Image as PILImage

    if array.dtype == np.uint16 and array.shape[2] == 3:
        raise ImageError("encoding: 16-bit colour cannot be written as PNG; use TIFF or RAW")
    plane = array[:, :, 0] if array.shape[2] == 1 else array
    buffer = io.BytesIO()
    # Level 1: nearly the size of level 6 for camera images at a fraction of the time.
    PILImage.fromarray(np.ascontiguousarray(plane)).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def _encode_tiff(array: np.ndarray) -> bytes:
    import tifffile

    buffer = io.BytesIO()
    plane = array[:, :, 0] if array.shape[2] == 1 else array
    tifffile.imwrite(buffer, plane, photometric="rgb" if array.shape[2] == 3 else "minisblack")
    return buffer.getvalue()
