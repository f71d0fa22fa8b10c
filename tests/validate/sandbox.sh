#!/usr/bin/env bash
# Lays out the corpus as a project in DIR: a `.git` marker (so DIR is the repository root for
# pipe and actionlint), tests/validate/project/ at its root, and ok/, err/, expr/ below it.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
dir=$1
mkdir -p "$dir/.git"
cp -R "$here/project/." "$dir/"
for d in ok err expr; do cp -R "$here/$d" "$dir/$d"; done
