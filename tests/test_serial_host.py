"""The host protocol engine against Marlin's own line rules, in memory: no port, no event loop.

``MemoryMarlin`` applies the virtual printer's ``LineChecker`` (Marlin's checks,
in Marlin's order) to what the engine sends. It answers either strictly in
order, or the way real Marlin does: a bad line is rejected as soon as it is
parsed, ahead of the ``ok`` of good commands still waiting in the queue.
"""

from __future__ import annotations

import random
from collections import deque

import pytest

from agent.serial.gcode import prepare_lines
from agent.serial.host import HostEngine, Outcome
from farmhand.sim.marlin import ERR_LINE_NUMBER, LineChecker, parse_params

RX = 128


def corrupt(raw: bytes) -> bytes:
    pos = len(raw) // 2
    return raw[:pos] + (b"#" if raw[pos:pos + 1] != b"#" else b"$") + raw[pos + 1:]


class MemoryMarlin:
    """Marlin's line rules in memory; ``style`` words rejections like Marlin, Smoothieware or Repetier.

    ``advanced_ok`` answers ``ok N<line> P<planner> B<queue>``; ``lose_oks`` drops the
    answers with those (1-based) counts on the way back, as a bad cable would.
    """

    def __init__(self, *, in_order: bool = True, corrupt_lines: set[int] | None = None, last_line: int = 0,
                 bufsize: int = 4, style: str = "marlin", advanced_ok: bool = False, planner_free: int = 15,
                 lose_oks: set[int] | None = None) -> None:
        self.checker = LineChecker()
        self.checker.last_line = last_line
        self.in_order = in_order
        self.corrupt_lines = corrupt_lines or set()
        self.bufsize = bufsize
        self.style = style
        self.advanced_ok = advanced_ok
        self.planner_free = planner_free
        self.lose_oks = lose_oks or set()
        self.rx: deque[bytes] = deque()
        self.queue: deque[tuple[int | None, str, int]] = deque()
        self.executed: list[tuple[int | None, str]] = []
        self.received = 0
        self.oks = 0
        self.outstanding = 0
        self.max_outstanding = 0
        self._skipping = False

    @property
    def pending(self) -> bool:
        return bool(self.rx or self.queue)

    def receive(self, data: bytes) -> None:
        self.outstanding += len(data)
        self.max_outstanding = max(self.max_outstanding, self.outstanding)
        for raw in data.splitlines():
            self.received += 1
            self.rx.append(corrupt(raw) if self.received in self.corrupt_lines else raw)

    def _reject(self, error: str) -> list[str]:
        last = self.checker.last_line
        if self.style == "smoothie":
            return [f"rs N{last + 1}"]
        if self.style == "repetier" and self._skipping and error == ERR_LINE_NUMBER:
            return [f"skip {last + 2}", "ok"]  # a line behind the bad one, dropped with a word and an ok
        self._skipping = self.style == "repetier"
        return self.checker.rejection(error)

    def _ok(self, line: int | None) -> str:
        if not self.advanced_ok:
            return "ok"
        number = f" N{line}" if line is not None else ""
        return f"ok{number} P{self.planner_free} B{self.bufsize - len(self.queue)}"

    def _answer(self, lines: list[str]) -> list[str]:
        out = []
        for line in lines:
            if line.startswith("ok"):
                self.oks += 1
                if self.oks in self.lose_oks:
                    continue
            out.append(line)
        return out

    def step(self) -> list[str]:
        """Answer one line (in order) or parse what fits and run one command (like Marlin)."""
        out: list[str] = []
        while self.rx and (len(self.queue) < self.bufsize if not self.in_order else not out and not self.queue):
            raw = self.rx.popleft()
            verdict = self.checker.check(raw.decode("latin-1"))
            if verdict.error:
                self.outstanding -= len(raw) + 1
                out += self._reject(verdict.error)
                if self.in_order:
                    return self._answer(out)
            else:
                self._skipping = False
                self.queue.append((verdict.line, verdict.command, len(raw) + 1))
        if self.queue:
            line, command, size = self.queue[0]
            self.executed.append((line, command))
            code, params = parse_params(command)
            if code == "M110":
                self.checker.last_line = int(params.get("N", 0))
            self.outstanding -= size
            out.append(self._ok(line) if code != "M105" else "ok T:21.0 /0.0 B:21.0 /0.0 @:0 B@:0")
            self.queue.popleft()
        return self._answer(out)


