"""The Blender driver core: the command it builds, and the real Blender running it.

The integration tests render a scene built at test time (tests/render_scene.py):
64x48 pixels, a few Cycles samples on the CPU, a second or so per run.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import struct
import sys
from pathlib import Path

import pytest

from agent.render import (
    BlenderRun,
    BlenderUnavailable,
    FrameProgress,
    FrameSaved,
    FrameStarted,
    Outcome,
    RenderEvent,
    RenderSpec,
    blender_capabilities,
    build_command,
    read_gpus,
    sha256_file,
)
from tests.render_scene import blender_or_skip, make_scene

# --------------------------------------------------------------------------- the command


def _command(**overrides: object) -> list[str]:
    args: dict[str, object] = {"output_pattern": "/out/frame_####", "frame_start": 1, "frame_end": 3}
    args.update(overrides)
    return build_command("blender", Path("/jobs/scene.blend"), **args)  # type: ignore[arg-type]


def test_command_renders_the_range_with_the_device_last() -> None:
    cmd = _command(engine="CYCLES", file_format="OPEN_EXR", device="OPTIX")
    assert cmd[:4] == ["blender", "-b", "/jobs/scene.blend", "-E"]
    pairs = dict(zip(cmd[3:15:2], cmd[4:16:2]))
    assert pairs == {"-E": "CYCLES", "-o": "/out/frame_####", "-F": "OPEN_EXR", "-s": "1", "-e": "3", "-j": "1"}
    # Blender applies options in order: -a renders, so everything else comes before it.
    assert cmd[-4:] == ["-a", "--", "--cycles-device", "OPTIX"]


def test_overrides_are_set_in_python_before_rendering() -> None:
    cmd = _command(samples=16, resolution_pct=50, threads=4)
    expr = cmd[cmd.index("--python-expr") + 1]
    assert "scene.cycles.samples = 16" in expr.splitlines()
    assert "scene.render.resolution_percentage = 50" in expr.splitlines()
    assert cmd[cmd.index("-t") + 1] == "4"
    assert cmd.index("--python-expr") < cmd.index("-a")
    # A failing override stops Blender instead of rendering with the file's settings.
    assert "--python-exit-code" in cmd[: cmd.index("-a")]


def test_eevee_samples_go_to_eevee() -> None:
    expr = (cmd := _command(engine="BLENDER_EEVEE", samples=32))[cmd.index("--python-expr") + 1]
    assert "scene.eevee.taa_render_samples = 32" in expr.splitlines()


def test_a_relative_blend_path_becomes_absolute_so_it_is_never_an_option() -> None:
    cmd = build_command("blender", Path("-a"), output_pattern="/out/f_####")
    assert cmd[2] == str(Path.cwd() / "-a")


@pytest.mark.parametrize(
    ("overrides", "names"),
    [
        ({"engine": "LUXCORE"}, "engine"),
        ({"file_format": "GIF"}, "file_format"),
        ({"device": "TPU"}, "device"),
        ({"frame_start": 5, "frame_end": 4}, "frame_end"),
        ({"frame_start": -1}, "frame_start"),
        ({"samples": 0}, "samples"),
        ({"samples": "16; import os"}, "samples"),
        ({"samples": True}, "samples"),
        ({"samples": 16.0}, "samples"),
        ({"resolution_pct": 0}, "resolution_pct"),
        ({"threads": 0}, "threads"),
        ({"output_pattern": ""}, "output_pattern"),
        ({"output_pattern": "/out/a\nb"}, "output_pattern"),
        ({"engine": "BLENDER_WORKBENCH", "samples": 8}, "samples"),
    ],
)
def test_bad_settings_are_refused_by_name(overrides: dict[str, object], names: str) -> None:
    with pytest.raises(ValueError, match=names):
        _command(**overrides)


def test_bad_settings_fail_before_any_process_starts() -> None:
    with pytest.raises(ValueError, match="device"):
        BlenderRun(RenderSpec(Path("x.blend"), "/out/f_####", device="cuda"))


async def test_a_missing_blender_is_a_clear_error(tmp_path: Path) -> None:
    run = BlenderRun(RenderSpec(tmp_path / "x.blend", str(tmp_path / "f_####")), blender=str(tmp_path / "no-blender"))
    with pytest.raises(BlenderUnavailable, match="no-blender"):
        await run.start()


async def test_sha256_of_a_file(tmp_path: Path) -> None:
    path = tmp_path / "abc"
    path.write_bytes(b"abc")
    assert await sha256_file(path) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


# --------------------------------------------------------------------------- real Blender


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> Path:
    blender = blender_or_skip()
    return make_scene(tmp_path_factory.mktemp("scene") / "cube.blend", blender=blender, samples=8)


def _png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return struct.unpack(">II", head[16:24])


def _group_alive(pgid: int) -> bool:
    """Whether any process of the group still runs (a killed child left as a zombie does not)."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # exited while we looked
        state, pgrp = fields[0], int(fields[2])
        if pgrp == pgid and state not in ("Z", "X"):
            return True
    return False


