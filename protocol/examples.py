"""One example of every message body: used by the protocol README and the tests."""

from __future__ import annotations

from . import messages as m

SHA = "9f2c" + "0" * 60

EXAMPLES: list[m.Model] = [
    m.HubState(online=True, version="0.1.0", http_url="http://hub.local:8080"),
    m.NodeState(online=True, agent_version="0.1.0", hostname="pi-01",
                devices=[m.DeviceInfo(id="mk3s-1", kind="serial_gcode", model="prusa-mk3s",
                                      firmware="Marlin 2.1.2", capabilities=["AUTOREPORT_TEMP"])],
                jobs=[m.DeviceJob(device="mk3s-1", state=m.DeviceState.PRINTING, job_id="42", progress=0.5)]),
    m.DeviceStatus(device="mk3s-1", state=m.DeviceState.PRINTING, job_id="42", progress=0.5,
                   temperatures={"T0": m.Heater(actual=214.8, target=215.0)}),
    m.Telemetry(device="mk3s-1", temperatures={"B": m.Heater(actual=60.1, target=60)}, progress=0.25,
                lines_sent=100),
    m.HostMetrics(cpu_pct=12.5, mem_pct=40.0, disk_pct=71.0, load1=0.3, cpu_temp_c=48.0, uptime_s=3600,
                  gpus=[m.GpuReading(index=0, util_pct=97, mem_used_mb=6100, mem_total_mb=24576, temp_c=71,
                                     power_w=310.5)]),
    m.JobStarted(device="mk3s-1", job_id="42", lines_total=1000),
    m.JobProgress(device="mk3s-1", job_id="42", progress=0.5, lines_done=500),
    m.JobPaused(device="mk3s-1", job_id="42", reason="filament runout"),
    m.JobResumed(device="mk3s-1", job_id="42"),
    m.JobCompleted(device="mk3s-1", job_id="42", duration_s=12.5, lines=1000, resends=3, extruded_mm=1523.4),
    m.JobFailed(device="mk3s-1", job_id="42", reason="Error:Printer halted. kill() called!"),
    m.DeviceError(device="mk3s-1", message="Error:MINTEMP triggered, system stopped! Heater_ID: 0"),
    m.RenderProgress(device="gpu-0", task_id="r7-t3", frame=12, samples_done=32, samples_total=128,
                     remaining_s=41.5, mem_mb=812.0),
    m.FrameRendered(device="gpu-0", task_id="r7-t3", frame=12, render_s=55.2, output_sha256=SHA,
                    output_name="frame_0012.png"),
    m.RenderTaskCompleted(device="gpu-0", task_id="r7-t3", frames=[12, 13, 14], duration_s=170.0),
    m.RenderTaskFailed(device="gpu-0", task_id="r7-t3", reason="Blender exited with code 1",
                       output_tail=["Error: Not freed memory blocks: 1"]),
    m.ConsoleOutput(device="mk3s-1", command_id="console-9", lines=["ok T:214.9 /215.0 B:60.0 /60.0 @:64 B@:0"]),
    m.CommandAck(command_id="start-42-1", status="rejected", reason="device mk3s-1 is printing"),
    m.StartJob(command_id="start-42-1", device="mk3s-1", job_id="42", file_sha256=SHA, file_size=10,
               file_url=f"http://hub.local:8080/api/v1/files/{SHA}"),
    m.StartRender(command_id="render-r7-t3-1", device="gpu-0", task_id="r7-t3", job_id="r7", blend_sha256=SHA,
                  blend_size=1048576, blend_url=f"http://hub.local:8080/api/v1/files/{SHA}",
                  upload_url="http://hub.local:8080/api/v1/render/outputs", frame_start=12, frame_end=14,
                  engine="CYCLES", cycles_device="OPTIX", samples=128, resolution_pct=100, camera="Turntable"),
    m.SendGcode(command_id="console-9", device="mk3s-1", lines=["M105"]),
    m.PauseJob(command_id="pause-42-1", device="mk3s-1"),
    m.ResumeJob(command_id="resume-42-1", device="mk3s-1"),
    m.CancelJob(command_id="cancel-42", device="mk3s-1", job_id="42"),
    m.EmergencyStop(command_id="estop-7", device="mk3s-1"),
    m.Rebirth(reason="seq gap: 1041 after 1038"),
    m.EventAck(seq=1712),
    m.Request(correlation_id="c0ffee", method="get_job", params={"id": "42"}),
    m.Response(correlation_id="c0ffee", ok=True, result={"id": "42", "state": "queued"}),
]
