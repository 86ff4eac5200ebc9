"""Optics simulator: Born & Wolf scalar defocus PSF, layered depth of field, sensor noise.

PSF (Born & Wolf, paraxial scalar defocus; the paper's eq. 1), for wavelength lam, defocus z,
numerical aperture NA and immersion index n:

    h(r, z) = | int_0^1 J0(v rho) exp(-i u rho^2 / 2) rho drho |^2,
    v = 2 pi NA r / lam,   u = 2 pi NA^2 z / (n lam)

The radial profile is integrated by Gauss-Legendre quadrature over the pupil radius rho, sampled
on a fine radial grid, integrated over each camera pixel (supersampling) and normalised to sum 1.
PSFs are cached per (optics, wavelength, defocus).

Layered depth of field (eqs. 2-3): the section is a few thin layers at depths z_l; each layer's
share of the texture is blurred by the PSF of its own defocus (shot plane minus z_l) and the
layers are summed. Shots at -dD - n and +dD - n around the tile's true focus, n ~ N(0, sigma);
ground truth = the in-focus image (shot plane 0), noise-free.
"""
from __future__ import annotations

import functools
import math
from dataclasses import asdict, dataclass
from typing import Protocol

import numpy as np
from scipy import ndimage, signal, special

from tsva.common.brenner import brenner

from .errors import OpticsError
from .flags import floats, option

DEFAULT_DEFOCUS_UM = (0.5, 1.0, 1.5, 2.0, 2.5, 3.0)


