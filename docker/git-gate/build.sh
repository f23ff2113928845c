#!/usr/bin/env bash
# Builds the images of the git-gate, offline from Docker's point of view (nothing is pulled):
#   bottle-git-gate   git daemon + pre-receive secret scan (detect-secrets) + ssh push upstream
#   bottle-test-sshd  an openssh-server upstream used by the tests (not part of a bottle)
# A Debian root filesystem is made by mmdebstrap from the host's apt sources and imported
# with `docker import`. An image whose content-hash label matches its inputs is not rebuilt.
# Builds are serialized with a lock so parallel test processes can all call this script.
#
# Usage: docker/git-gate/build.sh [--force] [gate|sshd|all]   (default: all)
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
force=0
which=all
for arg in "$@"; do
    case "$arg" in
        --force) force=1 ;;
        gate|sshd|all) which="$arg" ;;
        -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
        *) echo "build.sh: unknown argument '$arg' (use --force, gate, sshd or all)" >&2; exit 2 ;;
    esac
done

# detect-secrets is installed from PyPI as one pinned, hash-checked, pure-Python wheel;
# its dependencies (pyyaml, requests) come from Debian.
DS_VERSION=1.5.0
DS_SHA256=e24e7b9b5a35048c313e983f76c4bd09dad89f045ff059e354f9943bf45aa060
GATE_PACKAGES=git,openssh-client,python3,python3-yaml,python3-requests
SSHD_PACKAGES=git,openssh-server
GATE_UID=9418
SUITE=bookworm

for tool in docker mmdebstrap sha256sum flock; do
    command -v "$tool" >/dev/null || { echo "build.sh: '$tool' is missing; run scripts/setup.sh (apt-get install mmdebstrap docker.io util-linux)" >&2; exit 2; }
done

