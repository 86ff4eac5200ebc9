"""What the SDK sends for each kind of input, and the result helpers (pure functions, no server)."""
import io

import grpc
import numpy as np
import pytest
from PIL import Image as PILImage
from skimage import data
from tsva.client.errors import ImageInputError, TsvaError
from tsva.client.inputs import encoding_for_path, output_encoding, to_image
from tsva.client.results import FuseResult
from tsva.common import images
from tsva.v1 import tsva_pb2 as pb

RGB = data.astronaut()[:40, :56]        # uint8, 40 x 56 x 3
GREY16 = (data.camera()[:32, :48].astype(np.uint16) * 257)


def test_array_is_sent_raw_with_its_shape_and_type():
    img = to_image(RGB, "shot_a")
    assert (img.encoding, img.width, img.height, img.channels, img.pixel_type) == (
        pb.IMAGE_ENCODING_RAW, 56, 40, 3, pb.PIXEL_TYPE_UINT8)
    np.testing.assert_array_equal(images.decode_image(img), RGB)


def test_grey_uint16_array_round_trips():
    img = to_image(GREY16, "shot_b")
    assert (img.channels, img.pixel_type) == (1, pb.PIXEL_TYPE_UINT16)
    np.testing.assert_array_equal(images.decode_image(img)[:, :, 0], GREY16)


@pytest.mark.parametrize("bad, words", [
    (np.zeros((4, 4), np.float32), ["shot_a", "float32"]),
    (np.zeros((4, 4, 4), np.uint8), ["shot_a", "channels"]),
    (np.zeros((0, 4), np.uint8), ["shot_a", "(0, 4)"]),
    (np.zeros(5, np.uint8), ["shot_a", "shape"]),
])
def test_bad_arrays_are_refused_naming_the_field(bad, words):
    with pytest.raises(ImageInputError) as info:
        to_image(bad, "shot_a")
    for word in words:
        assert word in str(info.value)


def test_png_and_tiff_files_are_sent_as_they_are(tmp_path):
    png = tmp_path / "a.png"
    PILImage.fromarray(RGB).save(png)
    tif = tmp_path / "b.tif"
    tif.write_bytes(images.encode_image(GREY16, "tiff").data)
    img_png, img_tif = to_image(png, "shot_a"), to_image(str(tif), "shot_b")
    assert img_png.encoding == pb.IMAGE_ENCODING_PNG and img_png.data == png.read_bytes()
    assert img_tif.encoding == pb.IMAGE_ENCODING_TIFF and img_tif.data == tif.read_bytes()
    # Bytes are sniffed, not trusted to a file name.
    assert to_image(png.read_bytes(), "shot_a").encoding == pb.IMAGE_ENCODING_PNG


def test_other_formats_are_decoded_here_and_sent_raw(tmp_path):
    path = tmp_path / "a.bmp"
    PILImage.fromarray(RGB).save(path)
    img = to_image(path, "shot_a")
    assert img.encoding == pb.IMAGE_ENCODING_RAW
    np.testing.assert_array_equal(images.decode_image(img), RGB)  # BMP is lossless


def test_rgba_is_reduced_to_rgb(tmp_path):
    buffer = io.BytesIO()
    PILImage.fromarray(np.dstack([RGB, np.full(RGB.shape[:2], 255, np.uint8)])).save(buffer, format="BMP")
    img = to_image(buffer.getvalue(), "shot_b")
    assert img.channels == 3


def test_missing_and_unreadable_files(tmp_path):
    with pytest.raises(ImageInputError, match=r"shot_a: no such file '.*nope\.png'"):
        to_image(tmp_path / "nope.png", "shot_a")
    with pytest.raises(ImageInputError, match="is a directory"):
        to_image(tmp_path, "shot_a")
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"not an image at all")
    with pytest.raises(ImageInputError, match="shot_b: .*junk.png' is not an image"):
        to_image(junk, "shot_b")
    with pytest.raises(ImageInputError, match="shot_a: cannot send a list"):
        to_image([1, 2], "shot_a")


def test_encodings_by_name_and_by_path():
    assert output_encoding(None) == output_encoding("same") == pb.IMAGE_ENCODING_UNSPECIFIED
    assert output_encoding("PNG") == pb.IMAGE_ENCODING_PNG
    assert output_encoding(pb.IMAGE_ENCODING_TIFF) == pb.IMAGE_ENCODING_TIFF
    with pytest.raises(ValueError, match="output_encoding"):
        output_encoding("jpeg")
    assert encoding_for_path("x/out.PNG") == pb.IMAGE_ENCODING_PNG
    assert encoding_for_path("out.tiff") == encoding_for_path("out.tif") == pb.IMAGE_ENCODING_TIFF
    with pytest.raises(ValueError, match=r"\.jpg"):
        encoding_for_path("out.jpg")


def test_result_saves_in_either_format_without_reencoding_a_match(tmp_path):
    fused = images.encode_image(RGB, "png")
    result = FuseResult.from_proto(pb.FuseResponse(tile_id="t", fused=fused, y1_shot=pb.SHOT_B))
    assert result.y1_shot == "B" and result.ok
    assert result.save(tmp_path / "o.png").read_bytes() == fused.data
    back = images.decode_image(pb.Image(encoding=pb.IMAGE_ENCODING_TIFF, data=result.save(tmp_path / "o.tif").read_bytes()))
    np.testing.assert_array_equal(back, RGB)


def test_failed_result_raises_on_use():
    response = pb.FuseResponse(tile_id="t7", error=pb.TileError(code=3, status="INVALID_ARGUMENT", message="shot_b.data: bad"))
    result = FuseResult.from_proto(response, index=7)
    assert not result.ok and result.error.code == grpc.StatusCode.INVALID_ARGUMENT and result.index == 7
    assert result.to_dict()["error"]["status"] == "INVALID_ARGUMENT"
    with pytest.raises(TsvaError) as info:
        result.image
    assert info.value.code == grpc.StatusCode.INVALID_ARGUMENT and "shot_b.data" in info.value.message
