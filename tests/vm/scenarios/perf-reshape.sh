# Reshape speed against md (issue 18's bar): raid5 over 4 legs (64 KiB
# chunks) grown to 5, the same legs, the whole array written first with the
# same fio pattern; timed from the command to the end of the move. md: its
# speed limits lifted, `mdadm --grow --raid-devices=5` with a backup file
# in RAM, waited for with `mdadm --wait`. wasmraid offline: the array
# stopped, `wasmraid reshape --add-legs` (compiling and proving both
# layouts included). wasmraid online: the array served over ublk, as md's
# is, `wasmraid reshape --add-legs --wait` to its daemon (proving
# included). Alternating, PERF_ROUNDS (3) each; the figure is the old
# array's MiB moved per second, and the ratio wasmraid / md.
rounds=${PERF_ROUNDS:-3}
echo 100000000 > /proc/sys/dev/raid/speed_limit_max
echo 100000000 > /proc/sys/dev/raid/speed_limit_min
now() { awk '{ print $1 }' /proc/uptime; }
fill() { fio --name=fill --filename="$1" --rw=write --bs=1M --iodepth=8 --ioengine=io_uring --direct=1 > /dev/null 2>&1 || fail "filling $1 failed"; }
# Sets fig (not printed: a round runs servers in the background, which
# would hold a command substitution open).
mibs() { fig=$(awk -v b="$1" -v t0="$2" -v t1="$3" 'BEGIN { printf "%d", b / 1048576 / (t1 - t0) }'); }
md_round() {
    wipe 5
    mdadm --create /dev/md0 --run --quiet --level=5 --layout=left-symmetric --chunk=64 --raid-devices=4 --metadata=1.2 --bitmap=none --assume-clean $(leg_list 4) ||
        fail "mdadm --create raid5 failed"
    fill /dev/md0
    bytes=$(blockdev --getsize64 /dev/md0 2>/dev/null || echo $(($(cat /sys/block/md0/size) * 512)))
    mdadm /dev/md0 --add /dev/vde >/dev/null || fail "mdadm --add failed"
    t0=$(now)
    rm -f /tmp/md.backup
    mdadm --grow /dev/md0 --raid-devices=5 --backup-file=/tmp/md.backup >/dev/null 2>&1 || fail "mdadm --grow failed"
    mdadm --wait /dev/md0 >/dev/null 2>&1
    while [ "$(cat /sys/block/md0/md/sync_action)" != idle ]; do sleep 0.1; done
    t1=$(now)
    [ "$(cat /sys/block/md0/md/raid_disks)" = 5 ] || fail "md did not end with 5 legs"
    mdadm --stop /dev/md0 >/dev/null
    mibs "$bytes" "$t0" "$t1"
}
# A created raid5 over 4 legs, served over ublk and filled; sets bytes.
served_filled() {
    wipe 5
    wasmraid create pr --layout raid5 --legs "$(legs 4)" --chunk 64K --assume-clean >/dev/null || fail "wasmraid create failed"
    assemble pr --legs "$(legs 4)" --direct --max-io 1M
    fill /dev/ublkb0
    bytes=$(cat /sys/block/ublkb0/size); bytes=$((bytes * 512))
}
wasmraid_round() {
    served_filled
    stop_server pr
    t0=$(now)
    wasmraid reshape pr --legs "$(legs 4)" --add-legs /dev/vde --run-dir "$RUN" > /tmp/reshape.out 2>&1 || { cat /tmp/reshape.out; fail "wasmraid reshape failed"; }
    t1=$(now)
    mibs "$bytes" "$t0" "$t1"
    # The move alone, as the command times it (proving the two layouts,
    # which compiles their components under TCG, left out).
    move=$(sed -n 's/^moved .*(\([0-9]*\) MiB\/s.*/\1/p' /tmp/reshape.out)
}
online_round() {
    served_filled
    t0=$(now)
    wasmraid reshape pr --add-legs /dev/vde --wait --run-dir "$RUN" > /tmp/reshape.out 2>&1 || { cat /tmp/reshape.out; fail "wasmraid reshape (served) failed"; }
    t1=$(now)
    grep -q "reshaped to raid5 over 5 legs" /tmp/reshape.out || { cat /tmp/reshape.out; fail "the served reshape did not finish"; }
    stop_server pr
    mibs "$bytes" "$t0" "$t1"
}
md=""; w=""; wm=""; on=""
for round in $(seq "$rounds"); do
    case $((round % 3)) in
    1) md_round; md="$md $fig"; wasmraid_round; w="$w $fig"; wm="$wm $move"; online_round; on="$on $fig" ;;
    2) wasmraid_round; w="$w $fig"; wm="$wm $move"; online_round; on="$on $fig"; md_round; md="$md $fig" ;;
    0) online_round; on="$on $fig"; md_round; md="$md $fig"; wasmraid_round; w="$w $fig"; wm="$wm $move" ;;
    esac
    result "round $round (MiB/s of the old array moved): md$md  wasmraid offline$w  (its move alone$wm)  wasmraid online$on"
done
m=$(median $md); u=$(median $w)
[ -n "$m" ] && [ "$m" -gt 0 ] || fail "no md figure"
result "reshape-raid5-4to5-mibs md=$m wasmraid=$u ratio=$(ratio "$u" "$m")"
v=$(median $wm)
result "reshape-raid5-4to5-move-mibs md=$m wasmraid=$v ratio=$(ratio "$v" "$m") (wasmraid's move alone, proving left out)"
o=$(median $on)
result "reshape-raid5-4to5-online-mibs md=$m wasmraid=$o ratio=$(ratio "$o" "$m") (served over ublk, as md's is)"