# The host's apt sources, as mmdebstrap mirror arguments (deb822 .sources and .list files).
sources=()
[ -s /etc/apt/sources.list ] && grep -q '^deb ' /etc/apt/sources.list && sources+=(/etc/apt/sources.list)
for f in /etc/apt/sources.list.d/*.sources /etc/apt/sources.list.d/*.list; do
    [ -e "$f" ] && sources+=("$f")
done
[ ${#sources[@]} -gt 0 ] || { echo "build.sh: no apt sources found in /etc/apt/sources.list*" >&2; exit 2; }

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

lock_dir="${XDG_RUNTIME_DIR:-/tmp}"
exec 9>"$lock_dir/bottle-git-gate-build.lock"
flock -w 900 9 || { echo "build.sh: another build held the lock for 15 minutes; giving up" >&2; exit 1; }

# content_hash NAME PACKAGES DIR: hash of everything that goes into the image.
content_hash() {
    { echo "$1 $2 $SUITE $DS_VERSION $DS_SHA256 $GATE_UID"; cat "$here/build.sh";
      (cd "$3" && find . -type f -not -path '*/__pycache__/*' -print0 | LC_ALL=C sort -z | xargs -0 sha256sum); } | sha256sum | cut -c1-32
}

# drop_old IMAGE OLD_ID: remove the image a rebuild replaced (left untagged), if unused.
drop_old() {
    local now; now="$(docker image inspect -f '{{.Id}}' "$1" 2>/dev/null || true)"
    if [ -n "$2" ] && [ "$2" != "$now" ]; then docker image rm "$2" >/dev/null 2>&1 || true; fi
}

old_id() { docker image inspect -f '{{.Id}}' "$1" 2>/dev/null || true; }

up_to_date() { # IMAGE HASH
    local have
    have="$(docker image inspect -f '{{ index .Config.Labels "org.bottle.content-hash" }}' "$1" 2>/dev/null || true)"
    [ "$force" = 0 ] && [ "$have" = "$2" ]
}

# rootfs NAME PACKAGES HOOK...: a Debian root filesystem tarball on stdout.
rootfs() {
    local packages="$1"; shift
    mmdebstrap --quiet --variant=essential --mode=root --format=tar \
        --aptopt='Acquire::Check-Valid-Until "false"' \
        --include="$packages" \
        --dpkgopt='path-exclude=/usr/share/man/*' \
        --dpkgopt='path-exclude=/usr/share/doc/*' \
        --dpkgopt='path-include=/usr/share/doc/*/copyright' \
        --dpkgopt='path-exclude=/usr/share/locale/*' \
        --dpkgopt='path-exclude=/usr/share/info/*' \
        "$@" \
        "$SUITE" - "${sources[@]}"
}

build_gate() {
    local hash; hash="$(content_hash bottle-git-gate "$GATE_PACKAGES" "$here/gate")"
    if up_to_date bottle-git-gate "$hash"; then echo "bottle-git-gate: up to date ($hash)"; return; fi
    local start=$SECONDS tmp="$work/wheel" old; old="$(old_id bottle-git-gate)"
    mkdir -p "$tmp"
    # Fetch the wheel on the host (the rootfs has no pip) and check its pinned hash.
    python3 -m pip --version >/dev/null 2>&1 \
        || { echo "build.sh: python3 has no pip on this host; install it (apt-get install python3-pip)" >&2; return 2; }
    python3 -m pip download --quiet --no-deps --only-binary=:all: --dest "$tmp" "detect-secrets==$DS_VERSION" \
        || { echo "build.sh: could not download detect-secrets $DS_VERSION from PyPI" >&2; return 1; }
    local wheel="$tmp/detect_secrets-$DS_VERSION-py3-none-any.whl"
    echo "$DS_SHA256  $wheel" | sha256sum -c --quiet - \
        || { echo "build.sh: detect-secrets wheel hash mismatch; refusing to build" >&2; return 1; }
    rootfs "$GATE_PACKAGES" \
        --customize-hook="python3 -c 'import sys,zipfile; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])' '$wheel' \"\$1/opt/git-gate/vendor\"" \
        --customize-hook="cp -r '$here/gate/.' \"\$1/opt/git-gate/\" && find \"\$1/opt/git-gate\" -name __pycache__ -prune -exec rm -rf {} +" \
        --customize-hook="chmod 0755 \"\$1\"/opt/git-gate/bin/* \"\$1\"/opt/git-gate/hooks/*" \
        --customize-hook="echo 'gitgate:x:$GATE_UID:$GATE_UID:git-gate:/srv/git-gate:/usr/sbin/nologin' >> \"\$1/etc/passwd\"" \
        --customize-hook="echo 'gitgate:x:$GATE_UID:' >> \"\$1/etc/group\"" \
        --customize-hook="echo 'gitgate:!:1::::::' >> \"\$1/etc/shadow\"" \
        --customize-hook="mkdir -p \"\$1/etc/git-gate/keys\" \"\$1/etc/git-gate/known_hosts\" \"\$1/srv/git-gate\"" \
        --customize-hook="chown $GATE_UID:$GATE_UID \"\$1/srv/git-gate\" && chmod 0700 \"\$1/srv/git-gate\"" \
        --customize-hook="python3 -m compileall -q \"\$1/opt/git-gate\" >/dev/null || true" \
        | docker import \
            --change "LABEL org.bottle.content-hash=$hash" \
            --change "LABEL org.bottle.component=git-gate" \
            --change "USER $GATE_UID:$GATE_UID" \
            --change "WORKDIR /srv/git-gate" \
            --change "ENV HOME=/srv/git-gate PATH=/usr/local/bin:/usr/bin:/bin PYTHONDONTWRITEBYTECODE=1" \
            --change "EXPOSE 9418" \
            --change 'ENTRYPOINT ["/opt/git-gate/bin/git-gate"]' \
            --change 'CMD ["serve"]' \
            - bottle-git-gate:latest >/dev/null
    drop_old bottle-git-gate "$old"
    echo "bottle-git-gate: built in $((SECONDS - start)) s ($hash)"
}

build_sshd() {
    local hash; hash="$(content_hash bottle-test-sshd "$SSHD_PACKAGES" "$here/sshd")"
    if up_to_date bottle-test-sshd "$hash"; then echo "bottle-test-sshd: up to date ($hash)"; return; fi
    local start=$SECONDS old; old="$(old_id bottle-test-sshd)"
    rootfs "$SSHD_PACKAGES" \
        --customize-hook="install -m 0755 '$here/sshd/entrypoint.sh' \"\$1/usr/local/bin/test-sshd\"" \
        --customize-hook="rm -f \"\$1\"/etc/ssh/ssh_host_*" \
        --customize-hook="echo 'git:x:1000:1000:git:/srv/git:/usr/bin/git-shell' >> \"\$1/etc/passwd\"" \
        --customize-hook="echo 'git:x:1000:' >> \"\$1/etc/group\"" \
        --customize-hook="echo 'git:*:1::::::' >> \"\$1/etc/shadow\"" \
        --customize-hook="mkdir -p \"\$1/srv/git/.ssh\" \"\$1/run/sshd\" && chown -R 1000:1000 \"\$1/srv/git\"" \
        | docker import \
            --change "LABEL org.bottle.content-hash=$hash" \
            --change "LABEL org.bottle.component=test-sshd" \
            --change "EXPOSE 22" \
            --change 'ENTRYPOINT ["/usr/local/bin/test-sshd"]' \
            - bottle-test-sshd:latest >/dev/null
    drop_old bottle-test-sshd "$old"
    echo "bottle-test-sshd: built in $((SECONDS - start)) s ($hash)"
}

case "$which" in
    gate) build_gate ;;
    sshd) build_sshd ;;
    all) build_gate; build_sshd ;;
esac
