"""The per-pair training distribution of sections and sensors.

Real slides mix regimes within one slide: a 3-5 um section next to fat, the section's edge or a
smear that is one thin plane. A model trained on one fixed section only learns that one (trained on
4 um, it made thin-section tiles worse than the sharper raw shot). So every simulated pair draws
its own section and sensor: thickness (a single thin plane for a share of pairs, else uniform up
to ~5 um), layers, how sharply the stain is split among the layers, photons at white, read noise
and the stain (H&E jitter strength). The distribution is recorded in the pool, the checkpoint and
the ONNX metadata (`tsva info` shows it).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace

import numpy as np

from .errors import OpticsError
from .optics import Sample


@dataclass(frozen=True)
class SectionDistribution:
    thin_fraction: float = 0.25                          # share of pairs that are one thin plane
    thickness_um: tuple[float, float] = (0.5, 5.0)       # uniform range for the other pairs
    stain_contrast: tuple[float, float] = (0.5, 3.0)     # how sharply the stain is split among layers
    photons_at_white: tuple[float, float] = (600.0, 4000.0)  # log-uniform
    read_noise: tuple[float, float] = (0.002, 0.008)     # uniform, fraction of full scale
    stain_jitter: tuple[float, float] = (0.0, 0.1)       # H&E optical-density jitter strength

    def __post_init__(self):
        for name in ("thickness_um", "stain_contrast", "photons_at_white", "read_noise", "stain_jitter"):
            lo, hi = getattr(self, name)
            object.__setattr__(self, name, (float(lo), float(hi)))
            if not 0 <= lo <= hi:
                raise OpticsError(f"distribution.{name} must be a range 0 <= low <= high, got {(lo, hi)}")
        if not 0 <= self.thin_fraction <= 1:
            raise OpticsError(f"distribution.thin_fraction must be in [0, 1], got {self.thin_fraction}")
        if self.photons_at_white[0] <= 0:
            raise OpticsError("distribution.photons_at_white must be > 0")

    @property
    def max_thickness_um(self) -> float:
        return self.thickness_um[1]

    def draw(self, base: Sample, rng: np.random.Generator) -> tuple[Sample, float]:
        """One pair's section (from `base`: bit depth, mask scale) and its stain-jitter strength."""
        if rng.random() < self.thin_fraction:
            thickness, layers = 0.0, 1
        else:
            thickness = float(rng.uniform(*self.thickness_um))
            # About one layer per um (the depth of field at NA 0.75), +-1, at least 2.
            layers = int(np.clip(round(thickness) + 1 + rng.integers(-1, 2), 2, 8))
        photons = math.exp(rng.uniform(math.log(self.photons_at_white[0]), math.log(self.photons_at_white[1])))
        sample = replace(base, thickness_um=round(thickness, 3), layers=layers,
                         stain_contrast=float(rng.uniform(*self.stain_contrast)),
                         photons_at_white=float(photons), read_noise=float(rng.uniform(*self.read_noise)))
        return sample, float(rng.uniform(*self.stain_jitter))

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "SectionDistribution":
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})

    def describe(self) -> str:
        r = lambda name, fmt="g": "-".join(format(v, fmt) for v in getattr(self, name))  # noqa: E731
        return (f"{self.thin_fraction:.0%} single thin plane, else {r('thickness_um')} um in about one layer "
                f"per um; stain contrast {r('stain_contrast')}; {r('photons_at_white', '.0f')} photons at white; "
                f"read noise {r('read_noise')}; stain jitter {r('stain_jitter')}")

    @classmethod
    def from_ranges(cls, ranges: dict[str, tuple[float, ...]]) -> "SectionDistribution":
        """The inverse of metadata(), from ModelMetadata's parsed `distribution_ranges` (name ->
        numbers: one for thin_fraction, a low-high pair for the ranges)."""
        return cls(**{name: v[0] if len(v) == 1 else tuple(v) for name, v in ranges.items()})

    def metadata(self) -> dict[str, str]:
        """Flat string keys for the ONNX metadata_props."""
        out = {"distribution.thin_fraction": f"{self.thin_fraction:g}"}
        for name in ("thickness_um", "stain_contrast", "photons_at_white", "read_noise", "stain_jitter"):
            out[f"distribution.{name}"] = ",".join(f"{v:g}" for v in getattr(self, name))
        return out
