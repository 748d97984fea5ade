#!/usr/bin/env bash
# Runs every test of the solution. Installs what the tests need beyond the .NET SDK (etcd) first.
# Usage: ./scripts/test.sh [extra dotnet test arguments]
set -uo pipefail
cd "$(dirname "$0")/.."

# Without etcd every other test still runs; the etcd tests fail, each naming the reason (RM_ETCD_SETUP_ERROR).
etcd_log="$(mktemp)"
bash scripts/ensure-etcd.sh 2>&1 | tee "$etcd_log"
if [ "${PIPESTATUS[0]}" -ne 0 ]; then
  # The failing command's own last words and the script's closing error line.
  reason="$(grep -v '^[[:space:]]*$' "$etcd_log" | tail -n 2 | paste -sd '|' - | sed 's/|/ | /')"
  export RM_ETCD_SETUP_ERROR="scripts/ensure-etcd.sh failed: ${reason:-no output}"
  echo "warning: could not install etcd ($RM_ETCD_SETUP_ERROR); running every test anyway, the etcd tests will fail with this reason"
fi
rm -f "$etcd_log"

export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1 DOTNET_SKIP_FIRST_TIME_EXPERIENCE=1
log="$(mktemp)"
# Normal verbosity prints the reason of every skipped test (QUIC without libmsquic).
# A test stuck for 3 minutes aborts the run, naming it (no test needs anywhere near that long), instead of
# hanging CI until its own timeout.
dotnet test RequestMigration.sln -c Release --logger "console;verbosity=normal" --blame-hang-timeout 3m --blame-hang-dump-type none "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}

# One closing line for the whole run, summed over test assemblies. dotnet test prints either
# "Passed!  - Failed: F, Passed: P, Skipped: S, ..." per assembly or, at normal verbosity, a block of
# "Passed: P" / "Failed: F" / "Skipped: S" lines after "Total tests:".
awk '
  /(Passed|Failed)!  - Failed:/ {
    gsub(/,/, "");
    for (i = 1; i <= NF; i++) {
      if ($i == "Failed:") f += $(i+1);
      if ($i == "Passed:") p += $(i+1);
      if ($i == "Skipped:") s += $(i+1);
    }
    seen = 1; next
  }
  /^Total tests: [0-9]+/ { block = 1; seen = 1; next }
  block && /^ +Passed: [0-9]+$/  { p += $2; next }
  block && /^ +Failed: [0-9]+$/  { f += $2; next }
  block && /^ +Skipped: [0-9]+$/ { s += $2; next }
  block && /^ +Total time:/      { block = 0 }
  END {
    if (!seen) { print "Tests: 0 passed, 1 failed (no test results: see the build output above)"; exit }
    if (ENVIRON["RM_ETCD_SETUP_ERROR"] != "") printf "note: the etcd tests could not run: %s\n", ENVIRON["RM_ETCD_SETUP_ERROR"]
    printf "Tests: %d passed, %d failed, %d skipped\n", p, f, s
  }' "$log"
rm -f "$log"
exit "$status"
