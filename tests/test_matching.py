"""The scheduler's rules, one by one, on plain data: which job may run where, and in what order."""

from __future__ import annotations

import pytest

from hub.jobs.matching import Need, Printer, fits, plan, why_not

MK3S = dict(model="prusa-mk3s", nozzle=0.4, build=(250.0, 210.0, 210.0), sliceable=True)


def printer(device: str = "p1", **kw) -> Printer:  # type: ignore[no-untyped-def]
    return Printer(node="n", device=device, **{**MK3S, "material": "PLA", "color": "FF8000", **kw})


def assigned(needs: list[Need], printers: list[Printer]) -> dict[int, str]:
    return {job: p.device for job, p in plan(needs, printers)}


@pytest.mark.parametrize(("need", "kept_off_by"), [
    (Need(1, material="PETG"), "needs PETG loaded; it has PLA"),
    (Need(1, material="PLA", color="000000"), "needs colour 000000 loaded; it has FF8000"),
    (Need(1, nozzle=0.6), "needs a 0.6 mm nozzle; it has 0.4 mm"),
    (Need(1, machine_model="prusa-mk4"), "G-code made for prusa-mk4; the printer is prusa-mk3s"),
    (Need(1, size=(260.0, 100.0, 10.0)), "the part does not fit its build volume"),
    (Need(1, tags=frozenset({"enclosed"})), "lacks tags enclosed"),
    (Need(1, pin=("n", "other")), "pinned to n/other"),
    (Need(1, filament_mm=5000.0), "needs 5000 mm of filament; the loaded spool holds 1000 mm"),
])
def test_each_constraint_keeps_a_job_off_a_printer_that_does_not_meet_it(need: Need, kept_off_by: str | None
                                                                         ) -> None:
    p = printer(filament_mm=1000.0)
    assert why_not(need, p) == kept_off_by
    assert plan([need], [p]) == []


@pytest.mark.parametrize(("need", "kept_off_by"), [
    (Need(1, material="PLA"), "needs PLA loaded; no spool is loaded"),
    (Need(1, color="FF8000"), "needs colour FF8000 loaded; no spool is loaded"),
])
def test_a_job_that_names_a_material_waits_for_a_printer_with_no_spool_loaded(need: Need, kept_off_by: str) -> None:
    empty = printer(material=None, color=None, filament_mm=None)
    assert why_not(need, empty) == kept_off_by
    assert plan([need], [empty]) == []
    assert assigned([need], [empty, printer("loaded")]) == {1: "loaded"}


def test_a_job_that_names_no_material_may_run_on_a_printer_with_no_spool_recorded() -> None:
    assert assigned([Need(1)], [printer(material=None, color=None, filament_mm=None)]) == {1: "p1"}


def test_a_job_that_meets_every_constraint_runs() -> None:
    need = Need(1, material="pla", color="ff8000", nozzle=0.4, machine_model="prusa-mk3s", size=(200.0, 240.0, 5.0),
                tags=frozenset({"fast"}), filament_mm=900.0, pin=("n", "p1"))
    p = printer(tags=frozenset({"fast", "enclosed"}), filament_mm=1000.0)
    assert why_not(need, p) is None  # case-blind material and colour; the part fits turned a quarter
    assert assigned([need], [p]) == {1: "p1"}


def test_a_mesh_goes_only_to_a_model_we_can_slice_for() -> None:
    mesh = Need(1, mesh=True, size=(10.0, 10.0, 10.0))
    assert assigned([mesh], [printer("odd", model="mystery", sliceable=False), printer("mk3s")]) == {1: "mk3s"}


def test_unknown_filament_on_a_spool_does_not_block_a_job() -> None:
    assert assigned([Need(1, filament_mm=10_000.0)], [printer(filament_mm=None)]) == {1: "p1"}


def test_order_is_priority_then_deadline_then_queue_place() -> None:
    needs = [
        Need(1, rank=1),
        Need(2, rank=2, deadline="2030-01-02T00:00:00.000+00:00"),
        Need(3, rank=3, deadline="2030-01-01T00:00:00.000+00:00"),
        Need(4, rank=4, priority=5),
        Need(5, rank=0.5),  # an operator moved it to the front of its class
    ]
    printers = [printer(f"p{i}") for i in range(3)]
    assert list(assigned(needs, printers)) == [4, 3, 2]
    assert list(assigned(needs, printers + [printer(f"q{i}") for i in range(2)])) == [4, 3, 2, 5, 1]


def test_a_job_prefers_a_printer_already_loaded_with_what_it_was_sliced_for() -> None:
    pla, petg = printer("pla"), printer("petg", material="PETG")
    assert assigned([Need(1, prefer_material="PETG")], [pla, petg]) == {1: "petg"}
    assert assigned([Need(1, prefer_material="PETG")], [pla]) == {1: "pla"}  # a preference, not a rule


def test_a_blocked_job_does_not_hold_up_the_ones_behind_it() -> None:
    needs = [Need(1, priority=9, material="ABS"), Need(2), Need(3, filament_mm=5000.0)]
    printers = [printer("a", filament_mm=100.0), printer("b", filament_mm=10_000.0)]
    assert assigned(needs, printers) == {2: "a", 3: "b"}


def test_each_printer_gets_at_most_one_job_and_each_job_one_printer() -> None:
    needs = [Need(i) for i in range(10)]
    pairs = plan(needs, [printer(f"p{i}") for i in range(4)])
    assert len(pairs) == 4
    assert len({p.device for _, p in pairs}) == 4 and len({j for j, _ in pairs}) == 4


@pytest.mark.parametrize(("size", "ok"), [((250, 210, 210), True), ((210, 250, 1), True), ((251, 10, 1), False),
                                          ((10, 10, 211), False)])
def test_fits_allows_a_quarter_turn(size: tuple[float, float, float], ok: bool) -> None:
    assert fits(size, (250, 210, 210)) is ok
