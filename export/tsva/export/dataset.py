"""Pools of simulated training pairs: simulated once, stored compactly, shared by both networks
(TSVA and the U-Net baseline see exactly the same patches)."""
from __future__ import annotations

import json
import math
from dataclasses import MISSING, Field, dataclass, field, fields
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from .distribution import SectionDistribution
from .errors import TsvaExportError
from .optics import Optics, Sample, psf_radius_px, simulate_pair
from .textures import Texture, augment, random_crop


def margin_px(optics: Optics, sample: Sample, distribution: SectionDistribution | None = None) -> int:
    """Border simulated around each patch so its blur sees real neighbours, not padding."""
    thickness = max(sample.thickness_um, distribution.max_thickness_um if distribution else 0.0)
    worst = max(optics.defocus_um) + 2.5 * optics.focus_sigma_um + thickness / 2
    return max(psf_radius_px(optics, worst, lam) for lam in optics.wavelengths_um)


# The pool file (.npz): one array per pair field below, `simulation` (JSON text) and `format_version`.
# Version 1 is the layout since pools were first saved; a file without `format_version` is version 1.
FORMAT_VERSION = 1
READABLE_VERSIONS = (1,)


class PoolFormatError(TsvaExportError, ValueError):
    """A pool file this version cannot read: names the file and the field."""


def _pairs(doc: str, required: bool = False):
    """A per-pair array of the pool: required, or optional (None in memory, NaN-filled in the file)."""
    return field(default=None if not required else MISSING, metadata={"pairs": doc, "required": required})


@dataclass
class PairPool:
    y1: np.ndarray = _pairs("uint8 [N, 3, P, P]: the sharper shot (the camera's 8 bits)", required=True)
    y2: np.ndarray = _pairs("uint8 [N, 3, P, P]: the other shot", required=True)
    truth: np.ndarray = _pairs("float16 [N, 3, P, P]: the in-focus image (noise-free when simulated)", required=True)
    dd_um: np.ndarray = _pairs("float32 [N]: dD of the pair", required=True)
    y1_defocus_um: np.ndarray | None = _pairs("float32 [N]: focal plane of y1 minus true focus")
    simulation: dict | None = None           # {"optics": ..., "sample": ..., "distribution": ...} or {"zstacks": ...}
    thickness_um: np.ndarray | None = _pairs("float32 [N]: each pair's section thickness (nan: unknown)")

    @classmethod
    def pair_fields(cls) -> list[Field]:
        return [f for f in fields(cls) if "pairs" in f.metadata]

    def __len__(self) -> int:
        return len(self.dd_um)

    def save(self, path: str | Path) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp.npz")
        arrays = {f.name: getattr(self, f.name) if getattr(self, f.name) is not None
                  else np.full_like(self.dd_um, np.nan) for f in self.pair_fields()}
        np.savez(tmp, **arrays, simulation=np.array(json.dumps(self.simulation or {})),
                 format_version=np.array(FORMAT_VERSION))
        tmp.replace(path)

    @classmethod
    def load(cls, path: str | Path) -> "PairPool":
        with np.load(path) as z:
            version = pool_format_version(z, path)
            if version not in READABLE_VERSIONS:
                raise PoolFormatError(f"pool {path}: field format_version: version {version} is not one this "
                                      f"tsva reads ({', '.join(map(str, READABLE_VERSIONS))}); simulate the pool "
                                      "again or use the tsva that wrote it")
            values = {}
            for f in cls.pair_fields():
                if f.name in z:
                    values[f.name] = z[f.name]
                elif f.metadata["required"]:
                    raise PoolFormatError(f"pool {path}: field {f.name}: missing ({f.metadata['pairs']})")
            simulation = json.loads(str(z["simulation"])) if "simulation" in z else None
            return cls(**values, simulation=simulation or None)

    def check_simulated_with(self, optics: Optics, sample: Sample, name: str,
                             distribution: SectionDistribution | None = None) -> None:
        """A pool simulated with other optics or another section must not be trained on under this
        configuration's name (the checkpoint and the model's metadata would lie)."""
        if self.simulation is None:
            return  # pools written before the configuration was recorded
        if "zstacks" in self.simulation:
            raise TsvaExportError(f"{name} holds pairs cut from z-stacks ({self.simulation['zstacks']}), "
                                  "not simulated ones: pass --zstacks instead")
        have = self.simulation.get("distribution")
        want = distribution.to_dict() if distribution else None
        if have is not None:
            have = SectionDistribution.from_dict(have).to_dict()
        if have != want:
            raise TsvaExportError(f"{name} was simulated with section distribution {have}, not {want}: "
                                  "simulate a new pool or pass the same --sections")
        recorded = {"optics": Optics.from_dict(self.simulation["optics"]),
                    "sample": Sample(**self.simulation["sample"])}
        for part, wanted in (("optics", optics), ("sample", sample)):
            for key, value in wanted.to_dict().items():
                if (have := getattr(recorded[part], key)) != value:
                    raise TsvaExportError(f"{name} was simulated with {part}.{key} = {have!r}, "
                                          f"not {value!r}: simulate a new pool or pass the same settings")

    @classmethod
    def concatenate(cls, pools: list["PairPool"]) -> "PairPool":
        """One pool from several (e.g. simulated in parallel with different seeds); they must have
        been simulated with the same optics and section."""
        recorded = [p.simulation for p in pools if p.simulation is not None]
        if any(r != recorded[0] for r in recorded):
            raise TsvaExportError("cannot concatenate pools simulated with different optics or sections")
        values = {}
        for f in cls.pair_fields():
            parts = [getattr(p, f.name) for p in pools]
            values[f.name] = None if any(a is None for a in parts) else np.concatenate(parts)
        return cls(**values, simulation=recorded[0] if recorded else None)

    def subset(self, index) -> "PairPool":
        return PairPool(**{f.name: None if getattr(self, f.name) is None else getattr(self, f.name)[index]
                           for f in self.pair_fields()}, simulation=self.simulation)

    def dd(self, index) -> torch.Tensor:
        """dD of the pairs as a [N, 1] float32 tensor (the conditioned network's third input)."""
        return torch.from_numpy(np.asarray(self.dd_um[index], np.float32).reshape(-1, 1))

    def tensors(self, index) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        y1 = torch.from_numpy(self.y1[index].astype(np.float32) / 255.0)
        y2 = torch.from_numpy(self.y2[index].astype(np.float32) / 255.0)
        return y1, y2, torch.from_numpy(self.truth[index].astype(np.float32))


