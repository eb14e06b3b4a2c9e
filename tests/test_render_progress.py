"""Reading Blender's and nvidia-smi's output: recorded lines in, numbers out.

Lines marked "3.4" were captured from Debian's Blender 3.4.1 on this project's
test machine; the others are written as Blender prints them in the versions
named (its ``stats_background`` status line, Cycles' and Eevee's status text).
"""

from __future__ import annotations

import pytest

from agent.render.gpu import NvidiaSmiReading as GpuReading, parse_query
from agent.render.progress import LineKind, parse_line, parse_timecode

# One whole frame of Blender 3.4.1 rendering the test scene with Cycles, 8 samples.
RECORDED_34_FRAME = """\
Fra:1 Mem:8.47M (Peak 10.20M) | Time:00:00.00 | Mem:0.00M, Peak:0.00M | Scene, ViewLayer | Synchronizing object | Cube
Fra:1 Mem:8.47M (Peak 10.20M) | Time:00:00.00 | Mem:0.00M, Peak:0.00M | Scene, ViewLayer | Initializing
Fra:1 Mem:8.38M (Peak 10.20M) | Time:00:00.00 | Mem:0.00M, Peak:0.00M | Scene, ViewLayer | Loading render kernels (may take a few minutes the first time)
Fra:1 Mem:8.88M (Peak 10.20M) | Time:00:00.02 | Mem:0.00M, Peak:0.00M | Scene, ViewLayer | Updating Scene BVH | Building BVH 0%
Fra:1 Mem:9.38M (Peak 10.20M) | Time:00:00.02 | Mem:0.76M, Peak:0.76M | Scene, ViewLayer | Updating Device | Writing constant memory
Fra:1 Mem:9.38M (Peak 10.20M) | Time:00:00.02 | Mem:0.76M, Peak:0.76M | Scene, ViewLayer | Sample 0/8
Fra:1 Mem:9.50M (Peak 10.20M) | Time:00:00.02 | Remaining:00:00.00 | Mem:0.86M, Peak:0.86M | Scene, ViewLayer | Sample 1/8
Fra:1 Mem:9.54M (Peak 10.20M) | Time:00:00.02 | Mem:0.86M, Peak:0.86M | Scene, ViewLayer | Sample 8/8
Fra:1 Mem:9.54M (Peak 10.20M) | Time:00:00.02 | Mem:0.86M, Peak:0.86M | Scene, ViewLayer | Finished
Saved: '/tmp/bl/out/f_0001.png'
 Time: 00:00.14 (Saving: 00:00.11)

"""


def test_a_recorded_34_frame_reads_as_progress_then_one_save() -> None:
    updates = [u for u in map(parse_line, RECORDED_34_FRAME.splitlines()) if u is not None]
    kinds = [u.kind for u in updates]
    assert kinds == [LineKind.STATUS] * 9 + [LineKind.SAVED, LineKind.FRAME_TIME]
    assert {u.frame for u in updates if u.kind is LineKind.STATUS} == {1}
    samples = [(u.samples_done, u.samples_total) for u in updates if u.samples_total is not None]
    assert samples == [(0, 8), (1, 8), (8, 8)]
    assert updates[-2].path == "/tmp/bl/out/f_0001.png"


def test_34_cycles_sample_line_gives_every_number() -> None:
    u = parse_line(
        "Fra:12 Mem:9.50M (Peak 10.20M) | Time:00:01.23 | Remaining:00:04.56 | Mem:0.86M, Peak:0.91M"
        " | Scene, ViewLayer | Sample 12/64"
    )
    assert u is not None and u.kind is LineKind.STATUS
    assert (u.frame, u.samples_done, u.samples_total) == (12, 12, 64)
    assert u.elapsed_s == pytest.approx(1.23)
    assert u.remaining_s == pytest.approx(4.56)
    assert (u.mem_mb, u.peak_mb) == (9.50, 10.20)
    assert (u.device_mem_mb, u.device_peak_mb) == (0.86, 0.91)
    assert u.message == "Scene, ViewLayer | Sample 12/64"


