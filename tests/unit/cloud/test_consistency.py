"""Assignment consistency rules."""

from __future__ import annotations

from redstone_cloud.consistency import EcuState, PackageRef, plan_assignment

ECUS = [EcuState("t1", "tbox", 3), EcuState("a1", "adas", None), EcuState("b1", "bcm", 1)]


def test_plan_maps_packages_to_fitting_ecus() -> None:
    plan = plan_assignment(
        ECUS, [PackageRef("tbox-4", ("tbox",), 4), PackageRef("adas-1", ("adas", "x"), 1)]
    )
    assert plan.ok
    assert {s: p.target for s, p in plan.items.items()} == {"t1": "tbox-4", "a1": "adas-1"}


def test_plan_problems() -> None:
    cases = [
        ([PackageRef("x", ("nothing",), 1)], "no ECU fits x"),
        ([PackageRef("tbox-2", ("tbox",), 2)], "would roll it back"),
        ([PackageRef("a", ("adas",), 1), PackageRef("b", ("adas",), 1)], "would get both a and b"),
    ]
    for packages, words in cases:
        plan = plan_assignment(ECUS, packages)
        assert not plan.ok
        assert any(words in problem for problem in plan.problems), plan.problems
    assert not plan_assignment(ECUS, []).ok
    assert plan_assignment(ECUS, [PackageRef("tbox-3", ("tbox",), 3)]).ok


def test_baseline_floor_is_named_in_the_problem() -> None:
    ecus = [EcuState("t1", "tbox", 5, "is on baseline 2027.1 at")]
    plan = plan_assignment(ecus, [PackageRef("tbox-4", ("tbox",), 4)])
    assert plan.problems == (
        "ECU t1 is on baseline 2027.1 at release 5; tbox-4 (release 4) would roll it back",
    )
