"""A DICOM WSI series (VL Whole Slide Microscopy Image, Supplement 145) from the slide just written,
for a hospital's PACS: one instance (file) per pyramid level, written by wsidicom.

The levels are read from the OME-TIFF, tile for tile (same 256x256 tiles, same pyramid): JPEG tiles
are complete JPEG streams (the writer encodes each tile alone), so they are copied into the frames
as they are (JPEG Baseline, YBR_FULL_422) and the pixels stay exactly the TIFF's; lossless tiles
(deflate, zstd, none: no DICOM transfer syntax) are decoded and encoded once as JPEG 2000 lossless
(reversible colour transform: YBR_RCT; grey slides MONOCHROME2), which OpenSlide, wsidicom and
DICOM viewers read. Either way wsidicom writes the tiles as they are read, a bounded batch at a
time, so memory stays bounded whatever the slide's size (its own transcoding pool queues decoded
tiles without bound while the slower JPEG 2000 encoder catches up: peak RSS 111 -> 265 MB from a
4 to a 42 MP slide; encoded here, 94 -> 96 MB).

The header says what the image is: a virtually autofocused slide, fused from two shots by TSVA
(series and pyramid descriptions, image comments: the TIFFs' description; focus method automatic),
the slide's identifier (container and specimen identifier) and the pixel spacing of every level.
Needs the `dicom` extra (wsidicom, pydicom): `pip install 'tsva-client[dicom]'`.
"""
from __future__ import annotations

import copy
import os
import shutil
from dataclasses import dataclass
from importlib import metadata as importlib_metadata
from pathlib import Path

import numpy as np
import tifffile
from pydicom.uid import JPEGBaseline8Bit, generate_uid
from wsidicom import ImageData, WsiDicom, WsiInstance
from wsidicom.codec import Channels, Encoder, Jpeg2kSettings, LossyCompressionIsoStandard
from wsidicom.geometry import Point, Size, SizeMm
from wsidicom.metadata import (Equipment, FocusMethod, Image, ImageType, Label,
                               LossyCompression, OpticalPath, Patient, Pyramid, Series, Slide, SlideSample,
                               Study, WsiMetadata)
from wsidicom.metadata.schema.dicom import WsiMetadataDicomSchema
from wsidicom.source import Source

FOLDER = "dicom"
SERIES_DESCRIPTION = "Virtually autofocused (TSVA two-shot fusion)"
LO = 64  # the longest Long String (identifiers, descriptions) DICOM allows


@dataclass(frozen=True)
class SlideHeader:
    """What the series says about the slide."""
    slide_id: str
    pixel_size_um: float                  # level 0; level n is 2**n times that, as in the TIFFs
    comments: str                         # the TIFFs' description (source, complete or partial)
    partial: bool = False


def slide_header(slide, comments: str, *, partial: bool) -> SlideHeader:
    """The header of a scanned slide (a tsva.client.scan.manifest.Slide)."""
    return SlideHeader(slide.slide_id, slide.pixel_size_um, comments, partial)


def write_series(slide: Path, folder: Path, header: SlideHeader, *, threads: int | None = None) -> list[Path]:
    """The series of `slide` (the OME-TIFF) in `folder`, replacing what an earlier run wrote there
    (written beside it first, so a failure leaves the earlier series whole). Returns its files."""
    folder = Path(folder)
    fresh = folder.with_name(folder.name + ".writing")
    shutil.rmtree(fresh, ignore_errors=True)
    fresh.mkdir(parents=True)
    with WsiDicom(_TiffSource(Path(slide), _metadata(header), header.pixel_size_um), source_owned=True) as wsi:
        written = wsi.save(fresh, workers=threads or 1, include_labels=False, include_overviews=False,
                           include_thumbnails=False)
    shutil.rmtree(folder, ignore_errors=True)
    fresh.rename(folder)
    return sorted(folder / Path(str(path)).name for path in written)


def _metadata(header: SlideHeader) -> WsiMetadata:
    slide_id = header.slide_id.replace("\\", "/")[:LO] or "unnamed"  # a backslash separates DICOM values
    partial = " (partial)" if header.partial else ""
    try:
        version = importlib_metadata.version("tsva-client")
    except importlib_metadata.PackageNotFoundError:
        version = "unknown"
    spacing_mm = header.pixel_size_um / 1000
    image = Image(focus_method=FocusMethod.AUTO, pixel_spacing=SizeMm(spacing_mm, spacing_mm))
    return WsiMetadata(
        study=Study(uid=generate_uid(), description="TSVA two-shot scan"),
        series=Series(uid=generate_uid(), number=1, description=(SERIES_DESCRIPTION + partial)[:LO]),
        patient=Patient(),
        equipment=Equipment(software_versions=[f"tsva-client {version}"]),
        slide=Slide(identifier=slide_id, samples=[SlideSample(identifier=slide_id, uid=generate_uid())]),
        pyramid=Pyramid(image=image, optical_paths=[OpticalPath(identifier="0")], uid=generate_uid(),
                        description=f"virtually autofocused (fused){partial}", comments=header.comments),
        label=Label(),
        frame_of_reference_uid=generate_uid(),
        dimension_organization_uids=[generate_uid()],
    )