async def _group_ends(pgid: int) -> bool:
    """Whether the group's last process is gone within a few seconds.

    SIGKILL is delivered at once, but a process finishes dying (and closes
    the pipe it shares with Blender) a moment after: allow for that, not for
    a process that keeps running.
    """
    for _ in range(100):
        if not _group_alive(pgid):
            return True
        await asyncio.sleep(0.05)
    return False


def _long_render(scene: Path, out: Path) -> RenderSpec:
    # Thousands of frames at many samples: far longer than any test waits.
    return RenderSpec(scene, str(out / "f_####"), frame_start=1, frame_end=5000, samples=512)


@pytest.mark.integration
async def test_renders_each_frame_to_a_png_with_the_overrides_applied(scene: Path, tmp_path: Path) -> None:
    seen: list[RenderEvent] = []
    spec = RenderSpec(scene, str(tmp_path / "frame_####"), frame_start=1, frame_end=3, samples=4, resolution_pct=50)
    run = BlenderRun(spec, on_event=seen.append)
    await run.start()
    iterated = [event async for event in run]
    result = await run.wait()

    assert result.ok, result.tail
    assert result.returncode == 0 and result.error is None
    assert [e.frame for e in iterated if isinstance(e, FrameStarted)] == [1, 2, 3]
    saved = [e for e in iterated if isinstance(e, FrameSaved)]
    assert saved == result.frames
    assert [(s.frame, s.path.name) for s in saved] == [(1, "frame_0001.png"), (2, "frame_0002.png"),
                                                        (3, "frame_0003.png")]
    for s in saved:
        assert _png_size(s.path) == (32, 24)  # 64x48 at 50 %
        assert s.render_s > 0
    progress = [e for e in seen if isinstance(e, FrameProgress)]
    assert {p.samples_total for p in progress} == {4}  # the override, not the file's 8
    assert max(p.samples_done for p in progress) == 4
    assert {p.frame for p in progress} == {1, 2, 3}
    assert result.startup_s is not None and result.startup_s < result.duration_s
    # The callback sees everything the iterator does, and progress the iterator may have merged.
    assert [e for e in seen if not isinstance(e, FrameProgress)] == [
        e for e in iterated if not isinstance(e, FrameProgress)
    ]
    assert await sha256_file(saved[0].path) == hashlib.sha256(saved[0].path.read_bytes()).hexdigest()


@pytest.mark.integration
async def test_cancel_stops_blender_and_its_process_group(scene: Path, tmp_path: Path) -> None:
    run = BlenderRun(_long_render(scene, tmp_path))
    await run.start()
    async for event in run:
        if isinstance(event, FrameProgress) and event.frame >= 2:
            break
    pgid = run.pid
    assert pgid is not None and _group_alive(pgid)

    result = await run.cancel(grace_s=5.0)

    assert result.outcome is Outcome.CANCELLED and result.error == "cancelled"
    assert await _group_ends(pgid)
    # Blender honoured the SIGINT and exited by itself (3.4: status 1) instead of needing SIGKILL.
    assert result.returncode is not None and result.returncode >= 0
    assert "Blender quit" in result.tail
    assert 1 <= len(result.frames) < 5000
    assert all(f.path.is_file() for f in result.frames)


