# wasmraid writes, md checks: wasmraid writes known data through its raid5
# and raid6; md then takes the same legs with the same geometry and data
# offset, `check` reports mismatch_cnt 0 (wasmraid's parity is md's), and
# md reads back the same bytes.
dd if=/dev/urandom of=/tmp/known bs=1M count=48 2>/dev/null
want=$(sha256sum < /tmp/known | cut -d' ' -f1)
for spec in "5 left-symmetric raid5 left-symmetric" "5 left-asymmetric raid5 left-asymmetric" "6 left-symmetric raid6 left-symmetric"; do
    set -- $spec
    echo "== wasmraid $3 $4 -> md level $1 layout $2"
    # Zeroed legs: stripes nobody writes hold zeroes, whose P and Q are
    # zero, so md's check covers the whole array, not just what we wrote.
    wipe 4
    # md lays down its superblock first (and pins its data offset).
    mdadm --create /dev/md0 --run --quiet --level="$1" --layout="$2" --raid-devices=4 --chunk=64 --metadata=1.2 --bitmap=none \
        --assume-clean --data-offset=1M $(leg_list 4) || fail "mdadm --create failed"
    off=$(md_data_offset /dev/vda)
    mdadm --stop /dev/md0 >/dev/null
    serve mw --layout "$3" --args "$4" --legs "$(legs 4)" --data-offset "$off" --direct
    dd if=/tmp/known of=/dev/ublkb0 bs=64k oflag=direct 2>/dev/null || fail "writing through wasmraid failed"
    # Partial stripes too: read-modify-write paths must keep parity right.
    dd if=/dev/urandom of=/dev/ublkb0 bs=4k seek=20000 count=37 oflag=direct 2>/dev/null
    dd if=/dev/ublkb0 of=/tmp/tail bs=4k skip=20000 count=37 iflag=direct 2>/dev/null
    stop_server mw
    mdadm --assemble /dev/md0 $(leg_list 4) >/dev/null 2>&1 || fail "mdadm --assemble of wasmraid's legs failed"
    echo check > /sys/block/md0/md/sync_action
    i=0; while [ "$(cat /sys/block/md0/md/sync_action)" != idle ]; do i=$((i + 1)); [ $i -lt 600 ] || fail "md check never finished"; sleep 0.5; done
    mm=$(cat /sys/block/md0/md/mismatch_cnt)
    result "md-check-$3-$4 mismatch_cnt=$mm"
    [ "$mm" = 0 ] || fail "$3 $4: md's check found mismatch_cnt $mm in wasmraid's parity"
    [ "$(sha /dev/md0 48)" = "$want" ] || fail "$3 $4: md reads different bytes than wasmraid wrote"
    dd if=/dev/md0 bs=4k skip=20000 count=37 iflag=direct 2>/dev/null | cmp - /tmp/tail || fail "$3 $4: md reads a different partial-stripe write"
    mdadm --stop /dev/md0 >/dev/null
    echo "$3 $4: md check mismatch_cnt 0, data identical"
done
