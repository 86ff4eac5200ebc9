"""Arguments shared by the training-side verbs (optics, sample, textures).

tsva.export.optics (numpy, scipy) is imported inside the functions: the verb modules import this
one at their top, and `tsva --help` imports every verb module.
"""
from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from .. import flags

if TYPE_CHECKING:
    from ..optics import Optics, Sample


_floats = flags.floats  # comma-separated numbers (evaluate's --sections)


def add_optics_arguments(parser: argparse.ArgumentParser) -> None:
    from ..optics import Optics, Sample

    g = parser.add_argument_group("optics (the shipped model's defaults)")
    flags.add_arguments(g, Optics)   # the flags are declared on the fields (--na, ..., --focus-sigma)
    flags.add_arguments(g, Sample)   # --layers, --thickness


def add_texture_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--textures", metavar="DIR", help="folder of RGB H&E images (default: scikit-image's "
                        "histology image); a pixel size in the name (`x_0.5um.png`) is honoured, else 0.5 um/px")
    parser.add_argument("--holdout", action="append", default=[], metavar="NAME",
                        help="texture file held out for validation (repeatable; default: the last by name)")


def optics_from_args(args: argparse.Namespace) -> Optics:
    from ..optics import Optics

    return flags.from_namespace(Optics, args)


def sample_from_args(args: argparse.Namespace) -> Sample:
    from ..optics import Sample

    return flags.from_namespace(Sample, args)
