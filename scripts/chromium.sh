#!/usr/bin/env bash
# Chromium for the test that opens the MLflow UI in a browser (`setup.sh test`): Debian's package
# where we may install it (root with apt-get); otherwise one line saying what to install.
set -uo pipefail
if command -v chromium >/dev/null || command -v chromium-browser >/dev/null; then exit 0; fi
hint="install your distribution's chromium package (Debian/Ubuntu: apt-get install chromium), then run make test again"
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "setup: installing Debian's chromium (the MLflow UI test opens it headless)"
  if apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null \
     && { command -v chromium >/dev/null || command -v chromium-browser >/dev/null; }; then
    exit 0
  fi
  echo "setup: apt-get could not install chromium, which the MLflow UI test needs: $hint" >&2
  exit 1
fi
echo "setup: the MLflow UI test needs Chromium and set-up cannot install it without root and apt-get: $hint" >&2
exit 1
