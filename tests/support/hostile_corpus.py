"""Crafted hostile shots and requests, shared by tests/e2e/test_hostile_input.py and
benchmarks/hostile_input.py. Each file is small on the wire and would cost a lot if decoded:
the gateway must refuse it from its header, with INVALID_ARGUMENT naming the field and the tile.

`CASES` maps a case name to (builder of the shot's pb.Image, text the error message must contain).
`request(name)` is a FuseRequest with that shot as shot_b (shot_a is a good 32x32 tile), so the
gateway has already decoded a good shot when it meets the bad one.
"""
from __future__ import annotations

import functools
import io
import struct
import zlib

import numpy as np
from tsva.common.images import encode_image
from tsva.v1 import tsva_pb2 as pb

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
GOOD = np.tile(np.arange(32, dtype=np.uint8)[None, :, None] * 7, (32, 1, 3))  # 32x32 RGB, textured


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _ihdr(width: int, height: int, depth: int, colour: int) -> bytes:
    return struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0)


def _zeros_deflated(size: int, block: int = 1 << 20) -> bytes:
    """A zlib stream of `size` zero bytes, made in milliseconds: after a full flush the deflate state
    is reset, so every 1-MiB block of zeros compresses to the same bytes, repeated here; the
    Adler-32 of n zeros is (n mod 65521) << 16 | 1."""
    def deflated(n: int) -> bytes:
        comp = zlib.compressobj(9, zlib.DEFLATED, -15)
        return comp.compress(bytes(n)) + comp.flush(zlib.Z_FULL_FLUSH)

    whole, rest = divmod(size, block)
    body = deflated(block) * whole + (deflated(rest) if rest else b"")
    final = zlib.compressobj(9, zlib.DEFLATED, -15).flush()  # an empty last block
    return b"\x78\xda" + body + final + struct.pack(">I", (size % 65521) << 16 | 1)


@functools.lru_cache(maxsize=None)
def hidden_header_png(width: int = 12000, height: int = 12000, depth: int = 8, colour: int = 2) -> bytes:
    """A private chunk that looks like a 64x64 header, placed before the real IHDR (Pillow skips it)."""
    bands = {0: 1, 2: 3, 4: 2, 6: 4}[colour]
    row = 1 + width * bands * depth // 8
    return (PNG_SIGNATURE + png_chunk(b"prVt", _ihdr(64, 64, 8, 2)) + png_chunk(b"IHDR", _ihdr(width, height, depth, colour))
            + png_chunk(b"IDAT", _zeros_deflated(row * height)) + png_chunk(b"IEND", b""))


def _tiff(shape, dtype, segments, **kwargs) -> bytes:
    """A TIFF whose strips/tiles are the given already-compressed bytes (tifffile writes them as is)."""
    import tifffile

    buffer = io.BytesIO()
    tifffile.imwrite(buffer, iter(segments), shape=shape, dtype=dtype, compression="zlib", **kwargs)
    return buffer.getvalue()


