#!/usr/bin/env bash
# Installs everything the main job and the tests need on a fresh machine of this
# kind (Debian, root, Docker engine running). Idempotent: a second run only checks.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages: real clients for the tests (curl, git, openssl, Go, Node,
# Python), squid as a real upstream proxy, mmdebstrap for the offline images,
# docker-registry (distribution v2) for `bottle images push`'s test.
pkgs=(curl git openssl ca-certificates golang-go nodejs python3-requests
      python3-pip python3-venv squid-openssl mmdebstrap iptables openssh-client
      openssh-server docker-registry)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The Python client tests use `requests` with whatever python3 is first on PATH.
python3 -c 'import requests' 2>/dev/null || python3 -m pip install -q requests
# The kubectl stand-in of supervise/tests/k8s_operator.rs reads YAML.
python3 -c 'import yaml' 2>/dev/null || python3 -m pip install -q pyyaml
# The Kubernetes render is checked against the API schema, offline.
command -v kubernetes-validate >/dev/null || python3 -m pip install -q kubernetes-validate
command -v pyenv >/dev/null && pyenv rehash 2>/dev/null || true

command -v cargo-nextest >/dev/null || cargo install --locked cargo-nextest

# Docker images (built offline; skipped when up to date).
if [[ -x docker/build-images.sh ]]; then
  bash docker/build-images.sh
fi
