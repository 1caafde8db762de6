# wasmraid raid0 over ublk against md raid0 over the same virtio legs, in
# the same VM: 4k random read at depth 32 and 1 MiB sequential read.
# Alternating runs, median of PERF_ROUNDS (5) each (runs of the same build move by
# +-20% here: two host cores shared by two vCPUs and qemu's I/O); TCG makes absolute figures
# meaningless, the ratio is the figure (benches/ublk_vm.rs prints it).
rounds=${PERF_ROUNDS:-5}
wipe 4
mdadm --create /dev/md0 --run --quiet --level=0 --raid-devices=4 --chunk=64 --metadata=1.2 --data-offset=1M $(leg_list 4) || fail "mdadm --create raid0 failed"
dd if=/dev/urandom of=/dev/md0 bs=1M count=256 oflag=direct 2>/dev/null
mdadm --stop /dev/md0 >/dev/null
md_rr=""; md_sr=""; w_rr=""; w_sr=""
for round in $(seq "$rounds"); do
    mdadm --assemble /dev/md0 $(leg_list 4) >/dev/null 2>&1 || fail "mdadm --assemble failed"
    md_rr="$md_rr $(perf_fio /dev/md0 randread 4k 32)"; md_sr="$md_sr $(perf_fio /dev/md0 read 1M 32)"
    mdadm --stop /dev/md0 >/dev/null
    # --max-io 1M: fio's 1 MiB reads are one ublk request each, as they are
    # one request to md (the default 512K splits each in two).
    serve p --layout raid0 --legs "$(legs 4)" --data-offset 1M --direct --max-io 1M
    w_rr="$w_rr $(perf_fio /dev/ublkb0 randread 4k 32)"; w_sr="$w_sr $(perf_fio /dev/ublkb0 read 1M 32)"
    stop_server p
    result "round $round (4k IOPS / 1M MiB/s): md$md_rr /$md_sr  wasmraid$w_rr /$w_sr"
done
# A device of zeroes (no leg I/O at all): the worker pool's path, where a
# worker fills the buffer and copies it to the request.
echo "0 $((256 * 2048)) zero" > /tmp/zero.table
serve z --table /tmp/zero.table
z_sr=$(perf_fio /dev/ublkb0 read 1M 32)
stop_server z
result "seqread-1m-mibs ublk-zero-device=$z_sr (no leg I/O: a worker fills and copies each request)"
m1=$(median $md_rr); m2=$(median $md_sr); u1=$(median $w_rr); u2=$(median $w_sr)
[ -n "$m1" ] && [ "$m1" -gt 0 ] && [ -n "$m2" ] && [ "$m2" -gt 0 ] || fail "fio gave no figures"
result "randread-4k-iops md=$m1 wasmraid=$u1 ratio=$(ratio "$u1" "$m1")"
result "seqread-1m-mibs md=$m2 wasmraid=$u2 ratio=$(ratio "$u2" "$m2")"
