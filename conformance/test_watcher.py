"""Network Watcher through azure-mgmt-network: the watcher resource, IP flow verify on the seed's
scenarios (tests/scenarios/seed-*.json), a NIC's effective NSGs and a VM's security group view.

Each fixture set is loaded into a subscription of its own: Network Watcher reads a whole
subscription, so nothing another test writes can change its answers.
"""

from __future__ import annotations

import json

import pytest
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.mgmt.network import models

from conformance_support import DEFAULT_RULES, LOCATION, create_group, network_id, unique
from scenario_support import SCENARIOS, WATCHER, WATCHER_GROUP, endpoint, scenario, split_id, subscription_for

SEED_SCENARIOS = [
    "seed-vm1-vm4-port80.json",
    "seed-vm1-vm4-port80-http.json",
    "seed-vm1-vm4-port80-nsg1-only.json",
    "seed-intra-subnet.json",
    "seed-intra-subnet-deny.json",
    "seed-asg.json",
]


def _flows():
    for name in SEED_SCENARIOS:
        data = json.loads((SCENARIOS / name).read_text())
        for flow in data["flows"]:
            # IP flow verify asks about TCP and UDP only.
            if flow["protocol"].upper() not in ("TCP", "UDP"):
                continue
            for target in ("vm", "nic"):
                yield pytest.param(name, flow, target, id=f"{name[:-5]}: {flow['name']} [{target} id]")


@pytest.mark.parametrize("scenario_name, flow, target", list(_flows()))
def test_ip_flow_verify_answers_the_seed_scenarios(seeded, scenario_name, flow, target):
    client, environment = seeded(scenario(scenario_name)["environment"])
    nic_id = environment.nic_id(flow["nic"])
    vm = environment.vm_of(nic_id)
    local_ip, local_port = endpoint(flow["local"])
    remote_ip, remote_port = endpoint(flow["remote"])
    parameters = models.VerificationIPFlowParameters(
        target_resource_id=vm["id"] if target == "vm" and vm else nic_id,
        direction=flow["direction"],
        protocol=flow["protocol"].upper(),
        local_ip_address=local_ip,
        local_port=local_port,
        remote_ip_address=remote_ip,
        remote_port=remote_port,
    )
    if target == "vm" and vm and len(vm["properties"]["networkProfile"]["networkInterfaces"]) > 1:
        parameters.target_nic_resource_id = nic_id
    poller = client.network_watchers.begin_verify_ip_flow(WATCHER_GROUP, WATCHER, parameters)
    result = poller.result()
    assert isinstance(result, models.VerificationIPFlowResult)
    expected = flow["expect"]
    assert (result.access, result.rule_name) == (expected["access"], expected.get("ruleName")), flow["name"]


def test_ip_flow_verify_chooses_a_nic_of_a_vm_with_target_nic_resource_id(seeded):
    client, environment = seeded(scenario("seed-vm1-vm4-port80-http.json")["environment"])
    vm = environment.find("Microsoft.Compute/virtualMachines", "VM1")
    nic = environment.nic_id("VM1")
    result = client.network_watchers.begin_verify_ip_flow(
        WATCHER_GROUP, WATCHER,
        models.VerificationIPFlowParameters(
            target_resource_id=vm["id"], target_nic_resource_id=nic, direction="Inbound", protocol="TCP",
            local_ip_address="10.0.1.4", local_port="80", remote_ip_address="203.0.113.10", remote_port="50000",
        ),
    ).result()
    assert result.access in ("Allow", "Deny")


def test_ip_flow_verify_rejects_bad_questions_with_4xx(seeded):
    client, environment = seeded(scenario("seed-vm1-vm4-port80.json")["environment"])
    vm = environment.find("Microsoft.Compute/virtualMachines", "VM1")
    good = dict(target_resource_id=vm["id"], direction="Inbound", protocol="TCP", local_ip_address="10.0.1.4",
                local_port="80", remote_ip_address="203.0.113.10", remote_port="50000")
    bad_cases = [
        dict(good, local_ip_address="10.9.9.9"),  # not an address of the VM's NIC
        dict(good, local_ip_address="not-an-ip"),
        dict(good, local_port="70000"),
        dict(good, target_resource_id=vm["id"].replace("/VM1", "/NoSuchVm")),
    ]
    for parameters in bad_cases:
        with pytest.raises(HttpResponseError) as caught:
            client.network_watchers.begin_verify_ip_flow(WATCHER_GROUP, WATCHER, models.VerificationIPFlowParameters(**parameters)).result()
        assert 400 <= caught.value.status_code < 500, (parameters, caught.value)
        assert caught.value.error is not None and caught.value.error.code, (parameters, caught.value)


