#!/usr/bin/env bash
# Starts a Mosquitto on 127.0.0.1:1883 when nothing listens there (state in ./var/mosquitto).
set -euo pipefail
listening() { (exec 3<>/dev/tcp/127.0.0.1/1883) 2>/dev/null; }
if listening; then exit 0; fi
mosq=$(command -v mosquitto || echo /usr/sbin/mosquitto)
if [ ! -x "$mosq" ]; then
  echo "ensure-broker: no broker on 127.0.0.1:1883 and mosquitto is not installed" >&2
  exit 1
fi
dir="$(pwd)/var/mosquitto"
mkdir -p "$dir"
cat > "$dir/mosquitto.conf" <<CONF
listener 1883 127.0.0.1
allow_anonymous true
persistence true
persistence_location $dir/
max_queued_messages 100000
log_dest file $dir/mosquitto.log
CONF
# Mosquitto drops privileges to 'mosquitto' when started as root; let it write its state.
if [ "$(id -u)" -eq 0 ] && id mosquitto >/dev/null 2>&1; then chown -R mosquitto "$dir"; fi
"$mosq" -d -c "$dir/mosquitto.conf"
for _ in $(seq 50); do listening && exit 0; sleep 0.1; done
echo "ensure-broker: mosquitto did not start on 127.0.0.1:1883 (see $dir/mosquitto.log)" >&2
exit 1
