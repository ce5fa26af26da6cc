"""Network Watcher flow logs through azure-mgmt-network: `client.flow_logs` create (201, then
200), get, update_tags, list (paged per watcher), delete (202, then 204), the checks with their
codes, and flow logs going with their watcher.

Each test makes a watcher of its own (unique name) in NetworkWatcherRG, so that its lists hold
only its own flow logs.
"""

from __future__ import annotations

import pytest
from azure.core.exceptions import ResourceNotFoundError
from azure.mgmt.network import models

from conformance_support import (
    LOCATION,
    PAGE_SIZE,
    RESOURCE_GROUP,
    SUBSCRIPTION,
    create_group,
    create_nic,
    create_nsg,
    create_vnet,
    network_id,
    raises_arm_error,
    raw,
    subnet,
    unique,
)
from scenario_support import WATCHER_GROUP

STORAGE = f"/subscriptions/{SUBSCRIPTION}/resourceGroups/{RESOURCE_GROUP}/providers/Microsoft.Storage/storageAccounts/flowlogs1"


@pytest.fixture
def watcher(client) -> str:
    """A network watcher of the test's own, in the suite's location; its name."""
    create_group(client, WATCHER_GROUP)
    name = unique("watcher")
    client.network_watchers.create_or_update(WATCHER_GROUP, name, models.NetworkWatcher(location=LOCATION))
    return name


def flow_log(target: str, **fields) -> models.FlowLog:
    return models.FlowLog(location=LOCATION, target_resource_id=target, storage_id=STORAGE, **fields)


def wire_status(client, method: str, path: str, body=None) -> int:
    return raw(client, method, f"{path}?api-version=2024-07-01", body=body).status_code


def test_create_get_update_tags_list_and_delete(client, watcher):
    vnet = create_vnet(client, unique("vnet"), subnets=[subnet("s1", "10.0.1.0/24")])
    operations = client.flow_logs
    created = operations.begin_create_or_update(
        WATCHER_GROUP, watcher, "vnet-log",
        flow_log(
            vnet.id,
            enabled_filtering_criteria="srcIP=158.255.7.8 || dstPort=56891",
            record_types="B,E",
            format=models.FlowLogFormatParameters(type="JSON", version=2),
            retention_policy=models.RetentionPolicyParameters(days=7, enabled=True),
            tags={"team": "net"},
        ),
    ).result()
    assert isinstance(created, models.FlowLog)
    assert created.type == "Microsoft.Network/networkWatchers/FlowLogs"
    assert created.provisioning_state == "Succeeded"
    assert created.target_resource_id == vnet.id
    assert created.target_resource_guid == vnet.resource_guid
    assert created.enabled is True, "Azure's default"
    assert (created.format.type, created.format.version) == ("JSON", 2)
    assert (created.retention_policy.days, created.retention_policy.enabled) == (7, True)
    assert created.enabled_filtering_criteria == "srcIP=158.255.7.8 || dstPort=56891"
    assert created.etag.startswith('W/"')

    # Read-modify-write: the SDK sends back what it read; the second PUT is an update.
    created.enabled = False
    updated = operations.begin_create_or_update(WATCHER_GROUP, watcher, "vnet-log", created).result()
    assert updated.enabled is False
    assert updated.etag != created.etag
    got = operations.get(WATCHER_GROUP, watcher, "vnet-log")
    assert got.as_dict() == updated.as_dict()

    tagged = operations.update_tags(WATCHER_GROUP, watcher, "vnet-log", models.TagsObject(tags={"env": "test"}))
    assert tagged.tags == {"env": "test"}
    assert tagged.enabled is False

    # The wire: 201 on create, 200 on update; DELETE 202, then 204.
    path = f"/subscriptions/{SUBSCRIPTION}/resourceGroups/{WATCHER_GROUP}/providers/Microsoft.Network/networkWatchers/{watcher}/flowLogs/subnet-log"
    body = {"location": LOCATION, "properties": {"targetResourceId": f"{vnet.id}/subnets/s1", "storageId": STORAGE}}
    assert wire_status(client, "PUT", path, body) == 201
    assert wire_status(client, "PUT", path, body) == 200

    names = sorted(f.name for f in operations.list(WATCHER_GROUP, watcher))
    assert names == ["subnet-log", "vnet-log"]

    operations.begin_delete(WATCHER_GROUP, watcher, "vnet-log").result()
    with pytest.raises(ResourceNotFoundError):
        operations.get(WATCHER_GROUP, watcher, "vnet-log")
    assert wire_status(client, "DELETE", path) == 202
    assert wire_status(client, "DELETE", path) == 204
    operations.begin_delete(WATCHER_GROUP, watcher, "subnet-log").result()
    assert list(operations.list(WATCHER_GROUP, watcher)) == []


