"""The scanner's manifest: one row per tile with its id, its position on the slide (slide pixels of
the top-left corner), its two shot files and their defocus offsets from the focal plane F.

CSV: a header row with tile_id,x,y,shot_a,shot_b,defocus_a_um,defocus_b_um.
JSON: {"slide_id": ..., "pixel_size_um": ..., "width": ..., "height": ..., "tiles": [{...}, ...]}
with the same keys per tile; width/height (the slide's size) are optional and default to the
tiles' extent. Shot paths are relative to the manifest's folder.

Every check names the row; rows count from 1 for the first tile (the CSV header is row 0).
"""
from __future__ import annotations

import csv
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

COLUMNS = ("tile_id", "x", "y", "shot_a", "shot_b", "defocus_a_um", "defocus_b_um")
DEFAULT_PIXEL_SIZE_UM = 0.25


class ManifestError(ValueError):
    """A bad manifest: the message names the row and the field."""


@dataclass
class Tile:
    row: int
    tile_id: str
    x: int
    y: int
    width: int = 0
    height: int = 0
    shot_a: object = None          # a path, or an array (simulated scans)
    shot_b: object = None
    defocus_a_um: float = 0.0
    defocus_b_um: float = 0.0

    @property
    def centre(self) -> tuple[float, float]:
        return self.x + self.width / 2, self.y + self.height / 2


@dataclass
class Slide:
    tiles: list[Tile]
    width: int
    height: int
    pixel_size_um: float = DEFAULT_PIXEL_SIZE_UM
    slide_id: str = ""
    channels: int = 3
    source: str = ""                 # what the slide came from (manifest path, simulated image)
    fingerprint: str = ""            # identifies the input, so --resume refuses another one
    extra: dict = field(default_factory=dict)


def _number(value, kind, row: int, name: str):
    try:
        number = kind(value)
    except (TypeError, ValueError):
        raise ManifestError(f"row {row}: {name} {value!r} is not {'an integer' if kind is int else 'a number'}") from None
    if kind is float and not np.isfinite(number):
        raise ManifestError(f"row {row}: {name} {value!r} is not a finite number")
    return number


def _shot_size(path: Path, row: int, name: str) -> tuple[int, int, int]:
    """(width, height, channels) from the file's header, without decoding its pixels."""
    if not path.is_file():
        raise ManifestError(f"row {row}: {name} {str(path)!r} not found")
    try:
        if path.suffix.lower() in (".tif", ".tiff"):
            import tifffile
            with tifffile.TiffFile(path) as tif:
                page = tif.pages[0]
                channels = page.samplesperpixel
                return page.imagewidth, page.imagelength, channels
        from PIL import Image
        with Image.open(path) as im:
            channels = {"L": 1, "I;16": 1, "RGB": 3, "RGBA": 4}.get(im.mode, len(im.getbands()))
            return im.width, im.height, channels
    except Exception as exc:  # noqa: BLE001 - any reader failure is an unreadable shot
        raise ManifestError(f"row {row}: {name} {str(path)!r} is not a readable image ({exc})") from None


def _rows(path: Path) -> tuple[list[dict], dict]:
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() == ".json":
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ManifestError(f"not valid JSON: {exc}") from None
        if not isinstance(doc, dict) or not isinstance(doc.get("tiles"), list):
            raise ManifestError('the JSON manifest must be an object with a "tiles" list')
        return doc["tiles"], {k: v for k, v in doc.items() if k != "tiles"}
    reader = csv.DictReader(text.splitlines())
    missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
    if missing:
        raise ManifestError(f"row 0 (header): missing column(s) {', '.join(missing)} (need {','.join(COLUMNS)})")
    return list(reader), {}


