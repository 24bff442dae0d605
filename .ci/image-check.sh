#!/usr/bin/env bash
# Build the clustermass image with a real Docker engine and run `make test` inside it.
#
# No Docker service runs on the development machines, so this script brings its own engine:
# Debian's docker.io/containerd/runc packages are unpacked with `dpkg -x` into build/docker/
# (nothing is installed system-wide, no service is registered) and `dockerd` is started by
# hand on a private socket with its data and exec roots inside build/docker/. The base image
# cannot be pulled either: a Debian bookworm root file system is made with
# `debootstrap --variant=minbase` (cached as a tarball) and loaded with `docker import`.
#
# Usage:  .ci/image-check.sh [all|prepare|build|checks]      (`make image-check` runs `all`)
#   prepare  engine + base image;  build  + the image;  checks  + checks of the image;
#   all  + `make test` inside the image
# Environment:
#   IMAGE_TAG (clustermass:check)  BASE_IMAGE (clustermass-base:bookworm)
#   DEBIAN_MIRROR (http://deb.debian.org/debian)  SHARED_DIR (<repo>/../shared, mounted read-only
#   at /shared)  IMAGE_CHECK_PURGE=1 also deletes the engine's layer store at the end
#   (default: keep it so that a re-run reuses the cached layers).
# Needs root (dockerd, debootstrap). Idempotent: every step reuses what an earlier run left.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
MODE=${1:-all}
case "$MODE" in all | prepare | build | checks) ;; *)
    echo "usage: $0 [all|prepare|build|checks]" >&2
    exit 2
    ;;
esac

DOCKER_DIR=$ROOT/build/docker
ENGINE=$DOCKER_DIR/engine         # dpkg -x target
DEBS=$DOCKER_DIR/debs
DATA_ROOT=$DOCKER_DIR/data        # images, layers, containers
EXEC_ROOT=$DOCKER_DIR/exec        # runtime state; keep short: unix socket paths max 107 chars
SOCK=$DOCKER_DIR/docker.sock
PIDFILE=$DOCKER_DIR/dockerd.pid
LOG=$DOCKER_DIR/dockerd.log
BASE_TAR=$DOCKER_DIR/base-bookworm-minbase.tar
CA_IN_CONTEXT=$ROOT/.ci/build-ca.pem   # the only file of .ci/ that .dockerignore lets through

IMAGE_TAG=${IMAGE_TAG:-clustermass:check}
BASE_IMAGE=${BASE_IMAGE:-clustermass-base:bookworm}
DEBIAN_MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
SHARED_DIR=${SHARED_DIR:-$ROOT/../shared}
ENGINE_PACKAGES=(docker.io containerd runc tini)

export DOCKER_HOST=unix://$SOCK
export DOCKER_BUILDKIT=0          # legacy builder: BuildKit needs more than this engine setup gives
export DOCKER_CONFIG=$DOCKER_DIR/client-config   # keep the client's config out of $HOME
export PATH=$ENGINE/usr/bin:$ENGINE/usr/sbin:$PATH   # dockerd finds containerd, runc, docker-init here

declare -a TIMINGS=()
STEP_NAME=""
STEP_T0=0

