"""Network security groups, their security rules and default rules, through azure-mgmt-network."""

from __future__ import annotations

import pytest
from azure.core.exceptions import ClientAuthenticationError, ResourceNotFoundError
from azure.mgmt.network import models

from conformance_support import (
    DEFAULT_RULES,
    LOCATION,
    NETWORK,
    PAGE_SIZE,
    RESOURCE_GROUP,
    SDK_API_VERSION,
    create_group,
    create_nsg,
    network_id,
    raises_arm_error,
    raw,
    rule,
    unique,
)


def rule_names(nsg) -> list:
    return [r.name for r in nsg.security_rules or []]


# --- create, get, update, delete -------------------------------------------------------------


def test_create_answers_the_whole_resource_with_azures_default_rules(client):
    name = unique("nsg")
    poller = client.network_security_groups.begin_create_or_update(
        RESOURCE_GROUP, name, models.NetworkSecurityGroup(location=LOCATION, tags={"team": "net"})
    )
    nsg = poller.result()
    assert poller.done() and poller.status() == "Succeeded"
    assert isinstance(nsg, models.NetworkSecurityGroup)
    assert nsg.id == f"{NETWORK}/networkSecurityGroups/{name}"
    assert nsg.name == name
    assert nsg.type == "Microsoft.Network/networkSecurityGroups"
    assert nsg.location == LOCATION
    assert nsg.tags == {"team": "net"}
    assert nsg.provisioning_state == "Succeeded"
    assert nsg.etag and nsg.etag.startswith('W/"')
    assert nsg.resource_guid
    assert nsg.flush_connection is False
    assert nsg.security_rules == []

    defaults = nsg.default_security_rules
    assert [(r.name, r.direction, r.priority, r.access, r.source_address_prefix, r.destination_address_prefix) for r in defaults] == DEFAULT_RULES
    for default in defaults:
        assert default.id == f"{nsg.id}/defaultSecurityRules/{default.name}"
        assert default.protocol == "*"
        assert default.source_port_range == "*" and default.destination_port_range == "*"
        assert default.provisioning_state == "Succeeded"
        assert default.description
    assert defaults[0].description == "Allow inbound traffic from all VMs in VNET"
    assert defaults[5].description == "Deny all outbound traffic"


def test_get_returns_what_create_answered_and_paths_are_case_insensitive(client):
    name = unique("nsg")
    created = create_nsg(client, name, [rule("ssh", port="22")])
    got = client.network_security_groups.get(RESOURCE_GROUP, name)
    for field in ("id", "name", "type", "location", "tags", "etag", "resource_guid", "provisioning_state", "flush_connection"):
        assert getattr(got, field) == getattr(created, field), field
    assert [r.as_dict() for r in got.security_rules] == [r.as_dict() for r in created.security_rules]
    assert [r.as_dict() for r in got.default_security_rules] == [r.as_dict() for r in created.default_security_rules]
    shouted = client.network_security_groups.get(RESOURCE_GROUP.upper(), name.upper())
    assert shouted.id == created.id and shouted.etag == created.etag


def test_put_on_an_existing_nsg_updates_it_and_keeps_its_identity(client):
    name = unique("nsg")
    first = create_nsg(client, name)
    second = create_nsg(client, name, [rule("web", port="80")], tags={"v": "2"})
    assert second.id == first.id
    assert second.resource_guid == first.resource_guid
    assert second.etag != first.etag
    assert second.tags == {"v": "2"}
    assert rule_names(second) == ["web"]
    assert second.provisioning_state == "Succeeded"


def test_update_tags_replaces_the_tags_and_keeps_the_rules(client):
    name = unique("nsg")
    created = create_nsg(client, name, [rule("ssh")], tags={"old": "1"})
    updated = client.network_security_groups.update_tags(
        RESOURCE_GROUP, name, models.TagsObject(tags={"env": "test", "owner": "conformance"})
    )
    assert updated.tags == {"env": "test", "owner": "conformance"}
    assert updated.etag != created.etag
    assert rule_names(updated) == ["ssh"]
    got = client.network_security_groups.get(RESOURCE_GROUP, name)
    assert got.tags == {"env": "test", "owner": "conformance"}
    assert got.etag == updated.etag