def read_manifest(path: str | Path, *, check_files: bool = True) -> Slide:
    path = Path(path)
    if not path.is_file():
        raise ManifestError(f"manifest {str(path)!r} not found")
    rows, header = _rows(path)
    if not rows:
        raise ManifestError("no tiles in the manifest")
    tiles, seen, size = [], {}, None
    for row, entry in enumerate(rows, start=1):
        if not isinstance(entry, dict):
            raise ManifestError(f"row {row}: not an object with {','.join(COLUMNS)}")
        for name in COLUMNS:
            if entry.get(name) in (None, ""):
                raise ManifestError(f"row {row}: {name} missing")
        tile_id = str(entry["tile_id"])
        if tile_id in seen:
            raise ManifestError(f"row {row}: tile_id {tile_id!r} already used in row {seen[tile_id]}")
        seen[tile_id] = row
        x, y = _number(entry["x"], int, row, "x"), _number(entry["y"], int, row, "y")
        if x < 0 or y < 0:
            raise ManifestError(f"row {row} (tile {tile_id}): position ({x}, {y}) leaves the slide (negative)")
        da = _number(entry["defocus_a_um"], float, row, "defocus_a_um")
        db = _number(entry["defocus_b_um"], float, row, "defocus_b_um")
        shot_a, shot_b = path.parent / str(entry["shot_a"]), path.parent / str(entry["shot_b"])
        width = height = 0
        channels = 3
        if check_files:
            wa, ha, ca = _shot_size(shot_a, row, "shot_a")
            wb, hb, cb = _shot_size(shot_b, row, "shot_b")
            if (wa, ha, ca) != (wb, hb, cb):
                raise ManifestError(f"row {row} (tile {tile_id}): shot_b is {wb}x{hb}x{cb}, shot_a {wa}x{ha}x{ca}")
            if size is None:
                size = (wa, ha, ca, row)
            elif (wa, ha, ca) != size[:3]:
                raise ManifestError(f"row {row} (tile {tile_id}): tile of {wa}x{ha}x{ca} among tiles of "
                                    f"{size[0]}x{size[1]}x{size[2]} (row {size[3]}): all tiles must be one size")
            width, height, channels = wa, ha, ca
        tiles.append(Tile(row, tile_id, x, y, width, height, shot_a, shot_b, da, db))
    width = max(t.x + t.width for t in tiles)
    height = max(t.y + t.height for t in tiles)
    declared_w, declared_h = header.get("width"), header.get("height")
    if declared_w is not None or declared_h is not None:
        declared_w = _number(declared_w if declared_w is not None else width, int, 0, "width")
        declared_h = _number(declared_h if declared_h is not None else height, int, 0, "height")
        for t in tiles:
            if t.x + t.width > declared_w or t.y + t.height > declared_h:
                raise ManifestError(f"row {t.row} (tile {t.tile_id}): {t.width}x{t.height} at ({t.x}, {t.y}) "
                                    f"leaves the {declared_w}x{declared_h} slide")
        width, height = declared_w, declared_h
    if check_files:
        check_overlaps(tiles)
    pixel = _number(header.get("pixel_size_um", DEFAULT_PIXEL_SIZE_UM), float, 0, "pixel_size_um")
    if channels not in (1, 3):
        raise ManifestError(f"row 1: shots have {channels} channels (1 or 3)")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    return Slide(tiles, width, height, pixel, str(header.get("slide_id", path.stem)), channels,
                 str(path), f"manifest:{digest}")


def check_overlaps(tiles: list[Tile]) -> None:
    """Refuses tiles lying (almost) on top of each other: centres closer than half a tile in both
    axes cannot come from a scan (the same position twice, or a wrong unit)."""
    cells: dict[tuple[int, int], list[Tile]] = {}
    for t in tiles:
        half_w, half_h = max(t.width // 2, 1), max(t.height // 2, 1)
        cx, cy = t.centre
        key = (int(cx // half_w), int(cy // half_h))
        for dx in (-1, 0, 1):
            for dy in (-1, 0, 1):
                for other in cells.get((key[0] + dx, key[1] + dy), ()):
                    ox, oy = other.centre
                    if abs(ox - cx) < half_w and abs(oy - cy) < half_h:
                        raise ManifestError(
                            f"row {t.row} (tile {t.tile_id}): at ({t.x}, {t.y}) it overlaps tile {other.tile_id} "
                            f"(row {other.row}, at ({other.x}, {other.y})) by more than half a tile")
        cells.setdefault(key, []).append(t)
