#!/usr/bin/env bash
# Starts a Mosquitto on 127.0.0.1:1883 when nothing listens there.
set -euo pipefail
listening() { (exec 3<>/dev/tcp/127.0.0.1/1883) 2>/dev/null; }
if listening; then exit 0; fi
mosq=$(command -v mosquitto || echo /usr/sbin/mosquitto)
if [ ! -x "$mosq" ]; then
  echo "ensure-broker: no broker on 127.0.0.1:1883 and mosquitto is not installed" >&2
  exit 1
fi
mkdir -p var
"$mosq" -d -c systemd/mosquitto-farmhand.conf
for _ in $(seq 50); do listening && exit 0; sleep 0.1; done
echo "ensure-broker: mosquitto did not start on 127.0.0.1:1883" >&2
exit 1