def test_update_tags_of_a_missing_nsg_is_not_found(client):
    with pytest.raises(ResourceNotFoundError):
        client.network_security_groups.update_tags(RESOURCE_GROUP, unique("missing"), models.TagsObject(tags={"a": "b"}))


def test_delete_then_get_is_not_found_and_deleting_again_succeeds(client):
    name = unique("nsg")
    create_nsg(client, name)
    assert client.network_security_groups.begin_delete(RESOURCE_GROUP, name).result() is None
    with pytest.raises(ResourceNotFoundError) as caught:
        client.network_security_groups.get(RESOURCE_GROUP, name)
    assert caught.value.status_code == 404
    assert caught.value.error.code == "ResourceNotFound"
    # ARM answers 204 for a resource that is already gone; the SDK's poller finishes quietly.
    assert client.network_security_groups.begin_delete(RESOURCE_GROUP, name).result() is None


def test_get_of_a_missing_nsg_is_resource_not_found(client):
    with pytest.raises(ResourceNotFoundError) as caught:
        client.network_security_groups.get(RESOURCE_GROUP, unique("missing"))
    assert caught.value.error.code == "ResourceNotFound"


# --- inline rules and child rules -------------------------------------------------------------


def test_inline_rules_get_ids_and_are_addressable_as_children(client):
    name = unique("nsg")
    nsg = create_nsg(client, name, [rule("ssh", priority=100, port="22"), rule("dns", priority=110, protocol="Udp", port="53")])
    assert rule_names(nsg) == ["ssh", "dns"]
    for r in nsg.security_rules:
        assert r.id == f"{nsg.id}/securityRules/{r.name}"
        assert r.provisioning_state == "Succeeded"
        assert r.etag
    ssh = client.security_rules.get(RESOURCE_GROUP, name, "ssh")
    assert isinstance(ssh, models.SecurityRule)
    assert ssh.id == f"{nsg.id}/securityRules/ssh"
    assert (ssh.protocol, ssh.destination_port_range, ssh.priority, ssh.direction, ssh.access) == ("Tcp", "22", 100, "Inbound", "Allow")
    assert client.security_rules.get(RESOURCE_GROUP, name, "DNS").name == "dns"
    listed = list(client.security_rules.list(RESOURCE_GROUP, name))
    assert [r.name for r in listed] == ["ssh", "dns"]


def test_child_rule_put_appears_in_the_nsg_and_delete_removes_it(client):
    name = unique("nsg")
    create_nsg(client, name, [rule("ssh", priority=100)])
    poller = client.security_rules.begin_create_or_update(
        RESOURCE_GROUP, name, "web", rule(priority=110, port="80", description="web traffic")
    )
    web = poller.result()
    assert isinstance(web, models.SecurityRule)
    assert web.name == "web"
    assert web.id == f"{NETWORK}/networkSecurityGroups/{name}/securityRules/web"
    assert web.provisioning_state == "Succeeded"
    assert web.description == "web traffic"

    nsg = client.network_security_groups.get(RESOURCE_GROUP, name)
    assert rule_names(nsg) == ["ssh", "web"]
    assert nsg.security_rules[1].destination_port_range == "80"
    assert web.etag == nsg.etag, "a rule carries its NSG's etag"

    # A second PUT of the same child updates it in place.
    updated = client.security_rules.begin_create_or_update(RESOURCE_GROUP, name, "web", rule(priority=120, port="8080")).result()
    assert (updated.priority, updated.destination_port_range) == (120, "8080")
    assert rule_names(client.network_security_groups.get(RESOURCE_GROUP, name)) == ["ssh", "web"]

    assert client.security_rules.begin_delete(RESOURCE_GROUP, name, "web").result() is None
    assert rule_names(client.network_security_groups.get(RESOURCE_GROUP, name)) == ["ssh"]
    with pytest.raises(ResourceNotFoundError):
        client.security_rules.get(RESOURCE_GROUP, name, "web")
    # Deleting a rule that is gone is not an error.
    assert client.security_rules.begin_delete(RESOURCE_GROUP, name, "web").result() is None