@functools.lru_cache(maxsize=None)
def tiff_samples_bomb() -> bytes:
    """1024x1024 pixels of 1500 samples each (1.5 GB decoded), about 1.6 MB on the wire."""
    rows = 16
    strip = _zeros_deflated(rows * 1024 * 1500)
    return _tiff((1024, 1024, 1500), np.uint8, [strip] * (1024 // rows), photometric="minisblack",
                 planarconfig="contig", rowsperstrip=rows)


@functools.lru_cache(maxsize=None)
def tiff_depth_bomb() -> bytes:
    """An SGI volumetric page: 256 planes of 64 x 16384 (268 MB decoded). A check that reads the
    page shape as (height, width, ...) sees 256x64 and lets it through."""
    tile = _zeros_deflated(16 * 64 * 1024)
    return _tiff((256, 64, 16384), np.uint8, [tile] * (16 * 16), tile=(16, 64, 1024), volumetric=True,
                 photometric="minisblack")


@functools.lru_cache(maxsize=None)
def tiff_tile_bomb() -> bytes:
    """A 16x16 image stored in one 16384x16384 tile (+256 MB to decode)."""
    return _tiff((16, 16), np.uint8, [_zeros_deflated(16384 * 16384)], tile=(16384, 16384),
                 photometric="minisblack")


@functools.lru_cache(maxsize=None)
def tiff_multipage() -> bytes:
    """A good 32x32 page followed by a 12000x12000 page."""
    import tifffile

    buffer = io.BytesIO()
    with tifffile.TiffWriter(buffer) as tif:
        tif.write(GOOD, photometric="rgb")
        rows = 400
        strip = _zeros_deflated(rows * 12000)
        tif.write(iter([strip] * (12000 // rows)), shape=(12000, 12000), dtype=np.uint8, compression="zlib",
                  rowsperstrip=rows, photometric="minisblack")
    return buffer.getvalue()


def tiff_float() -> bytes:
    import tifffile

    buffer = io.BytesIO()
    tifffile.imwrite(buffer, np.zeros((32, 32), np.float32))
    return buffer.getvalue()


def _png(data: bytes) -> pb.Image:
    return pb.Image(encoding=pb.IMAGE_ENCODING_PNG, data=data)


def _tif(data: bytes) -> pb.Image:
    return pb.Image(encoding=pb.IMAGE_ENCODING_TIFF, data=data)


_RNG_BYTES = np.random.default_rng(12).integers(0, 256, 4096, dtype=np.uint8).tobytes()

# name -> (builder of the bad shot, text its error message contains)
CASES = {
    "png_hidden_header_bomb": (lambda: _png(hidden_header_png()), "size 12000x12000 exceeds the limit"),
    "png_hidden_header_16bit_colour": (lambda: _png(hidden_header_png(64, 64, 16, 2)), "16-bit colour PNG"),
    "png_hidden_header_16bit_grey_alpha": (lambda: _png(hidden_header_png(64, 64, 16, 4)), "16-bit colour PNG"),
    "png_garbage_after_signature": (lambda: _png(PNG_SIGNATURE + _RNG_BYTES), "not a PNG file"),
    "png_no_signature": (lambda: _png(_RNG_BYTES), "not a PNG file"),
    "tiff_samples_bomb": (lambda: _tif(tiff_samples_bomb()), "1500 samples per pixel"),
    "tiff_depth_bomb": (lambda: _tif(tiff_depth_bomb()), "ImageDepth 256"),
    "tiff_tile_bomb": (lambda: _tif(tiff_tile_bomb()), "tile 16384x16384x1 is larger than the 16x16 image"),
    "tiff_multipage": (lambda: _tif(tiff_multipage()), "TIFF holds more than one page"),
    "tiff_float": (lambda: _tif(tiff_float()), "TIFF pixel type float32"),
    "tiff_garbage": (lambda: _tif(b"II*\0" + _RNG_BYTES), "undecodable TIFF"),
    "tiff_empty": (lambda: _tif(b"II*\0\x08\0\0\0"), "undecodable TIFF (no readable image file directory"),
}


def good_shot() -> pb.Image:
    return encode_image(GOOD)


def request(name: str, tile_id: str | None = None) -> pb.FuseRequest:
    build, _ = CASES[name]
    return pb.FuseRequest(tile_id=tile_id or f"hostile-{name}", slide_id="hostile", shot_a=good_shot(),
                          shot_b=build())


# Wire-level cases: bytes that are not a valid FuseRequest at all, or ids beyond the limit.
UNPARSEABLE = b"\xff\xff\xff\xff\x0f" + b"\x01" * 20


def non_utf8_tile_id() -> bytes:
    """A FuseRequest whose tile_id (field 1) is not UTF-8: protobuf refuses to parse it."""
    bad_id = b"tile-\xff\xfe"
    return b"\x0a" + bytes([len(bad_id)]) + bad_id + pb.FuseRequest(shot_a=good_shot(),
                                                                      shot_b=good_shot()).SerializeToString()


# ---- Seeded mutation fuzzing of whole FuseRequest messages ---------------------------------

def fuzz_seeds() -> list[bytes]:
    """Valid small FuseRequests in every encoding: the starting points of the mutations."""
    seeds = []
    for i, encoding in enumerate(("raw", "png", "tiff")):
        for channels in (1, 3):
            tile = GOOD[:16 + 4 * i, :24, :channels]
            seeds.append(pb.FuseRequest(
                tile_id=f"seed-{encoding}-{channels}", slide_id="fuzz", position=pb.TilePosition(x=i, y=channels),
                shot_a=encode_image(tile, encoding), shot_b=encode_image(tile // 2, encoding),
                defocus_a_um=-1.0, defocus_b_um=1.0).SerializeToString())
    return seeds


def mutate(rng: np.random.Generator, data: bytes, other: bytes, max_len: int = 1 << 16) -> bytes:
    """1-4 random edits of `data`: bit flips, byte sets, deletions, insertions, duplications,
    truncation, or a splice with `other`; at most `max_len` bytes."""
    buf = bytearray(data)
    for _ in range(int(rng.integers(1, 5))):
        op, n = int(rng.integers(0, 7)), len(buf)
        at = int(rng.integers(0, n)) if n else 0
        if op == 0 and n:
            buf[at] ^= 1 << int(rng.integers(0, 8))
        elif op == 1 and n:
            buf[at] = int(rng.integers(0, 256))
        elif op == 2 and n:
            del buf[at:at + int(rng.integers(1, 64))]
        elif op == 3:
            buf[at:at] = rng.integers(0, 256, int(rng.integers(1, 16)), dtype=np.uint8).tobytes()
        elif op == 4 and n:
            buf[at:at] = buf[at:at + int(rng.integers(1, 256))]
        elif op == 5 and n:
            del buf[at:]
        else:
            cut = int(rng.integers(0, len(other) + 1))
            buf = buf[:at] + bytearray(other[cut:])
    return bytes(buf[:max_len])


def fuzz_messages(seed: int, count: int) -> list[bytes]:
    rng = np.random.default_rng(seed)
    seeds = fuzz_seeds()
    pick = lambda: seeds[int(rng.integers(0, len(seeds)))]  # noqa: E731
    return [mutate(rng, pick(), pick()) for _ in range(count)]
