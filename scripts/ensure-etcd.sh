#!/usr/bin/env bash
# Makes sure an etcd binary is available for the etcd tests (they start their own etcd on free ports).
# Idempotent: installs Debian's etcd-server only when etcd is not on PATH, then makes sure no system etcd
# service is left running on the default ports, and prints the version.
set -euo pipefail
# Whatever fails, the last line says what (scripts/test.sh reports it with the etcd tests).
trap 'code=$?; echo "error: ensure-etcd.sh: \"$BASH_COMMAND\" failed with exit code $code" >&2' ERR

if [ "$(id -u)" -eq 0 ]; then
  SUDO=()
else
  SUDO=(sudo)
fi

if ! command -v etcd >/dev/null 2>&1; then
  echo "etcd not found on PATH; installing etcd-server with apt-get"
  "${SUDO[@]}" apt-get update
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y etcd-server

  # The package may start a system service on 2379/2380; the tests need no shared etcd, so stop it.
  if command -v systemctl >/dev/null 2>&1; then
    "${SUDO[@]}" systemctl stop etcd >/dev/null 2>&1 || true
    "${SUDO[@]}" systemctl disable etcd >/dev/null 2>&1 || true
  fi
  if command -v service >/dev/null 2>&1; then
    "${SUDO[@]}" service etcd stop >/dev/null 2>&1 || true
  fi
fi

if ! command -v etcd >/dev/null 2>&1; then
  echo "etcd is still not on PATH after installing etcd-server" >&2
  exit 1
fi

etcd --version
