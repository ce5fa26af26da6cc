"""Network Watcher through azure-mgmt-network: the watcher resource, IP flow verify on the seed's
scenarios (tests/scenarios/seed-*.json), NSG diagnostics (a long-running POST the SDK polls), a
NIC's effective NSGs and a VM's security group view.

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


# --- NSG diagnostics (networkConfigurationDiagnostic) -----------------------------------------


def _diagnose(client, target, profiles, verbosity=None):
    """A long-running POST as the SDK drives it: 202 with a Location, polled until 200."""
    parameters = models.NetworkConfigurationDiagnosticParameters(
        target_resource_id=target,
        verbosity_level=verbosity,
        profiles=[
            models.NetworkConfigurationDiagnosticProfile(
                direction=d, protocol=p, source=s, destination=t, destination_port=port
            )
            for d, p, s, t, port in profiles
        ],
    )
    poller = client.network_watchers.begin_get_network_configuration_diagnostic(WATCHER_GROUP, WATCHER, parameters)
    result = poller.result()
    assert isinstance(result, models.NetworkConfigurationDiagnosticResponse)
    return result.results


def test_network_configuration_diagnostic_answers_whole_flow_spaces(seeded):
    """VM1 (10.0.1.4) behind NSG1 (subnet) and NSG2 (NIC): HTTP from the Internet is allowed at
    both; HTTP from anywhere is not (a private source outside the VNet meets DenyAllInBound);
    HTTP out to the Internet is denied by NSG2's Deny-HTTP-Out, which NSG1 never sees."""
    client, environment = seeded(scenario("seed-vm1-vm4-port80-http.json")["environment"])
    vm = environment.find("Microsoft.Compute/virtualMachines", "VM1")
    nic_id = environment.nic_id("VM1")
    subnet = environment.find("Microsoft.Network/virtualNetworks", "vnet1")["properties"]["subnets"][0]["id"]
    profiles = [
        ("Inbound", "TCP", "Internet", "*", "80"),
        ("Inbound", "TCP", "*", "10.0.1.4", "80"),
        ("Outbound", "TCP", "*", "Internet", "80"),
        ("Outbound", "*", "10.0.1.4", "Internet", "443"),
    ]
    results = _diagnose(client, vm["id"], profiles)
    assert [r.profile.destination_port for r in results] == [p[4] for p in profiles]
    expected = [
        ("Allow", [("NSG1", subnet, "UserRule_Allow-HTTP-Internet"), ("NSG2", nic_id, "UserRule_Allow-HTTP-Internet")]),
        ("Deny", [("NSG1", subnet, "DefaultRule_DenyAllInBound"), ("NSG2", nic_id, "DefaultRule_DenyAllInBound")]),
        ("Deny", [("NSG2", nic_id, "UserRule_Deny-HTTP-Out"), ("NSG1", subnet, "DefaultRule_AllowInternetOutBound")]),
        ("Allow", [("NSG2", nic_id, "DefaultRule_AllowInternetOutBound"), ("NSG1", subnet, "DefaultRule_AllowInternetOutBound")]),
    ]
    for result, (access, groups) in zip(results, expected):
        nsg_result = result.network_security_group_result
        assert nsg_result.security_rule_access_result == access, result
        got = [
            (g.network_security_group_id.rsplit("/", 1)[-1], g.applied_to.lower(), g.matched_rule.rule_name)
            for g in nsg_result.evaluated_network_security_groups
        ]
        assert got == [(n, a.lower(), r) for n, a, r in groups], result
        # Normal verbosity: the rules up to the matched one, the last being it, fully matched.
        for group in nsg_result.evaluated_network_security_groups:
            last = group.rules_evaluation_result[-1]
            assert last.name == group.matched_rule.rule_name
            assert group.matched_rule.action in ("Allow", "Deny")
        # OpenNSG's extension: a denied flow of the profile, as IP flow verify confirms it.
        example = result.get("example")
        assert (example is None) == (access == "Allow"), result
    denied = results[1]["example"]
    verified = client.network_watchers.begin_verify_ip_flow(
        WATCHER_GROUP, WATCHER,
        models.VerificationIPFlowParameters(
            target_resource_id=vm["id"], direction="Inbound", protocol="TCP",
            local_ip_address=denied["destination"], local_port=str(denied["destinationPort"]),
            remote_ip_address=denied["source"], remote_port=str(denied["sourcePort"]),
        ),
    ).result()
    assert (verified.access, verified.rule_name) == ("Deny", denied["ruleName"])


def test_network_configuration_diagnostic_verbosity(seeded):
    client, environment = seeded(scenario("seed-vm1-vm4-port80-http.json")["environment"])
    nic_id = environment.nic_id("VM1")
    profile = [("Inbound", "TCP", "Internet", "*", "80")]
    minimum = _diagnose(client, nic_id, profile, "Minimum")[0].network_security_group_result
    assert all(g.rules_evaluation_result is None for g in minimum.evaluated_network_security_groups)
    full = _diagnose(client, nic_id, profile, "Full")[0].network_security_group_result
    subnet_rules = full.evaluated_network_security_groups[0].rules_evaluation_result
    assert [r.name for r in subnet_rules] == ["UserRule_Allow-HTTP-Internet"] + [
        f"DefaultRule_{d[0]}" for d in DEFAULT_RULES if d[1] == "Inbound"
    ]
    http = subnet_rules[0]
    assert (http.protocol_matched, http.source_matched, http.source_port_matched, http.destination_matched,
            http.destination_port_matched) == (True, True, True, True, True)
    deny_all = subnet_rules[-1]
    assert deny_all.protocol_matched and deny_all.source_matched and deny_all.destination_port_matched


def test_network_configuration_diagnostic_rejects_bad_profiles_naming_the_field(seeded):
    client, environment = seeded(scenario("seed-vm1-vm4-port80.json")["environment"])
    vm = environment.find("Microsoft.Compute/virtualMachines", "VM1")
    good = ("Inbound", "TCP", "*", "*", "80")
    cases = [
        ([good, ("Inbound", "TCP", "*", "10.9.9.9", "80")], "InvalidLocalIPAddress", "profiles[1].destination"),
        ([("Outbound", "TCP", "10.9.9.9", "*", "80")], "InvalidLocalIPAddress", "profiles[0].source"),
        ([("Inbound", "TCP", "not-an-address", "*", "80")], "InvalidRequestFormat", "profiles[0].source"),
        ([("Inbound", "TCP", "*", "*", "65536")], "InvalidRequestFormat", "profiles[0].destinationPort"),
        ([("Inbound", "GRE", "*", "*", "*")], "InvalidRequestFormat", "profiles[0].protocol"),
        ([good] * 101, "InvalidRequestFormat", "profiles"),
    ]
    for profiles, code, target in cases:
        with pytest.raises(HttpResponseError) as caught:
            _diagnose(client, vm["id"], profiles)
        assert caught.value.status_code == 400, (profiles[-1], caught.value)
        assert (caught.value.error.code, caught.value.error.target) == (code, target), caught.value
    with pytest.raises(ResourceNotFoundError):
        client.network_watchers.begin_get_network_configuration_diagnostic(
            WATCHER_GROUP, "NoSuchWatcher",
            models.NetworkConfigurationDiagnosticParameters(
                target_resource_id=vm["id"],
                profiles=[models.NetworkConfigurationDiagnosticProfile(
                    direction="Inbound", protocol="TCP", source="*", destination="*", destination_port="80")],
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
