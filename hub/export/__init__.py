"""Data that leaves the hub: the outbound event log, Redis Streams, webhooks and the pull API."""
