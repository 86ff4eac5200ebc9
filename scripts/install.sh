#!/usr/bin/env bash
# Installs the project into a virtual environment. One script for every place that installs it
# (the README's commands, CI, the Dockerfile), so each exercises the same steps.
#   scripts/install.sh gateway [VENV]   client + gateway (no torch): enough for `tsva serve`
#   scripts/install.sh dev [VENV]       everything, training side and test tools included
#   scripts/install.sh image [VENV]     client + gateway, non-editable (the Dockerfile's install)
set -euo pipefail
profile=${1:-gateway}
venv=${2:-.venv}
cd "$(dirname "$0")/.."
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
pip=("$venv/bin/python" -m pip --disable-pip-version-check -q)
case "$profile" in
  gateway) "${pip[@]}" install -c requirements/constraints.txt -e common -e clients -e server ;;
  image) "${pip[@]}" install --no-cache-dir -c requirements/constraints.txt ./common ./clients ./server ;;
  dev) "${pip[@]}" install -c requirements/constraints.txt -e common -e clients -e server -e export -r requirements/test.txt ;;
  *) echo "usage: $0 gateway|dev|image [VENV]" >&2; exit 2 ;;
esac
