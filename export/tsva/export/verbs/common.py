"""Arguments shared by the training-side verbs (optics, sample, textures)."""
from __future__ import annotations

import argparse
import functools
import sys

from ..errors import TsvaExportError
from ..optics import Optics, Sample


def _floats(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def add_optics_arguments(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("optics (the shipped model's defaults)")
    g.add_argument("--na", type=float, default=Optics.numerical_aperture, help="numerical aperture (default %(default)s)")
    g.add_argument("--refractive-index", type=float, default=Optics.refractive_index,
                   help="immersion index (default %(default)s, dry)")
    g.add_argument("--pixel-size", type=float, default=Optics.pixel_size_um, help="um per pixel at the sample (default %(default)s)")
    g.add_argument("--wavelengths", type=_floats, default=Optics.wavelengths_um, help="R,G,B in um (default 0.61,0.53,0.47)")
    g.add_argument("--defocus", type=_floats, default=Optics.defocus_um, help="dD values in um (default 0.5,...,3.0)")
    g.add_argument("--focus-sigma", type=float, default=Optics.focus_sigma_um,
                   help="sigma of the tile focus offset n, um (default %(default)s)")
    g.add_argument("--layers", type=int, default=Sample.layers, help="thin layers of the section (default %(default)s)")
    g.add_argument("--thickness", type=float, default=Sample.thickness_um, help="section thickness, um (default %(default)s)")


def add_texture_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--textures", metavar="DIR", help="folder of RGB H&E images (default: scikit-image's "
                        "histology image); a pixel size in the name (`x_0.5um.png`) is honoured, else 0.5 um/px")
    parser.add_argument("--holdout", action="append", default=[], metavar="NAME",
                        help="texture file held out for validation (repeatable; default: the last by name)")


def optics_from_args(args: argparse.Namespace) -> Optics:
    return Optics(numerical_aperture=args.na, refractive_index=args.refractive_index,
                  pixel_size_um=args.pixel_size, wavelengths_um=args.wavelengths, defocus_um=args.defocus,
                  focus_sigma_um=args.focus_sigma)


def sample_from_args(args: argparse.Namespace) -> Sample:
    return Sample(layers=args.layers, thickness_um=args.thickness)


def reports_errors(verb: str, errors: tuple[type[Exception], ...] = (TsvaExportError,)):
    """Decorates a verb's run(): an error the user can fix (TsvaExportError, or `errors`) becomes
    one line on stderr and exit status 2, never a bare stack trace."""
    def decorate(run):
        @functools.wraps(run)
        def wrapped(args: argparse.Namespace) -> int:
            try:
                return run(args)
            except errors as exc:
                print(f"tsva {verb}: {exc}", file=sys.stderr)
                return 2
        return wrapped
    return decorate
