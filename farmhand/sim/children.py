"""Child processes a simulator starts (a Moonraker, a Mosquitto) end with the process that started them."""

from __future__ import annotations

import ctypes
import ctypes.util
import signal
from collections.abc import Callable


def dies_with_parent() -> Callable[[], None]:
    """What the child runs before exec: SIGTERM to it when the process that started it dies (Linux).

    Without it a killed test run, demo or benchmark leaves its servers running. The C function is
    looked up here, in the parent: the child only calls it."""
    prctl = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True).prctl
    pr_set_pdeathsig = 1
    return lambda: prctl(pr_set_pdeathsig, signal.SIGTERM)
