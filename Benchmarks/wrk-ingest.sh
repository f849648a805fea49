#!/usr/bin/env bash
# Ingest measured by a separate process: `roundup serve` (release build) on a fresh SQLite file or
# a PostgreSQL database, and wrk sending signed C2C callbacks to offline parents over loopback.
# It prints wrk's figure and what the service counted (stored, shed) from its own /metrics, and
# the service's CPU per callback, for the real path and then for the no-op ceiling: the same
# callbacks with im.ingest_from set to before_send, so each one is authenticated, decoded and
# answered, but nothing is stored.
#
#   Benchmarks/wrk-ingest.sh [-d SECONDS] [-c CONNECTIONS] [-t THREADS] [-u USERS] [-p PORT]
#                            [--postgres URL [--instances N]] [--callgrind]
#
# With --postgres and --instances N, N serves share the database (ports PORT, PORT+1, …) and one
# wrk per serve (CONNECTIONS and THREADS split between them) runs at the same time; the figure is
# their sum. Needs: wrk, sha256sum, curl, awk, a release build (swift build -c release, or set
# ROUNDUP_BIN). Every server binds 127.0.0.1; each run is bounded by -d. The PostgreSQL database
# must be empty or Roundup's own: the run leaves its rows behind (drop the database afterwards).
#
# With --callgrind each serve runs under valgrind's callgrind and the script prints instructions
# per callback (and the functions that execute most of them) instead of CPU time: a figure that
# does not drift with the machine's load, for comparing two builds. valgrind runs the service
# about 30 times slower on one core at a time, so use few connections (-c 8); the first 3 s of
# load warm it up and are not counted. Needs valgrind, objcopy and a C compiler (cc) as well.
set -euo pipefail

seconds=10 connections=32 threads=2 users=10000 postgres="" port=18480 instances=1 callgrind=
while [ $# -gt 0 ]; do
  case "$1" in
    -d) seconds="$2"; shift 2 ;;
    -c) connections="$2"; shift 2 ;;
    -t) threads="$2"; shift 2 ;;
    -u) users="$2"; shift 2 ;;
    -p) port="$2"; shift 2 ;;
    --postgres) postgres="$2"; shift 2 ;;
    --instances) instances="$2"; shift 2 ;;
    --callgrind) callgrind=1; shift ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
done
[ "$seconds" -le 40 ] || { echo "keep -d at 40 s or less: the callback signature is accepted for 60 s" >&2; exit 2; }
[ "$instances" -eq 1 ] || [ -n "$postgres" ] || { echo "--instances needs --postgres (one SQLite file has one serve)" >&2; exit 2; }
[ "$instances" -eq 1 ] || [ -z "$callgrind" ] || { echo "--callgrind counts one serve: leave out --instances" >&2; exit 2; }
here="$(cd "$(dirname "$0")" && pwd)"
roundup="${ROUNDUP_BIN:-$here/../.build/release/roundup}"
[ -x "$roundup" ] || roundup="$here/../.build-release/release/roundup"
[ -x "$roundup" ] || { echo "no release build: run swift build -c release (or set ROUNDUP_BIN)" >&2; exit 2; }
command -v wrk >/dev/null || { echo "wrk is not installed (Debian: apt-get install wrk)" >&2; exit 2; }

token="wrk-callback-token"
demangle() { # Swift symbols in readable form, when the toolchain's swift-demangle is there
  if command -v swift-demangle >/dev/null; then swift-demangle --simplified; else cat; fi
}
stored_metric='roundup_callbacks_total{command="C2C.CallbackAfterSendMsg",outcome="stored"}'
skipped_metric='roundup_callbacks_total{command="C2C.CallbackAfterSendMsg",outcome="skipped"}'
work="$(mktemp -d)"
pids=()
stop_serves() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  pids=()
}
cleanup() { stop_serves; rm -rf "$work"; }
trap cleanup EXIT

if [ -n "$callgrind" ]; then
  for tool in valgrind callgrind_control objcopy cc; do
    command -v "$tool" >/dev/null || { echo "--callgrind needs $tool" >&2; exit 2; }
  done
  # valgrind 3.19 (Debian 12) cannot read the DWARF 5 debug information Swift 6 writes; a copy
  # without it keeps its symbol table, which is all callgrind needs to name functions.
  objcopy --strip-debug "$roundup" "$work/roundup"
  roundup="$work/roundup"
  # valgrind 3.19 writes into the signal mask given to rt_sigsuspend. libdispatch's main thread
  # (the one `async main` parks) passes a mask in read-only memory, and valgrind dies of SIGSEGV
  # as serve starts. Preloaded, this hands sigsuspend a copy of the mask on the stack instead.
  cc -O2 -shared -fPIC -o "$work/sigsuspend-copy.so" -x c - -ldl <<'C'
#define _GNU_SOURCE
#include <dlfcn.h>
#include <signal.h>
int sigsuspend(const sigset_t *mask) {
    static int (*next)(const sigset_t *);
    if (!next) next = (int (*)(const sigset_t *))dlsym(RTLD_NEXT, "sigsuspend");
    sigset_t copy = *mask;
    return next(&copy);
}
C
fi

cpu_ticks() { # the user + system CPU of the serves so far, in clock ticks
  local total=0 pid
  for pid in "${pids[@]}"; do total=$((total + $(awk '{ print $14 + $15 }' "/proc/$pid/stat"))); done
  echo "$total"
}

metric() { # metric NAME-WITH-LABELS: its value summed over the serves' /metrics, 0 when absent
  local total=0 i value
  for ((i = 0; i < instances; i++)); do
    value="$(curl -fsS "http://127.0.0.1:$((port + i))/metrics" | awk -v m="$1" '$1 == m { print $2; found = 1 } END { if (!found) print 0 }')"
    total="$(awk -v a="$total" -v b="$value" 'BEGIN { printf "%d", a + b }')"
  done
  echo "$total"
}