def test_ip_flow_verify_through_a_missing_watcher_is_not_found(seeded):
    client, environment = seeded(scenario("seed-vm1-vm4-port80.json")["environment"])
    vm = environment.find("Microsoft.Compute/virtualMachines", "VM1")
    with pytest.raises(ResourceNotFoundError):
        client.network_watchers.begin_verify_ip_flow(
            WATCHER_GROUP, "NoSuchWatcher",
            models.VerificationIPFlowParameters(
                target_resource_id=vm["id"], direction="Inbound", protocol="TCP", local_ip_address="10.0.1.4",
                local_port="80", remote_ip_address="203.0.113.10", remote_port="50000",
            ),
        ).result()


# --- effective security rules ----------------------------------------------------------------


def _groups_by_nsg(result) -> dict:
    return {g.network_security_group.id.rsplit("/", 1)[-1]: g for g in result.value}


def test_effective_nsgs_of_a_nic_behind_a_subnet_nsg_and_a_nic_nsg(seeded):
    client, environment = seeded(scenario("seed-vm1-vm4-port80-http.json")["environment"])
    nic_id = environment.nic_id("vm1-nic")
    group, name = split_id(nic_id)
    result = client.network_interfaces.begin_list_effective_network_security_groups(group, name).result()
    assert isinstance(result, models.EffectiveNetworkSecurityGroupListResult)
    groups = _groups_by_nsg(result)
    assert set(groups) == {"NSG1", "NSG2"}
    subnet = environment.find("Microsoft.Network/virtualNetworks", "vnet1")["properties"]["subnets"][0]["id"]
    assert groups["NSG1"].association.subnet.id.lower() == subnet.lower()
    assert groups["NSG2"].association.network_interface.id.lower() == nic_id.lower()

    for nsg_name, custom in (("NSG1", {"securityRules/Allow-HTTP-Internet"}), ("NSG2", {"securityRules/Allow-HTTP-Internet", "securityRules/Deny-HTTP-Out"})):
        rules = groups[nsg_name].effective_security_rules
        names = {r.name for r in rules}
        assert custom <= names, (nsg_name, names)
        assert {f"defaultSecurityRules/{d[0]}" for d in DEFAULT_RULES} <= names, (nsg_name, names)
        for r in rules:
            assert r.access in ("Allow", "Deny") and r.direction in ("Inbound", "Outbound") and r.priority
    http = next(r for r in groups["NSG1"].effective_security_rules if r.name == "securityRules/Allow-HTTP-Internet")
    assert (http.access, http.priority, http.direction) == ("Allow", 200, "Inbound")


def _nics_of_seed_fixtures():
    seen = set()
    for name in SEED_SCENARIOS:
        for fixture in scenario(name)["environment"]:
            if fixture in seen:
                continue
            seen.add(fixture)
            for doc in json.loads(fixture.read_text()):
                if doc["type"] == "Microsoft.Network/networkInterfaces":
                    yield pytest.param(fixture, doc["name"], id=f"{fixture.stem}: {doc['name']}")


@pytest.mark.parametrize("fixture, nic_name", list(_nics_of_seed_fixtures()))
def test_effective_nsgs_of_every_seed_nic(seeded, fixture, nic_name):
    """The NSGs that apply at each NIC of the seed's pictures: its subnet's and its own, each with
    its association, its rules and Azure's six default rules."""
    client, environment = seeded([fixture])
    nic = environment.find("Microsoft.Network/networkInterfaces", nic_name)
    expected = {}  # NSG id (lower) -> ("subnet" | "nic", associated id)
    subnet_id = nic["properties"]["ipConfigurations"][0]["properties"]["subnet"]["id"]
    for vnet in environment.of_type("Microsoft.Network/virtualNetworks"):
        for sub in vnet["properties"].get("subnets", []):
            if sub["id"].lower() == subnet_id.lower() and (sub["properties"].get("networkSecurityGroup") or {}).get("id"):
                expected[sub["properties"]["networkSecurityGroup"]["id"].lower()] = ("subnet", subnet_id)
    if (nic["properties"].get("networkSecurityGroup") or {}).get("id"):
        expected[nic["properties"]["networkSecurityGroup"]["id"].lower()] = ("nic", nic["id"])

    group, name = split_id(nic["id"])
    result = client.network_interfaces.begin_list_effective_network_security_groups(group, name).result()
    got = {g.network_security_group.id.lower(): g for g in result.value}
    assert set(got) == set(expected)
    for nsg_id, (level, associated) in expected.items():
        association = got[nsg_id].association
        if level == "subnet":
            assert association.subnet.id.lower() == associated.lower()
        else:
            assert association.network_interface.id.lower() == associated.lower()
        nsg = next(d for d in environment.of_type("Microsoft.Network/networkSecurityGroups") if d["id"].lower() == nsg_id)
        names = {r.name for r in got[nsg_id].effective_security_rules}
        wanted = {f"securityRules/{r['name']}" for r in nsg["properties"].get("securityRules", [])}
        wanted |= {f"defaultSecurityRules/{d[0]}" for d in DEFAULT_RULES}
        assert names == wanted


