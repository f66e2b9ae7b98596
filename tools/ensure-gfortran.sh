#!/usr/bin/env bash
# Make sure a Fortran compiler is present: install gfortran with apt-get when we are root.
set -euo pipefail
if command -v gfortran >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "gfortran not found: installing it with apt-get" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq gfortran >/dev/null
  exit 0
fi
echo "error: cfsx needs a Fortran compiler (gfortran). Install it, for example" >&2
echo "       'sudo apt-get install gfortran' or 'conda install -c conda-forge gfortran'," >&2
echo "       then run make again." >&2
exit 1