def test_34_phase_line_has_no_samples_but_keeps_the_phase() -> None:
    u = parse_line(
        "Fra:1 Mem:8.47M (Peak 10.20M) | Time:00:00.00 | Mem:0.00M, Peak:0.00M | Scene, ViewLayer"
        " | Synchronizing object | Cube"
    )
    assert u is not None
    assert u.samples_done is None and u.remaining_s is None
    assert u.message == "Scene, ViewLayer | Synchronizing object | Cube"


@pytest.mark.parametrize(
    ("line", "frame", "done", "total", "elapsed"),
    [
        # 3.4 Eevee (captured).
        ("Fra:1 Mem:10.22M (Peak 11.33M) | Time:00:03.83 | Rendering 26 / 64 samples", 1, 26, 64, 3.83),
        # 3.x Eevee / older Cycles.
        ("Fra:4 Mem:12.34M (Peak 15.00M) | Time:00:01.23 | Rendering 12 / 64 samples", 4, 12, 64, 1.23),
        # 2.7x Cycles, tiled: host memory with its "(0.00M, Peak ...)" form.
        ("Fra:125 Mem:12.37M (0.00M, Peak 14.83M) | Time:00:00.13 | Remaining:00:00.14 | Mem:0.71M, Peak:1.20M"
         " | Background Lines, RenderLayer | Path Tracing Tile 1/16, Sample 10/10", 125, 10, 10, 0.13),
        # 4.x, a timestamped line without "Fra:".
        ("00:01.234  Mem:12.3M | Sample 12/64", None, 12, 64, 1.234),
        # 4.x with both.
        ("00:02.500  Fra:3 Mem:100.5M (Peak 120.0M) | Sample 40/128", 3, 40, 128, 2.5),
    ],
)
def test_sample_counts_across_versions_and_engines(
    line: str, frame: int | None, done: int, total: int, elapsed: float
) -> None:
    u = parse_line(line)
    assert u is not None and u.kind is LineKind.STATUS
    assert (u.frame, u.samples_done, u.samples_total) == (frame, done, total)
    assert u.elapsed_s == pytest.approx(elapsed)


def test_2_7x_host_memory_peak_is_read() -> None:
    u = parse_line(
        "Fra:8 Mem:585.62M (0.00M, Peak 590.77M) | Time:00:00.41 | Mem:0.00M, Peak:0.00M | Scene, RenderLayer"
        " | Synchronizing object | Camera"
    )
    assert u is not None and (u.mem_mb, u.peak_mb) == (585.62, 590.77)


def test_4x_bare_memory_has_no_peak() -> None:
    u = parse_line("00:01.234  Mem:12.3M | Sample 12/64")
    assert u is not None and (u.mem_mb, u.peak_mb) == (12.3, None)


def test_long_renders_use_hours() -> None:
    u = parse_line("Fra:7 Mem:1024.00M (Peak 2048.50M) | Time:01:02:03.45 | Remaining:10:00.00 | Sample 3/4096")
    assert u is not None
    assert u.elapsed_s == pytest.approx(3723.45)
    assert u.remaining_s == pytest.approx(600.0)


def test_saved_line_gives_the_path_even_with_quotes_and_spaces() -> None:
    u = parse_line("Saved: '/renders/job 7/it's_0042.png'")
    assert u is not None and u.kind is LineKind.SAVED
    assert u.path == "/renders/job 7/it's_0042.png"


def test_frame_time_line_gives_total_and_saving() -> None:
    u = parse_line(" Time: 00:00.14 (Saving: 00:00.11)")
    assert u is not None and u.kind is LineKind.FRAME_TIME
    assert (u.elapsed_s, u.saving_s) == pytest.approx((0.14, 0.11))


