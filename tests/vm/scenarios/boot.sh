# The bed itself: modules loaded, ublk and md present, legs attached.
[ -c /dev/ublk-control ] || fail "no /dev/ublk-control after insmod ublk_drv"
[ -e /proc/mdstat ] || fail "md is not loaded"
grep -q raid6 /proc/mdstat || fail "raid456 personality missing: $(cat /proc/mdstat)"
for l in $letters; do [ -b "/dev/vd$l" ] || fail "leg /dev/vd$l missing"; done
wasmraid --version || fail "wasmraid does not run in the VM"
uname -r