def run(engine: HostEngine, fw: MemoryMarlin, steps: int = 200_000, *, bounded: bool = True) -> list[Outcome]:
    """Shuttle bytes both ways until nothing is left to send or answer."""
    outcomes: list[Outcome] = []
    for _ in range(steps):
        data = engine.take()
        if data:
            fw.receive(data)
        assert not bounded or engine.window_bytes <= engine.rx_buffer or engine.in_flight == 1
        answers = fw.step()
        for line in answers:
            outcomes.append(engine.receive(line))
        if not data and not answers and not fw.pending:
            return outcomes
    raise AssertionError("the stream never settled")


def rounds(engine: HostEngine, fw: MemoryMarlin, n: int) -> None:
    """``n`` exchanges of bytes both ways, wherever the stream stands after them."""
    for _ in range(n):
        data = engine.take()
        if data:
            fw.receive(data)
        for line in fw.step():
            engine.receive(line)


def job(n: int) -> list[str]:
    return [f"G1 X{i % 200}.{i % 10} Y{(i * 7) % 200} E0.{i % 97:02d} F{1200 + i % 5 * 600}" for i in range(n)]


def started(lines: list[str], **kwargs: object) -> HostEngine:
    engine = HostEngine(RX, **kwargs)  # type: ignore[arg-type]
    engine.start_job(prepare_lines(lines), tail=["M400"])
    return engine


def delivered(fw: MemoryMarlin) -> list[str]:
    """The commands the firmware ran after the job's sync, asserting each numbered exactly once, in order."""
    numbers = [n for n, _ in fw.executed]
    start = len(numbers) - 1 - numbers[::-1].index(0)
    tail = fw.executed[start:]
    assert [n for n, _ in tail] == list(range(len(tail))), "line numbers skipped or repeated"
    return [c for _, c in tail]


@pytest.mark.parametrize("in_order", [True, False], ids=["in-order", "marlin-order"])
def test_streams_a_job_once_in_order_and_finishes_once(in_order: bool) -> None:
    lines = job(500)
    engine, fw = started(lines), MemoryMarlin(in_order=in_order)
    outcomes = run(engine, fw)
    assert delivered(fw) == ["M110 N0", *lines, "M400"]
    assert [o.job_done for o in outcomes].count(True) == 1 and outcomes[-1].job_done
    assert engine.lines_done == 500 and engine.resends == 0 and not engine.busy


def test_never_more_bytes_in_flight_than_the_firmware_buffer_holds() -> None:
    engine, fw = started(job(300)), MemoryMarlin()
    run(engine, fw)
    assert 100 < fw.max_outstanding <= RX


def test_a_bad_line_is_resent_once_and_the_echoes_behind_it_are_ignored() -> None:
    lines = job(200)
    engine, fw = started(lines), MemoryMarlin(corrupt_lines={40})
    run(engine, fw)
    assert delivered(fw) == ["M110 N0", *lines, "M400"]
    assert engine.resends == 1
    # Every numbered line in flight behind the bad one was rejected with the same request.
    assert engine.ignored_resends >= 1


@pytest.mark.parametrize("in_order", [True, False], ids=["in-order", "marlin-order"])
@pytest.mark.parametrize("rate", [0.3, 0.1, 0.03])
def test_many_bad_lines_still_deliver_every_line_once(in_order: bool, rate: float) -> None:
    lines = job(400)
    pick = random.Random(f"{rate}-{in_order}")
    bad = {n for n in range(1, 5000) if pick.random() < rate}
    engine, fw = started(lines), MemoryMarlin(in_order=in_order, corrupt_lines=bad)
    run(engine, fw)
    assert delivered(fw) == ["M110 N0", *lines, "M400"]
    assert engine.resends > 0


def test_consecutive_bad_copies_of_the_same_line_are_each_acted_on() -> None:
    lines = job(50)
    engine, fw = started(lines), MemoryMarlin(corrupt_lines={10, 15, 16, 17, 18})
    run(engine, fw)
    assert delivered(fw) == ["M110 N0", *lines, "M400"]


def test_a_bad_sync_is_sent_again_whatever_the_firmware_counted_before() -> None:
    lines = job(30)
    # The printer's count is from an earlier job; the sync itself arrives corrupted.
    engine, fw = started(lines), MemoryMarlin(last_line=500, corrupt_lines={1})
    run(engine, fw)
    assert delivered(fw) == ["M110 N0", *lines, "M400"]
    assert engine.resends == 1


def test_a_resend_for_a_line_no_longer_kept_fails_clearly() -> None:
    engine, fw = started(job(100), history=16), MemoryMarlin()
    run(engine, fw)
    out = engine.receive("Resend: 3")
    assert out.failure is not None
    assert "line 3" in out.failure and "no longer in the host's history" in out.failure


