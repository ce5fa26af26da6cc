"""Application security groups, and security rules that reference them, through azure-mgmt-network."""

from __future__ import annotations

import pytest
from azure.core.exceptions import ResourceNotFoundError
from azure.mgmt.network import models

from conformance_support import (
    LOCATION,
    NETWORK,
    RESOURCE_GROUP,
    create_group,
    create_nsg,
    network_id,
    raises_arm_error,
    rule,
    unique,
)


def create_asg(client, name: str, resource_group: str = RESOURCE_GROUP, **fields):
    create_group(client, resource_group)
    asg = models.ApplicationSecurityGroup(location=LOCATION, **fields)
    return client.application_security_groups.begin_create_or_update(resource_group, name, asg).result()


def asg_ref(asg) -> models.ApplicationSecurityGroup:
    return models.ApplicationSecurityGroup(id=asg.id)


def test_create_get_update_tags_and_delete(client):
    name = unique("asg")
    poller = client.application_security_groups.begin_create_or_update(
        RESOURCE_GROUP, name, models.ApplicationSecurityGroup(location=LOCATION, tags={"tier": "web"})
    )
    asg = poller.result()
    assert poller.status() == "Succeeded"
    assert isinstance(asg, models.ApplicationSecurityGroup)
    assert asg.id == f"{NETWORK}/applicationSecurityGroups/{name}"
    assert asg.name == name
    assert asg.type == "Microsoft.Network/applicationSecurityGroups"
    assert asg.location == LOCATION
    assert asg.tags == {"tier": "web"}
    assert asg.provisioning_state == "Succeeded"
    assert asg.resource_guid
    assert asg.etag and asg.etag.startswith('W/"')

    got = client.application_security_groups.get(RESOURCE_GROUP, name)
    for field in ("id", "name", "type", "location", "tags", "etag", "resource_guid", "provisioning_state"):
        assert getattr(got, field) == getattr(asg, field), field
    assert client.application_security_groups.get(RESOURCE_GROUP.upper(), name.upper()).id == asg.id

    again = create_asg(client, name, tags={"tier": "web", "v": "2"})
    assert again.resource_guid == asg.resource_guid and again.etag != asg.etag

    tagged = client.application_security_groups.update_tags(RESOURCE_GROUP, name, models.TagsObject(tags={"env": "prod"}))
    assert tagged.tags == {"env": "prod"}
    assert tagged.etag != again.etag
    assert client.application_security_groups.get(RESOURCE_GROUP, name).tags == {"env": "prod"}

    assert client.application_security_groups.begin_delete(RESOURCE_GROUP, name).result() is None
    with pytest.raises(ResourceNotFoundError) as caught:
        client.application_security_groups.get(RESOURCE_GROUP, name)
    assert caught.value.status_code == 404
    assert caught.value.error.code == "ResourceNotFound"
    assert client.application_security_groups.begin_delete(RESOURCE_GROUP, name).result() is None


def test_list_by_resource_group_and_list_all(client):
    group, other = unique("rg-asg"), unique("rg-asg-other")
    names = sorted(unique("asg") for _ in range(3))
    for name in names:
        create_asg(client, name, resource_group=group)
    outsider = unique("asg")
    create_asg(client, outsider, resource_group=other)

    listed = list(client.application_security_groups.list(group))
    assert sorted(a.name for a in listed) == names
    assert all(isinstance(a, models.ApplicationSecurityGroup) and a.provisioning_state == "Succeeded" for a in listed)

    everything = [a.id for a in client.application_security_groups.list_all()]
    assert len(everything) == len(set(everything))
    for name in names:
        assert network_id(group, "applicationSecurityGroups", name) in everything
    assert network_id(other, "applicationSecurityGroups", outsider) in everything
    assert list(client.application_security_groups.list(unique("rg-empty"))) == []


def test_missing_location_is_rejected(client):
    with raises_arm_error(400, "LocationRequired"):
        client.application_security_groups.begin_create_or_update(
            RESOURCE_GROUP, unique("asg"), models.ApplicationSecurityGroup()
        ).result()


