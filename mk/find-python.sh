#!/bin/sh
# Prints the path of a working Python interpreter of version $1 (e.g. 3.10): `python3.10` on PATH, else a pyenv
# install under $PYENV_ROOT (default ~/.pyenv). Exits 1 with a message naming the version when there is none:
# interpreters are never downloaded.
set -u
version=$1
for candidate in "$(command -v "python$version" 2>/dev/null)" "${PYENV_ROOT:-$HOME/.pyenv}"/versions/"$version".*/bin/python; do
  [ -n "$candidate" ] && [ -x "$candidate" ] || continue
  found=$("$candidate" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null) || continue
  if [ "$found" = "$version" ]; then
    printf '%s\n' "$candidate"
    exit 0
  fi
done
echo "make: Python $version is required (the suite runs on 3.10, 3.12 and 3.13) but neither python$version on PATH" \
     "nor ${PYENV_ROOT:-$HOME/.pyenv}/versions/$version.* works on this machine; install it, or run 'make test-default'" >&2
exit 1
