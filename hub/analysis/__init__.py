"""Pure analysis the hub runs on uploaded files: meshes, G-code, print time and quick quotes.

Nothing here touches the store, the network or the agent; every function takes
a path or data and returns a pydantic model.
"""

from hub.analysis.gcode import GcodeAnalysis, analyze_gcode
from hub.analysis.machines import MachineModel, load_machine, machine_ids
from hub.analysis.mesh import MeshAnalysis, analyze_mesh
from hub.analysis.motion import EstimatorSettings, TimeEstimate, estimate_time
from hub.analysis.quick_quote import QuickQuote, QuoteSettings, quick_quote, quick_quote_file

__all__ = [
    "EstimatorSettings",
    "GcodeAnalysis",
    "MachineModel",
    "MeshAnalysis",
    "QuickQuote",
    "QuoteSettings",
    "TimeEstimate",
    "analyze_gcode",
    "analyze_mesh",
    "estimate_time",
    "load_machine",
    "machine_ids",
    "quick_quote",
    "quick_quote_file",
]