def test_a_resend_before_anything_was_numbered_fails_clearly() -> None:
    out = HostEngine(RX).receive("Resend: 5")
    assert out.failure is not None and "no line was numbered" in out.failure


def test_hold_stops_job_lines_but_commands_still_go() -> None:
    engine = started(job(100))
    assert engine.take() == b"N0 M110 N0*125\n"
    assert engine.take() == b""  # nothing follows the sync until it is answered
    engine.receive("ok")
    assert engine.take().startswith(b"N1 G1 ")
    engine.hold(True)
    engine.command("G91")
    sent = b""
    while engine.in_flight:
        engine.receive("ok")
        sent += engine.take()
    assert sent.count(b"\n") == 1 and b" G91*" in sent
    engine.hold(False)
    assert b" G1 " in engine.take()


def test_a_poll_is_queued_once_and_goes_before_the_next_job_line() -> None:
    engine = started(job(10))
    engine.take()
    engine.receive("ok")  # the sync
    assert engine.poll("M105") is True
    assert engine.poll("M105") is False
    assert engine.poll_pending
    first_line = engine.take().split(b"\n")[0]
    assert first_line.split(b" ")[1].startswith(b"M105")
    while engine.in_flight:
        engine.receive("ok T:20.0 /0.0 B:20.0 /0.0 @:0 B@:0")
        engine.take()
    assert not engine.poll_pending


def test_drop_job_sends_no_more_job_lines_but_still_serves_resends() -> None:
    lines = job(200)
    engine, fw = started(lines), MemoryMarlin(corrupt_lines={20})
    rounds(engine, fw, 18)
    engine.drop_job()
    engine.command("M104 S0")
    run(engine, fw)
    ran = delivered(fw)
    assert ran[-1] == "M104 S0"
    assert ran[1:-1] == lines[:len(ran) - 2]  # a prefix of the job, nothing skipped or repeated
    assert len(ran) - 2 < len(lines)


def test_without_checksums_lines_go_plain() -> None:
    engine = HostEngine(1024, checksums=False)
    engine.start_job(prepare_lines(["G28", "G1 X1 ; go"]), tail=["M400"])
    assert engine.take() == b"G28\nG1 X1\nM400\n"
    for _ in range(3):
        out = engine.receive("ok")
    assert out.job_done


def test_a_line_bigger_than_the_buffer_goes_alone() -> None:
    engine = HostEngine(16, checksums=False)
    engine.start_job(prepare_lines(["M117 a message longer than sixteen bytes", "G28"]))
    assert engine.take() == b"M117 a message longer than sixteen bytes\n"
    assert engine.take() == b""
    engine.receive("ok")
    assert engine.take() == b"G28\n"


def test_an_ok_nobody_waits_for_is_counted() -> None:
    engine = HostEngine(RX)
    out = engine.receive("ok")
    assert not out.job_done and out.failure is None and engine.unexpected_oks == 1


def test_a_line_the_firmware_never_takes_fails_instead_of_looping() -> None:
    lines = job(20)
    # Line 5 arrives corrupted however often it is sent (say, cut short by the firmware).
    engine, fw = started(lines, max_tries=4), MemoryMarlin(corrupt_lines=set(range(6, 400)))
    failures = [o.failure for o in run(engine, fw) if o.failure]
    assert failures and "rejected line 5 4 times in a row" in failures[0]


# ----------------------------------------------------------------------------- dialects' ways of rejecting


@pytest.mark.parametrize("in_order", [True, False], ids=["in-order", "marlin-order"])
def test_smoothieware_rejections_come_without_an_ok_and_every_line_still_runs_once(in_order: bool) -> None:
    lines = job(300)
    pick = random.Random("smoothie")
    bad = {n for n in range(1, 3000) if pick.random() < 0.05}
    engine = started(lines, resend_ok=False)
    fw = MemoryMarlin(in_order=in_order, corrupt_lines=bad, style="smoothie")
    run(engine, fw)
    assert delivered(fw) == ["M110 N0", *lines, "M400"]
    assert engine.resends > 0 and not engine.busy


def test_repetier_skips_the_lines_behind_a_bad_one_and_every_line_still_runs_once() -> None:
    lines = job(300)
    engine, fw = started(lines), MemoryMarlin(in_order=False, corrupt_lines={30, 90, 91, 200}, style="repetier")
    outcomes = run(engine, fw)
    assert delivered(fw) == ["M110 N0", *lines, "M400"]
    assert any(o.reply.kind.value == "skip" for o in outcomes) and not engine.busy