@dataclass(frozen=True)
class Optics:
    """The microscope; each field is also the training verbs' flag of the same setting."""
    numerical_aperture: float = option("--na", default=0.75, type=float,
                                       help="numerical aperture (default %(default)s)")
    refractive_index: float = option("--refractive-index", default=1.0, type=float,   # dry objective
                                     help="immersion index (default %(default)s, dry)")
    pixel_size_um: float = option("--pixel-size", default=0.25, type=float,   # at the sample
                                  help="um per pixel at the sample (default %(default)s)")
    wavelengths_um: tuple[float, ...] = option("--wavelengths", default=(0.61, 0.53, 0.47), type=floats,  # R, G, B
                                               help="R,G,B in um (default 0.61,0.53,0.47)")
    defocus_um: tuple[float, ...] = option("--defocus", default=DEFAULT_DEFOCUS_UM, type=floats,  # the dD values
                                           help="dD values in um (default 0.5,...,3.0)")
    focus_sigma_um: float = option("--focus-sigma", default=1.0, type=float,   # tile focus offset n ~ N(0, sigma)
                                   help="sigma of the tile focus offset n, um (default %(default)s)")

    def __post_init__(self):
        object.__setattr__(self, "wavelengths_um", tuple(float(w) for w in self.wavelengths_um))
        object.__setattr__(self, "defocus_um", tuple(float(d) for d in self.defocus_um))
        self.validate()

    def validate(self) -> None:
        if not self.refractive_index >= 1.0:
            raise OpticsError(f"optics.refractive_index must be >= 1, got {self.refractive_index}")
        if not 0.0 < self.numerical_aperture < self.refractive_index:
            raise OpticsError(
                f"optics.numerical_aperture must be in (0, refractive index {self.refractive_index}), "
                f"got {self.numerical_aperture}: NA >= n is not a physical objective")
        if not self.pixel_size_um > 0:
            raise OpticsError(f"optics.pixel_size_um must be > 0, got {self.pixel_size_um}")
        if not self.wavelengths_um or any(not w > 0 for w in self.wavelengths_um):
            raise OpticsError(f"optics.wavelengths_um must be positive, got {self.wavelengths_um}")
        if not self.defocus_um or any(not d > 0 for d in self.defocus_um):
            raise OpticsError(f"optics.defocus_um (dD) values must be > 0, got {self.defocus_um}")
        if not self.focus_sigma_um >= 0:
            raise OpticsError(f"optics.focus_sigma_um must be >= 0, got {self.focus_sigma_um}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Optics":
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


# ---------------------------------------------------------------------------------------------- PSF

@functools.lru_cache(maxsize=8)
def _pupil_nodes(nodes: int) -> tuple[np.ndarray, np.ndarray]:
    """Gauss-Legendre nodes and weights on the pupil radius [0, 1]."""
    rho, weights = np.polynomial.legendre.leggauss(nodes)
    return 0.5 * (rho + 1.0), 0.5 * weights


def radial_psf_profile(r_um: np.ndarray, wavelength_um: float, defocus_um: float,
                       numerical_aperture: float, refractive_index: float = 1.0,
                       nodes: int = 256) -> np.ndarray:
    """Unnormalised Born & Wolf intensity at radii r_um, by `nodes`-point Gauss-Legendre quadrature."""
    rho, weights = _pupil_nodes(nodes)
    v = 2 * math.pi * numerical_aperture * np.asarray(r_um, dtype=np.float64) / wavelength_um
    u = 2 * math.pi * numerical_aperture ** 2 * defocus_um / (refractive_index * wavelength_um)
    pupil = np.exp(-0.5j * u * rho ** 2) * rho * weights             # [nodes]
    field_ = special.j0(np.outer(v.ravel(), rho)) @ pupil             # [len(r)]
    return (np.abs(field_) ** 2).reshape(np.shape(r_um))


def psf_radius_px(optics: Optics, defocus_um: float, wavelength_um: float) -> int:
    """Half-size of the PSF kernel: geometric blur radius plus a few Airy rings."""
    tan_alpha = optics.numerical_aperture / math.sqrt(optics.refractive_index ** 2 - optics.numerical_aperture ** 2)
    geometric = abs(defocus_um) * tan_alpha
    airy = 0.61 * wavelength_um / optics.numerical_aperture
    return int(math.ceil((1.3 * geometric + 4 * airy) / optics.pixel_size_um)) + 2


@functools.lru_cache(maxsize=4096)
def _psf_cached(optics: Optics, wavelength_um: float, defocus_um: float, supersample: int, nodes: int) -> np.ndarray:
    half = psf_radius_px(optics, defocus_um, wavelength_um)
    size = 2 * half + 1
    # Intensity sampled at `supersample` points per pixel and summed: integrates over each pixel.
    step = optics.pixel_size_um / supersample
    coords = (np.arange(size * supersample) - (size * supersample - 1) / 2) * step
    rr = np.hypot(coords[:, None], coords[None, :])
    # Radial profile on a fine 1-D grid, interpolated to the 2-D distances (exactly radial).
    r_fine = np.linspace(0.0, rr.max() + step, 4 * int(rr.max() / step + 2))
    profile = radial_psf_profile(r_fine, wavelength_um, defocus_um, optics.numerical_aperture,
                                 optics.refractive_index, nodes)
    fine = np.interp(rr, r_fine, profile)
    psf = fine.reshape(size, supersample, size, supersample).sum(axis=(1, 3))
    psf /= psf.sum()
    psf.setflags(write=False)
    return psf


def psf(optics: Optics, wavelength_um: float, defocus_um: float, supersample: int = 3,
        nodes: int = 256) -> np.ndarray:
    """2-D PSF (odd size, centred, sums to 1) for one wavelength and defocus; cached. Defocus is
    rounded to 0.01 um (far below the depth of field) so random focus offsets hit the cache."""
    return _psf_cached(optics, float(wavelength_um), round(float(defocus_um), 2) + 0.0, supersample, nodes)


def blur(image: np.ndarray, optics: Optics, defocus_um: float) -> np.ndarray:
    """Blur an HxWxC float image (C = len(wavelengths)) at one defocus; reflect-padded borders."""
    out = np.empty_like(image, dtype=np.float64)
    for c, lam in enumerate(optics.wavelengths_um):
        kernel = psf(optics, lam, defocus_um)
        half = kernel.shape[0] // 2
        padded = np.pad(image[..., c], half, mode="reflect")
        out[..., c] = signal.fftconvolve(padded, kernel, mode="valid")
    return out


# ------------------------------------------------------------------------------- depth of field

@dataclass(frozen=True)
class Sample:
    """Layered depth-of-field settings of the simulated section and sensor."""
    # A routine H&E section is cut 3-5 um thick: deeper than the depth of field (~1 um at NA 0.75),
    # so its layers come into focus at different planes and the two shots see different layers sharp.
    layers: int = option("--layers", default=5, type=int,   # thin layers of the section, 1 um apart
                         help="thin layers of the section (default %(default)s)")
    thickness_um: float = option("--thickness", default=4.0, type=float,   # the layers span [-t/2, t/2]
                                 help="section thickness, um (default %(default)s)")
    layer_smoothness_px: float = 24.0    # spatial scale of the random layer masks
    stain_contrast: float = 2.0          # how sharply the stain is split among the layers
    photons_at_white: float = 2000.0     # Poisson part of the sensor noise (electrons at full scale)
    read_noise: float = 0.004            # Gaussian part, fraction of full scale
    bit_depth: int = 8

    def __post_init__(self):
        if self.layers < 1:
            raise OpticsError(f"sample.layers must be >= 1, got {self.layers}")
        if not self.thickness_um >= 0:
            raise OpticsError(f"sample.thickness_um must be >= 0, got {self.thickness_um}")

    def to_dict(self) -> dict:
        return asdict(self)


def _layer_masks(shape: tuple[int, int], sample: Sample, rng: np.random.Generator) -> np.ndarray:
    """Random smooth partition of unity: which share of each pixel's stain lies in which layer."""
    logits = rng.normal(size=(sample.layers, *shape))
    logits = ndimage.gaussian_filter(logits, sigma=(0, sample.layer_smoothness_px, sample.layer_smoothness_px))
    logits /= logits.std() + 1e-12
    weights = np.exp(sample.stain_contrast * logits)
    return weights / weights.sum(axis=0, keepdims=True)


def image_at(texture: np.ndarray, masks: np.ndarray, depths_um: np.ndarray, optics: Optics,
             plane_um: float) -> np.ndarray:
    """Image formed with the focal plane at `plane_um`: each layer blurred by its own defocus.
    Blurring acts on the stain (1 - transmission), the background stays white."""
    absorbance = 1.0 - texture
    out = np.zeros_like(texture, dtype=np.float64)
    for mask, depth in zip(masks, depths_um):
        out += blur(absorbance * mask[..., None], optics, plane_um - depth)
    return 1.0 - out


def add_sensor_noise(image: np.ndarray, sample: Sample, rng: np.random.Generator) -> np.ndarray:
    """Poisson-Gaussian noise, then quantisation to `bit_depth` bits (as the camera delivers)."""
    electrons = rng.poisson(np.clip(image, 0, None) * sample.photons_at_white)
    noisy = electrons / sample.photons_at_white + rng.normal(0.0, sample.read_noise, image.shape)
    levels = 2 ** sample.bit_depth - 1
    return np.round(np.clip(noisy, 0.0, 1.0) * levels) / levels


def sharpness(image: np.ndarray) -> float:
    """Brenner gradient of a float image in [0, 1], scored on its 16-bit pixels (the gateway scores
    camera pixels in integer arithmetic; the order of two shots is the same)."""
    return brenner(np.round(np.clip(image, 0, 1) * 65535).astype(np.uint16))


@dataclass
class SimulatedPair:
    y1: np.ndarray        # sharper shot (Brenner), float32 HxWxC in [0, 1]
    y2: np.ndarray        # the other shot
    truth: np.ndarray     # in-focus (noise-free when simulated)
    dd_um: float
    focus_offset_um: float
    y1_defocus_um: float  # defocus (shot plane - true focus) of y1
    y2_defocus_um: float


# ------------------------------------------------------------------------- stacks of planes

class Stack(Protocol):
    """Through-focus planes of one field: what a pair is cut from. Simulated (`PlaneStack`) or
    read from a real z-stack file (`zstack.ZStack`)."""
    planes: np.ndarray   # [Z, H, W, C] float in [0, 1], the shots as the camera records them
    z_um: np.ndarray     # [Z] focal plane of each

    @property
    def truth(self) -> np.ndarray: ...      # [H, W, C] the in-focus image (the ground truth)

    @property
    def focus_z_um(self) -> float: ...      # z of the true focus


@dataclass
class PlaneStack:
    """A simulated through-focus stack: noisy shots at `z_um` (relative to the section's true focus)
    and the noise-free in-focus image."""
    planes: np.ndarray            # float64 [Z, H, W, C]
    z_um: np.ndarray              # float64 [Z]
    truth: np.ndarray | None      # float64 [H, W, C]; None when not rendered
    focus_z_um: float = 0.0


@dataclass
class Specimen:
    """One simulated section: its transmission image and how its stain is split among the layers."""
    texture: np.ndarray      # HxWxC transmission in [0, 1]
    masks: np.ndarray        # [layers, H, W] partition of unity
    depths_um: np.ndarray    # [layers] depth of each layer relative to the true focus

    def image_at(self, optics: Optics, plane_um: float) -> np.ndarray:
        return image_at(self.texture, self.masks, self.depths_um, optics, plane_um)


def layer_depths_um(sample: Sample) -> np.ndarray:
    """The layers span [-t/2, t/2] around the section's middle (the true focus)."""
    return np.linspace(-0.5, 0.5, sample.layers) * sample.thickness_um if sample.layers > 1 else np.zeros(1)


def draw_specimen(texture: np.ndarray, sample: Sample, rng: np.random.Generator) -> Specimen:
    """Draws the layer masks (the only random part of a section)."""
    return Specimen(texture, _layer_masks(texture.shape[:2], sample, rng), layer_depths_um(sample))


def render_stack(specimen: Specimen, optics: Optics, sample: Sample, planes_um, rng: np.random.Generator,
                 with_truth: bool = True) -> PlaneStack:
    """Shots at each of `planes_um` (sensor noise drawn plane by plane, in order) and, with
    `with_truth`, the noise-free image at focus (plane 0)."""
    truth = specimen.image_at(optics, 0.0) if with_truth else None
    planes = np.stack([add_sensor_noise(specimen.image_at(optics, float(p)), sample, rng) for p in planes_um])
    return PlaneStack(planes, np.asarray(planes_um, dtype=np.float64), truth, 0.0)


def stack_pair(stack: Stack, a: int, b: int, dd_um: float, focus_offset_um: float,
               window: tuple[slice, slice] | None = None) -> SimulatedPair:
    """The pair of planes `a` and `b` of a stack (simulated or real), optionally a window of them:
    ordered by Brenner gradient (y1 = the sharper; a on a tie), float32 in [0, 1], with the
    defocus of each shot (its plane minus the true focus)."""
    win = window or (slice(None), slice(None))
    shots = (stack.planes[a][win], stack.planes[b][win])
    first, second = (a, b) if sharpness(shots[0]) >= sharpness(shots[1]) else (b, a)
    f32 = lambda x: np.clip(x, 0, 1).astype(np.float32)  # noqa: E731
    focus = stack.focus_z_um
    return SimulatedPair(f32(stack.planes[first][win]), f32(stack.planes[second][win]), f32(stack.truth[win]),
                         float(dd_um), float(focus_offset_um), float(stack.z_um[first] - focus),
                         float(stack.z_um[second] - focus))


def simulate_pair(texture: np.ndarray, optics: Optics, sample: Sample, dd_um: float,
                  rng: np.random.Generator, focus_offset_um: float | None = None) -> SimulatedPair:
    """Two shots at -dD - n and +dD - n around the tile's true focus, ordered by Brenner gradient:
    a two-plane stack and its pair. Draws n (unless given), the layers, then each shot's noise."""
    texture = np.asarray(texture, dtype=np.float64)
    n = rng.normal(0.0, optics.focus_sigma_um) if focus_offset_um is None else float(focus_offset_um)
    specimen = draw_specimen(texture, sample, rng)
    stack = render_stack(specimen, optics, sample, (-dd_um - n, dd_um - n), rng)
    return stack_pair(stack, 0, 1, dd_um, n)