@pytest.mark.integration
async def test_a_timeout_is_reported_as_a_timeout(scene: Path, tmp_path: Path) -> None:
    run = BlenderRun(_long_render(scene, tmp_path), timeout_s=1.0)
    await run.start()
    result = await run.wait()
    assert result.outcome is Outcome.TIMED_OUT
    assert result.error == "timed out after 1 s"
    assert run.pid is not None and await _group_ends(run.pid)


@pytest.mark.integration
@pytest.mark.parametrize(
    ("content", "blenders_words"),
    [
        (None, "Cannot read file"),
        (b"not a blend file\n", "File format is not supported"),
    ],
)
async def test_a_broken_blend_is_a_failure_in_blenders_words(
    tmp_path: Path, content: bytes | None, blenders_words: str
) -> None:
    blender_or_skip()
    blend = tmp_path / "broken.blend"
    if content is not None:
        blend.write_bytes(content)
    run = BlenderRun(RenderSpec(blend, str(tmp_path / "f_####"), frame_start=1, frame_end=2))
    await run.start()
    result = await run.wait()
    assert result.outcome is Outcome.FAILED
    assert result.returncode != 0
    assert result.error is not None and blenders_words in result.error
    assert any(blenders_words in line for line in result.tail)
    assert result.frames == []