class _TiffLevel(ImageData):
    """One level of the OME-TIFF as wsidicom's image data: its tiles read with os.pread (no shared
    file position, so wsidicom's threads read at once), copied when JPEG, else decoded by tifffile
    and encoded once by `encoder`, here (wsidicom sees encoded tiles: no transcoder, see above)."""

    def __init__(self, page: tifffile.TiffPage, fd: int, pixel_size_um: float, encoder: Encoder):
        super().__init__(encoder)
        self._page, self._fd = page, fd
        self._spacing = SizeMm(pixel_size_um / 1000, pixel_size_um / 1000)
        # Tiles that carry their own tables are complete JPEG streams (shared JPEGTables would not be).
        self._copy = page.compression == tifffile.COMPRESSION.JPEG and not page.jpegtables
        self._decode = page.decode

    @property
    def transfer_syntax(self):
        return JPEGBaseline8Bit if self._copy else self.encoder.transfer_syntax

    @property
    def image_size(self) -> Size:
        return Size(self._page.imagewidth, self._page.imagelength)

    @property
    def tile_size(self) -> Size:
        return Size(self._page.tilewidth, self._page.tilelength)

    @property
    def pixel_spacing(self) -> SizeMm:
        return self._spacing

    @property
    def imaged_size(self):
        return None  # image size x pixel spacing

    @property
    def samples_per_pixel(self) -> int:
        return self._page.samplesperpixel

    @property
    def photometric_interpretation(self) -> str:
        if not self._copy:
            return self.encoder.photometric_interpretation
        if self._page.photometric == tifffile.PHOTOMETRIC.YCBCR:
            return "YBR_FULL_422"  # DICOM's name for JPEG's YCbCr, subsampled (the writer's 4:2:0)
        return "RGB" if self.samples_per_pixel == 3 else "MONOCHROME2"

    @property
    def bits(self) -> int:
        return 8

    @property
    def image_coordinate_system(self):
        return None  # wsidicom's default: the slide's origin at the image's top left

    @property
    def thread_safe(self) -> bool:
        return True

    @property
    def lossy_compression(self):
        if not self._copy:
            return None  # never lossy compressed
        raw = self.image_size.area * self.samples_per_pixel
        return [LossyCompression(LossyCompressionIsoStandard.JPEG_LOSSY,
                                 round(raw / max(sum(self._page.databytecounts), 1), 2))]

    @property
    def transcoder(self):
        return None  # the tiles come out encoded in `transfer_syntax`: written through, in order

    def _stored(self, tile: Point) -> tuple[int, bytes]:
        index = tile.y * self.tiled_size.width + tile.x
        return index, os.pread(self._fd, self._page.databytecounts[index], self._page.dataoffsets[index])

    def get_encoded_tile(self, tile: Point, z: float, path: str) -> bytes:
        if self._copy:
            return self._stored(tile)[1]
        return self.encoder.encode(self.get_decoded_tile(tile, z, path))

    def get_decoded_tile(self, tile_point: Point, z: float, path: str, cache: bool = True) -> np.ndarray:
        index, data = self._stored(tile_point)
        segment, _, _ = self._decode(data, index)  # (1, rows, columns, samples)
        return segment[0] if self.samples_per_pixel > 1 else segment[0, ..., 0]


class _TiffSource(Source):
    """The OME-TIFF's pyramid as the volume instances of one series (no label, overview, thumbnail)."""

    def __init__(self, slide: Path, metadata: WsiMetadata, pixel_size_um: float):
        super().__init__()
        self._tif = tifffile.TiffFile(slide)
        self._fd = os.open(slide, os.O_RDONLY)
        try:
            levels = self._tif.series[0].levels
            channels = Channels.GRAYSCALE if levels[0].keyframe.samplesperpixel == 1 else Channels.YBR
            lossless = Encoder.create_for_settings(Jpeg2kSettings(levels=[0], channels=channels))
            dataset = WsiMetadataDicomSchema().dump(metadata, ImageType.VOLUME, channels != Channels.GRAYSCALE)
            self._levels = [
                WsiInstance.create_instance(_TiffLevel(level.keyframe, self._fd, pixel_size_um * 2 ** index, lossless),
                                            copy.deepcopy(dataset), ImageType.VOLUME, index)
                for index, level in enumerate(levels)]
        except BaseException:
            self.close()
            raise

    @property
    def base_dataset(self):
        return self._levels[0].dataset

    @property
    def level_instances(self):
        return self._levels

    @property
    def label_instances(self):
        return []

    @property
    def overview_instances(self):
        return []

    @property
    def thumbnail_instances(self):
        return []

    @property
    def annotation_instances(self):
        return []

    def close(self) -> None:
        self._tif.close()
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

