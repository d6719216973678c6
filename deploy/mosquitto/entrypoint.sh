#!/bin/sh
# Start Mosquitto for SensorGuard: write the password file and the ACL from the
# environment (never baked into the image), then run the broker in the foreground.
#
#   MQTT_PASSWORD         required: password of the service user (ingester, watch, replay)
#   MQTT_USERNAME         service user, default sensorguard: reads and writes <root>/#
#   MQTT_DEVICE_PASSWORD  optional: adds a device user that may only publish readings
#   MQTT_DEVICE_USERNAME  default device: writes <root>/+/readings, reads alarms and status
#   MQTT_TOPIC_ROOT       default sensorguard (= SENSORGUARD_MQTT_TOPIC_ROOT)
#   MOSQUITTO_DIR         default /mosquitto: config/, data/, run/ below it
set -eu
: "${MQTT_PASSWORD:?set MQTT_PASSWORD in .env}"
dir="${MOSQUITTO_DIR:-/mosquitto}"
user="${MQTT_USERNAME:-sensorguard}"
device="${MQTT_DEVICE_USERNAME:-device}"
root="${MQTT_TOPIC_ROOT:-sensorguard}"
umask 077
mkdir -p "$dir/run" "$dir/data"
rm -f "$dir/run/passwd"
touch "$dir/run/passwd"
mosquitto_passwd -b "$dir/run/passwd" "$user" "$MQTT_PASSWORD"
{
  echo "user $user"
  echo "topic readwrite $root/#"
} > "$dir/run/acl"
if [ -n "${MQTT_DEVICE_PASSWORD:-}" ]; then
  mosquitto_passwd -b "$dir/run/passwd" "$device" "$MQTT_DEVICE_PASSWORD"
  {
    echo ""
    echo "user $device"
    echo "topic write $root/+/readings"
    echo "topic read $root/+/alarms"
    echo "topic read $root/+/status"
  } >> "$dir/run/acl"
fi
# the broker drops root privileges to the mosquitto user before it reads these
chown -R mosquitto:mosquitto "$dir/run" "$dir/data" 2>/dev/null || true
exec mosquitto -c "$dir/config/mosquitto.conf"
