#!/usr/bin/env bash
# Command line: create (or reuse) a venv holding exactly one pinned requirements file.
#
#   scripts/make_venv.sh VENV REQUIREMENTS [PYTHON]
#   scripts/make_venv.sh .venv-bpy42 requirements-bpy42.txt python3.11
#   scripts/make_venv.sh .venv-bpy53 requirements-bpy53.txt /root/.pyenv/versions/3.13.0/bin/python
#
# A stamp named after the requirements' checksum marks a finished install: an unchanged file
# reuses the venv at once; a changed one (or an install that was interrupted) rebuilds it from
# scratch, so no stale package from an older pin survives. Used by `make test` for every bpy tier
# (requirements-bpy*.txt), each in its own venv beside the main .venv.
set -euo pipefail

if [ $# -lt 2 ] || [ $# -gt 3 ]; then
    echo "usage: $0 VENV REQUIREMENTS [PYTHON]" >&2
    exit 2
fi
venv=$1
requirements=$2
python=${3:-python3.11}

if [ ! -f "$requirements" ]; then
    echo "make_venv: no such requirements file: $requirements" >&2
    exit 2
fi
stamp="$venv/.installed-$(cksum < "$requirements" | cut -d' ' -f1)"
if [ -f "$stamp" ]; then
    exit 0
fi
if [ -z "$python" ] || ! command -v "$python" >/dev/null; then
    echo "make_venv: no Python to make $venv with ('$python'): see scripts/find_python.sh" >&2
    exit 2
fi

echo "make_venv: creating $venv from $requirements"
rm -rf "$venv"
"$python" -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$requirements"
touch "$stamp"
