"""Pending: validation scenarios the server answers wrongly today. Move a scenario out of
test_validation_scenarios.PENDING once its test here passes.

- validation-AllApplicationSecurityGroupsInSecurityRuleMustBeFromSameVnet.json and
  validation-ApplicationSecurityGroupMembersMustBeInSameVnet.json: the server now rejects the
  write that breaks the rule (the NIC that would put an ASG in a second VNet answers 400
  ApplicationSecurityGroupMembersMustBeInSameVnet), but the scenarios name the error on the
  ASG or NSG, as validating a whole file does. The harness needs to map "the write that
  completes the invalid environment" to the expected error before these can run in CI.
"""

from __future__ import annotations

import pytest

from scenario_support import check_validation_scenario
from test_validation_scenarios import PENDING


@pytest.mark.parametrize("name", sorted(PENDING))
def test_validation_scenario(server, name):
    check_validation_scenario(server, name)