def test_full_nsg_put_removes_the_rules_it_omits(client):
    name = unique("nsg")
    create_nsg(client, name, [rule("a", priority=100), rule("b", priority=110, port="80")])
    client.security_rules.begin_create_or_update(RESOURCE_GROUP, name, "c", rule(priority=120, port="443")).result()
    assert rule_names(client.network_security_groups.get(RESOURCE_GROUP, name)) == ["a", "b", "c"]

    replaced = create_nsg(client, name, [rule("a", priority=100)])
    assert rule_names(replaced) == ["a"]
    assert rule_names(client.network_security_groups.get(RESOURCE_GROUP, name)) == ["a"]
    for gone in ("b", "c"):
        with pytest.raises(ResourceNotFoundError):
            client.security_rules.get(RESOURCE_GROUP, name, gone)
    assert [r.name for r in client.security_rules.list(RESOURCE_GROUP, name)] == ["a"]


def test_read_modify_write_of_a_got_model_is_accepted(client):
    """The SDK user's everyday pattern: GET, change the model, PUT it back."""
    name = unique("nsg")
    create_nsg(client, name, [rule("ssh", priority=100)])
    nsg = client.network_security_groups.get(RESOURCE_GROUP, name)
    nsg.security_rules.append(rule("web", priority=110, port="80"))
    nsg.tags = {"changed": "yes"}
    written = client.network_security_groups.begin_create_or_update(RESOURCE_GROUP, name, nsg).result()
    assert rule_names(written) == ["ssh", "web"]
    assert written.tags == {"changed": "yes"}
    assert len(written.default_security_rules) == 6

    r = client.security_rules.get(RESOURCE_GROUP, name, "ssh")
    r.destination_port_range = "2222"
    client.security_rules.begin_create_or_update(RESOURCE_GROUP, name, "ssh", r).result()
    assert client.security_rules.get(RESOURCE_GROUP, name, "ssh").destination_port_range == "2222"


def test_rules_with_plural_fields_and_service_tags_round_trip(client, server):
    name = unique("nsg")
    destination = "Storage.WestEurope" if server.service_tags else "VirtualNetwork"
    r = models.SecurityRule(
        name="plural",
        protocol="*",
        source_address_prefixes=["10.0.0.0/24", "192.168.1.0/24"],
        source_port_ranges=["1024-65535"],
        destination_address_prefix=destination,
        destination_port_ranges=["80", "443", "8000-8100"],
        access="Deny",
        priority=4096,
        direction="Outbound",
        description="plural sides",
    )
    nsg = create_nsg(client, name, [r])
    got = client.security_rules.get(RESOURCE_GROUP, name, "plural")
    for result in (nsg.security_rules[0], got):
        assert result.source_address_prefixes == ["10.0.0.0/24", "192.168.1.0/24"]
        assert result.source_port_ranges == ["1024-65535"]
        assert result.destination_address_prefix == destination
        assert result.destination_port_ranges == ["80", "443", "8000-8100"]
        assert (result.access, result.priority, result.direction, result.protocol) == ("Deny", 4096, "Outbound", "*")


@pytest.mark.parametrize("protocol", ["TCP", "Tcp", "udp", "Icmp", "*"])
def test_protocol_casing_is_echoed_as_sent(client, protocol):
    name = unique("nsg")
    nsg = create_nsg(client, name, [rule("inline", protocol=protocol, port="*" if protocol in ("Icmp", "*") else "22")])
    assert nsg.security_rules[0].protocol == protocol
    child = client.security_rules.begin_create_or_update(
        RESOURCE_GROUP, name, "child", rule(protocol=protocol, priority=200, port="*" if protocol in ("Icmp", "*") else "80")
    ).result()
    assert child.protocol == protocol
    assert {r.protocol for r in client.security_rules.list(RESOURCE_GROUP, name)} == {protocol}


def test_rule_put_into_a_missing_nsg_is_not_found(client):
    with pytest.raises(ResourceNotFoundError):
        client.security_rules.begin_create_or_update(RESOURCE_GROUP, unique("missing"), "r", rule()).result()


def test_get_of_a_missing_rule_is_not_found(client):
    name = unique("nsg")
    create_nsg(client, name)
    with pytest.raises(ResourceNotFoundError):
        client.security_rules.get(RESOURCE_GROUP, name, "nope")
    with pytest.raises(ResourceNotFoundError):
        client.security_rules.get(RESOURCE_GROUP, unique("missing"), "nope")


