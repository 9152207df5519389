#!/bin/sh
# Create the secret files compose.yaml mounts (docker/secrets/*), each readable only by the user of the
# container that reads it (mode 0400, owned by that container's uid). Existing files are kept, so
# re-running never rotates a secret behind a running database's back.
#
#   sudo ./make-secrets.sh                         # random values
#   sudo SYMTWIN_PARTY=utility ./make-secrets.sh   # MQTT password of party "utility" taken from
#                                                  # mosquitto/generated/mqtt-passwords.env
#
# The symtwin and Grafana InfluxDB tokens start as copies of the operator token so a first start works;
# replace them with a write-only and a read-only token (docs/operations.md, "InfluxDB tokens").
set -eu

here=$(cd "$(dirname "$0")" && pwd)
dir=${SECRETS_DIR:-$here/secrets}
# uids of the users inside the images (docs/operations.md says how to check them for a new image tag)
SYMTWIN_UID=${SYMTWIN_UID:-10001}
INFLUX_UID=${INFLUX_UID:-1000}
GRAFANA_UID=${GRAFANA_UID:-472}

umask 077
mkdir -p "$dir"
chmod 0700 "$dir"

random() {
    # 32 random bytes as hex: no shell-special characters, fine for every consumer
    od -An -tx1 -N32 /dev/urandom | tr -d ' \n'
}

# put NAME UID VALUE: write NAME once, then (re)apply owner and mode
put() {
    if [ -e "$dir/$1" ]; then
        echo "kept    $dir/$1"
    else
        printf '%s' "$3" > "$dir/$1"
        echo "created $dir/$1"
    fi
    if [ "$(id -u)" = 0 ]; then
        chown "$2:$2" "$dir/$1"
    else
        echo "warning: not root, $dir/$1 stays owned by $(id -un); its container (uid $2) cannot read it" >&2
    fi
    chmod 0400 "$dir/$1"
}

if [ -e "$dir/influx_admin_token" ]; then
    token=$(cat "$dir/influx_admin_token")
else
    token=$(random)
fi

mqtt_password=""
passwords_env=${MQTT_PASSWORDS_ENV:-$here/mosquitto/generated/mqtt-passwords.env}
if [ -n "${SYMTWIN_PARTY:-}" ]; then
    var="SYMTWIN_MQTT_PASSWORD_$(printf '%s' "$SYMTWIN_PARTY" | tr -c 'A-Za-z0-9\n' '_' | tr 'a-z' 'A-Z')"
    if [ -r "$passwords_env" ]; then
        mqtt_password=$(sed -n "s/^$var=//p" "$passwords_env")
    fi
    if [ -z "$mqtt_password" ]; then
        echo "error: no $var in $passwords_env; run 'symtwin governance mosquitto' first" >&2
        exit 2
    fi
fi

put influx_admin_token "$INFLUX_UID" "$token"
put influx_admin_password "$INFLUX_UID" "$(random)"
put symtwin_influx_token "$SYMTWIN_UID" "$token"
put grafana_influx_token "$GRAFANA_UID" "$token"
put grafana_admin_password "$GRAFANA_UID" "$(random)"
put symtwin_mqtt_password "$SYMTWIN_UID" "${mqtt_password:-$(random)}"
# empty unless the plant's OPC UA server wants a user name and password (adapters.opcua.password)
put symtwin_opcua_password "$SYMTWIN_UID" ""
