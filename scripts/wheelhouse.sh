#!/usr/bin/env bash
# Fills the gateway image's wheelhouse, so the image builds without network:
#   scripts/wheelhouse.sh [DIR]        default requirements/wheelhouse (what the Dockerfile reads)
# Downloads the wheels of the client's and the gateway's dependencies (read from their
# pyproject.toml, pinned by requirements/constraints.txt) for this machine's Python and platform,
# which match the image's (CPython 3.11, glibc, x86_64 or arm64), plus setuptools and wheel to
# build the two local packages. pip's cache (~/.cache/pip) makes a second run quick.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:-requirements/wheelhouse}
python=${PYTHON:-python3}
if [ -x .venv/bin/python ] && [ -z "${PYTHON:-}" ]; then python=.venv/bin/python; fi
"$python" - <<'PY' || { echo "$0: needs Python 3.11 (the image's)" >&2; exit 2; }
import sys
sys.exit(0 if sys.version_info[:2] == (3, 11) else 1)
PY
mapfile -t requirements < <("$python" - <<'PY'
import re, tomllib
for package in ("common", "clients", "server"):
    with open(f"{package}/pyproject.toml", "rb") as f:
        for requirement in tomllib.load(f)["project"]["dependencies"]:
            if not re.match(r"tsva-", requirement):  # the local packages are built from source
                print(requirement)
PY
)
mkdir -p "$dir"
# Up to date when the same requirements were downloaded into it before (skips pip's index queries).
stamp="$dir/.requirements"
wanted=$(printf '%s\n' "${requirements[@]}"; cat requirements/constraints.txt)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$wanted" ] && ls "$dir"/*.whl >/dev/null 2>&1; then
  echo "wheelhouse $dir is up to date ($(ls "$dir"/*.whl | wc -l) wheels)"
  exit 0
fi
rm -f "$stamp"
"$python" -m pip download --disable-pip-version-check -q --only-binary=:all: -d "$dir" \
  -c requirements/constraints.txt "${requirements[@]}" "setuptools>=69" wheel \
  2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
printf '%s\n' "$wanted" > "$stamp"
echo "wheelhouse $dir: $(ls "$dir"/*.whl | wc -l) wheels, $(du -sh "$dir" | cut -f1)"