@pytest.mark.parametrize(
    "line",
    [
        "Error: Cannot read file '/tmp/bl/nope.blend': No such file or directory",  # 3.4
        "Error: File format is not supported in file '/tmp/bl/bad.blend'",  # 3.4
        "Error: Cannot render, no camera",  # 3.4
        "Error: Python: Traceback (most recent call last):",  # 3.4, --python-expr raising
        "Traceback (most recent call last):",
        "Error: Render error (Invalid argument) cannot save: '/tmp/bl/afile/sub/f_0001.png'",  # 3.4
    ],
)
def test_error_lines_keep_blenders_words(line: str) -> None:
    u = parse_line(line)
    assert u is not None and u.kind is LineKind.ERROR
    assert u.message == line.strip()


def test_read_blend_and_quit_are_recognised() -> None:
    loaded = parse_line("Read blend: /tmp/bl/t.blend")
    assert loaded is not None and loaded.kind is LineKind.LOADED and loaded.path == "/tmp/bl/t.blend"
    quit_ = parse_line("Blender quit")
    assert quit_ is not None and quit_.kind is LineKind.QUIT


@pytest.mark.parametrize(
    "line",
    [
        "",
        "Blender 3.4.1",
        "Managed to successfully fallback to surfaceless EGL rendering!",
        "imb_savepng: Cannot open file for writing: '/tmp/x.png'",
        "an add-on printing a | table | row",
        "Sent an internal break event. Press ^C again to kill Blender",
    ],
)
def test_lines_that_say_nothing_about_the_render_are_ignored(line: str) -> None:
    assert parse_line(line) is None


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("00:00.14", 0.14), ("01:30.50", 90.5), ("1:02:03.45", 3723.45), ("00:01.234", 1.234), ("12:00", 720.0)],
)
def test_timecodes(text: str, seconds: float) -> None:
    assert parse_timecode(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "abc", "1.5", "00:1x.00", "-00:01.00"])
def test_not_timecodes(text: str) -> None:
    assert parse_timecode(text) is None


# --------------------------------------------------------------------------- nvidia-smi

# As `nvidia-smi --query-gpu=index,name,memory.total,memory.used,utilization.gpu,temperature.gpu,power.draw
# --format=csv,noheader,nounits` prints them: values separated by ", ", "[N/A]" for unsupported readings.
NVIDIA_SMI_TWO_GPUS = """\
0, NVIDIA H100 80GB HBM3, 81559, 1, 0, 31, 69.97
1, NVIDIA GeForce RTX 3090, 24576, 10240, 97, 74, 341.20
"""


def test_nvidia_smi_readings() -> None:
    readings, bad = parse_query(NVIDIA_SMI_TWO_GPUS)
    assert bad == 0
    assert readings == [
        GpuReading(0, "NVIDIA H100 80GB HBM3", 81559.0, 1.0, 0.0, 31.0, 69.97),
        GpuReading(1, "NVIDIA GeForce RTX 3090", 24576.0, 10240.0, 97.0, 74.0, 341.20),
    ]


def test_nvidia_smi_unsupported_readings_are_none() -> None:
    readings, _ = parse_query(
        "0, Tesla K80, 11441, 0, 0, 30, [N/A]\n1, Jetson, [N/A], [N/A], [Not Supported], 40, [N/A]\n"
    )
    assert readings[0].power_w is None and readings[0].memory_total_mb == 11441.0
    assert readings[1].memory_total_mb is None and readings[1].utilization_pct is None
    assert readings[1].temperature_c == 40.0


def test_nvidia_smi_name_with_a_comma_is_kept_whole() -> None:
    readings, _ = parse_query("0, Quadro RTX 8000, Rev. 2, 49152, 100, 5, 45, 60.00\n")
    assert readings[0].name == "Quadro RTX 8000, Rev. 2"
    assert readings[0].memory_total_mb == 49152.0


def test_nvidia_smi_bad_line_is_counted_and_the_others_kept() -> None:
    text = "No devices were found\n" + NVIDIA_SMI_TWO_GPUS + "2, Broken GPU, lots, 0, 0, 0, 0\n"
    readings, bad = parse_query(text)
    assert [r.index for r in readings] == [0, 1]
    assert bad == 2
