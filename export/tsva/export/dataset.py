"""Pools of simulated training pairs: simulated once, stored compactly, shared by both networks
(TSVA and the U-Net baseline see exactly the same patches)."""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
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


@dataclass
class PairPool:
    y1: np.ndarray     # uint8 [N, 3, P, P] (the camera's 8 bits)
    y2: np.ndarray     # uint8 [N, 3, P, P]
    truth: np.ndarray  # float16 [N, 3, P, P] (noise-free)
    dd_um: np.ndarray  # float32 [N]
    y1_defocus_um: np.ndarray | None = None  # float32 [N]: focal plane of y1 minus true focus
    simulation: dict | None = None           # {"optics": ..., "sample": ..., "distribution": ...}
    thickness_um: np.ndarray | None = None   # float32 [N]: each pair's section thickness (nan: unknown)

    def __len__(self) -> int:
        return len(self.dd_um)

    def save(self, path: str | Path) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez(tmp, y1=self.y1, y2=self.y2, truth=self.truth, dd_um=self.dd_um,
                 y1_defocus_um=self.y1_defocus_um if self.y1_defocus_um is not None else np.full_like(self.dd_um, np.nan),
                 simulation=np.array(json.dumps(self.simulation or {})),
                 thickness_um=self.thickness_um if self.thickness_um is not None else np.full_like(self.dd_um, np.nan))
        tmp.replace(path)

    @classmethod
    def load(cls, path: str | Path) -> "PairPool":
        with np.load(path) as z:
            simulation = json.loads(str(z["simulation"])) if "simulation" in z else None
            return cls(z["y1"], z["y2"], z["truth"], z["dd_um"], z["y1_defocus_um"] if "y1_defocus_um" in z else None,
                       simulation or None, z["thickness_um"] if "thickness_um" in z else None)

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
        cat = lambda name: np.concatenate([getattr(p, name) for p in pools])  # noqa: E731
        defocus = None if any(p.y1_defocus_um is None for p in pools) else cat("y1_defocus_um")
        thickness = None if any(p.thickness_um is None for p in pools) else cat("thickness_um")
        return cls(cat("y1"), cat("y2"), cat("truth"), cat("dd_um"), defocus, recorded[0] if recorded else None,
                   thickness)

    def subset(self, index) -> "PairPool":
        pick = lambda a: None if a is None else a[index]  # noqa: E731
        return PairPool(self.y1[index], self.y2[index], self.truth[index], self.dd_um[index],
                        pick(self.y1_defocus_um), self.simulation, pick(self.thickness_um))

    def dd(self, index) -> torch.Tensor:
        """dD of the pairs as a [N, 1] float32 tensor (the conditioned network's third input)."""
        return torch.from_numpy(np.asarray(self.dd_um[index], np.float32).reshape(-1, 1))

    def tensors(self, index) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        y1 = torch.from_numpy(self.y1[index].astype(np.float32) / 255.0)
        y2 = torch.from_numpy(self.y2[index].astype(np.float32) / 255.0)
        return y1, y2, torch.from_numpy(self.truth[index].astype(np.float32))


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
