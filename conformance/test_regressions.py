"""Regressions: server bugs the conformance suite found, each pinned by the test named after it.
Each test names what Azure does and what the server did before the fix."""

from __future__ import annotations

import pytest

from conformance_support import LOCATION, RESOURCE_GROUP, SDK_API_VERSION, create_nsg, raw, rule, unique


@pytest.mark.parametrize("kind", ["networkSecurityGroups", "applicationSecurityGroups"])
@pytest.mark.parametrize("name", ["-starts-with-dash", "ends-with-dot.", "x" * 81, "has%20space"])
def test_invalid_top_level_names_are_rejected(client, kind, name):
    """Azure: 1-80 characters, letters, digits, '_', '.', '-', starting with a letter or digit and
    ending with a letter, digit or '_'; otherwise 400 InvalidResourceName. Seen: 201 (rule names
    are checked, NSG and ASG names are not)."""
    response = raw(client, "PUT", f"/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/{RESOURCE_GROUP}/providers/Microsoft.Network/{kind}/{name}?api-version={SDK_API_VERSION}",
                   body={"location": LOCATION})
    assert response.status_code == 400, response.text()
    assert response.json()["error"]["code"] == "InvalidResourceName"


def test_put_answers_the_resource_as_get_returns_it(client):
    """ARM's PUT answers the whole resource, as a GET right after returns it. Seen (13:20 build):
    the NSG GET carries `properties.subnets: []` and `properties.networkInterfaces: []`, the PUT
    answer does not."""
    name = unique("nsg")
    created = create_nsg(client, name, [rule("ssh")])
    assert client.network_security_groups.get(RESOURCE_GROUP, name).as_dict() == created.as_dict()
