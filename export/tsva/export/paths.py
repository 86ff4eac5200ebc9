"""Where the training side keeps the shipped model, the evaluation documents and its scratch
folders (runs/, build/).

The model repository is the one setting of tsva.common.model_repository (--model-repository,
TSVA_MODEL_REPOSITORY, else the packaged default). The other folders belong to the checkout the
distributions were installed from (PEP 610), else to the working directory.
"""
from __future__ import annotations

from pathlib import Path

from tsva.common import model_repository

REPO_ROOT = model_repository.source_tree() or Path.cwd()
MODEL_REPOSITORY = model_repository.resolve()
SHIPPED_MODEL = model_repository.latest_model(MODEL_REPOSITORY)  # the newest version of the shipped model
DOCS_DIR = REPO_ROOT / "docs" / "model"
