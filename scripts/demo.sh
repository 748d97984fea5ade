#!/usr/bin/env bash
# The request-migration demo on the default (file) store: server1 always fails mid-stream, server2 never
# does, and the client's request fails over from one to the other. Stops both servers when done.
set -euo pipefail
cd "$(dirname "$0")/.."
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1
export DYN_STORE_KV="${DYN_STORE_KV:-file}"
export DYN_FILE_KV="${DYN_FILE_KV:-$(mktemp -d -t rm-demo-XXXXXX)}"

dotnet build RequestMigration.sln -c Release -v quiet -nologo
bin() { echo "src/$1/bin/Release/net10.0/$1.dll"; }

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

SERVER_NAME=server1 FAILURE_MODE=always dotnet "$(bin Examples.Server)" > "$DYN_FILE_KV.server1.log" 2>&1 & pids+=($!)
SERVER_NAME=server2 FAILURE_MODE=never  dotnet "$(bin Examples.Server)" > "$DYN_FILE_KV.server2.log" 2>&1 & pids+=($!)
for _ in $(seq 1 100); do
  [ "$(grep -l 'serving demo/backend/generate' "$DYN_FILE_KV".server*.log 2>/dev/null | wc -l)" -ge 2 ] && break
  sleep 0.1
done

for run in 1 2; do
  echo "---- client run $run (store: $DYN_STORE_KV at $DYN_FILE_KV) ----"
  dotnet "$(bin Examples.Client)"
done
echo "---- server logs: $DYN_FILE_KV.server1.log, $DYN_FILE_KV.server2.log ----"