# --- default security rules -----------------------------------------------------------------


def test_default_security_rules_list_and_get(client):
    name = unique("nsg")
    nsg = create_nsg(client, name)
    listed = list(client.default_security_rules.list(RESOURCE_GROUP, name))
    assert [(r.name, r.direction, r.priority, r.access, r.source_address_prefix, r.destination_address_prefix) for r in listed] == DEFAULT_RULES
    for expected in DEFAULT_RULES:
        got = client.default_security_rules.get(RESOURCE_GROUP, name, expected[0])
        assert isinstance(got, models.SecurityRule)
        assert got.id == f"{nsg.id}/defaultSecurityRules/{expected[0]}"
        assert (got.name, got.direction, got.priority, got.access, got.source_address_prefix, got.destination_address_prefix) == expected
    assert client.default_security_rules.get(RESOURCE_GROUP, name, "denyallinbound").priority == 65500
    with pytest.raises(ResourceNotFoundError):
        client.default_security_rules.get(RESOURCE_GROUP, name, "NoSuchDefaultRule")


def test_default_rules_are_not_security_rules(client):
    name = unique("nsg")
    create_nsg(client, name, [rule("mine")])
    assert [r.name for r in client.security_rules.list(RESOURCE_GROUP, name)] == ["mine"]
    assert len(list(client.default_security_rules.list(RESOURCE_GROUP, name))) == 6


# --- lists and paging -------------------------------------------------------------------------


def test_list_by_resource_group_returns_exactly_its_nsgs(client):
    group, other = unique("rg-list"), unique("rg-other")
    names = {unique("nsg") for _ in range(3)}
    for name in names:
        create_nsg(client, name, resource_group=group)
    create_nsg(client, unique("elsewhere"), resource_group=other)
    listed = list(client.network_security_groups.list(group))
    assert sorted(n.name for n in listed) == sorted(names)
    for nsg in listed:
        assert isinstance(nsg, models.NetworkSecurityGroup)
        assert nsg.id == network_id(group, "networkSecurityGroups", nsg.name)
        assert nsg.provisioning_state == "Succeeded"
        assert len(nsg.default_security_rules) == 6
    assert list(client.network_security_groups.list(unique("rg-empty"))) == []


def test_list_all_includes_every_resource_group(client):
    group_a, group_b = unique("rg-a"), unique("rg-b")
    a, b = unique("nsg"), unique("nsg")
    create_nsg(client, a, resource_group=group_a)
    create_nsg(client, b, resource_group=group_b)
    ids = [n.id for n in client.network_security_groups.list_all()]
    assert len(ids) == len(set(ids)), "an NSG listed twice"
    assert network_id(group_a, "networkSecurityGroups", a) in ids
    assert network_id(group_b, "networkSecurityGroups", b) in ids


def test_paging_follows_next_link_and_sees_every_nsg_exactly_once(server):
    """More than one page (the server pages at 100): a subscription of its own so that the
    expected set is exact."""
    subscription = "00000000-0000-0000-0000-0000000000fe"
    group, other = "rg-paging", "rg-paging-other"
    total = PAGE_SIZE + 5
    with server.client(subscription) as client:
        create_group(client, group)
        create_group(client, other)
        expected = set()
        for i in range(total):
            name = f"nsg-{i:03d}"
            client.network_security_groups.begin_create_or_update(group, name, models.NetworkSecurityGroup(location=LOCATION)).result()
            expected.add(network_id(group, "networkSecurityGroups", name, subscription))
        extra = network_id(other, "networkSecurityGroups", "nsg-other", subscription)
        client.network_security_groups.begin_create_or_update(other, "nsg-other", models.NetworkSecurityGroup(location=LOCATION)).result()

        # The wire: a full first page with a nextLink that carries the api-version.
        first = raw(client, "GET", f"/subscriptions/{subscription}/resourceGroups/{group}/providers/Microsoft.Network/networkSecurityGroups?api-version={SDK_API_VERSION}")
        assert first.status_code == 200
        page = first.json()
        assert len(page["value"]) == PAGE_SIZE
        next_link = page["nextLink"]
        assert next_link.startswith(server.base_url + "/"), next_link
        assert f"api-version={SDK_API_VERSION}" in next_link, next_link
        second = raw(client, "GET", next_link).json()
        assert len(second["value"]) == total - PAGE_SIZE
        assert not second.get("nextLink")
        assert {n["id"] for n in page["value"]} | {n["id"] for n in second["value"]} == expected

        # The SDK's pager follows the nextLinks.
        pages = list(client.network_security_groups.list(group).by_page())
        assert len(pages) == 2
        by_group = [n.id for n in client.network_security_groups.list(group)]
        assert len(by_group) == total and set(by_group) == expected

        everything = [n.id for n in client.network_security_groups.list_all()]
        assert len(everything) == len(set(everything)) == total + 1
        assert set(everything) == expected | {extra}

        # Rules stay out of lists' paging: every NSG carries its default rules.
        assert all(len(n.default_security_rules) == 6 for n in client.network_security_groups.list_all())


