"""Typed errors of the training side. The verbs catch `TsvaExportError` and print one clear line."""
from __future__ import annotations


class TsvaExportError(Exception):
    """Base class: a problem the user can fix (bad input, bad configuration)."""


class OpticsError(TsvaExportError, ValueError):
    """Physically impossible or malformed optics (e.g. NA >= refractive index)."""


class TextureError(TsvaExportError, ValueError):
    """A texture folder or image that cannot be used for training."""


class CheckpointError(TsvaExportError, ValueError):
    """A checkpoint that is missing, unreadable or of another architecture."""
