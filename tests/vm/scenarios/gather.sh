# Requests in flight together served as one (frontend/ublk/gather.rs), on
# raid5 over 4 legs with 64 KiB chunks (stripes of 192 KiB of data):
# 1. 4k random writes at depth 32 over 1 MiB, verified by fio, then 4096
#    more over the next MiB: writes of one stripe that arrive together are
#    written as one;
# 2. 64k sequential writes at depth 16, verified: neighbours in a stripe are
#    one write (a whole stripe reads nothing);
# 3. 1 MiB sequential writes at depth 8, verified: each starts and ends
#    inside a stripe, and its partial first and last stripes are written
#    with its neighbours' (one whole stripe, no read) while the pool
#    writes the whole stripes between;
# 4. leg 1 failed, the 4k job's data read back at depth 32 and verified by
#    fio (verify_only): readers of one lost chunk share its rebuild.
# Each phase checks the counts `status` shows moved, so a gather that never
# happens fails here, and fio's verify fails on any wrong byte.
gathered() { status g | sed -n "s/.*gathered: \([0-9]*\) writes written as [0-9]*, \([0-9]*\) degraded reads.*/\\$1/p"; }
wipe 4
serve g --layout raid5 --args left-symmetric --legs "$(legs 4)" --chunk 64K --direct
job4k="--name=g4k --filename=/dev/ublkb0 --rw=randwrite --bs=4k --iodepth=32 --ioengine=io_uring --direct=1 --size=1M --verify=crc32c --verify_fatal=1 --randseed=7"
fio $job4k --do_verify=1 > /tmp/fio.log 2>&1 && grep -q "err= 0" /tmp/fio.log || { cat /tmp/fio.log; fail "4k random writes: fio verify failed"; }
# The verified job writes each block once, 256 writes: too few to be sure
# some arrive together: 4096 more over the next MiB (left alone after),
# of which a few in a hundred share their stripe's write.
fio --name=g4kmore --filename=/dev/ublkb0 --rw=randwrite --bs=4k --iodepth=32 --ioengine=io_uring --direct=1 --offset=1M --size=1M \
    --io_size=16M --randseed=8 > /tmp/fio.log 2>&1 && grep -q "err= 0" /tmp/fio.log || { cat /tmp/fio.log; fail "4k random writes: fio failed"; }
w1=$(gathered 1)
[ -n "$w1" ] && [ "$w1" -gt 0 ] || fail "4k random writes over 1 MiB at depth 32: none gathered: $(status g | grep gathered)"
echo "4k random writes: verify clean, $w1 written with others"
fio --name=g64k --filename=/dev/ublkb0 --rw=write --bs=64k --iodepth=16 --ioengine=io_uring --direct=1 --offset=4M --size=24M \
    --verify=crc32c --do_verify=1 --verify_fatal=1 > /tmp/fio.log 2>&1 && grep -q "err= 0" /tmp/fio.log || { cat /tmp/fio.log; fail "64k sequential writes: fio verify failed"; }
w2=$(gathered 1)
[ "$w2" -gt "$w1" ] || fail "64k sequential writes at depth 16: none gathered: $(status g | grep gathered)"
echo "64k sequential writes: verify clean, $((w2 - w1)) written with others"
started=$(date +%s)
fio --name=g1m --filename=/dev/ublkb0 --rw=write --bs=1M --iodepth=8 --ioengine=io_uring --direct=1 --offset=32M --size=48M \
    --verify=crc32c --do_verify=1 --verify_fatal=1 > /tmp/fio.log 2>&1 && grep -q "err= 0" /tmp/fio.log || { cat /tmp/fio.log; fail "1M sequential writes: fio verify failed"; }
took=$(( $(date +%s) - started ))
# A leader that waits for a turn no completion will end sleeps until the
# ring's idle timeout (20 s) at the end of the run: seen as a stall here.
[ "$took" -lt 15 ] || fail "1M sequential writes took ${took}s for 48 MiB: a gathered write waited for the ring's idle timeout"
w3=$(gathered 1)
[ "$w3" -gt "$w2" ] || fail "1M sequential writes at depth 8: no partial stripe gathered: $(status g | grep gathered)"
echo "1M sequential writes: verify clean, $((w3 - w2)) partial stripes written with others"
wasmraid leg fail g 1 --run-dir "$RUN" >/dev/null || fail "wasmraid leg fail g 1 failed"
fio $job4k --verify_only > /tmp/fio.log 2>&1 && grep -q "err= 0" /tmp/fio.log || { cat /tmp/fio.log; fail "degraded 4k reads: fio verify failed"; }
r=$(gathered 2)
[ -n "$r" ] && [ "$r" -gt 0 ] || fail "degraded 4k reads over 1 MiB at depth 32: none shared a rebuild: $(status g | grep gathered)"
echo "degraded 4k random reads: verify clean, $r served by a shared rebuild"
result "gather: 4k random writes $w1, 64k sequential writes $((w2 - w1)) and 1M sequential writes' partial stripes $((w3 - w2)) written with others, degraded reads $r served by a shared rebuild;$(status g | grep gathered | cut -d: -f2)"
stop_server g