def test_lists_page_across_next_links(client, watcher):
    vnet = create_vnet(client, unique("vnet"), subnets=[subnet(f"s{i}", f"10.0.{i}.0/24") for i in range(PAGE_SIZE + 1)])
    for i in range(PAGE_SIZE + 1):
        client.flow_logs.begin_create_or_update(WATCHER_GROUP, watcher, f"log{i:03}", flow_log(f"{vnet.id}/subnets/s{i}")).result()
    listed = [f.name for f in client.flow_logs.list(WATCHER_GROUP, watcher)]
    assert listed == [f"log{i:03}" for i in range(PAGE_SIZE + 1)]


def test_checks_answer_with_their_codes(client, watcher):
    vnet = create_vnet(client, unique("vnet"))
    nsg = create_nsg(client, unique("nsg"))
    create = client.flow_logs.begin_create_or_update
    cases = [
        (flow_log(vnet.id, enabled_filtering_criteria="(SrcIP=10.0.0.1)"), 400, "InvalidFilteringCriteria"),
        (flow_log(vnet.id, enabled_filtering_criteria="Port=80"), 400, "InvalidFilteringCriteria"),
        (flow_log(vnet.id, record_types="B,X"), 400, "InvalidRecordTypes"),
        (flow_log(vnet.id, retention_policy=models.RetentionPolicyParameters(days=-1)), 400, "InvalidRetentionPolicyDays"),
        (flow_log(vnet.id, format=models.FlowLogFormatParameters(type="JSON", version=3)), 400, "InvalidFlowLogFormat"),
        (models.FlowLog(location=LOCATION, target_resource_id=vnet.id, storage_id=vnet.id), 400, "InvalidStorageId"),
        (models.FlowLog(location=LOCATION, target_resource_id=vnet.id), 400, "InvalidRequestFormat"),
        (flow_log(network_id(RESOURCE_GROUP, "virtualNetworks", unique("missing"))), 400, "InvalidResourceReference"),
        (flow_log(network_id(RESOURCE_GROUP, "applicationSecurityGroups", "asg")), 400, "InvalidTargetResource"),
        (flow_log(nsg.id), 400, "NsgFlowLogCreationBlocked"),
        (models.FlowLog(location="northeurope", target_resource_id=vnet.id, storage_id=STORAGE), 400, "InvalidResourceLocation"),
    ]
    for parameters, status, code in cases:
        with raises_arm_error(status, code):
            create(WATCHER_GROUP, watcher, "log", parameters).result()
    assert list(client.flow_logs.list(WATCHER_GROUP, watcher)) == []

    # One flow log per target.
    create(WATCHER_GROUP, watcher, "log", flow_log(vnet.id)).result()
    with raises_arm_error(409, "FlowLogAlreadyExistsForTarget"):
        create(WATCHER_GROUP, watcher, "second", flow_log(vnet.id)).result()

    # No watcher: the parent is missing.
    with raises_arm_error(404, "ParentResourceNotFound"):
        create(WATCHER_GROUP, unique("nowatcher"), "log", flow_log(vnet.id)).result()
    with raises_arm_error(404, "ParentResourceNotFound"):
        client.flow_logs.get(WATCHER_GROUP, unique("nowatcher"), "log")


def test_flow_logs_go_with_their_watcher_and_target(client, watcher):
    vnet = create_vnet(client, unique("vnet"), subnets=[subnet("s1", "10.0.1.0/24")])
    nic = create_nic(client, unique("nic"), f"{vnet.id}/subnets/s1")
    client.flow_logs.begin_create_or_update(WATCHER_GROUP, watcher, "nic-log", flow_log(nic.id)).result()
    client.flow_logs.begin_create_or_update(WATCHER_GROUP, watcher, "vnet-log", flow_log(vnet.id)).result()
    assert client.flow_logs.get(WATCHER_GROUP, watcher, "nic-log").target_resource_guid == nic.resource_guid

    client.network_interfaces.begin_delete(RESOURCE_GROUP, nic.name).result()
    assert [f.name for f in client.flow_logs.list(WATCHER_GROUP, watcher)] == ["vnet-log"]

    client.network_watchers.begin_delete(WATCHER_GROUP, watcher).result()
    client.network_watchers.create_or_update(WATCHER_GROUP, watcher, models.NetworkWatcher(location=LOCATION))
    assert list(client.flow_logs.list(WATCHER_GROUP, watcher)) == [], "deleted with the watcher, not hidden"