# ----------------------------------------------------------------------------- answers that name their question


def test_advanced_ok_names_its_line_so_lost_oks_cost_nothing() -> None:
    lines = job(400)
    engine = started(lines)
    fw = MemoryMarlin(in_order=False, advanced_ok=True, lose_oks={50, 51, 120, 300})
    outcomes = run(engine, fw, bounded=False)
    assert delivered(fw) == ["M110 N0", *lines, "M400"]
    assert engine.lost_oks == 4 and [o.job_done for o in outcomes].count(True) == 1 and not engine.busy


def test_the_answer_to_a_temperature_poll_accounts_for_oks_lost_before_it() -> None:
    lines = job(60)
    engine, fw = started(lines), MemoryMarlin(lose_oks={20})
    rounds(engine, fw, 30)  # part of the job, one ok lost on the way
    engine.poll("M105")
    outcomes = run(engine, fw)
    assert engine.lost_oks == 1 and outcomes[-1].job_done and not engine.busy
    assert [c for c in delivered(fw) if c != "M105"] == ["M110 N0", *lines, "M400"]


def test_a_probe_goes_now_numbered_and_its_answer_settles_the_window() -> None:
    engine = started(job(3))
    fw = MemoryMarlin(lose_oks={2, 3, 4, 5})  # the sync's ok arrives, every later ok is lost
    run(engine, fw)
    assert engine.job_active and engine.awaiting  # the host still waits for answers that will never come
    probe = engine.probe("M105")
    assert probe.startswith(b"N5 M105*")
    fw.receive(probe)
    outcomes = [engine.receive(line) for line in fw.step()]
    assert outcomes[-1].job_done and engine.lost_oks == 4 and not engine.busy


def test_an_urgent_line_goes_unnumbered_past_a_full_window_and_is_answered_in_turn() -> None:
    engine = started(job(50))
    engine.take()
    engine.receive("ok")  # the sync
    engine.take()  # the window is full now
    assert engine.take() == b""
    assert engine.urgent("M108") == b"M108\n"
    in_flight = engine.in_flight
    assert in_flight >= 2 and engine.in_flight_command(("M108",))


# ----------------------------------------------------------------------------- flow control


def test_planner_credit_keeps_moves_in_flight_past_the_receive_buffer() -> None:
    engine = started(job(200))
    engine.take()
    engine.receive("ok N0 P15 B3")  # the sync, answered by a firmware with ADVANCED_OK and 15 free planner slots
    sent = engine.take().splitlines(keepends=True)
    # Fifteen moves run as they arrive; behind them, what the receive buffer holds.
    assert 15 < len(sent) and sum(map(len, sent[15:])) <= engine.rx_buffer < sum(map(len, sent))
    engine.receive("ok N1 P15 B3")
    assert engine.take().count(b"\n") == 1  # one move answered, one planner slot back


def test_a_command_that_can_wait_ends_the_credit() -> None:
    lines = [*job(5), "G4 P500", *job(40)]
    engine = started(lines)
    engine.take()
    engine.receive("ok N0 P15 B3")
    sent = engine.take()
    # Five moves and the dwell go on credit; the lines behind the dwell may wait in the buffer, so they fit in it.
    behind = sent.split(b"G4 P500")[1].split(b"\n", 1)[1]
    assert b"G4 P500" in sent and 0 < len(behind) <= engine.rx_buffer


def test_without_advanced_ok_the_window_is_the_receive_buffer() -> None:
    engine = started(job(200))
    engine.take()
    engine.receive("ok")
    assert len(engine.take()) <= engine.rx_buffer


def test_one_line_in_flight_for_firmware_that_needs_it() -> None:
    lines = job(30)
    engine, fw = started(lines, one_in_flight=True), MemoryMarlin(in_order=False)
    for _ in range(200):
        data = engine.take()
        assert data.count(b"\n") <= 1 and (not data or engine.in_flight == 1)
        if data:
            fw.receive(data)
        for line in fw.step():
            engine.receive(line)
    assert delivered(fw) == ["M110 N0", *lines, "M400"]


# ----------------------------------------------------------------------------- progress


def test_m73_in_the_job_reports_the_slicers_progress_as_it_is_answered() -> None:
    lines = ["M73 P0 R12", *job(10), "M73 P40 R7", *job(10)]
    engine, fw = started(lines), MemoryMarlin()
    rounds(engine, fw, 15)
    assert (engine.m73_percent, engine.m73_remaining_min) == (40.0, 7)
