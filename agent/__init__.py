"""The Farmhand agent: drives the devices next to it and reports to the hub over MQTT.

It runs on small machines (a Raspberry Pi), so it imports no hub code and no
numeric libraries, and loads only the drivers its config names.
"""

__version__ = "0.1.0"
