"""Real through-focus z-stacks: reading, checking, writing, and training pairs cut from them.

A stack is one file per tile: a multi-page TIFF or OME-TIFF, one RGB plane per page (all planes of
one size and pixel type). The planes' z in um comes from, in this order:
  1. a sidecar JSON beside the file (`tile.ome.tif` -> `tile.json`): {"z_um": [z of every plane]},
  2. the OME-XML: `Plane PositionZ` of every plane (unit `PositionZUnit`, default um), else
     `Pixels PhysicalSizeZ` (the step; planes then start at z = 0).
The sidecar may also name the in-focus plane, {"focus_z_um": z}; otherwise the ground truth is the
plane of highest Brenner gradient. A training pair (the paper's construction) is the two planes at
truth - dD - n and truth + dD - n, with n a whole number of z steps drawn from N(0, sigma) among
the values the stack permits. Bad input raises ZStackError naming the file and the field.
"""
from __future__ import annotations

import json
import math
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import TsvaExportError
from .optics import draw_specimen, render_stack, sharpness, stack_pair
from .textures import unit_float

STACK_SUFFIXES = (".ome.tiff", ".ome.tif", ".tiff", ".tif")
STEP_TOLERANCE = 0.05      # z steps may differ by 5 % (stage jitter), not more
_UNIT_TO_UM = {"um": 1.0, "µm": 1.0, "nm": 1e-3, "mm": 1e3, "m": 1e6}


class ZStackError(TsvaExportError, ValueError):
    """A z-stack file that cannot be used: names the file and the field."""


@dataclass
class ZStack:
    path: Path
    planes: np.ndarray   # float32 [Z, H, W, 3] in [0, 1], in increasing z
    z_um: np.ndarray     # float64 [Z], increasing, even steps
    focus_index: int     # the ground-truth plane
    focus_named: bool    # named by the file (True) or found by Brenner gradient (False)

    @property
    def truth(self) -> np.ndarray:
        return self.planes[self.focus_index]

    @property
    def focus_z_um(self) -> float:
        return float(self.z_um[self.focus_index])

    @property
    def step_um(self) -> float:
        return float(np.median(np.diff(self.z_um))) if len(self.z_um) > 1 else 0.0

    def steps_for(self, dd_um: float) -> int:
        """dD as a whole number of z steps; refused if the stack cannot make it."""
        if len(self.z_um) < 3:
            raise ZStackError(f"stack {self.path}: field z: {len(self.z_um)} planes, too short for any dD")
        k = dd_um / self.step_um
        if abs(k - round(k)) > 0.05 or round(k) < 1:
            raise ZStackError(f"stack {self.path}: field z: step {self.step_um:g} um cannot make dD {dd_um:g} um "
                              "(dD must be a whole number of z steps)")
        k = int(round(k))
        if self.focus_index - k < 0 or self.focus_index + k >= len(self.z_um):
            raise ZStackError(
                f"stack {self.path}: field z: {len(self.z_um)} planes from {self.z_um[0]:g} to {self.z_um[-1]:g} um, "
                f"focus at {self.z_um[self.focus_index]:g} um: too short for dD {dd_um:g} um (needs planes at "
                f"{self.z_um[self.focus_index] - dd_um:g} and {self.z_um[self.focus_index] + dd_um:g} um)")
        return k

    def shots_for(self, dd_um: float, sigma_um: float, rng: np.random.Generator) -> tuple[int, int, float]:
        """Plane indices of the shots at truth - dD - n and truth + dD - n, and n (um)."""
        k, f, z = self.steps_for(dd_um), self.focus_index, len(self.z_um)
        js = np.arange(f + k - (z - 1), f - k + 1)  # n = j steps keeps both shots inside the stack
        n = js * self.step_um
        weights = np.exp(-0.5 * (n / sigma_um) ** 2) if sigma_um > 0 else (js == 0).astype(float)
        if weights.sum() == 0:
            weights = (js == 0).astype(float)
        j = int(rng.choice(js, p=weights / weights.sum()))
        return f - k - j, f + k - j, float(j * self.step_um)


def stack_files(directory: str | Path) -> list[Path]:
    directory = Path(directory)
    if not directory.is_dir():
        raise ZStackError(f"--zstacks {directory}: not a directory")
    files = sorted(p for p in directory.iterdir() if p.is_file() and p.name.lower().endswith(STACK_SUFFIXES))
    if not files:
        raise ZStackError(f"--zstacks {directory}: no stacks ({', '.join(STACK_SUFFIXES)}) in it")
    return files


def sidecar_of(path: Path) -> Path:
    name = path.name
    for suffix in STACK_SUFFIXES:
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
            break
    return path.with_name(name + ".json")


def _as_float(page: np.ndarray, path: Path) -> np.ndarray:
    unit = unit_float(page)
    if unit is not None:
        return unit
    raise ZStackError(f"stack {path}: field planes: unsupported pixel type {page.dtype} (uint8, uint16 or float)")


