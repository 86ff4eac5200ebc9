"""Per-tile focus QC: the tile's focus offset n from the blur of its two shots (depth from defocus).

The shots are taken at F + d_a and F + d_b; the tile's true focus is F + n, so the shots lie
z_a = d_a - n and z_b = d_b - n from it. For one specimen X, the spectra are A = O(z_a) X and
B = O(z_b) X, with O(z) the defocus optical transfer function (radially symmetric). Eliminating X,
the n that explains both shots minimises, summed over frequencies,

    |O(z_b) A - O(z_a) B|^2 / (O(z_a)^2 + O(z_b)^2)

(the two-image depth-from-defocus residual). The specimen, the camera pixel's MTF and the
illumination cancel; only the optics (NA, wavelengths, pixel size: the model's metadata) and the
known offsets d_a, d_b enter. O(z) is the Hankel transform of the Born & Wolf scalar defocus PSF
(the simulator's model), tabulated once per optics with numpy (about a second). A section of
several layers (the model's sample.* metadata) is modelled as equally stained thin layers.

The fit runs on up to twelve 256-px windows of the tile (its most textured: all of a 1224x1024
tile's), per colour channel, on ring sums of the spectra (measured in benchmarks/scan_focus_qc.py).
The more windows, the more of the section's layers the fit sees: from six to twelve windows the
median error on simulated tiles fell by a third. The scan's focus offsets are spread about F with
optics.focus_sigma_um, which enters as a weak prior: where two shots barely tell n apart (small
dD, both shots nearly as blurred), the estimate stays near 0 instead of jumping to a flat minimum. A tile is flagged for rescan when |n| exceeds the range the
model was trained for (2 sigma of its focus-offset distribution, optics.focus_sigma_um) or its
shots' dD lies outside the trained dD values (optics.defocus_um).
"""
from __future__ import annotations

import asyncio
import functools
import logging
import math
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
from tsva.common.metadata import ModelMetadata

log = logging.getLogger(__name__)

CROP_PX = 256            # side of the windows the fit runs on
MAX_WINDOWS = 12         # windows of a tile the fit sums (the most textured ones)
Z_STEP_UM = 0.05         # OTF table step in |z|
Z_MAX_UM = 10.0          # OTF table reaches this |z|
N_COARSE_UM = 0.1        # coarse search grid of n, then refined around its minimum
N_STEP_UM = 0.01         # fine search grid of n
N_MAX_UM = 6.0           # |n| searched
RANGE_SIGMAS = 2.0       # trained range of |n|: this many optics.focus_sigma_um
DD_MARGIN_UM = 0.25      # dD tolerated beyond the trained dD values
WEIGHT_POWER = 2.0
MIN_COHERENCE = 0.1      # below this correlation between the shots' spectra: no texture, no estimate
PRIOR_WEIGHT = 0.01      # the prior's weight: cost / min(cost) + PRIOR_WEIGHT (n / focus sigma)^2
ROUTINE_SECTION = (4.0, 5)  # um, layers: a routine H&E cut, the simulator's default section


@dataclass(frozen=True)
class FocusOptics:
    numerical_aperture: float
    refractive_index: float
    pixel_size_um: float
    wavelengths_um: tuple[float, ...]
    defocus_um: tuple[float, ...]   # the dD values the model was trained for
    focus_sigma_um: float
    thickness_um: float = 0.0       # the section the model was trained on: its layers span
    layers: int = 1                 # [-t/2, t/2] around the tile's focus

    @property
    def layer_depths_um(self) -> np.ndarray:
        if self.layers <= 1:
            return np.zeros(1)
        return np.linspace(-0.5, 0.5, self.layers) * self.thickness_um

    @property
    def focus_range_um(self) -> float:
        return RANGE_SIGMAS * self.focus_sigma_um

    @classmethod
    def from_metadata(cls, metadata: "ModelMetadata | Mapping[str, str]") -> "FocusOptics | None":
        """From the model's optics.* (and sample.*) metadata; None when a key the estimate needs
        is missing or unreadable."""
        if not isinstance(metadata, ModelMetadata):
            metadata = ModelMetadata.from_props(metadata)
        optics, section = metadata.optics, metadata.section
        na, pixel, waves = optics.numerical_aperture, optics.pixel_size_um, optics.wavelengths_um
        if not (na and pixel and waves and na > 0 and pixel > 0 and all(w > 0 for w in waves)):
            return None
        index = optics.refractive_index
        index = index if index is not None and index > na else max(1.0, na + 1e-3)
        thickness, layers = section.thickness_um, section.layers
        if thickness is None and section.distribution:
            # Trained on many sections (thin planes to ~5 um): no single one to fit, so the routine
            # H&E cut, the section the estimate's accuracy was measured on (benchmarks/scan_focus_qc.py).
            thickness, layers = ROUTINE_SECTION
        return cls(na, index, pixel, waves, optics.defocus_um or (), optics.focus_sigma_um or 0.0,
                   thickness if thickness is not None and thickness > 0 else 0.0,
                   layers if layers is not None and layers >= 1 else 1)


