#!/usr/bin/env bash
# Installs what wasmraid's build and tests need and is missing: the rustup
# wasm target and Debian packages. Safe to run again.
set -euo pipefail

if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
    echo "setup: adding the rustup target wasm32-unknown-unknown"
    rustup target add wasm32-unknown-unknown
fi

# Real peers the tests talk to; libclang-dev for libublk's bindgen; the VM
# test bed's tools (tests/vm/run.sh); clang, lld, wasi-libc and the wasm32
# compiler-rt for layouts written in C (scripts/toolchains.sh has the rest).
packages=(${WASMRAID_APT_PACKAGES:-qemu-utils libnbd-bin python3-libnbd nbdkit fio openssl libisal-dev libclang-dev qemu-system-x86 busybox-static nbd-client mdadm e2fsprogs cpio kmod xz-utils iproute2 clang lld wasi-libc libclang-rt-14-dev-wasm32 man-db python3-prometheus-client systemd})
# Node for the JavaScript toolchain, from Debian unless one is installed.
command -v npm >/dev/null || packages+=(nodejs npm)
# A Python that can make virtual environments, for the Zig and Python toolchains.
python3 -c 'import venv, ensurepip' 2>/dev/null || packages+=(python3-venv)
missing=()
for p in "${packages[@]}"; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if ((${#missing[@]})); then
    echo "setup: installing ${missing[*]}"
    sudo_cmd=""
    [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
    $sudo_cmd apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# qemu-system-x86 and qemu-utils come from one source package and must be
# one version: a newer qemu-utils (from backports) makes apt remove it when
# qemu-system-x86 comes in, and the tests lose qemu-nbd. Pin both to
# qemu-system-x86's version.
system_version=$(dpkg-query -W -f='${Version}' qemu-system-x86 2>/dev/null || true)
utils_version=$(dpkg-query -W -f='${Version}' qemu-utils 2>/dev/null || true)
if [ -n "$system_version" ] && [ "$utils_version" != "$system_version" ]; then
    echo "setup: qemu-utils $utils_version -> $system_version (the version of qemu-system-x86)"
    sudo_cmd=""
    [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
    DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends --allow-downgrades "qemu-utils=$system_version"
fi

# private_apt: a suite of Debian read and fetched without touching the host.
source "$(dirname "$0")/private-apt.sh"

# A peer that speaks NBD extended headers, client and server: Debian 12's
# qemu (7.2), nbdkit (1.32) and libnbd (1.14) predate them. qemu-utils
# 10 from bookworm-backports links against the same libraries as 7.2, so
# it is unpacked (never installed: qemu-system-x86 pins the installed
# qemu-utils) into target/peers/qemu-bpo, through a private apt
# configuration like the VM bed's. tests/nbd_client.rs and tests/clients.rs
# use it and fail, naming this script, when it is missing.
qemu_bpo="$(cd "$(dirname "$0")/.." && pwd)/target/peers/qemu-bpo"
if [ ! -x "$qemu_bpo/usr/bin/qemu-nbd" ]; then
    apt_dir="$(dirname "$qemu_bpo")/apt"
    echo "setup: fetching qemu-utils from bookworm-backports into $qemu_bpo"
    if private_apt "$apt_dir" bookworm-backports && apt-get "${o[@]}" update -qq >"$apt_dir/update.log" 2>&1 \
        && ver=$(apt-cache "${o[@]}" madison qemu-utils | awk -F'|' '$3 ~ /backports/ { gsub(/ /, "", $2); print $2; exit }') \
        && [ -n "$ver" ] \
        && (cd "$apt_dir/debs" && apt-get "${o[@]}" download "qemu-utils=$ver" >"$apt_dir/download.log" 2>&1); then
        rm -rf "$qemu_bpo" && mkdir -p "$qemu_bpo" && dpkg-deb -x "$apt_dir"/debs/qemu-utils_*.deb "$qemu_bpo"
        "$qemu_bpo/usr/bin/qemu-nbd" --version | head -1
    else
        echo "setup: could not fetch qemu-utils from bookworm-backports (see $apt_dir/*.log); the extended-header tests will fail" >&2
    fi
fi

# A libnbd that speaks NBD extended headers (nbdinfo, nbdcopy, nbdsh):
# Debian 12's libnbd (1.14) predates them and bookworm-backports has none
# newer. Trixie's libnbd 1.22 needs trixie's glibc, so libnbd-bin,
# python3-libnbd and the libraries and Python they depend on are unpacked
# (never installed) into target/peers/libnbd-trixie, through a private apt
# configuration for trixie, and run through trixie's own loader with
# --library-path (not LD_LIBRARY_PATH, which would reach the host programs
# they start). Only packages named lib*, python3* and zlib1g are followed:
# the rest of the closure (debconf, dpkg, tzdata, ...) is for installing,
# not for running. tests/lib.rs's libnbd_trixie() runs them and fails,
# naming this script, when they are missing.
libnbd_trixie="$(cd "$(dirname "$0")/.." && pwd)/target/peers/libnbd-trixie"
trixie_loader="$libnbd_trixie/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"
if [ ! -x "$libnbd_trixie/usr/bin/nbdinfo" ] || [ ! -x "$trixie_loader" ] || [ ! -e "$libnbd_trixie/usr/lib/python3/dist-packages/nbd.py" ]; then
    apt_dir="$(dirname "$libnbd_trixie")/apt-trixie"
    echo "setup: fetching libnbd from trixie into $libnbd_trixie"
    if private_apt "$apt_dir" trixie && apt-get "${o[@]}" update -qq >"$apt_dir/update.log" 2>&1 \
        && closure=$(apt-cache "${o[@]}" depends --recurse --no-recommends --no-suggests --no-conflicts --no-breaks --no-replaces --no-enhances \
            libnbd-bin python3-libnbd | grep -E '^(lib|python3|zlib1g)' | sort -u) \
        && [ -n "$closure" ] \
        && (cd "$apt_dir/debs" && apt-get "${o[@]}" download $closure >"$apt_dir/download.log" 2>&1); then
        rm -rf "$libnbd_trixie" && mkdir -p "$libnbd_trixie"
        for deb in "$apt_dir"/debs/*.deb; do dpkg-deb -x "$deb" "$libnbd_trixie"; done
        # The version, and a sign that the loader finds every library.
        "$trixie_loader" --library-path "$libnbd_trixie/usr/lib/x86_64-linux-gnu" "$libnbd_trixie/usr/bin/nbdinfo" --version | sed -n 1p \
            && PYTHONHOME="$libnbd_trixie/usr" "$trixie_loader" --library-path "$libnbd_trixie/usr/lib/x86_64-linux-gnu" \
                "$libnbd_trixie/usr/bin/python3" -c 'import nbd; print("nbdsh (python3-libnbd)", nbd.NBD().get_version())' \
            || echo "setup: trixie's libnbd in $libnbd_trixie does not run; the extended-header libnbd tests will fail" >&2
    else
        echo "setup: could not fetch libnbd from trixie (see $apt_dir/*.log); the extended-header libnbd tests will fail" >&2
    fi
fi
