#!/usr/bin/env bash
# Ingest measured by a separate process: `roundup serve` (release build) on a fresh SQLite file or
# a PostgreSQL database, and wrk sending signed C2C callbacks to offline parents over loopback.
# It prints wrk's figure and what the service counted (stored, shed) from its own /metrics, for
# the real path and then for the no-op ceiling: the same callbacks with im.ingest_from set to
# before_send, so each one is authenticated, decoded and answered, but nothing is stored.
#
#   Benchmarks/wrk-ingest.sh [-d SECONDS] [-c CONNECTIONS] [-t THREADS] [-u USERS] [--postgres URL] [--rate N]
#
# --rate N uses wrk2-style pacing only if your wrk supports -R; Debian's wrk does not, so the
# fixed-rate figure comes from roundup-bench. Needs: wrk, sha256sum, curl, a release build
# (swift build -c release). Every server binds 127.0.0.1; each run is bounded by -d.
set -euo pipefail

seconds=10 connections=32 threads=2 users=10000 postgres="" port=18480
while [ $# -gt 0 ]; do
  case "$1" in
    -d) seconds="$2"; shift 2 ;;
    -c) connections="$2"; shift 2 ;;
    -t) threads="$2"; shift 2 ;;
    -u) users="$2"; shift 2 ;;
    -p) port="$2"; shift 2 ;;
    --postgres) postgres="$2"; shift 2 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
done
[ "$seconds" -le 40 ] || { echo "keep -d at 40 s or less: the callback signature is accepted for 60 s" >&2; exit 2; }
here="$(cd "$(dirname "$0")" && pwd)"
roundup="${ROUNDUP_BIN:-$here/../.build/release/roundup}"
[ -x "$roundup" ] || roundup="$here/../.build-release/release/roundup"
[ -x "$roundup" ] || { echo "no release build: run swift build -c release (or set ROUNDUP_BIN)" >&2; exit 2; }
command -v wrk >/dev/null || { echo "wrk is not installed (Debian: apt-get install wrk)" >&2; exit 2; }

token="wrk-callback-token"
work="$(mktemp -d)"
serve_pid=""
cleanup() { [ -n "$serve_pid" ] && kill "$serve_pid" 2>/dev/null && wait "$serve_pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

cpu_ticks() { # the user + system CPU of a process so far, in clock ticks
  awk '{ print $14 + $15 }' "/proc/$1/stat"
}

metric() { # metric NAME-WITH-LABELS: its value in /metrics, 0 when absent
  curl -fsS "http://127.0.0.1:$port/metrics" | awk -v m="$1" '$1 == m { print $2; found = 1 } END { if (!found) print 0 }'
}

run() { # run LABEL INGEST_FROM
  local label="$1" ingest_from="$2"
  rm -rf "$work/data"; mkdir -p "$work/data"
  cat > "$work/roundup.yaml" <<YAML
server:
  host: 127.0.0.1
  port: $port
storage:
  path: "$work/data/roundup.sqlite"
  url: "$postgres"
wechat:
  dry_run: true
im:
  sdk_app_id: 1400000000
  callback_token: "$token"
  ingest_from: $ingest_from
digest:
  window: 10m
  max_messages: 10000
YAML
  "$roundup" serve --config "$work/roundup.yaml" > "$work/serve.log" 2>&1 &
  serve_pid=$!
  for _ in $(seq 1 100); do curl -fsS "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
  curl -fsS "http://127.0.0.1:$port/healthz" >/dev/null || { cat "$work/serve.log" >&2; exit 1; }
  local now sign
  now="$(date +%s)"
  sign="$(printf '%s%s' "$token" "$now" | sha256sum | cut -d' ' -f1)"
  echo "== $label: wrk -t$threads -c$connections -d${seconds}s"
  local cpu_before cpu_after
  cpu_before="$(cpu_ticks "$serve_pid")"
  wrk -t"$threads" -c"$connections" -d"${seconds}s" -s "$here/ingest.lua" "http://127.0.0.1:$port" -- "$sign" "$now" "$users" "$label" | tail -1
  cpu_after="$(cpu_ticks "$serve_pid")"
  local stored shed skipped
  stored="$(metric 'roundup_callbacks_total{command="C2C.CallbackAfterSendMsg",outcome="stored"}')"
  shed="$(metric 'roundup_callbacks_total{command="C2C.CallbackAfterSendMsg",outcome="shed"}')"
  skipped="$(metric 'roundup_callbacks_total{command="C2C.CallbackAfterSendMsg",outcome="skipped"}')"
  echo "serve counted: stored $stored, shed $shed, skipped $skipped"
  awk -v t="$((cpu_after - cpu_before))" -v hz="$(getconf CLK_TCK)" -v n="$(awk -v a="$stored" -v b="$skipped" 'BEGIN { printf "%d", a + b }')" \
    'BEGIN { if (n > 0) printf "serve CPU: %.1f s, %.0f µs per callback answered\n", t / hz, 1e6 * t / hz / n }' 
  kill "$serve_pid"; wait "$serve_pid" 2>/dev/null || true; serve_pid=""
}

if [ -n "$postgres" ]; then
  echo "storage: PostgreSQL (the database must be empty or Roundup's own; rows are left behind)"
fi
run ingest after_send
run noop before_send
