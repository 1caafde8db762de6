# wasmraid raid0 over ublk against md raid0 over the same virtio legs, in
# the same VM: 4k random read at depth 32 and 1 MiB sequential read.
# Alternating runs, median of PERF_ROUNDS (5) each (runs of the same build move by
# +-20% here: two host cores shared by two vCPUs and qemu's I/O); TCG makes absolute figures
# meaningless, the ratio is the figure (benches/ublk_vm.rs prints it).
secs=${PERF_SECONDS:-6}
rounds=${PERF_ROUNDS:-5}
run() { # device rw bs -> IOPS or MiB/s
    fio --name=p --filename="$1" --rw="$2" --bs="$3" --iodepth=32 --ioengine=io_uring --direct=1 --runtime="$secs" --time_based \
        --output-format=terse --terse-version=3 2>/dev/null | awk -F';' -v bs="$3" '{ if (bs == "4k") print $8; else print int($7 / 1024) }'
}
median() { echo "$@" | tr ' ' '\n' | grep . | sort -n | awk '{ v[NR] = $1 } END { if (NR) print v[int((NR + 1) / 2)] }'; }
wipe 4
mdadm --create /dev/md0 --run --quiet --level=0 --raid-devices=4 --chunk=64 --metadata=1.2 --data-offset=1M $(leg_list 4) || fail "mdadm --create raid0 failed"
dd if=/dev/urandom of=/dev/md0 bs=1M count=256 oflag=direct 2>/dev/null
mdadm --stop /dev/md0 >/dev/null
md_rr=""; md_sr=""; w_rr=""; w_sr=""
for round in $(seq "$rounds"); do
    mdadm --assemble /dev/md0 $(leg_list 4) >/dev/null 2>&1 || fail "mdadm --assemble failed"
    md_rr="$md_rr $(run /dev/md0 randread 4k)"; md_sr="$md_sr $(run /dev/md0 read 1M)"
    mdadm --stop /dev/md0 >/dev/null
    # --max-io 1M: fio's 1 MiB reads are one ublk request each, as they are
    # one request to md (the default 512K splits each in two).
    serve p --layout raid0 --legs "$(legs 4)" --data-offset 1M --direct --max-io 1M
    w_rr="$w_rr $(run /dev/ublkb0 randread 4k)"; w_sr="$w_sr $(run /dev/ublkb0 read 1M)"
    stop_server p
    result "round $round (4k IOPS / 1M MiB/s): md$md_rr /$md_sr  wasmraid$w_rr /$w_sr"
done
# A device of zeroes (no leg I/O at all): the worker pool's path, where a
# worker fills the buffer and copies it to the request.
echo "0 $((256 * 2048)) zero" > /tmp/zero.table
serve z --table /tmp/zero.table
z_sr=$(run /dev/ublkb0 read 1M)
stop_server z
result "seqread-1m-mibs ublk-zero-device=$z_sr (no leg I/O: a worker fills and copies each request)"
m1=$(median $md_rr); m2=$(median $md_sr); u1=$(median $w_rr); u2=$(median $w_sr)
[ -n "$m1" ] && [ "$m1" -gt 0 ] && [ -n "$m2" ] && [ "$m2" -gt 0 ] || fail "fio gave no figures"
result "randread-4k-iops md=$m1 wasmraid=$u1 ratio=$(awk -v a="$u1" -v b="$m1" 'BEGIN { printf "%.2f", a / b }')"
result "seqread-1m-mibs md=$m2 wasmraid=$u2 ratio=$(awk -v a="$u2" -v b="$m2" 'BEGIN { printf "%.2f", a / b }')"