def test_rules_reference_asgs_on_either_side(client):
    web, db = create_asg(client, unique("asg-web")), create_asg(client, unique("asg-db"))
    name = unique("nsg")
    nsg = create_nsg(
        client,
        name,
        [
            rule("web-to-db", priority=100, port="1433", source=None, destination=None,
                 source_application_security_groups=[asg_ref(web)],
                 destination_application_security_groups=[asg_ref(db)]),
        ],
    )
    inline = nsg.security_rules[0]
    assert [a.id for a in inline.source_application_security_groups] == [web.id]
    assert [a.id for a in inline.destination_application_security_groups] == [db.id]

    child = client.security_rules.begin_create_or_update(
        RESOURCE_GROUP, name, "internet-to-web",
        rule(priority=110, port="443", source="Internet", destination=None,
             destination_application_security_groups=[asg_ref(web)]),
    ).result()
    assert [a.id for a in child.destination_application_security_groups] == [web.id]
    got = client.security_rules.get(RESOURCE_GROUP, name, "internet-to-web")
    assert [a.id for a in got.destination_application_security_groups] == [web.id]


def test_asg_references_are_case_insensitive(client):
    asg = create_asg(client, unique("asg"))
    shouted = asg.id.replace("/applicationSecurityGroups/", "/APPLICATIONSECURITYGROUPS/").upper()
    nsg = create_nsg(
        client, unique("nsg"),
        [rule("r", source=None, source_application_security_groups=[models.ApplicationSecurityGroup(id=shouted)])],
    )
    assert nsg.provisioning_state == "Succeeded"


def test_a_missing_asg_is_an_invalid_resource_reference(client):
    missing = network_id(RESOURCE_GROUP, "applicationSecurityGroups", unique("gone"))
    name = unique("nsg")
    with raises_arm_error(400, "InvalidResourceReference"):
        create_nsg(client, name, [rule("r", source=None, source_application_security_groups=[models.ApplicationSecurityGroup(id=missing)])])
    create_nsg(client, name)
    with raises_arm_error(400, "InvalidResourceReference"):
        client.security_rules.begin_create_or_update(
            RESOURCE_GROUP, name, "r",
            rule(destination=None, destination_application_security_groups=[models.ApplicationSecurityGroup(id=missing)]),
        ).result()
    assert client.network_security_groups.get(RESOURCE_GROUP, name).security_rules == []


def test_an_asg_in_use_by_a_rule_cannot_be_deleted_until_the_rule_is_gone(client):
    asg = create_asg(client, unique("asg"))
    name = unique("nsg")
    create_nsg(client, name, [rule("inline", source=None, source_application_security_groups=[asg_ref(asg)])])

    with raises_arm_error(400, "InUseApplicationSecurityGroupCannotBeDeleted") as caught:
        client.application_security_groups.begin_delete(RESOURCE_GROUP, asg.name).result()
    assert name in caught.value.error.message
    assert client.application_security_groups.get(RESOURCE_GROUP, asg.name).id == asg.id

    # Still in use through a child rule after the inline one is replaced.
    create_nsg(client, name)
    client.security_rules.begin_create_or_update(
        RESOURCE_GROUP, name, "child", rule(priority=200, destination=None, destination_application_security_groups=[asg_ref(asg)])
    ).result()
    with raises_arm_error(400, "InUseApplicationSecurityGroupCannotBeDeleted"):
        client.application_security_groups.begin_delete(RESOURCE_GROUP, asg.name).result()

    client.security_rules.begin_delete(RESOURCE_GROUP, name, "child").result()
    assert client.application_security_groups.begin_delete(RESOURCE_GROUP, asg.name).result() is None
    with pytest.raises(ResourceNotFoundError):
        client.application_security_groups.get(RESOURCE_GROUP, asg.name)


def test_deleting_the_nsg_releases_its_asgs(client):
    asg = create_asg(client, unique("asg"))
    name = unique("nsg")
    create_nsg(client, name, [rule("r", source=None, source_application_security_groups=[asg_ref(asg)])])
    client.network_security_groups.begin_delete(RESOURCE_GROUP, name).result()
    assert client.application_security_groups.begin_delete(RESOURCE_GROUP, asg.name).result() is None


def test_if_match_with_a_stale_etag_is_412(client):
    name = unique("asg")
    first = create_asg(client, name)
    second = create_asg(client, name, tags={"v": "2"})
    with raises_arm_error(412, "PreconditionFailed"):
        client.application_security_groups.begin_create_or_update(
            RESOURCE_GROUP, name, models.ApplicationSecurityGroup(location=LOCATION), headers={"If-Match": first.etag}
        ).result()
    with raises_arm_error(412, "PreconditionFailed"):
        client.application_security_groups.begin_delete(RESOURCE_GROUP, name, headers={"If-Match": first.etag}).result()
    assert client.application_security_groups.get(RESOURCE_GROUP, name).etag == second.etag
    client.application_security_groups.begin_delete(RESOURCE_GROUP, name, headers={"If-Match": second.etag}).result()
    with pytest.raises(ResourceNotFoundError):
        client.application_security_groups.get(RESOURCE_GROUP, name)
