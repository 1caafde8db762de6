# fio randwrite verify=crc32c bs=8k iodepth=32 on raid5, raid6, raid10;
# then the same with a leg failed mid-job.
for spec in "raid5 4 left-symmetric" "raid6 5 left-symmetric" "raid10 4 n2"; do
    set -- $spec
    wipe "$2"
    # raid6 runs with the queues' buffers not registered with io_uring (the
    # path taken when the kernel refuses to pin them) and, on kernels with
    # zero copy, without it; raid5 and raid10 read with zero copy there.
    [ "$1" = raid6 ] && export WASMRAID_UBLK_FIXED_BUFFERS=0 WASMRAID_UBLK_ZERO_COPY=0
    serve v --layout "$1" --legs "$(legs "$2")" --args "$3" --direct
    unset WASMRAID_UBLK_FIXED_BUFFERS WASMRAID_UBLK_ZERO_COPY
    if [ "$1" = raid6 ]; then grep -q "buffers not registered" /tmp/v.serve.log || fail "raid6: the buffers were registered anyway"; fi
    # AUTO_BUF_REG is in 6.16 and later: 7.x reads with zero copy, 6.12 copies.
    case "$(uname -r)-$1" in
        6.*-*|*-raid6) copy="user copy" ;;
        *) copy="zero copy reads" ;;
    esac
    status v | grep -q "$copy" || fail "$1 on $(uname -r): status does not say $copy: $(status v | grep ublk)"
    fio_verify 48M || fail "$1: fio verify failed"
    echo "$1: verify clean"
    # A leg fails while the job runs: the array goes degraded, fio sees nothing.
    (sleep 2; wasmraid leg fail v 1 --run-dir "$RUN") &
    failer=$!
    fio_verify 48M "--rate=12m" || fail "$1: fio verify failed with a leg failed mid-job"
    wait $failer # (a bare `wait` would wait for the server too)
    status v | grep -q " D " || fail "$1: leg 1 was not failed: $(status v)"
    echo "$1: verify clean with leg 1 failed mid-job"
    stop_server v
done
