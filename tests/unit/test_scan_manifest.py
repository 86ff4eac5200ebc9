"""`tsva scan` refuses bad manifests before any call: one line naming the row, exit 2.
(No server is needed: every case fails while the manifest is read.)"""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from tsva.client.scan.manifest import read_manifest
from tsva.common import cli

HEADER = "tile_id,x,y,shot_a,shot_b,defocus_a_um,defocus_b_um\n"


def _shots(folder, name, size=(64, 48), seed=0):
    rng = np.random.default_rng(seed)
    for shot in ("a", "b"):
        Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(folder / f"{name}_{shot}.png")
    return f"{name}_a.png", f"{name}_b.png"


def _csv(folder, rows):
    path = folder / "manifest.csv"
    path.write_text(HEADER + "".join(",".join(str(v) for v in row) + "\n" for row in rows))
    return path


def _scan(capsys, manifest, tmp_path):
    status = cli.main(["scan", str(manifest), "-o", str(tmp_path / "out"), "--server", "127.0.0.1:9"])
    err = capsys.readouterr().err.strip()
    return status, err


def test_good_manifest_reads_positions_sizes_and_offsets(tmp_path):
    a1, b1 = _shots(tmp_path, "t1")
    a2, b2 = _shots(tmp_path, "t2")
    slide = read_manifest(_csv(tmp_path, [("t1", 0, 0, a1, b1, -1, 1), ("t2", 56, 0, a2, b2, -1, 1)]))
    assert [(t.tile_id, t.x, t.y, t.width, t.height) for t in slide.tiles] == [("t1", 0, 0, 64, 48), ("t2", 56, 0, 64, 48)]
    assert (slide.width, slide.height, slide.channels) == (120, 48, 3)
    assert slide.tiles[1].defocus_a_um == -1.0 and slide.tiles[1].defocus_b_um == 1.0


def test_json_manifest_with_slide_size_and_pixel_size(tmp_path):
    a1, b1 = _shots(tmp_path, "t1")
    path = tmp_path / "m.json"
    path.write_text(json.dumps({"slide_id": "S1", "pixel_size_um": 0.5, "width": 100, "height": 60, "tiles": [
        {"tile_id": "t1", "x": 10, "y": 5, "shot_a": a1, "shot_b": b1, "defocus_a_um": -2, "defocus_b_um": 2}]}))
    slide = read_manifest(path)
    assert (slide.width, slide.height, slide.pixel_size_um, slide.slide_id) == (100, 60, 0.5, "S1")


@pytest.mark.parametrize("case, expected", [
    ("missing_file", "row 2: shot_b"),
    ("unreadable", "row 2: shot_a"),
    ("overlap", "row 2 (tile t2)"),
    ("negative", "row 2 (tile t2): position (-5, 0) leaves the slide"),
    ("mixed_sizes", "row 2 (tile t2): tile of 32x48x3 among tiles of 64x48x3 (row 1)"),
    ("bad_number", "row 2: x 'left' is not an integer"),
    ("duplicate_id", "row 2: tile_id 't1' already used in row 1"),
])
def test_bad_manifest_one_line_naming_the_row_exit_2(tmp_path, capsys, case, expected):
    a1, b1 = _shots(tmp_path, "t1")
    a2, b2 = _shots(tmp_path, "t2", size=(32, 48) if case == "mixed_sizes" else (64, 48))
    row2 = ["t2", 56, 0, a2, b2, -1, 1]
    if case == "missing_file":
        row2[4] = "gone.png"
    elif case == "unreadable":
        (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
        row2[3] = "broken.png"
    elif case == "overlap":
        row2[1] = 8
    elif case == "negative":
        row2[1] = -5
    elif case == "bad_number":
        row2[1] = "left"
    elif case == "duplicate_id":
        row2[0] = "t1"
    status, err = _scan(capsys, _csv(tmp_path, [("t1", 0, 0, a1, b1, -1, 1), row2]), tmp_path)
    assert status == 2
    assert len(err.splitlines()) == 1, err
    assert expected in err


def test_tile_leaving_the_declared_slide(tmp_path, capsys):
    a1, b1 = _shots(tmp_path, "t1")
    path = tmp_path / "m.json"
    path.write_text(json.dumps({"width": 100, "height": 48, "tiles": [
        {"tile_id": "t1", "x": 50, "y": 0, "shot_a": a1, "shot_b": b1, "defocus_a_um": -1, "defocus_b_um": 1}]}))
    status, err = _scan(capsys, path, tmp_path)
    assert status == 2 and "row 1 (tile t1): 64x48 at (50, 0) leaves the 100x48 slide" in err


def test_missing_column(tmp_path, capsys):
    path = tmp_path / "m.csv"
    path.write_text("tile_id,x,y,shot_a,shot_b\n")
    status, err = _scan(capsys, path, tmp_path)
    assert status == 2 and "row 0 (header): missing column(s) defocus_a_um, defocus_b_um" in err
