#!/usr/bin/env bash
# The VM test bed: boots a Debian cloud kernel (it has ublk_drv, md and dm;
# this host kernel has none) under qemu TCG with a busybox initramfs
# holding wasmraid, mdadm, fio and mke2fs, legs as virtio disks, runs
# scenario scripts inside and reports PASS/FAIL per scenario.
#
#   tests/vm/run.sh                 every scenario
#   tests/vm/run.sh --functional    every scenario but the perf-* ones (CI)
#   tests/vm/run.sh perf-raid0 ...  only these
#
# Which kernel: WASMRAID_VM_KERNEL=7 (default) is the newest Debian 7.x
# cloud kernel in trixie-backports (packages linux-binary-<ver>-cloud-amd64,
# the kernel, and linux-modules-<ver>-cloud-amd64, merged /usr, .ko.xz),
# looked up and fetched through a private apt configuration under
# target/vm/apt (a deb822 source for trixie-backports on the archive URI the
# host's apt uses; `apt-get download` only, nothing is installed on the
# host); WASMRAID_VM_KERNEL=6.12 is the newest 6.12 cloud kernel in the
# host's own archive (linux-image-6.12.*-cloud-amd64-unsigned). Each kernel
# is cached in its own directory, target/vm/kernel-<6.12|7>; delete it to
# fetch a newer one. Console log: target/vm/last-run-<kernel>.log
# (target/vm/last-run.log points at the latest).
#
# Env: WASMRAID_BIN (default target/release/wasmraid), WASMRAID_VM_KERNEL
# (6.12 or 7, default 7), WASMRAID_VM_TIMEOUT
# (seconds for the whole boot, default 1500), WASMRAID_VM_SCENARIO_TIMEOUT
# (seconds per scenario, default 900), WASMRAID_VM_SMP (default 2),
# WASMRAID_VM_CPU (qemu -cpu model, default max; e.g. "max,erms=off,fsrm=off"
# to keep TCG from emulating the kernel's rep movsb copies byte by byte),
# PERF_SECONDS and PERF_ROUNDS (seconds per fio run and rounds, for the
# perf-* scenarios; their defaults otherwise),
# WASMRAID_VM_PROFILE=1 (puts the host's perf in the VM and keeps wasmraid's
# symbols, for `perf record -e cpu-clock -a -g` in a scenario).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
cache="$repo/target/vm"
bin="${WASMRAID_BIN:-$repo/target/release/wasmraid}"
mkdir -p "$cache"

say() { echo "vm: $*" >&2; }
die() { echo "vm: $*" >&2; exit 2; }
kernel="${WASMRAID_VM_KERNEL:-7}"
case "$kernel" in
    6.12|7) ;;
    *) die "WASMRAID_VM_KERNEL=$kernel: choose 6.12 (Debian's 6.12 cloud kernel) or 7 (the newest Debian 7.x cloud kernel, trixie-backports)" ;;
esac

