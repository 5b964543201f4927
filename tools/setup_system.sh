#!/usr/bin/env bash
# Installs the Debian packages the stack needs when they are missing:
#   libosmesa6       headless OpenGL for pyrender (PYOPENGL_PLATFORM=osmesa)
#   libgl1, libglib2.0-0   shared libraries that OpenCV's wheel links against
set -euo pipefail
pkgs=(libosmesa6 libgl1 libglib2.0-0)
missing=()
for p in "${pkgs[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "setup: need root or sudo to install ${missing[*]}" >&2; exit 1; }
  SUDO=sudo
fi
echo "setup: installing Debian packages ${missing[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