def pool_format_version(npz, path) -> int:
    """The file's format version (1 when it has none: pools saved before versions were written)."""
    if "format_version" not in npz:
        return 1
    value = npz["format_version"]
    if value.shape != () or value.dtype.kind not in "iu":
        raise PoolFormatError(f"pool {path}: field format_version: expected an integer, got {value!r}")
    return int(value)


def build_pool(textures: list[Texture], optics: Optics, sample: Sample, pairs: int, patch: int,
               seed: int, jitter: float = 0.05, progress: bool = True,
               dd_values: tuple[float, ...] | None = None,
               distribution: SectionDistribution | None = None) -> PairPool:
    """`pairs` simulated pairs; dD cycles through the optics' values so each is equally present.
    With a `distribution`, every pair draws its own section, sensor noise and stain jitter (else
    all pairs share `sample` and `jitter`).
    Each texture is drawn equally often (a small native-resolution image counts as much as a large
    rescaled one); nearly blank crops (slide background) are redrawn. Deterministic for a seed."""
    rng = np.random.default_rng(seed)
    dd_values = tuple(dd_values or optics.defocus_um)
    margin = margin_px(optics, sample, distribution)
    crop = patch + 2 * margin
    y1 = np.empty((pairs, 3, patch, patch), np.uint8)
    y2 = np.empty_like(y1)
    truth = np.empty((pairs, 3, patch, patch), np.float16)
    dd = np.empty(pairs, np.float32)
    y1_defocus = np.empty(pairs, np.float32)
    thickness = np.empty(pairs, np.float32)
    inner = (slice(margin, margin + patch), slice(margin, margin + patch))
    for i in tqdm(range(pairs), desc="simulating pairs", disable=not progress, mininterval=5):
        texture = textures[i % len(textures)].image
        region = _crop_padded(texture, crop, rng)
        for _ in range(8):  # avoid spending the pool on empty glass
            if region.std() > 0.04:
                break
            region = _crop_padded(texture, crop, rng)
        pair_sample, pair_jitter = distribution.draw(sample, rng) if distribution else (sample, jitter)
        region = augment(region, rng, pair_jitter)
        pair = simulate_pair(region, optics, pair_sample, dd_values[(i // len(textures)) % len(dd_values)], rng)
        y1[i] = np.round(pair.y1[inner].transpose(2, 0, 1) * 255)
        y2[i] = np.round(pair.y2[inner].transpose(2, 0, 1) * 255)
        truth[i] = pair.truth[inner].transpose(2, 0, 1)
        dd[i] = pair.dd_um
        y1_defocus[i] = pair.y1_defocus_um
        thickness[i] = pair_sample.thickness_um
    simulation = {"optics": optics.to_dict(), "sample": sample.to_dict(),
                  "distribution": distribution.to_dict() if distribution else None}
    return PairPool(y1, y2, truth, dd, y1_defocus, simulation, thickness)


def _crop_padded(image: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """Random crop; textures smaller than the crop (with margin) are reflect-padded first."""
    h, w = image.shape[:2]
    if h < size or w < size:
        ph, pw = max(0, math.ceil((size - h) / 2)), max(0, math.ceil((size - w) / 2))
        image = np.pad(image, ((ph, ph), (pw, pw), (0, 0)), mode="reflect")
    return random_crop(image, size, rng)