def test_effective_nsgs_of_a_nic_without_any_nsg_are_empty(seeded):
    client, environment = seeded(scenario("seed-vm1-vm4-port80.json")["environment"])
    group, name = split_id(environment.nic_id("vm4-nic"))
    result = client.network_interfaces.begin_list_effective_network_security_groups(group, name).result()
    assert list(result.value) == []


def test_effective_nsgs_of_a_nic_with_only_a_nic_nsg(seeded):
    client, environment = seeded(scenario("seed-vm1-vm4-port80.json")["environment"])
    nic_id = environment.nic_id("vm3-nic")
    group, name = split_id(nic_id)
    result = client.network_interfaces.begin_list_effective_network_security_groups(group, name).result()
    groups = _groups_by_nsg(result)
    assert set(groups) == {"NSG2"}
    assert groups["NSG2"].association.network_interface.id.lower() == nic_id.lower()


def test_effective_nsgs_of_a_missing_nic_is_not_found(seeded):
    client, _ = seeded(scenario("seed-vm1-vm4-port80.json")["environment"])
    with pytest.raises(ResourceNotFoundError):
        client.network_interfaces.begin_list_effective_network_security_groups("rg1", "no-such-nic").result()




# --- security group view ----------------------------------------------------------------------


def test_security_group_view_of_a_vm(seeded):
    client, environment = seeded(scenario("seed-vm1-vm4-port80-http.json")["environment"])
    vm = environment.find("Microsoft.Compute/virtualMachines", "VM1")
    nic_id = environment.nic_id("VM1")
    result = client.network_watchers.begin_get_vm_security_rules(
        WATCHER_GROUP, WATCHER, models.SecurityGroupViewParameters(target_resource_id=vm["id"])
    ).result()
    assert isinstance(result, models.SecurityGroupViewResult)
    [interface] = result.network_interfaces
    assert interface.id.lower() == nic_id.lower()
    associations = interface.security_rule_associations
    subnet = environment.find("Microsoft.Network/virtualNetworks", "vnet1")["properties"]["subnets"][0]["id"]
    assert associations.subnet_association.id.lower() == subnet.lower()
    assert [r.name for r in associations.subnet_association.security_rules] == ["Allow-HTTP-Internet"]
    assert associations.network_interface_association.id.lower() == nic_id.lower()
    assert sorted(r.name for r in associations.network_interface_association.security_rules) == ["Allow-HTTP-Internet", "Deny-HTTP-Out"]
    assert [r.name for r in associations.default_security_rules] == [d[0] for d in DEFAULT_RULES]
    assert associations.effective_security_rules


def test_security_group_view_of_a_vm_without_nsgs(seeded):
    client, environment = seeded(scenario("seed-vm1-vm4-port80.json")["environment"])
    vm = environment.find("Microsoft.Compute/virtualMachines", "VM4")
    result = client.network_watchers.begin_get_vm_security_rules(
        WATCHER_GROUP, WATCHER, models.SecurityGroupViewParameters(target_resource_id=vm["id"])
    ).result()
    [interface] = result.network_interfaces
    associations = interface.security_rule_associations
    assert associations.network_interface_association is None or not associations.network_interface_association.security_rules
    assert associations.subnet_association is None or not associations.subnet_association.security_rules


# --- the watcher resource ---------------------------------------------------------------------


def test_network_watcher_create_get_list_tags_and_delete(server):
    subscription = subscription_for("watcher-crud")
    group = unique("rg-watchers")
    with server.client(subscription) as client:
        create_group(client, group)
        created = client.network_watchers.create_or_update(group, WATCHER, models.NetworkWatcher(location=LOCATION))
        assert isinstance(created, models.NetworkWatcher)
        assert created.id == network_id(group, "networkWatchers", WATCHER, subscription)
        assert created.type == "Microsoft.Network/networkWatchers"
        assert created.location == LOCATION
        assert created.provisioning_state == "Succeeded"
        assert created.etag

        again = client.network_watchers.create_or_update(group, WATCHER, models.NetworkWatcher(location=LOCATION, tags={"a": "b"}))
        assert again.tags == {"a": "b"}
        assert client.network_watchers.get(group, WATCHER).tags == {"a": "b"}
        assert [w.name for w in client.network_watchers.list(group)] == [WATCHER]
        assert WATCHER in [w.name for w in client.network_watchers.list_all()]
        tagged = client.network_watchers.update_tags(group, WATCHER, models.TagsObject(tags={"env": "x"}))
        assert tagged.tags == {"env": "x"}

        # networkWatchers DELETE answers 202 (or 204 when absent): the SDK raises on a 200.
        assert client.network_watchers.begin_delete(group, WATCHER).result() is None
        with pytest.raises(ResourceNotFoundError):
            client.network_watchers.get(group, WATCHER)
        assert client.network_watchers.begin_delete(group, WATCHER).result() is None
