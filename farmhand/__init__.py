"""Farmhand's composition root: the `farmhand` command, the demo farm and the simulators.

Neither `agent` nor `hub` imports this package; it imports them, lazily, so
`farmhand agent` on a Raspberry Pi never loads hub code.
"""

__version__ = "0.1.0"