def _read_planes(path: Path) -> tuple[list[np.ndarray], str | None]:
    import tifffile
    try:
        with tifffile.TiffFile(path) as tif:
            ome = tif.ome_metadata
            pages = [p.asarray() for p in tif.pages]
    except Exception as exc:  # tifffile raises TiffFileError, ValueError, OSError...
        raise ZStackError(f"stack {path}: field planes: not a readable TIFF ({exc.__class__.__name__}: {exc})") from None
    if not pages:
        raise ZStackError(f"stack {path}: field planes: no planes")
    first = pages[0]
    for i, p in enumerate(pages):
        if p.shape != first.shape or p.dtype != first.dtype:
            raise ZStackError(f"stack {path}: field planes: plane {i} is {'x'.join(map(str, p.shape))} {p.dtype}, "
                              f"plane 0 is {'x'.join(map(str, first.shape))} {first.dtype} (mixed size or type)")
    if first.ndim != 3 or first.shape[-1] not in (3, 4):
        raise ZStackError(f"stack {path}: field planes: shape {first.shape} is not one RGB plane per page")
    return pages, ome


def _ome_z(ome: str, planes: int, path: Path) -> np.ndarray | None:
    try:
        root = ET.fromstring(ome)
    except ET.ParseError as exc:
        raise ZStackError(f"stack {path}: field OME-XML: unparseable ({exc})") from None
    pixels = next((e for e in root.iter() if e.tag.endswith("Pixels")), None)
    if pixels is None:
        return None
    found = {}
    for plane in (e for e in pixels if e.tag.endswith("Plane")):
        if "PositionZ" in plane.attrib:
            unit = plane.attrib.get("PositionZUnit", "µm")
            if unit not in _UNIT_TO_UM:
                raise ZStackError(f"stack {path}: field PositionZUnit: unknown unit {unit!r}")
            try:
                found[int(plane.attrib.get("TheZ", len(found)))] = float(plane.attrib["PositionZ"]) * _UNIT_TO_UM[unit]
            except ValueError:
                raise ZStackError(f"stack {path}: field PositionZ: not a number ({plane.attrib['PositionZ']!r})") from None
    if found:
        if sorted(found) != list(range(planes)):
            raise ZStackError(f"stack {path}: field PositionZ: given for planes {sorted(found)}, the file has {planes}")
        return np.array([found[i] for i in range(planes)])
    if "PhysicalSizeZ" in pixels.attrib:
        unit = pixels.attrib.get("PhysicalSizeZUnit", "µm")
        step = float(pixels.attrib["PhysicalSizeZ"]) * _UNIT_TO_UM.get(unit, 1.0)
        if not step > 0:
            raise ZStackError(f"stack {path}: field PhysicalSizeZ: must be > 0, got {step:g}")
        return np.arange(planes) * step
    return None


def read_zstack(path: str | Path) -> ZStack:
    path = Path(path)
    pages, ome = _read_planes(path)
    sidecar = sidecar_of(path)
    meta: dict = {}
    if sidecar.is_file():
        try:
            meta = json.loads(sidecar.read_text())
        except (OSError, ValueError) as exc:
            raise ZStackError(f"stack {path}: field sidecar {sidecar.name}: not readable JSON ({exc})") from None
        if not isinstance(meta, dict):
            raise ZStackError(f"stack {path}: field sidecar {sidecar.name}: expected a JSON object")
    if "z_um" in meta:
        try:
            z = np.array([float(v) for v in meta["z_um"]])
        except (TypeError, ValueError):
            raise ZStackError(f"stack {path}: field z_um: expected a list of numbers (sidecar {sidecar.name})") from None
        source = f"z_um (sidecar {sidecar.name})"
    else:
        z = _ome_z(ome, len(pages), path) if ome else None
        source = "PositionZ"
    if z is None:
        raise ZStackError(f"stack {path}: field z: no z for its planes (OME PositionZ or PhysicalSizeZ, "
                          f"or a sidecar {sidecar.name} with z_um)")
    if len(z) != len(pages):
        raise ZStackError(f"stack {path}: field {source}: {len(z)} values for {len(pages)} planes")
    if not np.all(np.isfinite(z)):
        raise ZStackError(f"stack {path}: field {source}: not finite")
    order = np.argsort(z, kind="stable")
    zs = z[order]
    repeated = np.nonzero(np.diff(zs) <= 1e-9)[0]
    if len(repeated):
        i = repeated[0]
        raise ZStackError(f"stack {path}: field {source}: repeated z {zs[i]:g} um (planes {order[i]} and {order[i + 1]})")
    steps = np.diff(zs)
    if len(steps) and (steps.max() - steps.min()) > STEP_TOLERANCE * np.median(steps):
        raise ZStackError(f"stack {path}: field {source}: uneven z steps ({steps.min():g} to {steps.max():g} um)")
    planes = np.stack([_as_float(pages[i][..., :3], path) for i in order])
    if "focus_z_um" in meta:
        try:
            fz = float(meta["focus_z_um"])
        except (TypeError, ValueError):
            raise ZStackError(f"stack {path}: field focus_z_um: not a number") from None
        hits = np.nonzero(np.abs(zs - fz) <= 0.25 * (np.median(steps) if len(steps) else 1.0))[0]
        if not len(hits):
            raise ZStackError(f"stack {path}: field focus_z_um: {fz:g} um is not the z of any plane")
        return ZStack(path, planes, zs, int(hits[0]), True)
    focus = int(np.argmax([sharpness(p) for p in planes]))
    return ZStack(path, planes, zs, focus, False)


