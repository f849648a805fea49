#!/usr/bin/env bash
# Builds the release `roundup` with the Swift runtime linked in (`--static-swift-stdlib`) and checks
# with ldd that it loads no Swift runtime library: what is left are the Debian packages that
# docs/deployment.md lists. Run it with the benchmark's release build; CI skips it because a
# release build from scratch takes longer than CI's time allows on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
swift build -c release --static-swift-stdlib --product roundup
bin="$(swift build -c release --static-swift-stdlib --show-bin-path)/roundup"
if ldd "$bin" | grep -E 'libswift|libFoundation|libdispatch'; then
  echo "check-static-binary: $bin still loads the Swift runtime (above)" >&2
  exit 1
fi
echo "check-static-binary: $bin needs only:"
ldd "$bin" | awk '{print "  " $1}'
