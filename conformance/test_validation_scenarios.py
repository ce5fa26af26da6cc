"""The repository's validation scenarios (tests/scenarios/validation-*.json) written through the
SDK: every invalid resource is rejected with 400 and Azure's codes (see
scenario_support.check_validation_scenario). The scenarios the server does not answer yet are in
pending_test_validation_scenarios.py."""

from __future__ import annotations

import pytest

from scenario_support import SCENARIOS, check_validation_scenario

# Scenarios the server answers wrongly today (pending_test_validation_scenarios.py).
PENDING = {
    "validation-AllApplicationSecurityGroupsInSecurityRuleMustBeFromSameVnet.json",
    "validation-ApplicationSecurityGroupMembersMustBeInSameVnet.json",
}

SCENARIO_FILES = sorted(p.name for p in SCENARIOS.glob("validation-*.json"))


def test_the_scenarios_are_there():
    assert len(SCENARIO_FILES) >= 20
    assert PENDING <= set(SCENARIO_FILES)


@pytest.mark.parametrize("name", [n for n in SCENARIO_FILES if n not in PENDING])
def test_validation_scenario(server, name):
    check_validation_scenario(server, name)
