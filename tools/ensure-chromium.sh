#!/usr/bin/env bash
# Make sure headless Chromium and its WebDriver are present for the browser test: apt-get when we are root.
set -euo pipefail
if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "chromium or chromedriver not found: installing chromium and chromium-driver with apt-get" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq chromium chromium-driver >/dev/null
  exit 0
fi
echo "error: the browser test needs Chromium and its driver. Install them, for example" >&2
echo "       'sudo apt-get install chromium chromium-driver', then run make test-browser again." >&2
exit 1
