# Boot-time assembly. Boot 1: a raid5 on /dev/ublkb3 and a raid1 on
# /dev/ublkb7 get data, `wasmraid detail --scan` writes the config file
# onto the system disk (vdo), the raid1 stops cleanly and the raid5's
# daemon is killed (left dirty). Boot 2, the same disks: `wasmraid
# assemble --scan` brings both back on their ublk ids and the data
# verifies; then the raid5's daemon is killed under fio and the same
# command a systemd restart runs (`assemble r5 --scan`) takes its device
# back without an error.
SYS=/dev/vdo
mkdir -p /sysdisk /etc/wasmraid
up() { # name id: wait for /dev/ublkbID of a daemon started by assemble --scan
    i=0
    until [ -b "/dev/ublkb$2" ] && wasmraid status "$1" --run-dir "$RUN" 2>/dev/null | grep -q LIVE; do
        i=$((i + 1)); [ $i -lt 240 ] || { cat "$RUN/$1.log" 2>/dev/null; fail "$1: /dev/ublkb$2 not live after 120 s"; }
        sleep 0.5
    done
}
daemon_of() { # the pid of the daemon assemble --scan started for NAME (busybox has no pgrep)
    for p in /proc/[0-9]*; do
        tr '\0' ' ' < "$p/cmdline" 2>/dev/null | grep -q -- "assemble .*-- $1 \$" && { echo "${p#/proc/}"; return; }
    done
}

if [ "$BOOT" = 1 ]; then
    wipe 6
    mkfs.ext4 -q -F "$SYS" || fail "mkfs of the system disk failed"
    mount "$SYS" /sysdisk || fail "cannot mount the system disk"
    wasmraid create r5 --layout raid5 --legs "$(legs 4)" --force > /dev/null || fail "create r5 failed"
    wasmraid create r1 --layout raid1 --legs /dev/vde,/dev/vdf --force > /dev/null || fail "create r1 failed"
    wasmraid assemble r5 --legs "$(legs 4)" --direct --ublk --ublk-id 3 --run-dir "$RUN" >> /tmp/r5.serve.log 2>&1 &
    echo $! > /tmp/r5.pid
    wait_live r5 3
    wasmraid assemble r1 --legs /dev/vde,/dev/vdf --ublk --ublk-id 7 --run-dir "$RUN" >> /tmp/r1.serve.log 2>&1 &
    echo $! > /tmp/r1.pid
    wait_live r1 7
    dd if=/dev/urandom of=/dev/ublkb3 bs=1M count=48 oflag=direct 2>/dev/null || fail "writing r5 failed"
    dd if=/dev/urandom of=/dev/ublkb7 bs=1M count=24 oflag=direct 2>/dev/null || fail "writing r1 failed"
    echo "$(sha /dev/ublkb3 48) $(sha /dev/ublkb7 24)" > /sysdisk/sums
    wasmraid detail --scan --run-dir "$RUN" > /sysdisk/wasmraid.conf || fail "detail --scan failed"
    cat /sysdisk/wasmraid.conf
    grep -q 'ublk-id = 3' /sysdisk/wasmraid.conf && grep -q 'ublk-id = 7' /sysdisk/wasmraid.conf || fail "detail --scan lost a ublk id"
    [ "$(grep -c '^uuid = ' /sysdisk/wasmraid.conf)" = 2 ] || fail "detail --scan does not name both arrays by uuid"
    wasmraid stop r1 --run-dir "$RUN" > /dev/null || fail "stop r1 failed"
    # The raid5 goes down as with a crash: dirty, its device left behind.
    kill -9 "$(cat /tmp/r5.pid)"
    rm -f /tmp/r5.pid /tmp/r1.pid
    umount /sysdisk || fail "cannot unmount the system disk"
    echo "boot 1: two arrays written, config saved; rebooting"
    exit 0
fi

# Boot 2.
mount "$SYS" /sysdisk || fail "the system disk did not survive the reboot"
cp /sysdisk/wasmraid.conf /etc/wasmraid/wasmraid.conf
read -r want3 want7 < /sysdisk/sums
[ -b /dev/ublkb3 ] && fail "/dev/ublkb3 exists before assembly: this is not a fresh boot"
wasmraid assemble --scan --run-dir "$RUN" > /tmp/scan.out 2>&1 || { cat /tmp/scan.out; fail "assemble --scan failed"; }
cat /tmp/scan.out
up r5 3
up r1 7
[ "$(sha /dev/ublkb3 48)" = "$want3" ] || fail "r5's data differs after the reboot"
[ "$(sha /dev/ublkb7 24)" = "$want7" ] || fail "r1's data differs after the reboot"
# A second assemble --scan leaves running arrays alone.
wasmraid assemble --scan --run-dir "$RUN" | grep -q "r5: already served" || fail "a second assemble --scan did not see r5 served"

# What systemd's Restart=on-failure does: the daemon dies under load, the
# same command line comes back and takes the quiesced device over.
fio --name=verify --filename=/dev/ublkb3 --rw=randwrite --bs=8k --iodepth=16 --ioengine=io_uring --direct=1 \
    --verify=crc32c --do_verify=1 --verify_fatal=1 --offset=48M --size=24M --rate=4m > /tmp/fio.log 2>&1 &
fio_pid=$!
sleep 3
pid=$(daemon_of r5); [ -n "$pid" ] || fail "no daemon of r5 to kill"
kill -9 "$pid"
sleep 1
[ -b /dev/ublkb3 ] || fail "/dev/ublkb3 vanished with its server"
wasmraid assemble r5 --scan --run-dir "$RUN" >> /tmp/r5.serve.log 2>&1 &
echo $! > /tmp/r5.pid
wait_live r5 3
grep -q "taking it back" /tmp/r5.serve.log || { cat /tmp/r5.serve.log; fail "the restart did not take the device back"; }
wait $fio_pid; rc=$?
grep -E "err=|verify:" /tmp/fio.log
[ $rc -eq 0 ] && grep -q "err= 0" /tmp/fio.log || fail "fio saw an error across the restart: $(tail -5 /tmp/fio.log)"
[ "$(sha /dev/ublkb3 48)" = "$want3" ] || fail "r5's first 48 MiB changed across the restart"
for n in r5 r1; do wasmraid stop "$n" --run-dir "$RUN" > /dev/null || fail "stop $n failed"; done
i=0; while [ -b /dev/ublkb3 ] || [ -b /dev/ublkb7 ]; do i=$((i + 1)); [ $i -lt 120 ] || fail "devices still there 60 s after stop"; sleep 0.5; done
umount /sysdisk
result "reboot-scan: both arrays back on ublkb3 and ublkb7 after the reboot, data verified; a killed daemon restarted with the same command took its device back under fio"
