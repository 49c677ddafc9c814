#!/usr/bin/env bash
# What the browser tests need: Debian's `chromium` (driven by Playwright's Python package through
# executable_path; never `playwright install`) and axe-core from the npm registry, in a git-ignored cache.
# Exits non-zero only when chromium cannot be had; the browser tests then skip, loudly.
set -u
here="$(cd "$(dirname "$0")/.." && pwd)"
axe_version="${AXE_CORE_VERSION:-4.14.1}"
axe_dir="$here/.cache/axe"

if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "Installing Debian's chromium for the browser tests..." >&2
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) || true
  else
    echo "chromium is not installed and this user cannot install it (needs root and apt-get)." >&2
  fi
fi

if [ ! -f "$axe_dir/node_modules/axe-core/axe.min.js" ]; then
  if command -v npm >/dev/null 2>&1; then
    mkdir -p "$axe_dir"
    (cd "$axe_dir" && npm install --silent --no-audit --no-fund --no-save --prefix "$axe_dir" \
      "axe-core@$axe_version" >/dev/null 2>&1) || echo "Could not install axe-core $axe_version from npm." >&2
  else
    echo "npm is missing: axe-core cannot be installed; the accessibility checks will be skipped." >&2
  fi
fi

command -v chromium >/dev/null 2>&1 || { echo "chromium unavailable." >&2; exit 1; }
exit 0
