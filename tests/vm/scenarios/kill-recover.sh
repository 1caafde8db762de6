# kill -9 the server under fio; the device survives (UBLK_F_USER_RECOVERY);
# `--recover 0` takes it back; fio finishes with no error and verifies.
wipe 4
wasmraid create kr --layout raid5 --legs "$(legs 4)" --force || fail "create failed"
assemble kr --legs "$(legs 4)" --direct
fio --name=verify --filename=/dev/ublkb0 --rw=randwrite --bs=8k --iodepth=32 --ioengine=io_uring --direct=1 \
    --verify=crc32c --do_verify=1 --verify_fatal=1 --size=48M --rate=8m > /tmp/fio.log 2>&1 &
fio_pid=$!
sleep 3
kill -9 "$(cat /tmp/kr.pid)" || fail "no server to kill"
sleep 1
[ -b /dev/ublkb0 ] || fail "/dev/ublkb0 vanished with its server"
kill -0 $fio_pid 2>/dev/null || fail "fio ended while the server was dead: $(cat /tmp/fio.log)"
wasmraid assemble kr --legs "$(legs 4)" --direct --recover 0 --run-dir "$RUN" >> /tmp/kr.serve.log 2>&1 &
echo $! > /tmp/kr.pid
wait_live kr
wait $fio_pid; rc=$?
grep -E "err=|verify:|error" /tmp/fio.log
[ $rc -eq 0 ] && grep -q "err= 0" /tmp/fio.log || fail "fio saw an error across the kill: $(tail -5 /tmp/fio.log)"
status kr | grep -q recovered || fail "status does not say recovered: $(status kr)"
# The unclean stop left dirty regions; once resynced, parity must check out.
i=0; until wasmraid status kr --json --run-dir "$RUN" | grep -q '"sync_action": "idle"'; do i=$((i + 1)); [ $i -lt 240 ] || fail "resync never ended"; sleep 0.5; done
wasmraid check kr --run-dir "$RUN" --wait > /tmp/check.log 2>&1 || fail "check failed: $(cat /tmp/check.log)"
grep -q "mismatch_cnt 0\|mismatches 0\| 0 mismatch" /tmp/check.log || fail "parity mismatches after recovery: $(cat /tmp/check.log)"
stop_server kr
echo "recovered under fio: no error, verify clean, check clean"
