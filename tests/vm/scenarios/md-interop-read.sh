# md writes, wasmraid reads: mdadm creates RAID5 (left-symmetric and
# left-asymmetric), RAID6 and RAID10 (near 2, far 2), writes known data,
# stops; wasmraid serves the same legs with its own layouts (md's data
# offset as an argument) and must read the same bytes, whole and then with
# a leg failed (so md's parity or mirror copies are decoded by wasmraid).
dd if=/dev/urandom of=/tmp/known bs=1M count=24 2>/dev/null
want=$(sha256sum < /tmp/known | cut -d' ' -f1)
for spec in "5 left-symmetric raid5 left-symmetric" "5 left-asymmetric raid5 left-asymmetric" "6 left-symmetric raid6 left-symmetric" \
            "10 n2 raid10 n2" "10 f2 raid10 f2"; do
    set -- $spec
    echo "== md level $1 layout $2 -> wasmraid $3 $4"
    wipe 4
    mdadm --create /dev/md0 --run --quiet --level="$1" --layout="$2" --raid-devices=4 --chunk=64 --metadata=1.2 --bitmap=none \
        --assume-clean $(leg_list 4) || fail "mdadm --create level $1 $2 failed"
    dd if=/tmp/known of=/dev/md0 bs=1M oflag=direct 2>/dev/null || fail "writing through md failed"
    [ "$(sha /dev/md0 24)" = "$want" ] || fail "md itself did not read back what it was written"
    off=$(md_data_offset /dev/vda)
    mdadm --stop /dev/md0 >/dev/null || fail "mdadm --stop failed"
    serve md --layout "$3" --args "$4" --legs "$(legs 4)" --data-offset "$off"
    got=$(sha /dev/ublkb0 24)
    [ "$got" = "$want" ] || { cmp /tmp/known /dev/ublkb0 | head -1; fail "$3 $4: wasmraid reads different bytes than md wrote"; }
    wasmraid leg fail md 1 --run-dir "$RUN" >/dev/null
    echo 3 > /proc/sys/vm/drop_caches
    got=$(sha /dev/ublkb0 24)
    [ "$got" = "$want" ] || fail "$3 $4: with leg 1 failed, wasmraid decodes different bytes than md wrote"
    stop_server md
    echo "$3 $4: byte-identical to md (data offset $off), also degraded"
done
