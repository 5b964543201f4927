#!/usr/bin/env bash
# Rebuilds requirements.lock from requirements.txt in a throwaway environment (setuptools included: the
# editable install and the wheel build use it without build isolation).
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
python3 -m venv "$tmp/venv"
"$tmp/venv/bin/pip" install -q -r requirements.txt
{ echo "# Full lock of the environment (pip freeze of requirements.txt on Python 3.11). Regenerate with tools/lock.sh."
  "$tmp/venv/bin/pip" freeze --all --exclude-editable | grep -v '^pip==' | sed 's/^torch==\([0-9.]*\)+cpu/torch==\1/'; } > requirements.lock
rm -rf "$tmp"
