#!/usr/bin/env bash
# The connection-swap demo: a director and two workers on the original's ports (free ports instead where
# those are taken), a client session of 120 tokens (about 60 s at 500 ms a token, long enough for at least
# two worker failures at the default 10-25 s), then a summary computed from the client's log. Exits non-zero
# unless the client got tokens 1..N, each once and in order, across at least two worker switches.
# Settings: any CONNECTION_SWAP_* or DYN_* variable is passed through (e.g. CONNECTION_SWAP_CLIENT_MODE=direct).
set -euo pipefail
cd "$(dirname "$0")/../.."
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1
export DYN_STORE_KV="${DYN_STORE_KV:-file}"
logs="$(mktemp -d -t connection-swap-XXXXXX)"
export DYN_FILE_KV="${DYN_FILE_KV:-$logs/store}"
tokens="${CONNECTION_SWAP_CLIENT_TOKENS:-120}"

echo "building..."
dotnet build src/Examples.ConnectionSwap -c Release -v quiet -nologo > "$logs/build.log" 2>&1 || { cat "$logs/build.log"; exit 1; }
program=src/Examples.ConnectionSwap/bin/Release/net10.0/Examples.ConnectionSwap.dll

pids=()
stop_all() {
  # Workers first, so the director sees them leave; SIGTERM, then SIGKILL for anything still there after 5 s.
  for (( i=${#pids[@]}-1; i>=0; i-- )); do kill -TERM "${pids[$i]}" 2>/dev/null || true; done
  for _ in $(seq 1 50); do
    alive=0
    for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
    [ "$alive" = 0 ] && break
    sleep 0.1
  done
  for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap stop_all EXIT

# The original's port, or 0 (a free port) when something already listens there.
port_or_free() { if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then echo 0; else echo "$1"; fi; }

# start NAME READY-TEXT VAR=VALUE... : starts a role in the background, waits for its ready line.
start() {
  local name="$1" ready="$2"; shift 2
  env "$@" dotnet "$program" "${name%%-*}" > "$logs/$name.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 1 300); do
    grep -q "$ready" "$logs/$name.log" && return 0
    if ! kill -0 "${pids[-1]}" 2>/dev/null; then echo "$name failed to start:"; cat "$logs/$name.log"; exit 1; fi
    sleep 0.1
  done
  echo "$name did not become ready within 30 s:"; cat "$logs/$name.log"; exit 1
}

addr_of() { grep -o "$2=[^ ]*" "$logs/$1.log" | head -n 1 | cut -d= -f2; }

start director "director ready" \
  CONNECTION_SWAP_DIRECTOR_USER_ADDR="127.0.0.1:$(port_or_free 61000)" \
  CONNECTION_SWAP_DIRECTOR_MGMT_ADDR="127.0.0.1:$(port_or_free 61001)"
mgmt="$(addr_of director MGMT)"
start worker-a "registered with director" CONNECTION_SWAP_WORKER_LABEL=worker-a CONNECTION_SWAP_DIRECTOR_MGMT_ADDR="$mgmt" \
  CONNECTION_SWAP_WORKER_USER_ADDR="127.0.0.1:$(port_or_free 62001)" CONNECTION_SWAP_WORKER_MGMT_ADDR="127.0.0.1:$(port_or_free 63001)"
start worker-b "registered with director" CONNECTION_SWAP_WORKER_LABEL=worker-b CONNECTION_SWAP_DIRECTOR_MGMT_ADDR="$mgmt" \
  CONNECTION_SWAP_WORKER_USER_ADDR="127.0.0.1:$(port_or_free 62002)" CONNECTION_SWAP_WORKER_MGMT_ADDR="127.0.0.1:$(port_or_free 63002)"
echo "director  USER $(addr_of director USER)  MGMT $mgmt"
echo "worker-a  USER $(addr_of worker-a USER)  MGMT $(addr_of worker-a MGMT)"
echo "worker-b  USER $(addr_of worker-b USER)  MGMT $(addr_of worker-b MGMT)"
echo "logs and store: $logs"
echo "---- client: $tokens tokens (mode ${CONNECTION_SWAP_CLIENT_MODE:-director}) ----"

set +e
# The client finds the director in the discovery store (the same DYN_FILE_KV); no address needed.
CONNECTION_SWAP_CLIENT_TOKENS="$tokens" dotnet "$program" client 2>&1 | tee "$logs/client.log"
client_status=${PIPESTATUS[0]}
set -e
stop_all
trap - EXIT

# The summary, from the client's token lines alone: "connection.id=... worker=W sequence=N: received token".
grep -o 'worker=[^ ]* sequence=[0-9]*: received token' "$logs/client.log" | sed 's/worker=\([^ ]*\) sequence=\([0-9]*\).*/\1 \2/' > "$logs/tokens.txt" || true
read -r received switches gaps duplicates < <(awk -v want="$tokens" '
  { if (NR > 1 && $1 != worker) switches++
    if ($2 <= last) duplicates++; else if ($2 != last + 1) gaps += $2 - last - 1
    if ($2 > last) last = $2
    worker = $1 }
  END { if (last < want) gaps += want - last
        printf "%d %d %d %d\n", NR, switches, gaps, duplicates }' "$logs/tokens.txt")
sessions="$(grep -o 'connection.id=conn-[0-9a-f]*' "$logs/client.log" | sort -u | wc -l)"
failures="$(cat "$logs"/worker-*.log | grep -c 'simulating failure' || true)"

echo "---- summary (from $logs/client.log) ----"
echo "tokens received:    $received of $tokens"
echo "worker switches:    $switches (simulated worker failures: $failures)"
echo "gapless:            $([ "$gaps" = 0 ] && echo yes || echo "no ($gaps missing)")"
echo "duplicate-free:     $([ "$duplicates" = 0 ] && echo yes || echo "no ($duplicates repeated)")"
echo "connection.id:      $([ "$sessions" = 1 ] && grep -o 'connection.id=conn-[0-9a-f]*' "$logs/client.log" | head -n 1 | cut -d= -f2 || echo "$sessions different ids")"
if [ "$client_status" = 0 ] && [ "$received" = "$tokens" ] && [ "$gaps" = 0 ] && [ "$duplicates" = 0 ] && [ "$sessions" = 1 ] && [ "$switches" -ge 2 ]; then
  echo "result:             OK"
else
  echo "result:             FAILED (client exit code $client_status; need every token once, in order, in one session, and at least 2 worker switches)"
  exit 1
fi
