"""Typed errors of the training side. `TsvaExportError` is tsva.common.errors' BadInput: a verb that
raises one prints one clear line `tsva VERB: message` and exits with status 2."""
from __future__ import annotations

from tsva.common.errors import BadInput


class TsvaExportError(BadInput):
    """Base class: a problem the user can fix (bad input, bad configuration)."""


class OpticsError(TsvaExportError, ValueError):
    """Physically impossible or malformed optics (e.g. NA >= refractive index)."""


class TextureError(TsvaExportError, ValueError):
    """A texture folder or image that cannot be used for training."""


class CheckpointError(TsvaExportError, ValueError):
    """A checkpoint that is missing, unreadable or of another architecture."""