def read_zstacks(directory: str | Path) -> list[ZStack]:
    return [read_zstack(p) for p in stack_files(directory)]


def write_zstack(path: str | Path, planes: np.ndarray, z_um, focus_z_um: float | None = None,
                 pixel_size_um: float | None = None) -> Path:
    """An OME-TIFF (PositionZ of every plane, PhysicalSizeZ) of uint8 RGB planes [Z, H, W, 3];
    `focus_z_um` goes into the sidecar JSON."""
    import tifffile
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    planes = np.asarray(planes)
    if planes.dtype != np.uint8 and planes.dtype != np.uint16:
        planes = np.round(np.clip(planes, 0, 1) * 255).astype(np.uint8)
    z = [float(v) for v in z_um]
    metadata = {"axes": "ZYXS", "Plane": {"PositionZ": z}}
    if len(z) > 1:
        metadata["PhysicalSizeZ"] = float(np.median(np.diff(z)))
    if pixel_size_um:
        metadata.update(PhysicalSizeX=pixel_size_um, PhysicalSizeY=pixel_size_um)
    tifffile.imwrite(path, planes, photometric="rgb", metadata=metadata, ome=True)
    if focus_z_um is not None:
        sidecar_of(path).write_text(json.dumps({"focus_z_um": float(focus_z_um)}))
    return path


def build_stack_pool(stacks: list[ZStack], dd_values, pairs: int, patch: int, sigma_um: float, seed: int,
                     source: str = "") -> "PairPool":
    """`pairs` pairs of `patch`-px windows; dD cycles through `dd_values`, stacks in turn."""
    from .dataset import PairPool  # noqa: F811 -- dataset imports optics, not zstack
    rng = np.random.default_rng(seed)
    dd_values = tuple(float(d) for d in dd_values)
    for s in stacks:  # refuse up front, naming the file, rather than part-way through
        if min(s.planes.shape[1:3]) < patch:
            raise ZStackError(f"stack {s.path}: field planes: {s.planes.shape[2]}x{s.planes.shape[1]} px is "
                              f"smaller than the {patch} px patch")
        for dd in dd_values:
            s.steps_for(dd)
    y1 = np.empty((pairs, 3, patch, patch), np.uint8)
    y2 = np.empty_like(y1)
    truth = np.empty((pairs, 3, patch, patch), np.float16)
    dd = np.empty(pairs, np.float32)
    y1_defocus = np.empty(pairs, np.float32)
    for i in range(pairs):
        s = stacks[i % len(stacks)]
        d = dd_values[(i // len(stacks)) % len(dd_values)]
        a, b, n = s.shots_for(d, sigma_um, rng)
        h, w = s.planes.shape[1:3]
        y, x = rng.integers(0, h - patch + 1), rng.integers(0, w - patch + 1)
        pair = stack_pair(s, a, b, d, n, (slice(y, y + patch), slice(x, x + patch)))
        y1[i] = np.round(pair.y1.transpose(2, 0, 1) * 255)
        y2[i] = np.round(pair.y2.transpose(2, 0, 1) * 255)
        truth[i] = pair.truth.transpose(2, 0, 1)
        dd[i] = d
        y1_defocus[i] = pair.y1_defocus_um
    simulation = {"zstacks": source or ",".join(str(s.path) for s in stacks[:3]), "stacks": len(stacks),
                  "focus_sigma_um": sigma_um}
    return PairPool(y1, y2, truth, dd, y1_defocus, simulation, np.full(pairs, np.nan, np.float32))


def simulate_stack(texture: np.ndarray, optics, sample, rng: np.random.Generator, step_um: float,
                   half_range_um: float) -> tuple[np.ndarray, np.ndarray, float]:
    """Planes [Z, H, W, 3] at z = z0 + k step through the section (sensor noise on every plane),
    their z (stage coordinates, um) and the true focus z. The true focus lies on a plane."""
    specimen = draw_specimen(texture, sample, rng)
    k = int(math.ceil(half_range_um / step_um - 1e-9))
    offsets = np.arange(-k, k + 1) * step_um
    z0 = float(np.round(rng.uniform(5, 50) / step_um) * step_um)  # the stage's own zero is arbitrary
    planes = render_stack(specimen, optics, sample, offsets, rng, with_truth=False).planes.astype(np.float32)
    return planes, z0 + offsets, z0