@pytest.mark.integration
async def test_an_unwritable_output_is_a_failure_naming_the_file(scene: Path, tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("")
    run = BlenderRun(RenderSpec(scene, str(tmp_path / "a-file" / "f_####"), frame_start=1, frame_end=1))
    await run.start()
    result = await run.wait()
    assert result.outcome is Outcome.FAILED
    assert result.error is not None and "cannot save" in result.error and "f_0001.png" in result.error


# A stand-in for what Blender 3.4 does not do on demand: an error followed by
# exit status 0, a Python error in the settings, a frame written after the
# cancel, and a process group that ignores SIGINT.
_STAND_IN = """\
import os, signal, subprocess, sys, time
mode = os.environ["STAND_IN_MODE"]
out = sys.argv[sys.argv.index("-o") + 1].replace("####", "%04d")
if mode == "error-exit-0":
    print("Error: Cannot render, no camera")
    sys.exit(0)
if mode == "python-error":
    print("Error: Python: Traceback (most recent call last):")
    print('  File "<string>", line 3, in <module>')
    print("AttributeError: 'Scene' object has no attribute 'cycles'")
    print("")
    print("Error: script failed, expr: 'import bpy', exiting.")
    sys.exit(17)
if mode == "partial-frame-on-sigint":
    def interrupted(signum, frame):
        print(f"Saved: '{out % 2}'")
        print("Blender quit", flush=True)
        sys.exit(1)
    signal.signal(signal.SIGINT, interrupted)
else:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    code = "import signal, time; signal.signal(signal.SIGINT, signal.SIG_IGN); time.sleep(600)"
    subprocess.Popen([sys.executable, "-c", code])
print("Fra:1 Mem:1.00M (Peak 1.00M) | Time:00:00.00 | Sample 4/4")
print(f"Saved: '{out % 1}'")
print("Fra:2 Mem:1.00M (Peak 1.00M) | Time:00:00.00 | Sample 1/4", flush=True)
time.sleep(600)
"""


async def _run_stand_in(
    tmp_path: Path, mode: str, monkeypatch: pytest.MonkeyPatch, cancel_after: int | None = None
) -> tuple[BlenderRun, list[RenderEvent]]:
    exe = tmp_path / "blender-stand-in"
    exe.write_text(f"#!{sys.executable}\n{_STAND_IN}")
    exe.chmod(0o755)
    monkeypatch.setenv("STAND_IN_MODE", mode)
    spec = RenderSpec(tmp_path / "x.blend", str(tmp_path / "f_####"), frame_start=1, frame_end=3)
    run = BlenderRun(spec, blender=str(exe))
    await run.start()
    events: list[RenderEvent] = []
    async for event in run:
        events.append(event)
        if cancel_after is not None and isinstance(event, FrameProgress) and event.frame == cancel_after:
            break
    return run, events


@pytest.mark.integration
async def test_an_error_then_exit_0_without_frames_is_a_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run, _ = await _run_stand_in(tmp_path, "error-exit-0", monkeypatch)
    result = await run.wait()
    assert result.returncode == 0
    assert result.outcome is Outcome.FAILED
    assert result.error == "Blender exited without saving frame(s) 1-3: Error: Cannot render, no camera"


@pytest.mark.integration
async def test_a_python_error_in_the_settings_names_the_exception(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run, _ = await _run_stand_in(tmp_path, "python-error", monkeypatch)
    result = await run.wait()
    assert result.outcome is Outcome.FAILED
    assert result.error == (
        "the render settings could not be applied: Python: AttributeError: 'Scene' object has no attribute 'cycles'"
    )


@pytest.mark.integration
async def test_a_frame_written_after_the_cancel_is_not_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run, events = await _run_stand_in(tmp_path, "partial-frame-on-sigint", monkeypatch, cancel_after=2)
    result = await run.cancel(grace_s=5.0)
    assert result.outcome is Outcome.CANCELLED
    assert "Saved: '%s'" % (tmp_path / "f_0002") in result.tail  # Blender did write it...
    assert [f.frame for f in result.frames] == [1]  # ...but a partial render is no result
    assert [e.frame for e in events if isinstance(e, FrameSaved)] == [1]


@pytest.mark.integration
async def test_cancel_kills_a_process_group_that_ignores_sigint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run, _ = await _run_stand_in(tmp_path, "ignore-sigint", monkeypatch, cancel_after=2)
    pgid = run.pid
    assert pgid is not None and _group_alive(pgid)
    result = await run.cancel(grace_s=0.5)
    assert result.outcome is Outcome.CANCELLED
    assert result.returncode == -9
    assert await _group_ends(pgid)  # the child that ignored SIGINT too


@pytest.mark.integration
async def test_capabilities_report_version_engines_and_devices() -> None:
    blender = blender_or_skip()
    caps = await blender_capabilities(blender)
    assert caps["version"].count(".") == 2 and caps["version_string"].startswith(caps["version"])
    assert "CYCLES" in caps["engines"]
    assert caps["devices"][0]["type"] == "CPU"
    gpus = [d for d in caps["devices"] if d["type"] == "GPU"]
    if shutil.which("nvidia-smi") is None:
        assert gpus == []
    else:
        assert gpus and all(g["name"] and g["vram_mb"] for g in gpus)
    # Cached, and a caller changing its copy changes nothing for the next one.
    caps["engines"].clear()
    assert "CYCLES" in (await blender_capabilities(blender))["engines"]


@pytest.mark.integration
async def test_capabilities_of_a_missing_blender_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(BlenderUnavailable, match="not found"):
        await blender_capabilities(str(tmp_path / "no-blender"))


@pytest.mark.integration
async def test_gpu_readings_are_empty_without_a_working_nvidia_smi() -> None:
    # /bin/false stands for a driver that fails ("couldn't communicate with the NVIDIA driver").
    assert await read_gpus(nvidia_smi="/bin/false") == []
    readings = await read_gpus()
    if shutil.which("nvidia-smi") is None:
        assert readings == []
    else:
        assert readings and all(r.name for r in readings)


def test_camera_name_travels_as_an_argument_not_as_code() -> None:
    cmd = build_command("blender", Path("/s.blend"), output_pattern="/o/f_####", camera="cam'); import os #",
                        denoise=False, threads=2)
    expr = cmd[cmd.index("--python-expr") + 1]
    assert "import os" not in expr and "scene.cycles.use_denoising = False" in expr
    assert cmd[-2:] == ["--farmhand-camera", "cam'); import os #"]
    assert cmd[cmd.index("-t") + 1] == "2"
    with pytest.raises(ValueError, match="denoise"):
        build_command("blender", Path("/s.blend"), output_pattern="/o/f", engine="BLENDER_EEVEE", denoise=True)


@pytest.mark.integration
async def test_a_camera_override_renders_through_it_or_fails_naming_it(scene: Path, tmp_path: Path) -> None:
    good = BlenderRun(RenderSpec(scene, str(tmp_path / "a_####"), samples=1, camera="camera", threads=1))
    await good.start()
    assert (await good.wait()).ok
    bad = BlenderRun(RenderSpec(scene, str(tmp_path / "b_####"), samples=1, camera="no such cam"))
    await bad.start()
    result = await bad.wait()
    assert not result.ok and not result.frames
    assert "no camera named 'no such cam'" in (result.error or "") + "\n".join(result.tail)