log() { printf '[image-check %s] %s\n' "$(date +%H:%M:%S)" "$*"; }
die() {
    log "ERROR: $*"
    exit 1
}
step() {
    end_step
    STEP_NAME=$1
    STEP_T0=$(date +%s.%N)
    log "== $STEP_NAME"
}
end_step() {
    if [ -n "$STEP_NAME" ]; then
        local dt
        dt=$(awk -v a="$STEP_T0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}')
        TIMINGS+=("$(printf '%8ss  %s' "$dt" "$STEP_NAME")")
        log "   done in ${dt}s"
        STEP_NAME=""
    fi
}
docker() { "$ENGINE/usr/bin/docker" "$@"; }

# ---------------------------------------------------------------- cleanup (always runs)
cleanup() {
    local rc=$?
    set +e
    end_step
    rm -f "$CA_IN_CONTEXT"
    if [ -S "$SOCK" ] && docker info >/dev/null 2>&1; then
        # containers this script started carry this label; nothing else runs on this private daemon
        local ids
        mapfile -t ids < <(docker ps -aq --filter label=clustermass.image-check=1)
        [ "${#ids[@]}" -gt 0 ] && docker rm -f "${ids[@]}" >/dev/null
    fi
    stop_daemon
    if [ "${IMAGE_CHECK_PURGE:-0}" = 1 ]; then
        log "purging $DATA_ROOT"
        rm -rf "$DATA_ROOT" "$EXEC_ROOT"
    fi
    log "timings (wall clock; the machine's 2 cores are shared with other work, load: $(cut -d' ' -f1-3 /proc/loadavg)):"
    local t
    for t in "${TIMINGS[@]}"; do printf '    %s\n' "$t"; done
    if [ "$rc" = 0 ]; then log "OK"; else log "FAILED (exit $rc)"; fi
    exit "$rc"
}

stop_daemon() {
    local pid
    pid=$(cat "$PIDFILE" 2>/dev/null || true)
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        log "stopping dockerd (pid $pid)"
        kill "$pid"
        for _ in $(seq 1 60); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.5
        done
        kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
    fi
    rm -f "$PIDFILE"
    if [ "${RUN_DOCKER_CREATED:-0}" = 1 ]; then
        rmdir /run/docker/plugins /run/docker 2>/dev/null || true
    fi
    if [ "${RUN_CONTAINERD_CREATED:-0}" = 1 ]; then
        rmdir /run/containerd/s /run/containerd 2>/dev/null || true
    fi
    # a daemon killed hard can leave its mounts behind; they would block `rm -rf build/`
    local m
    if [ -r /proc/mounts ]; then
        awk -v d="$DOCKER_DIR/" 'index($2, d) == 1 {print $2}' /proc/mounts | sort -r |
            while read -r m; do umount -l "$m" 2>/dev/null || true; done
    fi
}

# ---------------------------------------------------------------- steps
need_root() { [ "$(id -u)" = 0 ] || die "needs root (dockerd, debootstrap, dpkg -x of setuid-free engine)"; }

fetch_engine() {
    step "engine: apt-get download + dpkg -x (${ENGINE_PACKAGES[*]})"
    if [ -x "$ENGINE/usr/sbin/dockerd" ] && [ -x "$ENGINE/usr/bin/containerd" ] &&
        [ -x "$ENGINE/usr/sbin/runc" ] && [ -x "$ENGINE/usr/bin/docker" ]; then
        log "   cached in $ENGINE"
        return
    fi
    mkdir -p "$DEBS"
    if ! (cd "$DEBS" && apt-get download "${ENGINE_PACKAGES[@]}"); then
        apt-get update -qq
        (cd "$DEBS" && apt-get download "${ENGINE_PACKAGES[@]}")
    fi
    rm -rf "$ENGINE.tmp"
    mkdir -p "$ENGINE.tmp"
    local deb
    for deb in "$DEBS"/*.deb; do dpkg -x "$deb" "$ENGINE.tmp"; done
    # docker-init is what `docker run --init` execs; Debian ships it as tini-static
    [ -e "$ENGINE.tmp/usr/bin/tini-static" ] && ln -sf tini-static "$ENGINE.tmp/usr/bin/docker-init"
    rm -rf "$ENGINE"
    mv "$ENGINE.tmp" "$ENGINE"
    local missing
    missing=$(ldd "$ENGINE/usr/sbin/dockerd" "$ENGINE/usr/bin/containerd" 2>/dev/null | grep 'not found' || true)
    [ -z "$missing" ] || die "engine libraries missing on this host: $missing"
}

make_base_tarball() {
    step "base: debootstrap --variant=minbase bookworm -> $(basename "$BASE_TAR")"
    if [ -s "$BASE_TAR" ]; then
        log "   cached ($(du -h "$BASE_TAR" | cut -f1))"
        return
    fi
    if ! command -v debootstrap >/dev/null; then
        log "   installing debootstrap with apt-get"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap >/dev/null
    fi
    local rootfs=$DOCKER_DIR/rootfs.tmp
    rm -rf "$rootfs"
    debootstrap --variant=minbase bookworm "$rootfs" "$DEBIAN_MIRROR" >"$DOCKER_DIR/debootstrap.log" 2>&1 ||
        die "debootstrap failed, see $DOCKER_DIR/debootstrap.log"
    # same apt sources as the official debian:bookworm image (security updates included)
    cat >"$rootfs/etc/apt/sources.list" <<EOF
deb $DEBIAN_MIRROR bookworm main
deb $DEBIAN_MIRROR bookworm-updates main
deb http://deb.debian.org/debian-security bookworm-security main
EOF
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* "$rootfs"/debootstrap
    tar --numeric-owner -C "$rootfs" -cf "$BASE_TAR.tmp" .
    mv "$BASE_TAR.tmp" "$BASE_TAR"
    rm -rf "$rootfs"
    log "   $(du -h "$BASE_TAR" | cut -f1)"
}

start_daemon() {
    step "dockerd: start on private socket"
    stop_daemon # a daemon left over from an interrupted run
    # dockerd's plugin discovery creates /run/docker/plugins and containerd /run/containerd/s
    # (both hard-coded); remove them afterwards, only if this run created them
    [ -e /run/docker ] || RUN_DOCKER_CREATED=1
    [ -e /run/containerd ] || RUN_CONTAINERD_CREATED=1   # containerd's shim sockets: /run/containerd/s
    mkdir -p "$DATA_ROOT" "$EXEC_ROOT" "$DOCKER_CONFIG"
    # our own config file (a host /etc/docker/daemon.json must not apply), which also moves the
    # daemon's trust key out of /etc/docker
    printf '{"deprecated-key-path": "%s"}\n' "$DOCKER_DIR/key.json" >"$DOCKER_DIR/daemon.json"
    local driver
    for driver in overlay2 vfs; do
        rm -f "$SOCK"
        log "   storage driver $driver"
        # setsid: own process group, so a Ctrl-C of the script does not kill it before cleanup
        setsid dockerd \
            --host "unix://$SOCK" --pidfile "$PIDFILE" \
            --data-root "$DATA_ROOT" --exec-root "$EXEC_ROOT" \
            --config-file "$DOCKER_DIR/daemon.json" \
            --iptables=false --ip6tables=false --bridge=none --ip-masq=false --group root \
            --storage-driver "$driver" >"$LOG" 2>&1 </dev/null 9>&- &
        local _
        for _ in $(seq 1 120); do
            docker version >/dev/null 2>&1 && break
            kill -0 $! 2>/dev/null || break
            sleep 0.5
        done
        if docker version >/dev/null 2>&1; then
            log "   $(docker version --format 'engine {{.Server.Version}}, client {{.Client.Version}}'), storage $(docker info --format '{{.Driver}}')"
            return
        fi
        log "   dockerd did not come up with $driver; last log lines:"
        tail -n 5 "$LOG" | sed 's/^/      /'
        stop_daemon
    done
    die "dockerd failed to start, see $LOG"
}

import_base() {
    step "base: docker import -> $BASE_IMAGE"
    local want have
    want=$(sha256sum "$BASE_TAR" | cut -c1-16)
    have=$(docker image inspect --format '{{index .Config.Labels "clustermass.base-tar"}}' "$BASE_IMAGE" 2>/dev/null || true)
    if [ "$have" = "$want" ]; then
        log "   already imported"
        return
    fi
    docker import --change 'CMD ["bash"]' --change "LABEL clustermass.base-tar=$want" \
        --message "debootstrap --variant=minbase bookworm" "$BASE_TAR" "$BASE_IMAGE" >/dev/null
}

build_image() {
    step "image: docker build (legacy builder, --network host) -> $IMAGE_TAG"
    [ -s "$ROOT/requirements.lock" ] || die "requirements.lock is missing or empty"
    # The build trusts the host's TLS CA (a proxy may re-sign TLS) through a file in the build
    # context that only the builder stage reads; the final stage never copies it.
    if [ -n "${SSL_CERT_FILE:-}" ] && [ -s "$SSL_CERT_FILE" ]; then
        cp "$SSL_CERT_FILE" "$CA_IN_CONTEXT"
        log "   host CA from SSL_CERT_FILE=$SSL_CERT_FILE handed to the builder stage"
    fi
    # each output line gets the time, so the slow build steps can be told apart
    local code_version
    code_version=$(git -C "$ROOT" describe --always --dirty --abbrev=12 2>/dev/null || echo unknown)
    log "   code version $code_version"
    (cd "$ROOT" && docker build --network host --build-arg "BASE_IMAGE=$BASE_IMAGE" \
        --build-arg "CLUSTERMASS_CODE_VERSION=$code_version" \
        --label clustermass.image-check=1 -t "$IMAGE_TAG" .) 2>&1 |
        while IFS= read -r line; do printf '%s %s\n' "$(date +%H:%M:%S)" "$line"; done
    rm -f "$CA_IN_CONTEXT"
    # earlier final images that this build replaced; only those carry the label (a plain
    # `image prune` would also delete the builder stage's image, i.e. the cached virtualenv)
    docker image prune -f --filter label=clustermass.image-check=1 >/dev/null
    log "   image size $(docker image inspect --format '{{.Size}}' "$IMAGE_TAG" | awk '{printf "%.2f GB", $1/1e9}')"
}

# One base64 line from each certificate of SSL_CERT_FILE that is not in the public Mozilla list
# (pip's vendored certifi, Debian's ca-certificates): the CAs that only this host trusts, such as a TLS proxy's.
private_ca_lines() {
    python3 - "$SSL_CERT_FILE" <<'PY'
import glob, re, sys
from pip._vendor import certifi
blocks = lambda text: re.findall(r"-----BEGIN CERTIFICATE-----\n(.*?)-----END", text, re.S)
public = {"".join(b.split()) for b in blocks(open(certifi.where()).read())}
for path in glob.glob("/usr/share/ca-certificates/mozilla/*.crt"):  # Debian's public list
    public.update("".join(b.split()) for b in blocks(open(path).read()))
for body in blocks(open(sys.argv[1]).read()):
    lines = body.split()
    if "".join(lines) not in public and len(lines) > 4:
        print(lines[len(lines) // 2])
PY
}

crun() { docker run --rm --label clustermass.image-check=1 "$@"; }

check_image() {
    step "checks: user, CA not baked in, git-annex for DataLad, default command"
    local user
    user=$(crun "$IMAGE_TAG" id -u)
    [ "$user" != 0 ] || die "the image runs as root"
    log "   runs as uid $user"
    if [ -n "${SSL_CERT_FILE:-}" ] && [ -s "$SSL_CERT_FILE" ]; then
        # no file in the final image has the CA's bytes, and no build step mentions it
        local size sum found
        size=$(stat -c %s "$SSL_CERT_FILE")
        sum=$(sha256sum "$SSL_CERT_FILE" | cut -d' ' -f1)
        found=$(crun --user 0 "$IMAGE_TAG" sh -c \
            "find / -xdev -type f -size ${size}c -exec sha256sum {} + 2>/dev/null | grep $sum || true")
        [ -z "$found" ] || die "host CA baked into the image: $found"
        # nor any file the certificates that the host adds to the public (Mozilla) list, e.g. a
        # TLS proxy's CA appended to some bundle: grep the image for a line of each
        private_ca_lines > "$DOCKER_DIR/private-ca-lines.txt"
        if [ -s "$DOCKER_DIR/private-ca-lines.txt" ]; then
            found=$(crun --user 0 -v "$DOCKER_DIR/private-ca-lines.txt:/tmp/ca-lines.txt:ro" "$IMAGE_TAG" \
                grep -rlF -f /tmp/ca-lines.txt --exclude-dir=proc --exclude-dir=sys --exclude-dir=dev \
                --exclude=ca-lines.txt / || true)
            [ -z "$found" ] || die "a host-only CA certificate is in the image: $found"
            log "   $(wc -l <"$DOCKER_DIR/private-ca-lines.txt") host-only CA certificate(s) found in no file of the image"
        fi
        if docker history --no-trunc "$IMAGE_TAG" | grep -q -e 'BEGIN CERTIFICATE' -e 'build-ca.pem'; then
            die "the image history mentions the host CA"
        fi
        if docker image inspect --format '{{json .Config.Env}}' "$IMAGE_TAG" | grep -q -i -e PIP_CERT -e build-ca; then
            die "the image environment points at the host CA"
        fi
        log "   host CA absent from the final image (files, history, env)"
    fi
    crun --network none "$IMAGE_TAG" sh -c 'git annex version | head -n 1; git config user.name; python --version'
    # DataLad must find the git-annex that the lock file's wheel put into .venv/bin
    crun --network none "$IMAGE_TAG" python -c '
import datalad
from datalad.support.external_versions import external_versions
annex = external_versions["cmd:annex"]
assert annex, "datalad does not find git-annex"
print("datalad", datalad.__version__, "finds git-annex", annex)'
    # the image's packages against the lock file: anything else came from pip's resolver
    # (pip freeze leaves pip, setuptools and wheel out unless given --all)
    local drift
    drift=$(crun --network none "$IMAGE_TAG" pip freeze --all --exclude-editable |
        python3 -c '
import re, sys
def norm(line):  # PEP 503 name, version as is
    name, _, version = line.strip().partition("==")
    return re.sub(r"[-_.]+", "-", name.lower()) + "==" + version if version else ""
lock = {norm(l) for l in open(sys.argv[1]) if l.strip() and not l.startswith("#")}
print(" ".join(sorted(n for n in map(norm, sys.stdin) if n and n not in lock)))' "$ROOT/requirements.lock")
    if [ -n "$drift" ]; then
        log "   WARNING: installed but not pinned by requirements.lock: $drift"
        log "   (make the lock with \`pip freeze --all --exclude-editable\` so pip/setuptools/wheel are pinned too)"
    else
        log "   the image's packages are exactly requirements.lock"
    fi
    log "   default command:"
    crun --network none "$IMAGE_TAG" | sed 's/^/      /'
}

run_tests() {
    step "tests: make test inside the image (no network, ../shared read-only at /shared)"
    [ -d "$SHARED_DIR/data/chandra" ] || die "no $SHARED_DIR/data/chandra to mount"
    crun --network none -v "$(cd "$SHARED_DIR" && pwd):/shared:ro" "$IMAGE_TAG" make test
}

# ---------------------------------------------------------------- main
need_root
mkdir -p "$DOCKER_DIR"
# one run at a time: a second run would stop the first one's daemon
exec 9>"$DOCKER_DIR/image-check.lock"
flock -n 9 || die "another image-check is running (lock $DOCKER_DIR/image-check.lock)"
trap cleanup EXIT   # only now: a run refused by the lock must not stop the other run's daemon
trap 'exit 130' INT TERM
fetch_engine
make_base_tarball
start_daemon
import_base
[ "$MODE" = prepare ] && exit 0
build_image
[ "$MODE" = build ] && exit 0
check_image
[ "$MODE" = checks ] && exit 0
run_tests
