# The kernel's own NBD client (the nbd module, nbd-client) against
# wasmraid's export: a raid5 served over NBD on the VM's loopback, attached
# as /dev/nbd0; fio verify through it, then an ext4 with a file whose
# sha256 must survive a disconnect and a new connection.
ip link set lo up 2>/dev/null || ifconfig lo 127.0.0.1 up
wipe 4
wasmraid serve n --layout raid5 --legs "$(legs 4)" --direct --nbd 127.0.0.1:10809 --run-dir "$RUN" >> /tmp/n.serve.log 2>&1 &
echo $! > /tmp/n.pid
i=0
while ! wasmraid status n --run-dir "$RUN" >/dev/null 2>&1; do
    kill -0 "$(cat /tmp/n.pid)" 2>/dev/null || { cat /tmp/n.serve.log; fail "the server exited"; }
    i=$((i + 1)); [ $i -lt 240 ] || fail "no control socket after 120 s"
    sleep 0.5
done
attach() { nbd-client 127.0.0.1 10809 /dev/nbd0 -N n -b 4096 > /tmp/nbd-client.log 2>&1 || { cat /tmp/nbd-client.log; fail "nbd-client could not attach /dev/nbd0"; }; }
attach
echo "attached: $(cat /sys/block/nbd0/size) sectors"
fio --name=verify --filename=/dev/nbd0 --rw=randwrite --bs=8k --iodepth=16 --ioengine=io_uring --direct=1 \
    --verify=crc32c --do_verify=1 --verify_fatal=1 --size=32M > /tmp/fio.log 2>&1 || { cat /tmp/fio.log; fail "fio verify through /dev/nbd0 failed"; }
grep -q "err= 0" /tmp/fio.log || { cat /tmp/fio.log; fail "fio reported errors through /dev/nbd0"; }
echo "fio verify through the kernel's NBD client: clean"
mkdir -p /mnt
mkfs.ext4 -q -F /dev/nbd0 || fail "mkfs.ext4 on /dev/nbd0"
mount /dev/nbd0 /mnt || fail "mount /dev/nbd0"
dd if=/dev/urandom of=/mnt/file bs=1M count=16 2>/dev/null
before=$(sha256sum /mnt/file | cut -d' ' -f1)
umount /mnt || fail "umount"
nbd-client -d /dev/nbd0 >/dev/null 2>&1
attach
mount /dev/nbd0 /mnt || fail "mount after reconnecting"
after=$(sha256sum /mnt/file | cut -d' ' -f1)
umount /mnt
nbd-client -d /dev/nbd0 >/dev/null 2>&1
[ "$before" = "$after" ] || fail "the file changed across a reconnect: $before then $after"
echo "ext4 file intact across a disconnect and reconnect (sha256 $after)"
wasmraid stop n --run-dir "$RUN" >/dev/null || fail "wasmraid stop"
