#!/usr/bin/env bash
# The VM test bed: boots Debian's 6.12 cloud kernel (it has ublk_drv, md
# and dm; this host kernel has none) under qemu TCG with a busybox
# initramfs holding wasmraid, mdadm, fio and mke2fs, legs as virtio disks,
# runs scenario scripts inside and reports PASS/FAIL per scenario.
#
#   tests/vm/run.sh                 every scenario
#   tests/vm/run.sh perf-raid0 ...  only these
#
# Env: WASMRAID_BIN (default target/release/wasmraid), WASMRAID_VM_TIMEOUT
# (seconds for the whole boot, default 1500), WASMRAID_VM_SCENARIO_TIMEOUT
# (seconds per scenario, default 900), WASMRAID_VM_SMP (default 2),
# WASMRAID_VM_CPU (qemu -cpu model, default max; e.g. "max,erms=off,fsrm=off"
# to keep TCG from emulating the kernel's rep movsb copies byte by byte),
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

# --- what the VM needs from Debian ----------------------------------------
packages=(qemu-system-x86 busybox-static mdadm fio e2fsprogs cpio kmod xz-utils)
missing=()
for p in "${packages[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if ((${#missing[@]})); then
    say "installing ${missing[*]}"
    sudo_cmd=""; [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
    $sudo_cmd apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
[ -x "$bin" ] || die "no wasmraid binary at $bin (build it: cargo build --release -p wasmraid)"

# --- the kernel: newest 6.12 cloud image in the archive (6.1 has no ublk) --
if [ ! -f "$cache/kernel.ready" ]; then
    pkg=$(apt-cache search --names-only '^linux-image-6\.12\..*-cloud-amd64-unsigned$' | awk '{print $1}' | sort -V | tail -1)
    if [ -z "$pkg" ]; then
        apt-get update -qq || true
        pkg=$(apt-cache search --names-only '^linux-image-6\.12\..*-cloud-amd64-unsigned$' | awk '{print $1}' | sort -V | tail -1)
    fi
    [ -n "$pkg" ] || die "no linux-image-6.12.*-cloud-amd64-unsigned package in the apt archive; the VM suite needs a 6.12 kernel with ublk_drv"
    say "fetching $pkg"
    rm -rf "$cache/kernel" && mkdir -p "$cache/kernel"
    (cd "$cache" && rm -f ./*.deb && apt-get download "$pkg" >/dev/null 2>&1) || die "apt-get download $pkg failed"
    dpkg-deb -x "$cache"/"$pkg"_*.deb "$cache/kernel"
    kver=$(ls "$cache/kernel/lib/modules")
    /usr/sbin/depmod -b "$cache/kernel" "$kver"
    echo "$kver" > "$cache/kernel.ready"
fi
kver=$(cat "$cache/kernel.ready")
kdir="$cache/kernel/lib/modules/$kver"

# --- the initramfs ----------------------------------------------------------
root="$cache/initrd"
rm -rf "$root" && mkdir -p "$root"/{bin,sbin,lib,lib64,proc,sys,dev,tmp,run,mods,scenarios}
cp /bin/busybox "$root/bin/busybox"
for a in $("$root/bin/busybox" --list); do [ -e "$root/bin/$a" ] || ln -s busybox "$root/bin/$a"; done
# Modules with their dependencies, in load order (modules.dep lists deps).
want="virtio_blk ublk_drv raid0 raid1 raid10 raid456"
order=()
add_mod() {
    local name=$1 line path deps d
    line=$(grep -E "/$name\.ko(\.xz)?:" "$kdir/modules.dep" | head -1) || true
    [ -n "$line" ] || { [ -n "$(grep -rl "^$name\$" "$kdir/modules.builtin" 2>/dev/null)" ] && return 0; grep -q "/$name.ko" "$kdir/modules.builtin" && return 0; die "module $name not in $kver"; }
    path=${line%%:*}; deps=${line#*:}
    for d in $deps; do add_mod "$(basename "$d" | sed 's/\.ko.*//')"; done
    for d in "${order[@]}"; do [ "$d" = "$path" ] && return 0; done
    order+=("$path")
}
for m in $want; do add_mod "$m"; done
: > "$root/mods/order"
for p in "${order[@]}"; do
    n=$(basename "$p" | sed 's/\.ko.*//')
    case "$p" in *.xz) xz -dc "$kdir/$p" > "$root/mods/$n.ko" ;; *) cp "$kdir/$p" "$root/mods/$n.ko" ;; esac
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
strip ${WASMRAID_VM_PROFILE:+--strip-debug} -o "$cache/wasmraid" "$bin"
copy_bin "$cache/wasmraid" bin/wasmraid
copy_bin "$(command -v fio)" bin/fio
copy_bin "$(command -v mdadm)" sbin/mdadm
copy_bin /sbin/mke2fs sbin/mke2fs
if [ -n "${WASMRAID_VM_PROFILE:-}" ]; then
    command -v perf >/dev/null || die "WASMRAID_VM_PROFILE needs perf on this host (apt install linux-perf)"
    copy_bin "$(command -v perf)" bin/perf
fi
ln -s mke2fs "$root/sbin/mkfs.ext4"
cp "$here/init" "$root/init" && chmod +x "$root/init"
cp "$here/lib.sh" "$root/lib.sh"
cp "$here"/scenarios/*.sh "$root/scenarios/"
(cd "$root" && find . | cpio -o -H newc 2>/dev/null | gzip -1 > "$cache/initrd.gz")

# --- scenarios, legs, boot --------------------------------------------------
if (($#)); then scenarios=("$@"); else scenarios=(); for f in "$here"/scenarios/*.sh; do scenarios+=("$(basename "$f" .sh)"); done; fi
for s in "${scenarios[@]}"; do [ -f "$here/scenarios/$s.sh" ] || die "no scenario $s (see tests/vm/scenarios/)"; done
disks="$cache/disks"; rm -rf "$disks"; mkdir -p "$disks"
drives=()
for i in $(seq 0 13); do # vda..vdn: 14 legs (the pyramid layout wants 14)
    truncate -s 128M "$disks/leg$i.img"
    drives+=(-drive "file=$disks/leg$i.img,format=raw,if=virtio,cache=unsafe")
done
log="$cache/last-run.log"
list=$(IFS=,; echo "${scenarios[*]}")
say "booting $kver with ${#scenarios[@]} scenario(s); console log in $log"
start=$(date +%s)
boot() {
    timeout "${WASMRAID_VM_TIMEOUT:-1500}" qemu-system-x86_64 -name wasmraid-vm,debug-threads=on -accel tcg -cpu "${WASMRAID_VM_CPU:-max}" -smp "${WASMRAID_VM_SMP:-2}" -m 3G \
        -nographic -no-reboot -kernel "$cache/kernel/boot/vmlinuz-$kver" -initrd "$cache/initrd.gz" \
        -append "console=ttyS0 panic=-1 quiet wasmraid.scenarios=$list wasmraid.timeout=${WASMRAID_VM_SCENARIO_TIMEOUT:-900}" "${drives[@]}" </dev/null 2>&1 | stdbuf -oL tr -d "\r" | tee "$log" | grep --line-buffered "WASMRAID-VM" >&2
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
set -e
elapsed=$(($(date +%s) - start))

# --- the verdict --------------------------------------------------------------
failed=0
printf '\n%-28s %-6s %s\n' scenario result seconds
for s in "${scenarios[@]}"; do
    line=$(grep -oE "WASMRAID-VM SCENARIO $s (PASS|FAIL).*" "$log" | tail -1 || true)
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
