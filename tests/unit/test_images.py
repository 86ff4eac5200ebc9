"""numpy <-> tsva.v1.Image conversion (pure functions, no server needed)."""
import numpy as np
import pytest
from tsva.common.images import ImageError, decode_image, encode_image
from tsva.v1 import tsva_pb2 as pb

RNG = np.random.default_rng(0)


# Every form except 16-bit colour PNG, which is refused (test_sixteen_bit_colour_png_refused).
FORMS = [(e, d, c) for e in ("raw", "png", "tiff") for d in (np.uint8, np.uint16) for c in (1, 3)
         if not (e == "png" and d == np.uint16 and c == 3)]


@pytest.mark.parametrize("encoding, dtype, channels", FORMS)
def test_round_trip(encoding, dtype, channels):
    array = RNG.integers(0, np.iinfo(dtype).max, size=(17, 23, channels), dtype=dtype)
    img = encode_image(array, encoding)
    assert (img.width, img.height, img.channels) == (23, 17, channels)
    out = decode_image(img, "shot_a")
    assert out.dtype == dtype and out.shape == (17, 23, channels)
    np.testing.assert_array_equal(out, array)


def test_grey_2d_input_becomes_hwc():
    out = decode_image(encode_image(np.zeros((4, 5), np.uint8)), "x")
    assert out.shape == (4, 5, 1)


def test_raw_is_little_endian():
    img = encode_image(np.array([[[258]]], np.uint16))
    assert img.data == b"\x02\x01"


def raw(**kw):
    base = dict(encoding=pb.IMAGE_ENCODING_RAW, width=1224, height=1000, channels=3,
                pixel_type=pb.PIXEL_TYPE_UINT8, data=b"\0" * 1000)
    base.update(kw)
    return pb.Image(**base)


@pytest.mark.parametrize("img, message", [
    (raw(), "shot_b.data: 1000 bytes, expected 3672000 for 1224x1000x3 uint8"),
    (raw(width=0), "shot_b.width: must be > 0"),
    (raw(height=0), "shot_b.height: must be > 0"),
    (raw(channels=2), "shot_b.channels: 2, expected 1 or 3"),
    (raw(pixel_type=0), "shot_b.pixel_type: not set"),
    (raw(pixel_type=9), "shot_b.pixel_type: unknown value 9"),
    (pb.Image(encoding=0), "shot_b.encoding: not set"),
    (pb.Image(encoding=42), "shot_b.encoding: unknown value 42"),
    (pb.Image(encoding=pb.IMAGE_ENCODING_PNG, data=b"garbage"), "shot_b.data: not a PNG file"),
    (pb.Image(encoding=pb.IMAGE_ENCODING_PNG, data=b"\x89PNG\r\n\x1a\n" + b"\0" * 40), "shot_b"),
    (pb.Image(encoding=pb.IMAGE_ENCODING_TIFF, data=b"II*\0garbage"), "shot_b.data: undecodable TIFF"),
])
def test_bad_images_name_the_field(img, message):
    with pytest.raises(ImageError) as info:
        decode_image(img, "shot_b")
    assert str(info.value).startswith(message)


def test_truncated_png_is_undecodable():
    data = encode_image(RNG.integers(0, 255, (40, 40, 3), dtype=np.uint8), "png").data
    img = pb.Image(encoding=pb.IMAGE_ENCODING_PNG, data=data[: len(data) // 2])
    with pytest.raises(ImageError, match=r"^shot_a\.data: undecodable PNG"):
        decode_image(img, "shot_a")


@pytest.mark.parametrize("encoding", ["raw", "png", "tiff"])
def test_size_limit_checked(encoding):
    img = encode_image(np.zeros((10, 30, 3), np.uint8), encoding)
    with pytest.raises(ImageError, match=r"^shot_a: size 30x10 exceeds the limit 20x20"):
        decode_image(img, "shot_a", max_width=20, max_height=20)


def test_sixteen_bit_colour_png_refused():
    with pytest.raises(ImageError, match="use TIFF or RAW"):
        encode_image(np.zeros((4, 4, 3), np.uint16), "png")


def test_float_array_refused():
    with pytest.raises(ImageError, match="float32"):
        encode_image(np.zeros((4, 4), np.float32))