# --- what the VM needs from Debian ----------------------------------------
packages=(qemu-system-x86 busybox-static mdadm fio e2fsprogs cpio kmod xz-utils nbd-client)
missing=()
for p in "${packages[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if ((${#missing[@]})); then
    say "installing ${missing[*]}"
    sudo_cmd=""; [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
    $sudo_cmd apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
[ -x "$bin" ] || die "no wasmraid binary at $bin (build it: cargo build --release -p wasmraid)"

# --- the kernel --------------------------------------------------------------
kcache="$cache/kernel-$kernel"   # root/ (the unpacked packages), debs/, ready (version, vmlinuz's path in root/)
work="$cache/run-$kernel"        # this kernel's initramfs and legs
mkdir -p "$work"

# 6.12: the newest linux-image-6.12.*-cloud-amd64-unsigned of the host's own
# archive (6.1 has no ublk). One package: /boot/vmlinuz-<ver>, /lib/modules.
fetch_612() {
    local pkg
    pkg=$(apt-cache search --names-only '^linux-image-6\.12\..*-cloud-amd64-unsigned$' | awk '{print $1}' | sort -V | tail -1)
    if [ -z "$pkg" ]; then
        apt-get update -qq || true
        pkg=$(apt-cache search --names-only '^linux-image-6\.12\..*-cloud-amd64-unsigned$' | awk '{print $1}' | sort -V | tail -1)
    fi
    [ -n "$pkg" ] || die "no linux-image-6.12.*-cloud-amd64-unsigned package in the apt archive; the VM suite needs a 6.12 kernel with ublk_drv"
    say "fetching $pkg"
    (cd "$kcache/debs" && apt-get download "$pkg" >/dev/null 2>&1) || die "apt-get download $pkg failed"
}

# 7: the newest linux-image-7.*-cloud-amd64 of trixie-backports. Its apt
# lists live under target/vm/apt (a deb822 source on the archive URI the
# host's apt uses, the host's Debian keyring), so neither the host's
# sources nor its lists change, and `apt-get download` installs nothing.
# From 7.x on the image package is a meta package: the kernel is in
# linux-binary-<ver> (usr/lib/modules/<ver>/vmlinuz), the modules in
# linux-modules-<ver> (usr/lib/modules/<ver>/kernel/**/*.ko.xz, no
# modules.builtin); all three are fetched when they exist.
source "$repo/scripts/private-apt.sh"
fetch_7() {
    local apt="$cache/apt" ver p pkgs=()
    private_apt "$apt" trixie-backports || die "cannot set up apt for trixie-backports"
    say "reading trixie-backports from $uri"
    apt-get "${o[@]}" update -qq >"$apt/update.log" 2>&1 || die "apt-get update of trixie-backports ($uri) failed: $(tail -3 "$apt/update.log")"
    ver=$(apt-cache "${o[@]}" search --names-only '^linux-image-7\.[0-9.]+\+deb[0-9]+-cloud-amd64$' | awk '{print $1}' \
          | sed 's/^linux-image-//; s/-cloud-amd64$//' | sort -V | tail -1 || true)
    [ -n "$ver" ] || die "no linux-image-7.*-cloud-amd64 package in trixie-backports ($uri); the VM suite on kernel 7 needs one"
    for p in linux-image linux-binary linux-modules; do
        apt-cache "${o[@]}" show "$p-$ver-cloud-amd64" >/dev/null 2>&1 && pkgs+=("$p-$ver-cloud-amd64")
    done
    say "fetching ${pkgs[*]}"
    (cd "$kcache/debs" && apt-get "${o[@]}" download "${pkgs[@]}" >"$apt/download.log" 2>&1) \
        || die "apt-get download ${pkgs[*]} failed: $(tail -3 "$apt/download.log")"
}

# Before two kernels, the 6.12 kernel lived in target/vm/kernel: keep it.
if [ "$kernel" = 6.12 ] && [ ! -f "$kcache/ready" ] && [ -f "$cache/kernel.ready" ] && [ -d "$cache/kernel" ]; then
    v=$(cat "$cache/kernel.ready")
    if [ -f "$cache/kernel/boot/vmlinuz-$v" ]; then
        rm -rf "$kcache" && mkdir -p "$kcache" && mv "$cache/kernel" "$kcache/root"
        printf '%s\n%s\n' "$v" "boot/vmlinuz-$v" > "$kcache/ready" && rm -f "$cache/kernel.ready"
    fi
fi
# (and its initramfs and legs in target/vm itself: now in run-<kernel>)
rm -rf "$cache/initrd" "$cache/disks" "$cache/initrd.gz" "$cache/wasmraid"
if [ ! -f "$kcache/ready" ]; then
    rm -rf "$kcache" && mkdir -p "$kcache/debs" "$kcache/root"
    "fetch_${kernel/./}"
    for deb in "$kcache"/debs/*.deb; do dpkg-deb -x "$deb" "$kcache/root" || die "dpkg-deb -x $deb failed"; done
    # Merged /usr (7.x): depmod -b and the rest of this script look in lib/modules.
    [ -e "$kcache/root/lib" ] || [ ! -d "$kcache/root/usr/lib/modules" ] || ln -s usr/lib "$kcache/root/lib"
    vers=$(ls "$kcache/root/lib/modules" 2>/dev/null || true)
    [ "$(echo "$vers" | wc -w)" = 1 ] || die "expected one kernel version under lib/modules of $kcache/debs, found: ${vers:-none}"
    vmlinuz=""
    for c in "boot/vmlinuz-$vers" "lib/modules/$vers/vmlinuz"; do [ -f "$kcache/root/$c" ] && { vmlinuz=$c; break; }; done
    [ -n "$vmlinuz" ] || die "no vmlinuz for $vers in $(ls "$kcache/debs")"
    # (7.x ships neither modules.order nor modules.builtin: depmod says so, harmlessly)
    /usr/sbin/depmod -b "$kcache/root" "$vers" 2>&1 | grep -v "WARNING: could not open modules\.\(order\|builtin\)" >&2 || true
    [ -s "$kcache/root/lib/modules/$vers/modules.dep" ] || die "depmod made no modules.dep for $vers"
    printf '%s\n%s\n' "$vers" "$vmlinuz" > "$kcache/ready"
fi
kver=$(sed -n 1p "$kcache/ready")
vmlinuz="$kcache/root/$(sed -n 2p "$kcache/ready")"
kdir="$kcache/root/lib/modules/$kver"
[ -f "$vmlinuz" ] && [ -f "$kdir/modules.dep" ] || die "$kcache is incomplete (no $vmlinuz or modules.dep): delete it to fetch again"

# --- the initramfs ----------------------------------------------------------
root="$work/initrd"
rm -rf "$root" && mkdir -p "$root"/{bin,sbin,lib,lib64,proc,sys,dev,tmp,run,mods,scenarios}
cp /bin/busybox "$root/bin/busybox"
for a in $("$root/bin/busybox" --list); do [ -e "$root/bin/$a" ] || ln -s busybox "$root/bin/$a"; done
# Modules with their dependencies, in load order (modules.dep lists deps).
want="virtio_blk ublk_drv raid0 raid1 raid10 raid456 nbd"
order=()
add_mod() {
    local name=$1 line path deps d
    # 6.12 and 7.x both ship .ko.xz; .ko, .ko.zst and .ko.gz are taken too.
    line=$(grep -E "(^|/)$name\.ko(\.xz|\.zst|\.gz)?:" "$kdir/modules.dep" | head -1) || true
    if [ -z "$line" ]; then # built in? (7.x ships no modules.builtin: then it must be a module)
        [ -f "$kdir/modules.builtin" ] && grep -qE "(^|/)$name\.ko\$" "$kdir/modules.builtin" && return 0
        die "module $name is in neither modules.dep nor modules.builtin of $kver"
    fi
    path=${line%%:*}; deps=${line#*:}
    for d in $deps; do add_mod "$(basename "$d" | sed 's/\.ko.*//')"; done
    for d in "${order[@]}"; do [ "$d" = "$path" ] && return 0; done
    order+=("$path")
}
for m in $want; do add_mod "$m"; done
: > "$root/mods/order"
for p in "${order[@]}"; do
    n=$(basename "$p" | sed 's/\.ko.*//')
    # Decompressed here: busybox's insmod takes plain .ko files.
    case "$p" in
        *.xz) xz -dc "$kdir/$p" > "$root/mods/$n.ko" ;;
        *.zst) zstd -qdc "$kdir/$p" > "$root/mods/$n.ko" ;;
        *.gz) gzip -dc "$kdir/$p" > "$root/mods/$n.ko" ;;
        *) cp "$kdir/$p" "$root/mods/$n.ko" ;;
    esac || die "cannot decompress $p"
    echo "$n" >> "$root/mods/order"
