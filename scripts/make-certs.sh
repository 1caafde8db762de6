#!/usr/bin/env bash
# Make a CA and the server and client certificates it signs, in DIR, with
# the file names nbdkit, qemu, libnbd and wasmraid read:
#   ca-cert.pem  server-cert.pem server-key.pem  client-cert.pem client-key.pem
# (and ca-key.pem, to sign more). For tests and first steps; a real
# deployment signs with its own CA.
#
#   scripts/make-certs.sh DIR [NAME] [SERVER-NAME...]
#
# NAME labels the CA and the subjects (default "wasmraid"). Each
# SERVER-NAME (a host name or an IP address) goes into the server
# certificate's subjectAltName; default: localhost and 127.0.0.1.
set -euo pipefail
dir=${1:?usage: make-certs.sh DIR [NAME] [SERVER-NAME...]}
name=${2:-wasmraid}
shift $(( $# >= 2 ? 2 : 1 ))
(( $# )) || set -- localhost 127.0.0.1
san=""
for n in "$@"; do
    if [[ $n =~ ^[0-9.]+$ || $n == *:* ]]; then san+="IP:$n,"; else san+="DNS:$n,"; fi
done
mkdir -p "$dir"
cd "$dir"
umask 077
ossl() { openssl "$@" 2>/dev/null || { echo "make-certs: openssl $1 failed" >&2; exit 1; }; }
ossl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 3650 \
    -keyout ca-key.pem -out ca-cert.pem -subj "/CN=$name CA" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign"
for who in server client; do
    if [ "$who" = server ]; then usage=serverAuth; alt=${san%,}; else usage=clientAuth; alt="DNS:client.$name"; fi
    printf 'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=%s\nsubjectAltName=%s\n' "$usage" "$alt" > "$who.ext"
    ossl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$who-key.pem" -out "$who.csr" -subj "/CN=$name $who"
    ossl x509 -req -in "$who.csr" -CA ca-cert.pem -CAkey ca-key.pem -CAcreateserial -days 3650 -out "$who-cert.pem" -extfile "$who.ext"
    rm -f "$who.csr" "$who.ext"
done
rm -f ca-cert.srl
# nbdkit and qemu read their keys as whoever runs them.
chmod 0644 ./*-cert.pem