# --- validation errors ------------------------------------------------------------------------


INVALID_RULES = [
    pytest.param([rule("a", priority=100), rule("b", priority=100, port="80")], "SecurityRuleConflict", id="same-priority-same-direction"),
    pytest.param([rule("a", port="636, 389")], "SecurityRuleInvalidPortRange", id="comma-list-port"),
    pytest.param([rule("a", port="70000")], "SecurityRuleInvalidPortRange", id="port-too-big"),
    pytest.param([rule("a", port="80-70")], "SecurityRuleInvalidPortRange", id="reversed-port-range"),
    pytest.param([rule("a", priority=99)], "SecurityRuleInvalidPriority", id="priority-too-low"),
    pytest.param([rule("a", priority=4097)], "SecurityRuleInvalidPriority", id="priority-too-high"),
    pytest.param([rule("a", priority=None)], "SecurityRuleInvalidPriority", id="priority-missing"),
    pytest.param(
        [rule("a", source=None, source_address_prefixes=["10.0.0.0/24", "Internet"])],
        "SecurityRuleParameterContainsUnsupportedValue",
        id="tag-in-prefix-list",
    ),
    pytest.param(
        [rule("a", destination=None, destination_address_prefixes=["*"])],
        "SecurityRuleParameterContainsUnsupportedValue",
        id="star-in-prefix-list",
    ),
    pytest.param([rule("a", source="10.0.0.300")], "SecurityRuleInvalidAddressPrefix", id="bad-octet"),
    pytest.param([rule("a", destination="NoSuchTag")], "SecurityRuleInvalidAddressPrefix", id="unknown-tag"),
    pytest.param(
        [rule("a", source_address_prefixes=["10.0.0.0/24"])],
        "SecurityRuleInvalidParameterCombination",
        id="prefix-and-prefixes",
    ),
    pytest.param(
        [rule("a", source=None, source_application_security_groups=[models.ApplicationSecurityGroup(id=network_id(RESOURCE_GROUP, "applicationSecurityGroups", "no-such-asg"))])],
        "InvalidResourceReference",
        id="missing-asg",
    ),
]


@pytest.mark.parametrize("rules, code", INVALID_RULES)
def test_invalid_inline_rules_are_rejected_with_azures_code_and_nothing_is_written(client, rules, code):
    name = unique("nsg")
    with raises_arm_error(400, code) as caught:
        create_nsg(client, name, rules)
    assert caught.value.error.message
    with pytest.raises(ResourceNotFoundError):
        client.network_security_groups.get(RESOURCE_GROUP, name)


@pytest.mark.parametrize("rules, code", INVALID_RULES)
def test_invalid_child_rules_are_rejected_with_azures_code_and_nothing_changes(client, rules, code):
    name = unique("nsg")
    # A rule the bad one can conflict with; the others are put into an NSG that only has it.
    existing = rules[0] if len(rules) > 1 else rule("keep", priority=200, port="443")
    before = create_nsg(client, name, [existing])
    bad = rules[-1]
    with raises_arm_error(400, code):
        client.security_rules.begin_create_or_update(RESOURCE_GROUP, name, bad.name, bad).result()
    after = client.network_security_groups.get(RESOURCE_GROUP, name)
    assert after.etag == before.etag
    assert rule_names(after) == rule_names(before)


