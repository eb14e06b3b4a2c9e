"""Write the MCU data dictionary Klippy reads with ``-d`` when it runs without a board (``-o``, batch mode).

A real board sends Klippy this dictionary at connect time: the commands it
understands and the messages it sends, each with its message id, its pin
names and its constants. Built firmware writes it to ``out/klipper.dict``.
Farmhand runs Klippy with no board at all, so it describes one itself: an
imaginary 16 MHz MCU with 64 numbered pins that understands exactly the
commands Klippy sends for ``tests/klippy/printer.cfg`` (an extruder's stepper
and heater on ``kinematics: none``). The command list was found by running
Klippy against this dictionary and adding what its error said was missing;
each format string is the wire protocol Klipper documents in
``docs/MCU_Commands.md`` and ``docs/Protocol.md``, not firmware code.

    python tests/klippy/make_dictionary.py > tests/klippy/mcu.dict
"""

from __future__ import annotations

import json
import sys

# Message ids 0 and 1 are identify_response and identify, fixed by the protocol.
COMMANDS = [
    "get_uptime",
    "get_clock",
    "get_config",
    "allocate_oids count=%c",
    "finalize_config crc=%u",
    "emergency_stop",
    "clear_shutdown",
    "reset",
    "config_reset",
    "config_stepper oid=%c step_pin=%c dir_pin=%c invert_step=%c step_pulse_ticks=%u",
    "queue_step oid=%c interval=%u count=%hu add=%hi",
    "set_next_step_dir oid=%c dir=%c",
    "reset_step_clock oid=%c clock=%u",
    "stepper_get_position oid=%c",
    "stepper_stop_on_trigger oid=%c trsync_oid=%c",
    "config_trsync oid=%c",
    "trsync_start oid=%c report_clock=%u report_ticks=%u expire_reason=%c",
    "trsync_set_timeout oid=%c clock=%u",
    "trsync_trigger oid=%c reason=%c",
    "config_digital_out oid=%c pin=%u value=%c default_value=%c max_duration=%u",
    "set_digital_out pin=%u value=%c",
    "update_digital_out oid=%c value=%c",
    "queue_digital_out oid=%c clock=%u on_ticks=%u",
    "set_digital_out_pwm_cycle oid=%c cycle_ticks=%u",
    "config_analog_in oid=%c pin=%u",
    "query_analog_in oid=%c clock=%u sample_ticks=%u sample_count=%c rest_ticks=%u min_value=%hu"
    " max_value=%hu range_check_count=%c",
]
RESPONSES = [
    "uptime high=%u clock=%u",
    "clock clock=%u",
    "config is_config=%c crc=%u is_shutdown=%c move_count=%hu",
    "shutdown clock=%u static_string_id=%hu",
    "is_shutdown static_string_id=%hu",
    "starting",
    "stepper_position oid=%c pos=%i",
    "trsync_state oid=%c can_trigger=%c trigger_reason=%c clock=%u",
    "analog_in_state oid=%c next_clock=%u value=%hu",
    "stats count=%u sum=%u sumsq=%u",
]
CONSTANTS = {
    "MCU": "farmhand_virtual",
    "CLOCK_FREQ": 16000000,
    "STATS_SUMSQ_BASE": 256,
    "ADC_MAX": 4095,
    "PWM_MAX": 255,
    "STEPPER_BOTH_EDGE": 0,
}


def dictionary() -> dict[str, object]:
    ids = iter(range(2, 96))
    return {
        "version": "farmhand-virtual-mcu-1",
        "build_versions": "none (described, not built: tests/klippy/make_dictionary.py)",
        "commands": {fmt: next(ids) for fmt in COMMANDS},
        "responses": {fmt: next(ids) for fmt in RESPONSES},
        "enumerations": {"pin": {"PA0": [0, 64]}, "static_string_id": {"Shutdown cleared when not shutdown": 0,
                                                                       "Command request": 1}},
        "config": CONSTANTS,
    }


if __name__ == "__main__":
    json.dump(dictionary(), sys.stdout, indent=1, sort_keys=True)
    sys.stdout.write("\n")
