#!/usr/bin/env bash
# Make sure a headless machine can run napari's GUI tests: an X server (Xvfb)
# and the Mesa/XCB libraries Qt needs. Installs them when run as root on a
# Debian/Ubuntu machine; otherwise prints exactly what to install and fails.
# Does nothing where a display is present.
set -euo pipefail

PACKAGES=(xvfb xauth libgl1-mesa-dri libegl1 libxcb-cursor0 libxcb-icccm4
  libxcb-image0 libxcb-keysyms1 libxcb-randr0 libxcb-render-util0 libxcb-shape0
  libxcb-xinerama0 libxcb-xfixes0 libxcb-xkb1 libxkbcommon-x11-0 libxcb-xinput0)

if [ -n "${DISPLAY:-}" ]; then
  exit 0
fi
missing=()
if command -v dpkg-query >/dev/null 2>&1; then
  for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
  done
elif ! command -v xvfb-run >/dev/null 2>&1; then
  echo "No display and no xvfb-run. Install Xvfb and the XCB/Mesa libraries" \
       "for Qt with your package manager (Debian names: ${PACKAGES[*]})." >&2
  exit 1
fi
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "Installing system packages for headless Qt: ${missing[*]}"
  apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"
else
  echo "GUI tests need these system packages (no display here):" >&2
  echo "  sudo apt-get install -y ${missing[*]}" >&2
  exit 1
fi
