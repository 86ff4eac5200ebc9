"""Where the repository is, for tests and benchmarks that read its files."""
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
