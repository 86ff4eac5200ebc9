"""Where the repository keeps the shipped model and the evaluation documents."""
from __future__ import annotations

from pathlib import Path

# export/tsva/export/paths.py -> repository root (editable install, the repository's layout).
REPO_ROOT = Path(__file__).resolve().parents[3]
SHIPPED_MODEL = REPO_ROOT / "model_repository" / "tsva" / "1" / "model.onnx"
DOCS_DIR = REPO_ROOT / "docs" / "model"
