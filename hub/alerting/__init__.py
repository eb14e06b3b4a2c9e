"""Alerts by threshold: rules over the fleet's readings, raised once, resolved by themselves,
acknowledged by an operator, and delivered to webhooks, an MQTT topic and e-mail (front door: ``Alerting``)."""