@dataclass(frozen=True)
class FocusEstimate:
    focus_offset_um: float | None   # None: could not be estimated
    rescan: bool
    reason: str                     # why rescan (or why no estimate); "" when fine


# ------------------------------------------------------------------------------------ OTF table

def bessel_j0(x: np.ndarray) -> np.ndarray:
    """J0 by the rational and asymptotic approximations of Numerical Recipes (bessj0; |error| < 1e-7),
    since the gateway has numpy but not scipy."""
    x = np.abs(np.asarray(x, dtype=np.float64))
    out = np.empty_like(x)
    small = x < 8.0
    y = x[small] ** 2
    out[small] = ((57568490574.0 + y * (-13362590354.0 + y * (651619640.7 + y * (-11214424.18 + y * (
        77392.33017 + y * (-184.9052456)))))) / (57568490411.0 + y * (1029532985.0 + y * (9494680.718 + y * (
            59272.64853 + y * (267.8532712 + y))))))
    z = 8.0 / x[~small]
    y = z ** 2
    xx = x[~small] - 0.785398164
    p = 1.0 + y * (-0.1098628627e-2 + y * (0.2734510407e-4 + y * (-0.2073370639e-5 + y * 0.2093887211e-6)))
    q = -0.1562499995e-1 + y * (0.1430488765e-3 + y * (-0.6911147651e-5 + y * (0.7621095161e-6 - y * 0.934935152e-7)))
    out[~small] = np.sqrt(0.636619772 / x[~small]) * (np.cos(xx) * p - z * np.sin(xx) * q)
    return out


def defocus_otf(optics: FocusOptics, wavelength_um: float, z_um: np.ndarray, freqs: np.ndarray) -> np.ndarray:
    """Radial defocus OTF (OTF(0) = 1) at spatial frequencies `freqs` (cycles/um), one row per z.

    Born & Wolf: amplitude(r) = int_0^1 J0(v rho) exp(-i u rho^2 / 2) rho drho (Gauss-Legendre in rho),
    v = 2 pi NA r / lam, u = 2 pi NA^2 z / (n lam); the intensity's Hankel transform is the OTF."""
    na, index = optics.numerical_aperture, optics.refractive_index
    rho, weights = np.polynomial.legendre.leggauss(160)
    rho, weights = 0.5 * (rho + 1), 0.5 * weights
    tan_alpha = na / math.sqrt(index ** 2 - na ** 2)
    airy = 0.61 * wavelength_um / na
    r_max = 1.3 * float(np.max(np.abs(z_um))) * tan_alpha + 4 * airy + 3 * optics.pixel_size_um
    dr = min(0.02, airy / 20)
    r = (np.arange(int(r_max / dr) + 1) + 0.5) * dr
    kernel = bessel_j0(2 * math.pi * na * r[:, None] / wavelength_um * rho[None, :]) * (rho * weights)[None, :]
    hankel = bessel_j0(2 * math.pi * np.asarray(freqs)[:, None] * r[None, :]) * (2 * math.pi * r * dr)[None, :]
    z = np.asarray(z_um, dtype=np.float64)
    u = 2 * math.pi * na ** 2 * z / (index * wavelength_um)                       # all z at once
    intensity = np.abs(kernel @ np.exp(-0.5j * u[None, :] * rho[:, None] ** 2)) ** 2   # [r, z]
    # The PSF ends where the simulator's kernel does (geometric blur + 4 Airy radii + 2 px,
    # a square of that half-size: a disc of the same area here).
    half = 1.3 * np.abs(z) * tan_alpha + 4 * airy + 2 * optics.pixel_size_um
    intensity[r[:, None] > half[None, :] * 2 / math.sqrt(math.pi)] = 0.0
    otf = hankel @ intensity                                                       # [freq, z]
    return (otf / (intensity * (2 * math.pi * r * dr)[:, None]).sum(axis=0)).T


