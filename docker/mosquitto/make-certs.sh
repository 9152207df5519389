#!/bin/sh
# A small private CA and the broker's TLS server certificate for the park's mosquitto (listener 8883).
#
#   sudo ./make-certs.sh broker.park.example [more host names or IP addresses...]
#
# Writes into ${CERTS_DIR:-docker/mosquitto/certs}: ca.crt (give it to every party: their clients trust
# it), server.crt and server.key (readable by the broker's uid ${MOSQUITTO_UID:-1883} only). The CA key is
# written to ${CA_KEY:-docker/mosquitto/ca/ca.key} (mode 0400): move it off this machine, it signs the
# next server certificate. "mosquitto" (the compose service name) is always in the certificate, so
# symtwin inside the stack connects to mosquitto:8883 with the same certificate the parties use.
# An existing CA is reused; the server certificate is replaced (restart the broker afterwards).
set -eu

if [ $# -lt 1 ]; then
    echo "usage: $0 HOSTNAME [HOSTNAME|IP ...]   (the names parties use to reach the broker)" >&2
    exit 2
fi
here=$(cd "$(dirname "$0")" && pwd)
certs=${CERTS_DIR:-$here/certs}
ca_key=${CA_KEY:-$here/ca/ca.key}
uid=${MOSQUITTO_UID:-1883}
days=${DAYS:-825}
bits=${KEY_BITS:-3072}

umask 077
mkdir -p "$certs" "$(dirname "$ca_key")"
if [ ! -e "$ca_key" ]; then
    openssl req -x509 -newkey "rsa:$bits" -sha256 -days 3650 -nodes -subj "/CN=symtwin park MQTT CA" \
        -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
        -keyout "$ca_key" -out "$certs/ca.crt" 2>/dev/null
    chmod 0400 "$ca_key"
    echo "created CA $certs/ca.crt (key $ca_key: keep it offline)"
fi

san="DNS:mosquitto"
for name in "$@"; do
    case $name in
        *[!0-9.]*) san="$san,DNS:$name" ;;
        *) san="$san,IP:$name" ;;
    esac
done
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
printf 'subjectAltName=%s\nextendedKeyUsage=serverAuth\nkeyUsage=critical,digitalSignature,keyEncipherment\n' \
    "$san" > "$work/server.ext"
openssl req -newkey "rsa:$bits" -sha256 -nodes -subj "/CN=$1" -keyout "$work/server.key" -out "$work/server.csr" \
    2>/dev/null
openssl x509 -req -in "$work/server.csr" -CA "$certs/ca.crt" -CAkey "$ca_key" -CAcreateserial \
    -CAserial "$work/ca.srl" -days "$days" -sha256 -extfile "$work/server.ext" -out "$work/server.crt" 2>/dev/null
openssl verify -CAfile "$certs/ca.crt" "$work/server.crt" >/dev/null
mv -f "$work/server.key" "$certs/server.key"
mv -f "$work/server.crt" "$certs/server.crt"
chmod 0400 "$certs/server.key"
chmod 0444 "$certs/server.crt" "$certs/ca.crt"
if [ "$(id -u)" = 0 ]; then
    chown "$uid:$uid" "$certs/server.key" "$certs/server.crt" "$certs/ca.crt"
fi
echo "server certificate $certs/server.crt for $san, valid $days days"
