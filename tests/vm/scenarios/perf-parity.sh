# wasmraid raid5 and raid6 over ublk against md raid5 and raid6 over the
# same virtio legs, in the same VM, with the same geometry: md's
# left-symmetric, 64 KiB chunks, 1 MiB data offset, no bitmap on either
# (md: --bitmap=none; wasmraid: `serve --layout` keeps no metadata at all),
# wasmraid with --direct --max-io 1M. fio io_uring direct:
#   4k random write at depth 32, 1 MiB sequential write at depth 8,
#   64 KiB sequential write at depth 16 (a third of a raid5 stripe, a
#   quarter of a raid6 one: what md's stripe cache and wasmraid's
#   gathering of requests in flight turn into full-stripe writes),
#   4k random read at depth 32 with leg 1 failed (md: mdadm --fail; wasmraid:
#   wasmraid leg fail), raid5 over 4 legs, raid6 over 6.
# Rounds alternate md and wasmraid (md first in odd rounds, wasmraid first
# in even ones, so a drift of the host favours neither); every round is
# printed, then the median of each and the ratio wasmraid / md
# (benches/ublk_vm.rs prints them against the bar). TCG makes absolute
# figures meaningless; the ratio is the figure.
# PERF_SECONDS (6) per fio run, PERF_ROUNDS (3).
rounds=${PERF_ROUNDS:-3}

# One pass of the three workloads on md: created afresh over the legs with
# --assume-clean (the legs hold consistent parity: zeroes at first, then
# what md and wasmraid wrote), so each round starts with every leg in.
md_pass() { # level legs
    mdadm --create /dev/md0 --run --quiet --level="$1" --layout=left-symmetric --raid-devices="$2" --chunk=64 --metadata=1.2 \
        --bitmap=none --assume-clean --data-offset=1M $(leg_list "$2") || fail "mdadm --create raid$1 failed"
    [ "$(md_data_offset /dev/vda)" = 1048576 ] || fail "md chose data offset $(md_data_offset /dev/vda), not 1 MiB"
    grep -q bitmap /proc/mdstat && fail "md made a bitmap: $(cat /proc/mdstat)"
    rw=$(perf_fio /dev/md0 randwrite 4k 32); sw=$(perf_fio /dev/md0 write 1M 8); gw=$(perf_fio /dev/md0 write 64k 16)
    mdadm /dev/md0 --fail /dev/vdb >/dev/null 2>&1 || fail "mdadm --fail /dev/vdb failed"
    grep -q "(F)" /proc/mdstat || fail "md did not fail leg 1: $(cat /proc/mdstat)"
    dr=$(perf_fio /dev/md0 randread 4k 32)
    mdadm --stop /dev/md0 >/dev/null || fail "mdadm --stop failed"
    mdadm --zero-superblock $(leg_list "$2") 2>/dev/null
    md_rw="$md_rw $rw"; md_sw="$md_sw $sw"; md_gw="$md_gw $gw"; md_dr="$md_dr $dr"; md_last="$rw $sw $gw $dr"
}
w_pass() { # level legs
    serve pp --layout "raid$1" --args left-symmetric --legs "$(legs "$2")" --chunk 64K --data-offset 1M --direct --max-io 1M
    rw=$(perf_fio /dev/ublkb0 randwrite 4k 32); sw=$(perf_fio /dev/ublkb0 write 1M 8); gw=$(perf_fio /dev/ublkb0 write 64k 16)
    wasmraid leg fail pp 1 --run-dir "$RUN" >/dev/null || fail "wasmraid leg fail pp 1 failed"
    status pp | grep -q " D " || fail "wasmraid did not fail leg 1: $(status pp)"
    dr=$(perf_fio /dev/ublkb0 randread 4k 32)
    gathered=$(status pp | grep gathered | cut -d: -f2)
    stop_server pp
    w_rw="$w_rw $rw"; w_sw="$w_sw $sw"; w_gw="$w_gw $gw"; w_dr="$w_dr $dr"; w_last="$rw $sw $gw $dr"
}

for spec in "5 4" "6 6"; do
    set -- $spec
    level=$1; n=$2
    md_rw=""; md_sw=""; md_gw=""; md_dr=""; w_rw=""; w_sw=""; w_gw=""; w_dr=""
    wipe "$n"
    round=1
    while [ $round -le "$rounds" ]; do
        if [ $((round % 2)) = 1 ]; then md_pass "$level" "$n"; w_pass "$level" "$n"; first=md; else w_pass "$level" "$n"; md_pass "$level" "$n"; first=wasmraid; fi
        set -- $md_last $w_last
        result "raid$level round $round ($first first): randwrite-4k-iops md $1 wasmraid $5 / seqwrite-1m-mibs md $2 wasmraid $6 / seqwrite-64k-mibs md $3 wasmraid $7 / degraded-randread-4k-iops md $4 wasmraid $8 / wasmraid's gathering:$gathered"
        round=$((round + 1))
    done
    for w in rw:randwrite-4k-iops sw:seqwrite-1m-mibs gw:seqwrite-64k-mibs dr:degraded-randread-4k-iops; do
        v=${w%%:*}; name=${w#*:}
        m=$(median $(eval echo \$md_$v)); u=$(median $(eval echo \$w_$v))
        [ -n "$m" ] && [ "$m" -gt 0 ] && [ -n "$u" ] && [ "$u" -gt 0 ] || fail "raid$level $name: fio gave no figures (md:$(eval echo \$md_$v) wasmraid:$(eval echo \$w_$v))"
        result "raid$level-$name md=$m wasmraid=$u ratio=$(ratio "$u" "$m") (medians of $rounds; md:$(eval echo \$md_$v) wasmraid:$(eval echo \$w_$v))"
    done
done
