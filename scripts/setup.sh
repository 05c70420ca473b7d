#!/usr/bin/env bash
# Build .venv/ and install the Ansible collections, on a fresh Debian 12 / Ubuntu 22.04 machine.
# Idempotent and quiet: every step is skipped when its stamp is newer than its inputs (see Makefile).
#   scripts/setup.sh venv         create .venv and install requirements-dev.txt
#   scripts/setup.sh collections  install requirements.yml into ./collections (Galaxy, else PyPI's bundle)
#   scripts/setup.sh apt          install the Debian packages the sandbox node needs (root only)
set -euo pipefail
cd "$(dirname "$0")/.."

# The `ansible` release on PyPI whose bundled collections match requirements.yml.
ANSIBLE_BUNDLE_VERSION=12.3.0
PYTHON=${PYTHON:-python3}
VENV=.venv
COLLECTIONS_DIR=collections

log() { printf 'setup: %s\n' "$*" >&2; }

venv() {
  if [ ! -x "$VENV/bin/python" ]; then
    log "creating $VENV with $($PYTHON --version 2>&1)"
    "$PYTHON" -m venv "$VENV"
  fi
  log "installing pinned Python packages (requirements-dev.txt)"
  # grep drops the machine-level pip config's warnings about absent local mirrors. --no-compile: Python compiles
  # only the modules something imports, on first import, instead of pip compiling all ~250 packages (-40 % CPU).
  "$VENV/bin/pip" install --quiet --no-compile --disable-pip-version-check -r requirements-dev.txt \
    2> >(grep -v 'is ignored' >&2)
}

collections() {
  local ansible_galaxy="$VENV/bin/ansible-galaxy"
  local galaxy_log=.cache/galaxy.log
  mkdir -p .cache
  mkdir -p "$COLLECTIONS_DIR"
  # Galaxy first, for parity with what real users do; give up quickly when it is unreachable.
  if timeout 60 "$ansible_galaxy" collection install -r requirements.yml -p "$COLLECTIONS_DIR" \
       --timeout 15 >"$galaxy_log" 2>&1; then
    if grep -q "Nothing to do" "$galaxy_log"; then
      log "collections already installed (requirements.yml is satisfied)"
    else
      log "collections installed from Ansible Galaxy"
    fi
    return
  fi
  log "Ansible Galaxy unreachable ($(grep -m1 -oE 'urlopen error[^>]*|Name or service not known|timed out' "$galaxy_log" || echo "see $galaxy_log")); using PyPI's ansible==$ANSIBLE_BUNDLE_VERSION bundle"
  local cache=.cache/ansible-bundle
  local wheel
  wheel=$(ls "$cache"/ansible-"$ANSIBLE_BUNDLE_VERSION"-*.whl 2>/dev/null | head -n 1 || true)
  if [ -z "$wheel" ]; then
    mkdir -p "$cache"
    "$VENV/bin/pip" download --quiet --disable-pip-version-check --no-deps -d "$cache" \
      "ansible==$ANSIBLE_BUNDLE_VERSION" 2> >(grep -v 'is ignored' >&2)
    wheel=$(ls "$cache"/ansible-"$ANSIBLE_BUNDLE_VERSION"-*.whl | head -n 1)
  fi
  local src="$cache/src"
  rm -rf "$src" && mkdir -p "$src"
  # Only the collections we declare; a wheel is a zip, so no need to install the whole package.
  local names
  names=$("$VENV/bin/python" - <<'PY'
import yaml
for c in yaml.safe_load(open("requirements.yml"))["collections"]:
    print(c["name"], c["version"])
PY
)
  # Extract only the declared collections: the wheel holds ~100 of them.
  "$VENV/bin/python" - "$wheel" "$src" $(cut -d' ' -f1 <<<"$names") <<'PY'
import sys, zipfile
wheel, dest, *names = sys.argv[1:]
prefixes = tuple("ansible_collections/%s/" % n.replace(".", "/") for n in names)
with zipfile.ZipFile(wheel) as z:
    z.extractall(dest, [m for m in z.namelist() if m.startswith(prefixes)])
PY
  while read -r name version; do
    local dir="$src/ansible_collections/${name//.//}"
    local have
    have=$("$VENV/bin/python" -c "import json,sys;print(json.load(open(sys.argv[1]))['collection_info']['version'])" "$dir/MANIFEST.json")
    if [ "$have" != "$version" ]; then
      log "ERROR: requirements.yml pins $name $version but ansible==$ANSIBLE_BUNDLE_VERSION bundles $have; update one of them"
      exit 1
    fi
    "$ansible_galaxy" collection install --force --no-deps -p "$COLLECTIONS_DIR" "$dir" >/dev/null 2>&1
    log "installed $name $version from the PyPI bundle"
  done <<<"$names"
  rm -rf "$src"
}

apt_packages() {
  local pkgs=(debootstrap systemd-container zstd openssh-client)
  local missing=()
  for p in "${pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  [ ${#missing[@]} -eq 0 ] && return
  if [ "$(id -u)" -ne 0 ]; then
    log "ERROR: missing Debian packages: ${missing[*]}; run: sudo apt-get install -y --no-install-recommends ${missing[*]}"
    exit 1
  fi
  log "installing Debian packages: ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

case "${1:-}" in
  venv) venv ;;
  collections) collections ;;
  apt) apt_packages ;;
  *) echo "usage: $0 venv|collections|apt" >&2; exit 2 ;;
esac
