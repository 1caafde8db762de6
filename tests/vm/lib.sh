# Helpers for scenarios (busybox sh inside the VM).
RUN=/run/wasmraid
fail() { echo "FAIL: $*"; exit 1; }
result() { echo "WASMRAID-VM RESULT $*"; }
letters="a b c d e f g h i j k l m n"

# The first N legs, comma separated: /dev/vda,/dev/vdb,...
legs() { n=$1; out=""; for l in $letters; do [ "$n" -gt 0 ] || break; out="$out${out:+,}/dev/vd$l"; n=$((n - 1)); done; echo "$out"; }
# The same, space separated.
leg_list() { legs "$1" | tr , ' '; }

# Zero the first N legs (fresh parity for md, no old superblocks).
wipe() { for d in $(leg_list "$1"); do dd if=/dev/zero of="$d" bs=1M oflag=direct 2>/dev/null; done; }

# serve NAME wasmraid-serve-args... : serve over ublk as /dev/ublkb0, wait
# until it is live.
serve() { name=$1; shift; start_server "$name" serve "$name" "$@" --ublk-id 0; }
# assemble NAME args... : the same through `wasmraid assemble`.
assemble() { name=$1; shift; start_server "$name" assemble "$name" "$@" --ublk-id 0; }
start_server() {
    name=$1; shift
    wasmraid "$@" --ublk --run-dir "$RUN" >> "/tmp/$name.serve.log" 2>&1 &
    echo $! > "/tmp/$name.pid"
    wait_live "$name"
}
# wait_live NAME [ID]: until /dev/ublkbID (default 0) is live for NAME.
wait_live() {
    i=0
    while ! { [ -b "/dev/ublkb${2:-0}" ] && wasmraid status "$1" --run-dir "$RUN" 2>/dev/null | grep -q "LIVE"; }; do
        kill -0 "$(cat "/tmp/$1.pid")" 2>/dev/null || { cat "/tmp/$1.serve.log"; fail "$1: the server exited"; }
        i=$((i + 1))
        [ $i -lt 240 ] || { cat "/tmp/$1.serve.log"; fail "$1: /dev/ublkb${2:-0} not live after 120 s"; }
        sleep 0.5
    done
}
# Stop a server cleanly and check the device went away with it.
stop_server() {
    wasmraid stop "$1" --run-dir "$RUN" >/dev/null || fail "wasmraid stop $1 failed"
    i=0
    while [ -b /dev/ublkb0 ] || kill -0 "$(cat "/tmp/$1.pid")" 2>/dev/null; do
        i=$((i + 1))
        [ $i -lt 120 ] || fail "$1: /dev/ublkb0 still there 60 s after wasmraid stop"
        sleep 0.5
    done
}
status() { wasmraid status "$1" --run-dir "$RUN"; }
# The size of the file system mounted at /mnt, in KiB.
fs_blocks() { df -k /mnt | awk 'NR == 2 { print $2 }'; }
# check_growth yes|no LABEL: the file system at /mnt grew since $before
# (yes) or did not shrink (no); says so with the count of files in
# /tmp/sums, and moves $before on.
check_growth() {
    now=$(fs_blocks)
    if [ "$1" = yes ]; then
        [ "$now" -gt "$before" ] || fail "the file system did not grow ($before to $now KiB)"
    else
        [ "$now" -ge "$before" ] || fail "the file system shrank ($before to $now KiB)"
    fi
    echo "$2: $(wc -l < /tmp/sums) files identical, file system $before -> $now KiB"
    before=$now
}

# fio verify job on /dev/ublkb0 (8k random writes at depth 32, crc32c).
fio_verify() {
    fio --name=verify --filename=/dev/ublkb0 --rw=randwrite --bs=8k --iodepth=32 --ioengine=io_uring --direct=1 \
        --verify=crc32c --do_verify=1 --verify_fatal=1 --size="${1:-32M}" ${2:-} > /tmp/fio.log 2>&1
    rc=$?
    grep -E "err=|verify:|error" /tmp/fio.log
    [ $rc -eq 0 ] && grep -q "err= 0" /tmp/fio.log
}

# First N bytes of a device, sha256.
sha() { dd if="$1" bs=1M count="$2" iflag=direct 2>/dev/null | sha256sum | cut -d' ' -f1; }

# Data offset md chose, in bytes (from mdadm --examine).
# The perf scenarios' measures: one fio run on a device (io_uring, direct,
# PERF_SECONDS), its IOPS for 4k blocks or its MiB/s otherwise; the median
# of a list (the lower middle one for an even count); a ratio of two figures.
perf_fio() { # device rw bs depth
    fio --name=p --filename="$1" --rw="$2" --bs="$3" --iodepth="$4" --ioengine=io_uring --direct=1 --runtime="${PERF_SECONDS:-6}" --time_based \
        --output-format=terse --terse-version=3 2>/dev/null | awk -F';' -v bs="$3" -v rw="$2" '
        $1 == "3" { if (rw ~ /write/) { bw = $48; iops = $49 } else { bw = $7; iops = $8 }
                    if (bs == "4k") print iops; else print int(bw / 1024); exit }'
}
median() { echo "$@" | tr ' ' '\n' | grep . | sort -n | awk '{ v[NR] = $1 } END { if (NR) print v[int((NR + 1) / 2)] }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "nan" }'; }
md_data_offset() { echo $(($(mdadm --examine "$1" | sed -n 's/.*Data Offset : \([0-9]*\) sectors.*/\1/p') * 512)); }

cleanup() {
    for p in /tmp/*.pid; do [ -f "$p" ] && kill -9 "$(cat "$p")" 2>/dev/null; done
    rm -f /tmp/*.pid
    sleep 1
    for d in /sys/class/ublk-char/ublkc*; do [ -e "$d" ] && wasmraid ublk del "${d##*ublkc}" 2>/dev/null; done
    umount /mnt 2>/dev/null
    nbd-client -d /dev/nbd0 >/dev/null 2>&1
    mdadm --stop --scan 2>/dev/null
    true
}