done
copy_bin() { # a binary and the shared libraries it loads
    local src=$1 dst=$2 lib
    cp "$src" "$root/$dst"
    for lib in $(ldd "$src" | awk '/=>/ {print $3} /ld-linux/ {print $1}'); do
        [ -f "$lib" ] || continue
        mkdir -p "$root/$(dirname "$lib")"
        cp -L "$lib" "$root/$lib"
    done
}
# Profiling keeps the symbol table (perf names wasmraid's functions).
strip ${WASMRAID_VM_PROFILE:+--strip-debug} -o "$work/wasmraid" "$bin"
copy_bin "$work/wasmraid" bin/wasmraid
copy_bin "$(command -v fio)" bin/fio
copy_bin "$(command -v mdadm)" sbin/mdadm
copy_bin /sbin/mke2fs sbin/mke2fs
copy_bin /sbin/e2fsck sbin/e2fsck
copy_bin /sbin/resize2fs sbin/resize2fs
copy_bin "$(command -v nbd-client)" sbin/nbd-client
if [ -n "${WASMRAID_VM_PROFILE:-}" ]; then
    command -v perf >/dev/null || die "WASMRAID_VM_PROFILE needs perf on this host (apt install linux-perf)"
    copy_bin "$(command -v perf)" bin/perf
