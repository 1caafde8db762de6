# ext4 mounted on a raid5 made by `wasmraid create` (4 legs) over ublk,
# reshaped while mounted and written to: to raid5 over 5 legs, then to
# raid6 over 6 (`wasmraid reshape --add-legs --wait`, the daemon moving
# the data), a writer adding fsync'ed files all along. Where the kernel
# resizes a live ublk device (UBLK_F_UPDATE_SIZE, 6.16+), ext4 grows online
# with resize2fs; elsewhere after a restart. The sums of every file match
# after each reshape (the page cache dropped), and after a stop, assemble,
# e2fsck and remount.
echo "== reshape online: ext4 mounted on raid5 over 4 legs, to 5, then raid6 over 6, written all along"
wipe 6
wasmraid create ro --layout raid5 --legs "$(legs 4)" --chunk 64K --assume-clean >/dev/null || fail "wasmraid create failed"
assemble ro --legs "$(legs 4)" --direct
mkfs.ext4 -q -F /dev/ublkb0 || fail "mkfs.ext4 failed"
mkdir -p /mnt && mount /dev/ublkb0 /mnt || fail "mount failed"
mkdir -p /mnt/a
for i in 1 2 3 4; do dd if=/dev/urandom of="/mnt/a/f$i" bs=64k count=$((i * 40)) 2>/dev/null; done
sync
sectors() { cat /sys/block/ublkb0/size; }
sums() { (cd /mnt && find . -type f | sort | xargs sha256sum) > /tmp/sums; }
check_sums() { # what
    sync; echo 3 > /proc/sys/vm/drop_caches
    (cd /mnt && sha256sum -c /tmp/sums >/dev/null) || fail "files differ $1"
}
writer() { # tag: fsync'ed files of 256 KiB until /tmp/stop-writer appears (at most 300)
    i=0
    while [ ! -e /tmp/stop-writer ] && [ $i -lt 300 ]; do
        i=$((i + 1))
        dd if=/dev/urandom of="/mnt/w$1-$i" bs=64k count=4 conv=fsync 2>/dev/null || { echo "$i" > /tmp/writer-failed; return; }
        sleep 0.05
    done
}
sums
before=$(fs_blocks)
online() { # leg-to-add layout legs-after grows(yes|no)
    rm -f /tmp/stop-writer /tmp/writer-failed
    writer "$3" &
    wpid=$!
    sectors_before=$(sectors)
    started=$(date +%s)
    wasmraid reshape ro --add-legs "$1" --layout "$2" --wait --run-dir "$RUN" > /tmp/reshape.out 2>&1 ||
        { cat /tmp/reshape.out; tail -20 /tmp/ro.serve.log; fail "the online reshape to $2 over $3 legs failed"; }
    took=$(($(date +%s) - started))
    touch /tmp/stop-writer
    wait $wpid
    [ ! -e /tmp/writer-failed ] || fail "write $(cat /tmp/writer-failed) failed during the reshape to $2"
    written=$(ls /mnt | grep -c "^w$3-")
    grep -q "reshaped to $2 over $3 legs" /tmp/reshape.out || { cat /tmp/reshape.out; fail "the reshape to $2 did not say it finished"; }
    sums
    check_sums "after the online reshape to $2 over $3 legs"
    result "reshape-online: to $2 over $3 legs in $took s while mounted, $written fsync'ed files written meanwhile, all sums match"
    if [ "$(sectors)" -gt "$sectors_before" ]; then
        resize2fs /dev/ublkb0 >/dev/null 2>&1 || fail "online resize2fs after the reshape to $2 failed"
        result "reshape-online: /dev/ublkb0 resized live ($sectors_before -> $(sectors) sectors), ext4 grown online"
    elif [ "$4" = yes ]; then
        grep -q "next start" /tmp/reshape.out || { cat /tmp/reshape.out; fail "the reshape did not say when the size applies"; }
        cat /tmp/reshape.out
        umount /mnt || fail "umount failed"
        stop_server ro
        assemble ro --legs "$(legs "$3")" --direct
        [ "$(sectors)" -gt "$sectors_before" ] || fail "/dev/ublkb0 did not grow after a restart"
        e2fsck -f -p /dev/ublkb0 >/dev/null 2>&1; [ $? -le 1 ] || fail "e2fsck after the reshape to $2 found errors"
        resize2fs /dev/ublkb0 >/dev/null 2>&1 || fail "resize2fs after the reshape to $2 failed"
        mount /dev/ublkb0 /mnt || fail "mount after the reshape to $2 failed"
        result "reshape-online: /dev/ublkb0 grew at its next start ($sectors_before -> $(sectors) sectors; this kernel cannot resize it live)"
    fi
    check_growth "$4" "$2 over $3 legs"
}
online "$(legs 5 | cut -d, -f5)" raid5 5 yes
online "$(legs 6 | cut -d, -f6)" raid6 6 no
umount /mnt || fail "umount failed"
stop_server ro
assemble ro --legs "$(legs 6)" --direct
e2fsck -f -p /dev/ublkb0 >/dev/null 2>&1; [ $? -le 1 ] || fail "e2fsck after the online reshapes found errors"
mount /dev/ublkb0 /mnt || fail "mount after a restart failed"
check_sums "after a restart"
echo "raid6 over 6 legs after a restart: $(wc -l < /tmp/sums) files identical"
umount /mnt
stop_server ro