@functools.lru_cache(maxsize=4)
def _otf_table(optics: FocusOptics, crop: int) -> np.ndarray:
    """[channel, |z| step, ring] OTF at the crop's ring frequencies."""
    z = np.arange(0.0, Z_MAX_UM + Z_STEP_UM / 2, Z_STEP_UM)
    rings = np.arange(crop // 2) / (crop * optics.pixel_size_um)
    table = np.stack([defocus_otf(optics, lam, z, rings) for lam in optics.wavelengths_um])
    table.setflags(write=False)
    return table


def _lookup(table: np.ndarray, z_abs: np.ndarray) -> np.ndarray:
    """OTF rows at |z| values (linear in z between table steps): [channel, len(z), ring]."""
    pos = np.clip(z_abs / Z_STEP_UM, 0, table.shape[1] - 1.000001)
    lo = pos.astype(int)
    frac = (pos - lo)[None, :, None]
    return table[:, lo] * (1 - frac) + table[:, lo + 1] * frac


# ------------------------------------------------------------------------------------- spectra

@functools.lru_cache(maxsize=4)
def _half_plane_rings(crop: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Ring of each rfft2 frequency below Nyquist, the frequencies' flat indices, and their weights:
    a real window's spectrum is Hermitian, so every column but the first and the Nyquist one
    stands for itself and its mirror (weight 2), and the half plane gives the full plane's ring sums
    at half the transform's cost."""
    k1, k2 = np.fft.fftfreq(crop) * crop, np.fft.rfftfreq(crop) * crop
    rings = np.rint(np.hypot(k1[:, None], k2[None, :])).astype(int)
    mirror = np.full(k2.size, 2.0)
    mirror[0] = 1.0
    if crop % 2 == 0:
        mirror[-1] = 1.0
    keep = np.flatnonzero(rings.ravel() < crop // 2)
    weights = np.broadcast_to(mirror, rings.shape).ravel()[keep]
    return rings.ravel()[keep], keep, weights


def _windows(image: np.ndarray, size: int, count: int) -> list[tuple[int, int]]:
    """Top-left corners of up to `count` of the tile's non-overlapping size x size windows (a grid
    centred on the tile), those with the most contrast (a cheap stand-in for texture) first."""
    h, w = image.shape[:2]
    rows, cols = max(h // size, 1), max(w // size, 1)
    y0, x0 = (h - rows * size) // 2, (w - cols * size) // 2
    corners = [(y0 + r * size, x0 + c * size) for r in range(rows) for c in range(cols)]
    if len(corners) <= count:
        return corners
    step = max(size // 32, 1)  # contrast on a sparse sample of pixels: microseconds
    contrast = [float(image[t: t + size: step, l: l + size: step].std()) for t, l in corners]
    return [corners[i] for i in np.argsort(contrast)[::-1][:count]]


def ring_spectra(a: np.ndarray, b: np.ndarray, channels: int):
    """Per channel and ring: |A|^2, |B|^2, Re(A B*) summed over the windows.

    a, b: float64 [windows, channels, size, size] (channel-first: the transforms run over contiguous
    planes, a quarter faster), or one window [size, size, channels]. Ring sums are linear, so the
    windows' powers are summed per frequency first and binned into rings once."""
    if a.ndim == 3:
        a, b = (np.ascontiguousarray(x[..., :channels].transpose(2, 0, 1), dtype=np.float64)[None] for x in (a, b))
    size = a.shape[-1]
    window = np.hanning(size)[:, None] * np.hanning(size)[None, :]
    rings, keep, weights = _half_plane_rings(size)
    spectra = []
    for x in (a[:, :channels], b[:, :channels]):
        x = x - x.mean(axis=(2, 3), keepdims=True)  # the caller's windows stay as they are
        x *= window
        spectra.append(np.fft.rfft2(x))
    fa, fb = spectra
    # Summed over the windows before the ring indices pick the frequencies: one small copy.
    powers = [np.einsum("wcyx,wcyx->cyx", f.real, g.real) + np.einsum("wcyx,wcyx->cyx", f.imag, g.imag)
              for f, g in ((fa, fa), (fb, fb), (fa, fb))]
    powers = [power.reshape(channels, -1)[:, keep] for power in powers]
    out = np.zeros((3, channels, size // 2))
    for i, power in enumerate(powers):
        for c in range(channels):
            out[i, c] = np.bincount(rings, power[c] * weights, size // 2)
    return out


def _window_stack(shot: np.ndarray, corners: list[tuple[int, int]], size: int) -> np.ndarray:
    """The windows of a HxW(xC) tile as float64 [windows, channels, size, size]."""
    planes = shot.reshape(*shot.shape[:2], -1)
    out = np.empty((len(corners), planes.shape[2], size, size))
    for i, (top, left) in enumerate(corners):
        out[i] = planes[top: top + size, left: left + size].transpose(2, 0, 1)
    return out


# ------------------------------------------------------------------------------------ estimator

class FocusEstimator:
    def __init__(self, optics: FocusOptics, crop: int = CROP_PX):
        self.optics, self.crop = optics, crop

    def warm_up(self) -> None:
        """Builds the OTF table (about a second), so the first tile does not pay for it."""
        _otf_table(self.optics, self.crop)

    def estimate(self, shot_a: np.ndarray, shot_b: np.ndarray, defocus_a_um: float,
                 defocus_b_um: float) -> FocusEstimate:
        """shot_a/shot_b: HxWxC arrays (uint8/uint16 or float) of one tile; offsets from F in um."""
        if defocus_a_um == defocus_b_um:
            return FocusEstimate(None, False, "no estimate: defocus_a_um and defocus_b_um are equal (not given?)")
        n = self._fit(shot_a, shot_b, defocus_a_um, defocus_b_um)
        dd = abs(defocus_b_um - defocus_a_um) / 2
        trained = self.optics.defocus_um
        if trained and not (min(trained) - DD_MARGIN_UM <= dd <= max(trained) + DD_MARGIN_UM):
            return FocusEstimate(n, True, f"dD {dd:g} um outside the trained {min(trained):g}..{max(trained):g} um")
        if n is None:
            return FocusEstimate(None, False, "no estimate: too little texture in the tile")
        limit = self.optics.focus_range_um
        if limit > 0 and abs(n) > limit:
            return FocusEstimate(n, True, f"focus offset {n:+.2f} um outside the trained +-{limit:g} um")
        return FocusEstimate(n, False, "")

    def _fit(self, shot_a, shot_b, d_a: float, d_b: float) -> float | None:
        size = min(self.crop, *shot_a.shape[:2]) // 2 * 2
        if size < 32:
            return None
        channels = min(shot_a.shape[2], len(self.optics.wavelengths_um)) if shot_a.ndim == 3 else 1
        # Ring spectra summed over the most textured windows of the tile: the more of the section
        # the fit sees, the less its layers' uneven staining in one window moves the estimate.
        corners = _windows(shot_a, size, MAX_WINDOWS)
        spectra = ring_spectra(_window_stack(shot_a, corners, size), _window_stack(shot_b, corners, size), channels)
        table = _otf_table(self.optics, size)
        if channels == 1:  # grey tiles: the middle wavelength
            table = table[len(table) // 2: len(table) // 2 + 1]
        table = table[:channels]
        paa, pbb, pab = spectra
        band = slice(2, size // 2)
        # No texture (blank glass): the shots' noise is independent, so their cross power vanishes.
        coherence = pab[:, band].sum() / (np.sqrt(paa[:, band] * pbb[:, band]).sum() + 1e-30)
        if not coherence > MIN_COHERENCE:
            return None
        p = [x[:, None, band] for x in (paa, pbb, pab)]
        weight = 1.0 / (p[0] + p[1]) ** WEIGHT_POWER   # each ring's misfit relative to its power
        coarse = np.arange(-N_MAX_UM, N_MAX_UM + 1e-9, N_COARSE_UM)
        misfit = self._cost(table, p, weight, d_a, d_b, coarse)
        scale = float(misfit.min()) or 1.0  # the prior weighs against the best misfit's size
        sigma = self.optics.focus_sigma_um or 1.0
        cost = lambda n_grid: (self._cost(table, p, weight, d_a, d_b, n_grid) / scale  # noqa: E731
                               + PRIOR_WEIGHT * (n_grid / sigma) ** 2)
        start = coarse[int(np.argmin(misfit / scale + PRIOR_WEIGHT * (coarse / sigma) ** 2))]
        fine = start + np.arange(-N_COARSE_UM, N_COARSE_UM + 1e-9, N_STEP_UM)
        costs = cost(fine)
        best = int(np.argmin(costs))
        if 0 < best < len(costs) - 1:  # parabola through the minimum and its neighbours
            c0, c1, c2 = costs[best - 1: best + 2]
            curve = c0 - 2 * c1 + c2
            shift = 0.5 * (c0 - c2) / curve if curve > 0 else 0.0
            return float(fine[best] + shift * N_STEP_UM)
        return float(fine[best])

    def _cost(self, table, p, weight, d_a, d_b, n_grid) -> np.ndarray:
        """Misfit of the measured ring powers p = (|A|^2, |B|^2, Re A B*) per channel for each n.

        A section of equally stained thin layers at depths z_l gives E|A|^2 = S mean_l O(z_a - z_l)^2,
        E|B|^2 = S mean_l O(z_b - z_l)^2, E[A B*] = S mean_l O(z_a - z_l) O(z_b - z_l), with S the
        specimen's power in the ring, plus white sensor noise s2 in |A|^2 and |B|^2 only. S per ring
        and s2 per channel are fitted in closed form (least squares), leaving the misfit m(n)."""
        band = p[0].shape[-1]
        oa = np.stack([_lookup(table, np.abs(d_a - n_grid - z))[..., -band:] for z in self.optics.layer_depths_um])
        ob = np.stack([_lookup(table, np.abs(d_b - n_grid - z))[..., -band:] for z in self.optics.layer_depths_um])
        m = ((oa ** 2).mean(0), (ob ** 2).mean(0), (oa * ob).mean(0))
        # Inner products with the weights (1, 1, 2) of the (aa, bb, ab) components (|A B*| counts twice).
        dot = lambda x, y: x[0] * y[0] + x[1] * y[1] + 2 * x[2] * y[2]  # noqa: E731
        mm, pm, em = dot(m, m) + 1e-30, dot(p, m), m[0] + m[1]
        qp_qe = (p[0] + p[1]) - pm * em / mm          # projections off the model direction
        qe_qe = 2.0 - em ** 2 / mm
        qp_qp = dot(p, p) - pm ** 2 / mm
        s_pe, s_ee, s_pp = ((weight * x).sum(-1) for x in (qp_qe, qe_qe, qp_qp))  # [channel, n]
        noise = np.clip(s_pe / (s_ee + 1e-30), 0.0, None)
        return (s_pp - 2 * noise * s_pe + noise ** 2 * s_ee).sum(0)


# ------------------------------------------------------------------------------- gateway hook

class GatewayFocusQC:
    """The gateway's use of the estimator: runs beside the tile's inference (in a worker thread),
    fills the response's QC fields and counts flagged tiles. The optics come from the model's
    metadata, read on the first tile; without them the QC fields stay empty. An estimator failure
    never fails the tile: it only leaves the estimate out."""

    def __init__(self, metadata: "Callable[[], dict[str, str]]", metrics=None):
        self._metadata, self._metrics = metadata, metrics
        self._estimator: FocusEstimator | None = None
        self._resolved = False
        self._lock = threading.Lock()

    def _get(self) -> "FocusEstimator | None":
        with self._lock:
            if not self._resolved:
                try:
                    optics = FocusOptics.from_metadata(self._metadata())
                except Exception:  # noqa: BLE001 - no metadata, no QC
                    log.exception("focus QC: could not read the model's metadata; QC fields stay empty")
                    optics = None
                self._estimator = FocusEstimator(optics) if optics is not None else None
                self._resolved = True
            return self._estimator

    def _run(self, shot_a, shot_b, defocus_a_um, defocus_b_um) -> FocusEstimate | None:
        estimator = self._get()
        if estimator is None:
            return None
        try:
            return estimator.estimate(shot_a, shot_b, defocus_a_um, defocus_b_um)
        except Exception:  # noqa: BLE001
            log.exception("focus QC: the estimate failed; the tile is answered without it")
            return None

    def start(self, request, shot_a, shot_b) -> "asyncio.Future":
        return asyncio.ensure_future(asyncio.to_thread(self._run, shot_a, shot_b, request.defocus_a_um,
                                                       request.defocus_b_um))

    async def finish(self, future: "asyncio.Future", response) -> None:
        estimate = await future
        if estimate is None:
            return
        if estimate.focus_offset_um is not None:
            response.focus_offset_um = estimate.focus_offset_um
        response.rescan, response.rescan_reason = estimate.rescan, estimate.reason
        response.trained_focus_range_um = self._estimator.optics.focus_range_um if self._estimator else 0.0
        if estimate.rescan and self._metrics is not None:
            self._metrics.rescan_tiles.inc()