def test_conflict_error_names_the_offending_field(client):
    with raises_arm_error(400, "SecurityRuleConflict") as caught:
        create_nsg(client, unique("nsg"), [rule("a", priority=100), rule("b", priority=100, port="80")])
    assert caught.value.error.target == "properties.securityRules[1].properties.priority"


def test_same_priority_in_different_directions_is_valid(client):
    nsg = create_nsg(client, unique("nsg"), [rule("in", priority=100), rule("out", priority=100, direction="Outbound")])
    assert rule_names(nsg) == ["in", "out"]


def test_missing_location_and_moving_location_are_rejected(client):
    name = unique("nsg")
    with raises_arm_error(400, "LocationRequired"):
        client.network_security_groups.begin_create_or_update(RESOURCE_GROUP, name, models.NetworkSecurityGroup()).result()
    create_nsg(client, name)
    with raises_arm_error(400, "InvalidResourceLocation"):
        client.network_security_groups.begin_create_or_update(RESOURCE_GROUP, name, models.NetworkSecurityGroup(location="eastus")).result()


@pytest.mark.parametrize("kind", ["networkSecurityGroups", "applicationSecurityGroups"])
@pytest.mark.parametrize("tags", ["x", ["a"], {"a": 1}, {"a": {"b": "c"}}])
def test_tags_that_are_not_an_object_of_strings_are_rejected(server, kind, tags):
    """A stored `"tags": "x"` would make every SDK list of that type in the subscription raise
    DeserializationError (seen in an earlier build)."""
    subscription = "00000000-0000-0000-0000-0000000000b1"
    with server.client(subscription) as client:
        create_group(client, "rg1")
        path = f"/subscriptions/{subscription}/resourceGroups/rg1/providers/Microsoft.Network/{kind}/{unique('bad-tags')}?api-version={SDK_API_VERSION}"
        response = raw(client, "PUT", path, body={"location": LOCATION, "tags": tags})
        assert response.status_code == 400, response.text()
        assert response.json()["error"]["code"] == "InvalidRequestFormat"
        operations = client.network_security_groups if kind == "networkSecurityGroups" else client.application_security_groups
        list(operations.list_all())


