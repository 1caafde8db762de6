# Where wasmraid's time goes in the parity workloads (issue 15's README
# profile): raid5 over 4 legs with the perf-parity geometry, a 4k random
# write at depth 32 and a 4k random read with leg 1 failed, each under
# `perf record -a -g` for PERF_SECONDS, then raid6 over 6 legs under 1 MiB
# sequential writes at depth 8 (whole stripes: encode and write only); prints IOPS and the top of
# `perf report` (by thread and by symbol). First, for scale, 4k random
# writes and reads at depth 32 on one bare leg and on a raid0 of 4 (no
# parity: what the ublk path alone costs; reads are served on the queue
# thread, writes by the worker pool). Needs WASMRAID_VM_PROFILE=1:
#   WASMRAID_VM_PROFILE=1 tests/vm/run.sh perf-profile
command -v perf >/dev/null || fail "perf-profile needs WASMRAID_VM_PROFILE=1 (perf in the VM)"
secs=${PERF_SECONDS:-6}
wipe 4
result "profile bare leg: randwrite $(perf_fio /dev/vdb randwrite 4k 32) IOPS, randread $(perf_fio /dev/vdb randread 4k 32) IOPS"
serve p0 --layout raid0 --legs "$(legs 4)" --chunk 64K --data-offset 1M --direct --max-io 1M
result "profile raid0 over ublk: randwrite $(perf_fio /dev/ublkb0 randwrite 4k 32) IOPS, randread $(perf_fio /dev/ublkb0 randread 4k 32) IOPS"
stop_server p0
serve pp --layout raid5 --args left-symmetric --legs "$(legs 4)" --chunk 64K --data-offset 1M --direct --max-io 1M
profile() { # label rw [bs depth]
    perf record -q -e cpu-clock -a -g -o "/tmp/$1.data" -- sleep "$secs" >/dev/null 2>&1 &
    p=$!
    iops=$(PERF_SECONDS=$secs perf_fio /dev/ublkb0 "$2" "${3:-4k}" "${4:-32}")
    wait $p
    result "profile $1: $iops $([ "${3:-4k}" = 4k ] && echo IOPS || echo MiB/s)"
    # Only RESULT lines leave the VM.
    perf report -q -i "/tmp/$1.data" --no-children --sort comm --stdio -g none 2>/dev/null | grep -v '^$' | head -12 | sed "s/^/WASMRAID-VM RESULT $1 thread /"
    perf report -q -i "/tmp/$1.data" --no-children --sort sym --stdio -g none 2>/dev/null | grep -v '^$' | head -45 | sed "s/^/WASMRAID-VM RESULT $1 symbol /"
}
profile randwrite randwrite
wasmraid leg fail pp 1 --run-dir "$RUN" >/dev/null || fail "wasmraid leg fail pp 1 failed"
profile degraded-randread randread
stop_server pp
wipe 6
serve p6 --layout raid6 --legs "$(legs 6)" --chunk 64K --data-offset 1M --direct --max-io 1M
profile raid6-seqwrite write 1M 8
stop_server p6
