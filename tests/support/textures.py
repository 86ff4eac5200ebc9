"""Texture files for the training-side texture tests."""
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage import data


def _write(path: Path, array: np.ndarray) -> Path:
    Image.fromarray(array).save(path)
    return path


@pytest.fixture
def he():
    return data.immunohistochemistry()