def test_default_rules_cannot_be_written(client):
    name = unique("nsg")
    create_nsg(client, name)
    response = raw(
        client,
        "PUT",
        f"{NETWORK}/networkSecurityGroups/{name}/defaultSecurityRules/DenyAllInBound?api-version={SDK_API_VERSION}",
        body={"properties": {"access": "Allow"}},
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"]


# --- etags ------------------------------------------------------------------------------------


def test_if_match_with_a_stale_etag_is_412_and_changes_nothing(client):
    name = unique("nsg")
    first = create_nsg(client, name, [rule("ssh")])
    second = create_nsg(client, name, [rule("ssh"), rule("web", priority=110, port="80")])
    assert second.etag != first.etag
    stale = first.etag

    with raises_arm_error(412, "PreconditionFailed"):
        client.network_security_groups.begin_create_or_update(
            RESOURCE_GROUP, name, models.NetworkSecurityGroup(location=LOCATION), headers={"If-Match": stale}
        ).result()
    with raises_arm_error(412, "PreconditionFailed"):
        client.security_rules.begin_create_or_update(RESOURCE_GROUP, name, "new", rule(priority=300), headers={"If-Match": stale}).result()
    with raises_arm_error(412, "PreconditionFailed"):
        client.network_security_groups.update_tags(RESOURCE_GROUP, name, models.TagsObject(tags={"x": "y"}), headers={"If-Match": stale})
    with raises_arm_error(412, "PreconditionFailed"):
        client.network_security_groups.begin_delete(RESOURCE_GROUP, name, headers={"If-Match": stale}).result()

    current = client.network_security_groups.get(RESOURCE_GROUP, name)
    assert current.etag == second.etag
    assert rule_names(current) == ["ssh", "web"]

    # The current etag is accepted, and the write gives a new one.
    third = client.network_security_groups.begin_create_or_update(
        RESOURCE_GROUP, name, models.NetworkSecurityGroup(location=LOCATION), headers={"If-Match": current.etag}
    ).result()
    assert third.etag != current.etag
    assert rule_names(third) == []
    client.network_security_groups.begin_delete(RESOURCE_GROUP, name, headers={"If-Match": third.etag}).result()
    with pytest.raises(ResourceNotFoundError):
        client.network_security_groups.get(RESOURCE_GROUP, name)


def test_if_none_match_star_creates_only(client):
    name = unique("nsg")
    created = client.network_security_groups.begin_create_or_update(
        RESOURCE_GROUP, name, models.NetworkSecurityGroup(location=LOCATION), headers={"If-None-Match": "*"}
    ).result()
    assert created.provisioning_state == "Succeeded"
    with raises_arm_error(412, "PreconditionFailed"):
        client.network_security_groups.begin_create_or_update(
            RESOURCE_GROUP, name, models.NetworkSecurityGroup(location=LOCATION, tags={"a": "b"}), headers={"If-None-Match": "*"}
        ).result()
    assert client.network_security_groups.get(RESOURCE_GROUP, name).etag == created.etag


def test_if_none_match_star_on_a_new_child_rule_creates_it(client):
    """ARM applies a precondition to the resource the request addresses: the rule, not its NSG."""
    name = unique("nsg")
    create_nsg(client, name)
    created = client.security_rules.begin_create_or_update(
        RESOURCE_GROUP, name, "new", rule(), headers={"If-None-Match": "*"}
    ).result()
    assert created.name == "new"
    with raises_arm_error(412, "PreconditionFailed"):
        client.security_rules.begin_create_or_update(
            RESOURCE_GROUP, name, "new", rule(port="80"), headers={"If-None-Match": "*"}
        ).result()


def test_every_write_gives_a_new_etag(client):
    name = unique("nsg")
    etags = [create_nsg(client, name).etag]
    etags.append(client.security_rules.begin_create_or_update(RESOURCE_GROUP, name, "r", rule()).result().etag)
    etags.append(client.network_security_groups.update_tags(RESOURCE_GROUP, name, models.TagsObject(tags={"a": "1"})).etag)
    client.security_rules.begin_delete(RESOURCE_GROUP, name, "r").result()
    etags.append(client.network_security_groups.get(RESOURCE_GROUP, name).etag)
    assert len(set(etags)) == len(etags), etags


# --- the wire ---------------------------------------------------------------------------------


def test_a_wrong_token_is_a_client_authentication_error(server):
    with server.client(token="not-the-token") as intruder:
        with pytest.raises(ClientAuthenticationError) as caught:
            intruder.network_security_groups.get(RESOURCE_GROUP, "anything")
    assert caught.value.status_code == 401


def test_statuses_on_the_wire_finish_long_running_operations_at_once(client):
    name = unique("nsg")
    path = f"{NETWORK}/networkSecurityGroups/{name}?api-version={SDK_API_VERSION}"
    created = raw(client, "PUT", path, body={"location": LOCATION})
    assert created.status_code == 201
    assert "Azure-AsyncOperation" not in created.headers and "Location" not in created.headers
    assert created.json()["properties"]["provisioningState"] == "Succeeded"
    assert created.headers.get("x-ms-request-id")
    assert raw(client, "PUT", path, body={"location": LOCATION}).status_code == 200
    assert raw(client, "DELETE", path).status_code == 200
    assert raw(client, "DELETE", path).status_code == 204
    missing_version = raw(client, "GET", f"{NETWORK}/networkSecurityGroups/{name}")
    assert missing_version.status_code == 400
    assert missing_version.json()["error"]["code"] == "MissingApiVersionParameter"
    malformed = raw(client, "PUT", path, body=None, headers={"Content-Type": "application/json"})
    assert 400 <= malformed.status_code < 500


def test_malformed_json_is_invalid_request_format(client):
    from azure.core.rest import HttpRequest

    request = HttpRequest(
        "PUT",
        f"{NETWORK}/networkSecurityGroups/{unique('nsg')}?api-version={SDK_API_VERSION}",
        headers={"Content-Type": "application/json"},
        content="{ not json",
    )
    response = client.send_request(request)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "InvalidRequestFormat"
