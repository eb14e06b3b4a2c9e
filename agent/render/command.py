"""The Blender command line for one render, built from validated settings only.

Blender applies its options in the order given, and a job's settings reach
Blender's Python only as integers checked here, so a job can never smuggle
code or options into the command.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

ENGINES = ("CYCLES", "BLENDER_EEVEE", "BLENDER_EEVEE_NEXT", "BLENDER_WORKBENCH")
FILE_FORMATS = ("PNG", "OPEN_EXR", "JPEG")
DEVICES = ("CPU", "CUDA", "OPTIX", "HIP")
# Blender's own limits for frame numbers and its --threads option.
MAX_FRAME = 1_048_574
MAX_THREADS = 1024

# Per-setting Python lines. Only validated integers are ever formatted into
# them (with %d), never text from a job.
_SAMPLES_EXPR = {
    "CYCLES": "scene.cycles.samples = %d",
    "BLENDER_EEVEE": "scene.eevee.taa_render_samples = %d",
    "BLENDER_EEVEE_NEXT": "scene.eevee.taa_render_samples = %d",
}
_RESOLUTION_EXPR = "scene.render.resolution_percentage = %d"
CAMERA_FLAG = "--farmhand-camera"
_CAMERA_EXPR = "\n".join([
    "import sys",
    "_args = sys.argv[sys.argv.index('--') + 1:]",
    f"_name = _args[_args.index('{CAMERA_FLAG}') + 1]",
    "_cam = bpy.data.objects.get(_name)",
    "if _cam is None or _cam.type != 'CAMERA':",
    "    raise SystemExit('Error: no camera named %r in this file' % _name)",
    "scene.camera = _cam",
])
# An override that fails must stop the render, not render with the .blend's settings.
PYTHON_FAILED_EXIT = 17


def _integer(name: str, value: object, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if not low <= value <= high:
        raise ValueError(f"{name} must be between {low} and {high}, got {value}")
    return value


def _choice(name: str, value: object, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(allowed)}, got {value!r}")
    return str(value)


def build_command(
    blender: str,
    blend: Path,
    *,
    output_pattern: str,
    engine: str = "CYCLES",
    file_format: str = "PNG",
    frame_start: int = 1,
    frame_end: int = 1,
    device: str = "CPU",
    samples: int | None = None,
    resolution_pct: int | None = None,
    threads: int | None = None,
    camera: str | None = None,
    denoise: bool | None = None,
) -> list[str]:
    """Blender's arguments for rendering ``frame_start..frame_end`` of ``blend``.

    Blender applies its options in order, so the file comes first and ``-a``
    (render) last before ``--``, after which only Cycles reads its options.
    Raises ValueError naming the first bad argument.
    """
    engine = _choice("engine", engine, ENGINES)
    file_format = _choice("file_format", file_format, FILE_FORMATS)
    device = _choice("device", device, DEVICES)
    _integer("frame_start", frame_start, 0, MAX_FRAME)
    _integer("frame_end", frame_end, frame_start, MAX_FRAME)
    if not isinstance(output_pattern, str) or not output_pattern or any(c in output_pattern for c in "\0\n\r"):
        raise ValueError(f"output_pattern must be a one-line, non-empty path, got {output_pattern!r}")

    # Absolute, so that a file named "-a" can never be read as an option.
    command = [blender, "-b", str(Path(blend).absolute()), "-E", engine, "-o", output_pattern, "-F", file_format]
    # -j 1: the job names every frame from start to end, whatever step the .blend was saved with.
    command += ["-s", str(frame_start), "-e", str(frame_end), "-j", "1"]
    if threads is not None:
        command += ["-t", str(_integer("threads", threads, 1, MAX_THREADS))]
    # The farm, not the .blend, decides what is rendered: a frame left over from
    # an earlier attempt must be rendered again, not skipped as "existing".
    overrides = ["scene.render.use_overwrite = True", "scene.render.use_placeholder = False"]
    if samples is not None:
        if engine not in _SAMPLES_EXPR:
            raise ValueError(f"samples cannot be set for {engine}")
        overrides.append(_SAMPLES_EXPR[engine] % _integer("samples", samples, 1, 1 << 24))
    if resolution_pct is not None:
        overrides.append(_RESOLUTION_EXPR % _integer("resolution_pct", resolution_pct, 1, 1000))
    if denoise is not None:
        if engine != "CYCLES":
            raise ValueError(f"denoise applies to CYCLES only, not {engine}")
        overrides.append(f"scene.cycles.use_denoising = {bool(denoise)}")
    tail = ["--cycles-device", device]
    if camera is not None:
        if not isinstance(camera, str) or not camera or len(camera) > 63 or not camera.isprintable():
            raise ValueError(f"camera must be a printable object name of at most 63 characters, got {camera!r}")
        # The name travels as an argument, never inside the Python source.
        overrides.append(_CAMERA_EXPR)
        tail += [CAMERA_FLAG, camera]
    expr = "\n".join(["import bpy", "scene = bpy.context.scene", *overrides])
    command += ["--python-exit-code", str(PYTHON_FAILED_EXIT), "--python-expr", expr]
    return [*command, "-a", "--", *tail]


@dataclass(frozen=True, slots=True)
class RenderSpec:
    """One render: the arguments of ``build_command`` besides the executable."""

    blend: Path
    output_pattern: str
    engine: str = "CYCLES"
    file_format: str = "PNG"
    frame_start: int = 1
    frame_end: int = 1
    device: str = "CPU"
    samples: int | None = None
    resolution_pct: int | None = None
    threads: int | None = None
    camera: str | None = None
    denoise: bool | None = None

    def command(self, blender: str = "blender") -> list[str]:
        return build_command(
            blender, self.blend, output_pattern=self.output_pattern, engine=self.engine,
            file_format=self.file_format, frame_start=self.frame_start, frame_end=self.frame_end,
            device=self.device, samples=self.samples, resolution_pct=self.resolution_pct, threads=self.threads,
            camera=self.camera, denoise=self.denoise,
        )

    @property
    def frames(self) -> range:
        return range(self.frame_start, self.frame_end + 1)
