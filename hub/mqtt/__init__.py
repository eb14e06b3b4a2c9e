"""The hub's side of MQTT: the ingest that decodes each message once, the command outbox, the embedded broker."""