fi
ln -s mke2fs "$root/sbin/mkfs.ext4"
cp "$here/init" "$root/init" && chmod +x "$root/init"
cp "$here/lib.sh" "$root/lib.sh"
cp "$here"/scenarios/*.sh "$root/scenarios/"
(cd "$root" && find . | cpio -o -H newc 2>/dev/null | gzip -1 > "$work/initrd.gz")

# --- scenarios, legs, boot --------------------------------------------------
# --functional: every scenario but the perf-* ones (what CI runs, on both kernels).
all=(); for f in "$here"/scenarios/*.sh; do all+=("$(basename "$f" .sh)"); done
if [ "${1:-}" = --functional ]; then
    (($# == 1)) || die "--functional takes no scenario names"
    scenarios=(); for s in "${all[@]}"; do case "$s" in perf-*) ;; *) scenarios+=("$s") ;; esac; done
elif (($#)); then scenarios=("$@")
else scenarios=("${all[@]}"); fi
for s in "${scenarios[@]}"; do [ -f "$here/scenarios/$s.sh" ] || die "no scenario $s (see tests/vm/scenarios/)"; done
# reboot-* scenarios last: the second boot finds their disks as the first
# boot left them, so no other scenario may run after them on those legs.
ordered=(); for s in "${scenarios[@]}"; do case "$s" in reboot-*) ;; *) ordered+=("$s") ;; esac; done
for s in "${scenarios[@]}"; do case "$s" in reboot-*) ordered+=("$s") ;; esac; done
scenarios=("${ordered[@]}")
disks="$work/disks"; rm -rf "$disks"; mkdir -p "$disks"
drives=()
for i in $(seq 0 13); do # vda..vdn: 14 legs (the pyramid layout wants 14)
    truncate -s 128M "$disks/leg$i.img"
    drives+=(-drive "file=$disks/leg$i.img,format=raw,if=virtio,cache=unsafe")
done
# vdo: a small system disk that survives a reboot (a reboot-* scenario
# keeps its config file there).
truncate -s 64M "$disks/system.img"
drives+=(-drive "file=$disks/system.img,format=raw,if=virtio,cache=unsafe")
log="$cache/last-run-$kernel.log"
ln -sfn "last-run-$kernel.log" "$cache/last-run.log"
list=$(IFS=,; echo "${scenarios[*]}")
# PERF_SECONDS and PERF_ROUNDS reach the perf scenarios inside (whole numbers).
extra=""
for v in PERF_SECONDS PERF_ROUNDS; do
    [ -n "${!v:-}" ] || continue
    [[ "${!v}" =~ ^[1-9][0-9]*$ ]] || die "$v=${!v}: a whole number of seconds or rounds, please"
    extra="$extra wasmraid.$v=${!v}"
done
say "booting $kver (WASMRAID_VM_KERNEL=$kernel) with ${#scenarios[@]} scenario(s); console log in $log"
start=$(date +%s)
boot() { # [scenarios (comma separated)] [boot number] [append: add to the log]
    timeout "${WASMRAID_VM_TIMEOUT:-1500}" qemu-system-x86_64 -name wasmraid-vm,debug-threads=on -accel tcg -cpu "${WASMRAID_VM_CPU:-max}" -smp "${WASMRAID_VM_SMP:-2}" -m 3G \
        -nographic -no-reboot -kernel "$vmlinuz" -initrd "$work/initrd.gz" \
        -append "console=ttyS0 panic=-1 quiet wasmraid.scenarios=${1:-$list} wasmraid.boot=${2:-1} wasmraid.timeout=${WASMRAID_VM_SCENARIO_TIMEOUT:-900}$extra" "${drives[@]}" </dev/null 2>&1 | stdbuf -oL tr -d "\r" | tee ${3:+-a} "$log" | grep --line-buffered "WASMRAID-VM" >&2
    qemu_rc=${PIPESTATUS[0]}
}
set +e
boot
# TCG now and then oopses while the kernel patches its own code at boot
# (an int3 left in a static key's site): a crash of the emulated kernel
# before any scenario ran says nothing about wasmraid, so boot once more.
if grep -q "Kernel panic" "$log" && ! grep -q "WASMRAID-VM SCENARIO" "$log"; then
    cp "$log" "$log.first-boot"
    say "the kernel died while booting ($(grep -m1 -o 'RIP: [^ ]*' "$log.first-boot" || echo 'see the log')); booting again (log kept in $log.first-boot)"
    boot
fi
# reboot-* scenarios: their first part passed, so boot the same disks
# again and run their second (the init says which boot it is).
again=()
for s in "${scenarios[@]}"; do
    case "$s" in reboot-*) grep -qE "WASMRAID-VM SCENARIO $s PASS" "$log" && again+=("$s") ;; esac
done
if ((${#again[@]})); then
    say "rebooting for ${again[*]}"
    echo "WASMRAID-VM REBOOT" >> "$log"
    boot "$(IFS=,; echo "${again[*]}")" 2 append
    if sed -n '/^WASMRAID-VM REBOOT/,$p' "$log" | grep -q "Kernel panic" && ! sed -n '/^WASMRAID-VM REBOOT/,$p' "$log" | grep -q "WASMRAID-VM SCENARIO"; then
        say "the kernel died while booting again; once more"
        boot "$(IFS=,; echo "${again[*]}")" 2 append
    fi
fi
set -e
elapsed=$(($(date +%s) - start))

# --- the verdict --------------------------------------------------------------
failed=0
# The init names the kernel it runs on: no line, no test on this kernel.
booted=$(grep -oE "WASMRAID-VM KERNEL [^ ]+ .*" "$log" | tail -1 || true)
if [ -z "$booted" ]; then
    echo "vm: FAILED: kernel $kver (WASMRAID_VM_KERNEL=$kernel) never reached the initramfs in $elapsed s (qemu exit $qemu_rc; console log: $log)"
    tail -15 "$log" | sed 's/^/  | /'
    exit 1
fi
if [ "$(echo "$booted" | awk '{print $3}')" != "$kver" ]; then
    echo "vm: FAILED: asked for kernel $kver, the VM ran $(echo "$booted" | awk '{print $3}')"
    exit 1
fi
echo "vm: kernel $kver: $(echo "$booted" | cut -d' ' -f4-)"
printf '\n%-28s %-6s %s\n' scenario result seconds
for s in "${scenarios[@]}"; do
    line=$(grep -oE "WASMRAID-VM SCENARIO $s (PASS|FAIL).*" "$log" | tail -1 || true)
    # A reboot-* scenario passes only when both of its boots did.
    case "$s" in reboot-*) [ "$(grep -cE "WASMRAID-VM SCENARIO $s PASS" "$log")" -ge 2 ] || line=$(echo "$line" | sed 's/ PASS / FAIL /; s/$/ (needs both boots)/') ;; esac
    if [ -z "$line" ]; then
        printf '%-28s %-6s %s\n' "$s" NONE "(never reported: crashed or timed out; see $log)"
        failed=1
        continue
    fi
    result=$(echo "$line" | awk '{print $4}'); secs=$(echo "$line" | awk '{print $5}')
    printf '%-28s %-6s %s\n' "$s" "$result" "$secs"
    [ "$result" = PASS ] || failed=1
done
grep "^WASMRAID-VM RESULT" "$log" | sed 's/^WASMRAID-VM RESULT /  /' || true
echo "vm: $elapsed s in all (qemu exit $qemu_rc)"
if ((failed)); then echo "vm: FAILED (console log: $log)"; exit 1; fi
echo "vm: all ${#scenarios[@]} scenario(s) passed"
