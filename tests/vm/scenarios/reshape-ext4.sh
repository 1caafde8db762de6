# ext4 on a raid5 made by `wasmraid create` (4 legs), files written and
# their sha256 taken; the array stopped, reshaped to raid5 over 5 legs and
# then to raid6 over 6 (each `wasmraid reshape --add-legs`), assembled
# again, the file system grown with resize2fs: after each remount the sums
# match, and the file system is bigger after the first (the second keeps
# the capacity: the sixth leg holds the second parity).
echo "== reshape: ext4 on raid5 over 4 legs, to 5, then raid6 over 6"
wipe 6
wasmraid create rs --layout raid5 --legs "$(legs 4)" --chunk 64K --assume-clean >/dev/null || fail "wasmraid create failed"
assemble rs --legs "$(legs 4)" --direct
mkfs.ext4 -q -F /dev/ublkb0 || fail "mkfs.ext4 failed"
mkdir -p /mnt && mount /dev/ublkb0 /mnt || fail "mount failed"
mkdir -p /mnt/a/b
for i in 1 2 3 4 5 6; do dd if=/dev/urandom of="/mnt/a/f$i" bs=64k count=$((i * 7)) 2>/dev/null; done
dd if=/dev/urandom of=/mnt/a/b/big bs=1M count=40 2>/dev/null
(cd /mnt && find . -type f | sort | xargs sha256sum) > /tmp/sums
before=$(fs_blocks)
umount /mnt || fail "umount failed"
stop_server rs
grow() { # legs-now legs-after layout grows(yes|no)
    started=$(date +%s)
    wasmraid reshape rs --legs "$(legs "$1")" --add-legs "$(legs "$2" | cut -d, -f$(($1 + 1))-)" --layout "$3" --run-dir "$RUN" > /tmp/reshape.out 2>&1 ||
        { cat /tmp/reshape.out; fail "wasmraid reshape to $3 over $2 legs failed"; }
    result "reshape-ext4: $(grep reshaped /tmp/reshape.out) in $(($(date +%s) - started)) s"
    assemble rs --legs "$(legs "$2")" --direct
    e2fsck -f -p /dev/ublkb0 >/dev/null 2>&1; [ $? -le 1 ] || fail "e2fsck after the reshape to $3 found errors"
    resize2fs /dev/ublkb0 >/dev/null 2>&1 || fail "resize2fs after the reshape to $3 failed"
    mount /dev/ublkb0 /mnt || fail "mount after the reshape to $3 failed"
    (cd /mnt && sha256sum -c /tmp/sums >/dev/null) || fail "files differ after the reshape to $3 over $2 legs"
    check_growth "$4" "$3 over $2 legs"
    umount /mnt
    stop_server rs
}
grow 4 5 raid5 yes
grow 5 6 raid6 no