run() { # run LABEL INGEST_FROM
  local label="$1" ingest_from="$2" i
  rm -rf "$work/data"; mkdir -p "$work/data"
  for ((i = 0; i < instances; i++)); do
    cat > "$work/roundup-$i.yaml" <<YAML
server:
  host: 127.0.0.1
  port: $((port + i))
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
    if [ -n "$callgrind" ]; then
      LD_PRELOAD="$work/sigsuspend-copy.so" valgrind --tool=callgrind --callgrind-out-file="$work/callgrind-$label-$i.out" \
        "$roundup" serve --config "$work/roundup-$i.yaml" > "$work/serve-$i.log" 2>&1 &
    else
      "$roundup" serve --config "$work/roundup-$i.yaml" > "$work/serve-$i.log" 2>&1 &
    fi
    pids+=($!)
  done
  for ((i = 0; i < instances; i++)); do
    for _ in $(seq 1 $((callgrind ? 1200 : 100))); do curl -fsS "http://127.0.0.1:$((port + i))/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
    curl -fsS "http://127.0.0.1:$((port + i))/healthz" >/dev/null || { cat "$work/serve-$i.log" >&2; exit 1; }
  done
  local now sign
  now="$(date +%s)"
  sign="$(printf '%s%s' "$token" "$now" | sha256sum | cut -d' ' -f1)"
  local per_c=$((connections / instances)) per_t=$(((threads + instances - 1) / instances))
  if [ -n "$callgrind" ]; then
    for ((i = 0; i < instances; i++)); do
      wrk -t"$per_t" -c"$per_c" -d3s -s "$here/ingest.lua" "http://127.0.0.1:$((port + i))" -- "$sign" "$now" "$users" "$label-warm-$i" \
        > /dev/null
    done
    for pid in "${pids[@]}"; do callgrind_control -z "$pid" > /dev/null; done
  fi
  echo "== $label: $instances × wrk -t$per_t -c$per_c -d${seconds}s"
  local before after counted_before
  counted_before=$(($(metric "$stored_metric") + $(metric "$skipped_metric")))
  before="$(cpu_ticks)"
  local loaders=()
  for ((i = 0; i < instances; i++)); do
    wrk -t"$per_t" -c"$per_c" -d"${seconds}s" -s "$here/ingest.lua" "http://127.0.0.1:$((port + i))" -- "$sign" "$now" "$users" "$label-$i" \
      > "$work/wrk-$i.out" &
    loaders+=($!)
  done
  for pid in "${loaders[@]}"; do wait "$pid"; done
  for ((i = 0; i < instances; i++)); do tail -1 "$work/wrk-$i.out" > "$work/wrk-$i.txt"; done
  after="$(cpu_ticks)"
  if [ -n "$callgrind" ]; then
    for pid in "${pids[@]}"; do callgrind_control -d "$pid" > /dev/null; done
  fi
  cat "$work"/wrk-*.txt
  if [ "$instances" -gt 1 ]; then
    awk '{ for (i = 1; i <= NF; i++) if ($i ~ /\/s,$/) { sub(/\/s,/, "", $i); s += $i } } END { printf "together: %.0f/s\n", s }' "$work"/wrk-*.txt
  fi
  local stored shed skipped
  stored="$(metric "$stored_metric")"
  shed="$(metric 'roundup_callbacks_total{command="C2C.CallbackAfterSendMsg",outcome="shed"}')"
  skipped="$(metric "$skipped_metric")"
  echo "serve counted: stored $stored, shed $shed, skipped $skipped"
  local counted=$((stored + skipped - counted_before))
  if [ -n "$callgrind" ]; then
    # The dump holds what ran between the zeroing and the dump: the measured load, plus the few
    # callbacks still in flight at either end (at most one per connection).
    local dump
    for dump in "$work"/callgrind-"$label"-*.out.*; do
      cp "$dump" "${TMPDIR:-/tmp}/roundup-callgrind-$label.out"
      echo "callgrind output (for callgrind_annotate or kcachegrind): ${TMPDIR:-/tmp}/roundup-callgrind-$label.out"
      awk -f "$here/callgrind-costs.awk" "$dump" > "$work/costs.tsv"
      awk -F'\t' -v n="$counted" '$1 == "library" { t += $2 } END {
        if (n > 0) printf "instructions per callback answered: %.0f (%d callbacks)\n", t / n, n }' "$work/costs.tsv"
      [ "$counted" -gt 0 ] || continue
      local kind rows
      for kind in library function; do
        rows=15; [ "$kind" = library ] && rows=6
        echo "  by $kind, per callback:"
        awk -F'\t' -v k="$kind" '$1 == k' "$work/costs.tsv" | sort -t$'\t' -k2,2nr |
          awk -F'\t' -v n="$counted" -v rows="$rows" 'NR <= rows { name = $3; if ($1 == "library") sub(/.*\//, "", name); printf "  %9.0f  %s\n", $2 / n, name }' |
          demangle | cut -c1-120
      done
    done
  else
    awk -v t="$((after - before))" -v hz="$(getconf CLK_TCK)" -v n="$counted" \
      'BEGIN { if (n > 0) printf "serve CPU: %.1f s, %.0f µs per callback answered\n", t / hz, 1e6 * t / hz / n }'
  fi
  stop_serves
}

if [ -n "$postgres" ]; then echo "storage: PostgreSQL, $instances instance(s)"; else echo "storage: SQLite"; fi
run ingest after_send
run noop before_send
