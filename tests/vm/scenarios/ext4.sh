# mkfs.ext4, mount, write files, unmount, stop the server, serve again,
# mount, compare sha256 sums: raid5, raid6, raid10 and the pyramid layout.
roundtrip() { # layout legs args
    echo "== ext4 on $1 over $2 legs"
    wipe "$2"
    serve fs --layout "$1" --legs "$(legs "$2")" --args "$3" --direct
    mkfs.ext4 -q -F /dev/ublkb0 || fail "$1: mkfs.ext4 failed"
    mkdir -p /mnt && mount /dev/ublkb0 /mnt || fail "$1: mount failed"
    mkdir -p /mnt/a/b /mnt/c
    for i in 1 2 3 4 5 6; do dd if=/dev/urandom of="/mnt/a/f$i" bs=64k count=$((i * 5)) 2>/dev/null; done
    dd if=/dev/urandom of=/mnt/a/b/big bs=1M count=12 2>/dev/null
    dd if=/dev/urandom of=/mnt/c/small bs=1k count=3 2>/dev/null
    (cd /mnt && find . -type f | sort | xargs sha256sum) > /tmp/sums
    umount /mnt || fail "$1: umount failed"
    stop_server fs
    serve fs --layout "$1" --legs "$(legs "$2")" --args "$3" --direct
    mount /dev/ublkb0 /mnt || fail "$1: mount after re-serve failed"
    (cd /mnt && sha256sum -c /tmp/sums >/dev/null) || fail "$1: files differ after unmount, stop and re-serve"
    umount /mnt
    stop_server fs
    echo "$1: $(wc -l < /tmp/sums) files identical"
}
roundtrip raid5 4 ""
roundtrip raid6 5 ""
roundtrip raid10 4 n2
roundtrip pyramid 14 ""
