# shellcheck shell=bash
# ensure_packages BIN:PACKAGE ...: installs with apt-get (Debian, as root)
# the packages whose binary is missing; does nothing when all are present.
# Debian is kept from starting the daemons as services (policy-rc.d exits
# 101): the lab starts its own on loopback ports.
ensure_packages() {
  local missing=() pair bin
  for pair in "$@"; do
    bin=${pair%%:*}
    command -v "$bin" >/dev/null 2>&1 || [ -x "/usr/sbin/$bin" ] || [ -x "/sbin/$bin" ] || missing+=("${pair#*:}")
  done
  if [ ${#missing[@]} -eq 0 ]; then
    echo "==> $(printf '%s ' "$@" | sed 's/:[^ ]*//g')present: skipping apt-get"
    return 0
  fi
  if [ "$(id -u)" != 0 ]; then
    echo "missing: ${missing[*]}; run as root, or: apt-get install ${missing[*]}" >&2
    return 1
  fi
  echo "==> apt-get install ${missing[*]}"
  local prc=/usr/sbin/policy-rc.d saved=""
  if [ -e "$prc" ]; then saved=$(mktemp); cp -p "$prc" "$saved"; fi
  printf '#!/bin/sh\nexit 101\n' > "$prc"
  chmod 755 "$prc"
  local rc=0
  {
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  } || rc=$?
  if [ -n "$saved" ]; then mv "$saved" "$prc"; else rm -f "$prc"; fi
  return $rc
}

# ensure_pip BIN:SPEC ...: installs with pip the packages whose binary is
# missing (PyPI; `--break-system-packages` where Debian's Python refuses
# a system-wide install otherwise); does nothing when all are present.
ensure_pip() {
  local missing=() pair
  for pair in "$@"; do
    command -v "${pair%%:*}" >/dev/null 2>&1 || missing+=("${pair#*:}")
  done
  if [ ${#missing[@]} -eq 0 ]; then
    echo "==> $(printf '%s ' "$@" | sed 's/:[^ ]*//g')present: skipping pip"
    return 0
  fi
  ensure_packages pip3:python3-pip
  echo "==> pip install ${missing[*]}"
  python3 -m pip install --quiet "${missing[@]}" 2>/dev/null \
    || python3 -m pip install --quiet --break-system-packages "${missing[@]}"
}
