#!/usr/bin/env bash
# Builds the images `bottle` runs, offline (nothing is pulled): egress-proxy,
# bottle-supervise, bottle-agent, bottle-squid, and bottle-git-gate via
# docker/git-gate/build.sh.
#
# Idempotent: every image carries a label `bottle.content-hash` computed from its
# inputs (this script, the files it copies, the package list, and for egress-proxy
# the release binaries); an image whose label matches is skipped.
#
# Usage: docker/build-images.sh [IMAGE...]   (default: all; names as above)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
suite=bookworm

log() { printf 'build-images: %s\n' "$*" >&2; }

# The host's Debian mirror (deb822 or one-line format); only it is reachable here.
debian_mirror() {
  local uri
  uri=$(grep -hE '^URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '{print $2}' | grep -v security | head -n1 || true)
  if [[ -z "$uri" ]]; then
    uri=$(grep -hE '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null | awk '{print $2}' | grep -v security | head -n1 || true)
  fi
  echo "${uri:-http://deb.debian.org/debian}"
}

current_hash() { # image -> its content-hash label, or empty
  docker image inspect --format '{{ index .Config.Labels "bottle.content-hash" }}' "$1" 2>/dev/null || true
}

hash_of() { cat "$@" | sha256sum | cut -c1-32; }

# A Debian rootfs tarball on stdout.
rootfs() { # includes... -- extra mmdebstrap args
  local mirror; mirror=$(debian_mirror)
  local sec="${mirror%/debian}/debian-security"
  mmdebstrap --quiet --variant=essential --mode=root --format=tar \
    --dpkgopt='path-exclude=/usr/share/doc/*' \
    --dpkgopt='path-exclude=/usr/share/man/*' \
    --dpkgopt='path-exclude=/usr/share/info/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' \
    --dpkgopt='path-include=/usr/share/locale/locale.alias' \
    --aptopt='APT::Install-Recommends "false"' \
    "$@" "$suite" - "deb $mirror $suite main" "deb $mirror $suite-updates main" \
    "deb $sec $suite-security main" </dev/null
}

build_agent() {
  local name=bottle-agent:latest pkgs=bash,ca-certificates,curl,git,python3,nodejs
  local h; h=$(hash_of "$here/build-images.sh" <(echo "$pkgs"))
  if [[ "$(current_hash "$name")" == "$h" ]]; then log "$name up to date"; return; fi
  log "building $name (mmdebstrap: $pkgs)"
  # The user is written by hand: `passwd` (useradd) is not in the essential set.
  rootfs --include="$pkgs" \
    --customize-hook='echo "agent:x:1000:1000:agent:/home/agent:/bin/bash" >> "$1/etc/passwd"' \
    --customize-hook='echo "agent:x:1000:" >> "$1/etc/group"' \
    --customize-hook='echo "agent:*:19000:0:99999:7:::" >> "$1/etc/shadow"' \
    --customize-hook='mkdir -p "$1/home/agent" "$1/workspace" && chown 1000:1000 "$1/home/agent" "$1/workspace"' \
    --customize-hook='rm -rf "$1/var/cache/apt/"* "$1/var/lib/apt/lists/"*' \
  | docker import \
      --change 'USER 1000:1000' --change 'WORKDIR /workspace' \
      --change 'ENV HOME=/home/agent' \
      --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
      --change 'CMD ["bash"]' \
      --change "LABEL bottle.content-hash=$h" - "$name" >/dev/null
  log "$name built"
}

build_squid() {
  local name=bottle-squid:latest pkgs=squid-openssl,ca-certificates
  local h; h=$(hash_of "$here/build-images.sh" "$here/squid/entrypoint.sh" <(echo "$pkgs"))
  if [[ "$(current_hash "$name")" == "$h" ]]; then log "$name up to date"; return; fi
  log "building $name (mmdebstrap: $pkgs)"
  rootfs --include="$pkgs" \
    --customize-hook="copy-in $here/squid/entrypoint.sh /usr/local/bin" \
    --customize-hook='chmod 0755 "$1/usr/local/bin/entrypoint.sh"' \
    --customize-hook='rm -rf "$1/var/cache/apt/"* "$1/var/lib/apt/lists/"*' \
  | docker import \
      --change 'ENTRYPOINT ["/usr/local/bin/entrypoint.sh"]' \
      --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
      --change 'EXPOSE 3128' \
      --change "LABEL bottle.content-hash=$h" - "$name" >/dev/null
  log "$name built"
}

build_egress_proxy() {
  local name=egress-proxy:latest target=x86_64-unknown-linux-gnu
  log "compiling egress-proxy (static, release)"
  ( cd "$root" && RUSTFLAGS='-C target-feature=+crt-static' \
      cargo build --quiet --release -p egress-proxy --target "$target" )
  local bin="$root/target/$target/release/egress-proxy"
  local h; h=$(hash_of "$here/build-images.sh" "$bin")
  if [[ "$(current_hash "$name")" == "$h" ]]; then log "$name up to date"; return; fi
  local ctx; ctx=$(mktemp -d)
  trap 'rm -rf "$ctx"' RETURN
  cp "$bin" "$ctx/egress-proxy"
  cat > "$ctx/Dockerfile" <<DOCKERFILE
FROM scratch
COPY egress-proxy /egress-proxy
USER 65534:65534
EXPOSE 9099
ENTRYPOINT ["/egress-proxy"]
LABEL bottle.content-hash=$h
DOCKERFILE
  DOCKER_BUILDKIT=0 docker build --quiet -t "$name" "$ctx" >/dev/null 2> >(grep -v -e DEPRECATED -e BuildKit -e "environment-variable" -e "^$" >&2)
  log "$name built"
}

# The supervise sidecar (docs/supervise.md): a static binary alone in the
# image, like egress-proxy. It runs as 65534; the launcher gives it
# proposals/ of the state directory.
build_supervise() {
  local name=bottle-supervise:latest target=x86_64-unknown-linux-gnu
  log "compiling bottle-supervise (static, release)"
  ( cd "$root" && RUSTFLAGS='-C target-feature=+crt-static' \
      cargo build --quiet --release -p bottle-supervise --target "$target" )
  local bin="$root/target/$target/release/bottle-supervise"
  local h; h=$(hash_of "$here/build-images.sh" "$bin")
  if [[ "$(current_hash "$name")" == "$h" ]]; then log "$name up to date"; return; fi
  local ctx; ctx=$(mktemp -d)
  trap 'rm -rf "$ctx"' RETURN
  cp "$bin" "$ctx/bottle-supervise"
  cat > "$ctx/Dockerfile" <<DOCKERFILE
FROM scratch
COPY bottle-supervise /bottle-supervise
USER 65534:65534
EXPOSE 9100
ENTRYPOINT ["/bottle-supervise", "--state", "/state"]
LABEL bottle.content-hash=$h
DOCKERFILE
  DOCKER_BUILDKIT=0 docker build --quiet -t "$name" "$ctx" >/dev/null 2> >(grep -v -e DEPRECATED -e BuildKit -e "environment-variable" -e "^$" >&2)
  log "$name built"
}

build_git_gate() {
  if [[ -f "$here/git-gate/build.sh" ]]; then
    log "building bottle-git-gate (docker/git-gate/build.sh)"
    bash "$here/git-gate/build.sh"
  else
    log "docker/git-gate/build.sh not present: bottle-git-gate skipped"
  fi
}

images=("$@")
((${#images[@]})) || images=(bottle-agent bottle-squid egress-proxy bottle-supervise bottle-git-gate)
for img in "${images[@]}"; do
  case "${img%%:*}" in
    bottle-agent|bottle-squid|egress-proxy|bottle-supervise|bottle-git-gate) ;;
    *) echo "build-images: unknown image '$img' (known: bottle-agent bottle-squid egress-proxy bottle-supervise bottle-git-gate)" >&2; exit 2 ;;
  esac
done
# The Debian images mostly wait on apt downloads and the Rust build on the
# CPU: run them side by side, then wait for all and fail if any failed.
pids=()
for img in "${images[@]}"; do
  case "${img%%:*}" in
    bottle-agent) build_agent & pids+=($!) ;;
    bottle-squid) build_squid & pids+=($!) ;;
    egress-proxy) build_egress_proxy & pids+=($!) ;;
    bottle-supervise) build_supervise & pids+=($!) ;;
    bottle-git-gate) build_git_gate & pids+=($!) ;;
  esac
done
failed=0
for p in "${pids[@]}"; do
  wait "$p" || failed=1
done
if ((failed)); then
  log "some images failed to build (see above)"
  exit 1
fi
