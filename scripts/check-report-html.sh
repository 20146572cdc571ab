#!/usr/bin/env bash
# Render a demo report in headless Chromium (Debian's `chromium` package) and save a screenshot,
# to check that report.html displays as intended. Usage: scripts/check-report-html.sh DIR/report.html [OUT.png]
# Needs: apt-get install -y chromium
set -euo pipefail
page=$(realpath "$1")
shot=${2:-${page%.html}.png}
profile=$(mktemp -d)
trap 'rm -rf "$profile"' EXIT
chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
  --disable-background-networking --disable-component-update --disable-sync \
  --user-data-dir="$profile" --window-size=1200,2600 --screenshot="$shot" "file://$page" 2>/dev/null
python3 - "$shot" <<'PY'
import sys
data = open(sys.argv[1], "rb").read()
assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000, "screenshot missing or blank"
print(f"rendered {sys.argv[1]} ({len(data)} bytes)")
PY
