"""Virtual networks with their subnets, network interfaces with dynamic addresses, and
Microsoft.Compute virtual machines (reduced to location and networkProfile), through
azure-mgmt-network (virtual machines through raw requests on the same pipeline: the SDK has no
Compute client)."""

from __future__ import annotations

import pytest
from azure.core.exceptions import ResourceNotFoundError
from azure.mgmt.network import models

from conformance_support import (
    COMPUTE_API_VERSION,
    LOCATION,
    NETWORK,
    RESOURCE_GROUP,
    address,
    create_nic,
    create_nsg,
    create_vnet,
    network_id,
    raises_arm_error,
    raw,
    rule,
    subnet,
    unique,
    vm_id,
)

# --- virtual networks and subnets -------------------------------------------------------------


def test_vnet_with_inline_subnets(client):
    nsg = create_nsg(client, unique("nsg"))
    name = unique("vnet")
    poller = client.virtual_networks.begin_create_or_update(
        RESOURCE_GROUP, name,
        models.VirtualNetwork(
            location=LOCATION,
            address_space=models.AddressSpace(address_prefixes=["10.10.0.0/16"]),
            subnets=[subnet("web", "10.10.1.0/24"), subnet("db", "10.10.2.0/24", nsg)],
        ),
    )
    vnet = poller.result()
    assert poller.status() == "Succeeded"
    assert isinstance(vnet, models.VirtualNetwork)
    assert vnet.id == f"{NETWORK}/virtualNetworks/{name}"
    assert vnet.type == "Microsoft.Network/virtualNetworks"
    assert vnet.provisioning_state == "Succeeded"
    assert vnet.etag and vnet.resource_guid
    assert vnet.address_space.address_prefixes == ["10.10.0.0/16"]
    assert [s.name for s in vnet.subnets] == ["web", "db"]
    for s in vnet.subnets:
        assert s.id == f"{vnet.id}/subnets/{s.name}"
        assert s.provisioning_state == "Succeeded"
    assert vnet.subnets[1].network_security_group.id.lower() == nsg.id.lower()
    assert vnet.subnets[0].network_security_group is None

    got = client.virtual_networks.get(RESOURCE_GROUP, name)
    assert got.etag == vnet.etag and [s.name for s in got.subnets] == ["web", "db"]
    web = client.subnets.get(RESOURCE_GROUP, name, "web")
    assert isinstance(web, models.Subnet)
    assert (web.id, web.address_prefix) == (f"{vnet.id}/subnets/web", "10.10.1.0/24")
    assert client.subnets.get(RESOURCE_GROUP, name, "DB").network_security_group.id.lower() == nsg.id.lower()
    assert [s.name for s in client.subnets.list(RESOURCE_GROUP, name)] == ["web", "db"]


def test_child_subnets_appear_in_the_vnet_and_full_put_removes_omitted_ones(client):
    name = unique("vnet")
    create_vnet(client, name, "10.20.0.0/16", [subnet("a", "10.20.1.0/24")])
    created = client.subnets.begin_create_or_update(RESOURCE_GROUP, name, "b", models.Subnet(address_prefix="10.20.2.0/24")).result()
    assert isinstance(created, models.Subnet)
    assert created.id == f"{NETWORK}/virtualNetworks/{name}/subnets/b"
    assert created.provisioning_state == "Succeeded"
    assert [s.name for s in client.virtual_networks.get(RESOURCE_GROUP, name).subnets] == ["a", "b"]

    # GET then PUT of a subnet, as `az network vnet subnet update` does.
    b = client.subnets.get(RESOURCE_GROUP, name, "b")
    nsg = create_nsg(client, unique("nsg"))
    b.network_security_group = models.NetworkSecurityGroup(id=nsg.id)
    client.subnets.begin_create_or_update(RESOURCE_GROUP, name, "b", b).result()
    assert client.subnets.get(RESOURCE_GROUP, name, "b").network_security_group.id.lower() == nsg.id.lower()

    replaced = create_vnet(client, name, "10.20.0.0/16", [subnet("a", "10.20.1.0/24")])
    assert [s.name for s in replaced.subnets] == ["a"]
    with pytest.raises(ResourceNotFoundError):
        client.subnets.get(RESOURCE_GROUP, name, "b")

    client.subnets.begin_create_or_update(RESOURCE_GROUP, name, "c", models.Subnet(address_prefix="10.20.3.0/24")).result()
    assert client.subnets.begin_delete(RESOURCE_GROUP, name, "c").result() is None
    assert [s.name for s in client.virtual_networks.get(RESOURCE_GROUP, name).subnets] == ["a"]
    with pytest.raises(ResourceNotFoundError):
        client.subnets.get(RESOURCE_GROUP, name, "c")


def test_vnet_lists_tags_and_delete(client):
    group = unique("rg-vnets")
    names = sorted(unique("vnet") for _ in range(3))
    for i, name in enumerate(names):
        create_vnet(client, name, f"10.{30 + i}.0.0/16", resource_group=group)
    assert sorted(v.name for v in client.virtual_networks.list(group)) == names
    everything = [v.id for v in client.virtual_networks.list_all()]
    assert len(everything) == len(set(everything))
    assert {network_id(group, "virtualNetworks", n) for n in names} <= set(everything)

    tagged = client.virtual_networks.update_tags(group, names[0], models.TagsObject(tags={"env": "test"}))
    assert tagged.tags == {"env": "test"}
    assert client.virtual_networks.begin_delete(group, names[0]).result() is None
    with pytest.raises(ResourceNotFoundError):
        client.virtual_networks.get(group, names[0])


def test_subnet_validation(client):
    name = unique("vnet")
    with raises_arm_error(400, "NetcfgInvalidSubnet"):
        create_vnet(client, name, "10.40.0.0/16", [subnet("outside", "10.41.1.0/24")])
    create_vnet(client, name, "10.40.0.0/16", [subnet("a", "10.40.1.0/24")])
    with raises_arm_error(400, "NetcfgInvalidSubnet"):
        client.subnets.begin_create_or_update(RESOURCE_GROUP, name, "outside", models.Subnet(address_prefix="10.41.1.0/24")).result()
    with raises_arm_error(400, "InvalidResourceReference"):
        client.subnets.begin_create_or_update(
            RESOURCE_GROUP, name, "b",
            models.Subnet(address_prefix="10.40.2.0/24", network_security_group=models.NetworkSecurityGroup(id=network_id(RESOURCE_GROUP, "networkSecurityGroups", unique("gone")))),
        ).result()
    with pytest.raises(ResourceNotFoundError):
        client.subnets.begin_create_or_update(RESOURCE_GROUP, unique("missing"), "a", models.Subnet(address_prefix="10.0.1.0/24")).result()


# --- network interfaces -----------------------------------------------------------------------


def test_dynamic_addresses_are_the_first_free_from_dot_four(client):
    vnet = create_vnet(client, unique("vnet"), "10.50.0.0/16", [subnet("s", "10.50.1.0/24")])
    subnet_id = vnet.subnets[0].id
    first, second, third = (unique("nic") for _ in range(3))
    nic = create_nic(client, first, subnet_id)
    assert isinstance(nic, models.NetworkInterface)
    assert nic.provisioning_state == "Succeeded"
    assert nic.id == f"{NETWORK}/networkInterfaces/{first}"
    assert nic.ip_configurations[0].id == f"{nic.id}/ipConfigurations/ipconfig1"
    assert nic.ip_configurations[0].private_ip_allocation_method == "Dynamic"
    assert address(nic) == "10.50.1.4"
    assert address(create_nic(client, second, subnet_id)) == "10.50.1.5"
    # An update keeps the address.
    assert address(create_nic(client, first, subnet_id)) == "10.50.1.4"
    client.network_interfaces.begin_delete(RESOURCE_GROUP, first).result()
    assert address(create_nic(client, third, subnet_id)) == "10.50.1.4"
    assert address(client.network_interfaces.get(RESOURCE_GROUP, second)) == "10.50.1.5"


def test_static_addresses_are_kept_and_must_be_in_the_subnet(client):
    vnet = create_vnet(client, unique("vnet"), "10.51.0.0/16", [subnet("s", "10.51.1.0/24")])
    subnet_id = vnet.subnets[0].id
    nic = create_nic(client, unique("nic"), subnet_id, static_ip="10.51.1.10")
    assert address(nic) == "10.51.1.10"
    assert nic.ip_configurations[0].private_ip_allocation_method == "Static"
    assert address(create_nic(client, unique("nic"), subnet_id)) == "10.51.1.4"
    with raises_arm_error(400, "PrivateIPAddressNotInSubnet"):
        create_nic(client, unique("nic"), subnet_id, static_ip="10.99.0.4")


def test_nic_references_must_exist(client):
    vnet = create_vnet(client, unique("vnet"), "10.52.0.0/16", [subnet("s", "10.52.1.0/24")])
    missing_subnet = f"{vnet.id}/subnets/nope"
    with raises_arm_error(400, "InvalidResourceReference"):
        create_nic(client, unique("nic"), missing_subnet)
    missing_nsg = models.NetworkSecurityGroup(id=network_id(RESOURCE_GROUP, "networkSecurityGroups", unique("gone")))
    with raises_arm_error(400, "InvalidResourceReference"):
        create_nic(client, unique("nic"), vnet.subnets[0].id, nsg=missing_nsg)


def test_nic_get_list_tags_and_delete(client):
    vnet = create_vnet(client, unique("vnet"), "10.53.0.0/16", [subnet("s", "10.53.1.0/24")])
    nsg = create_nsg(client, unique("nsg"), [rule("ssh")])
    name = unique("nic")
    created = create_nic(client, name, vnet.subnets[0].id, nsg=nsg)
    assert created.network_security_group.id.lower() == nsg.id.lower()
    got = client.network_interfaces.get(RESOURCE_GROUP, name)
    assert got.etag == created.etag and address(got) == address(created)
    assert name in [n.name for n in client.network_interfaces.list(RESOURCE_GROUP)]
    assert created.id in [n.id for n in client.network_interfaces.list_all()]
    assert client.network_interfaces.update_tags(RESOURCE_GROUP, name, models.TagsObject(tags={"a": "b"})).tags == {"a": "b"}
    assert client.network_interfaces.begin_delete(RESOURCE_GROUP, name).result() is None
    with pytest.raises(ResourceNotFoundError):
        client.network_interfaces.get(RESOURCE_GROUP, name)
    assert client.network_interfaces.begin_delete(RESOURCE_GROUP, name).result() is None


# --- in use -----------------------------------------------------------------------------------


def test_resources_in_use_cannot_be_deleted(client):
    subnet_nsg, nic_nsg = create_nsg(client, unique("nsg")), create_nsg(client, unique("nsg"))
    asg = client.application_security_groups.begin_create_or_update(
        RESOURCE_GROUP, unique("asg"), models.ApplicationSecurityGroup(location=LOCATION)
    ).result()
    vnet_name = unique("vnet")
    vnet = create_vnet(client, vnet_name, "10.60.0.0/16", [subnet("s", "10.60.1.0/24", subnet_nsg)])
    nic_name = unique("nic")
    create_nic(client, nic_name, vnet.subnets[0].id, nsg=nic_nsg, asgs=[asg])

    with raises_arm_error(400, "InUseNetworkSecurityGroupCannotBeDeleted"):
        client.network_security_groups.begin_delete(RESOURCE_GROUP, subnet_nsg.name).result()
    with raises_arm_error(400, "InUseNetworkSecurityGroupCannotBeDeleted"):
        client.network_security_groups.begin_delete(RESOURCE_GROUP, nic_nsg.name).result()
    with raises_arm_error(400, "InUseApplicationSecurityGroupCannotBeDeleted"):
        client.application_security_groups.begin_delete(RESOURCE_GROUP, asg.name).result()
    with raises_arm_error(400, "InUseSubnetCannotBeDeleted"):
        client.subnets.begin_delete(RESOURCE_GROUP, vnet_name, "s").result()
    with raises_arm_error(400):
        client.virtual_networks.begin_delete(RESOURCE_GROUP, vnet_name).result()

    client.network_interfaces.begin_delete(RESOURCE_GROUP, nic_name).result()
    client.network_security_groups.begin_delete(RESOURCE_GROUP, nic_nsg.name).result()
    client.application_security_groups.begin_delete(RESOURCE_GROUP, asg.name).result()
    client.subnets.begin_delete(RESOURCE_GROUP, vnet_name, "s").result()
    client.network_security_groups.begin_delete(RESOURCE_GROUP, subnet_nsg.name).result()
    client.virtual_networks.begin_delete(RESOURCE_GROUP, vnet_name).result()
    for get in (
        lambda: client.virtual_networks.get(RESOURCE_GROUP, vnet_name),
        lambda: client.network_security_groups.get(RESOURCE_GROUP, subnet_nsg.name),
        lambda: client.application_security_groups.get(RESOURCE_GROUP, asg.name),
    ):
        with pytest.raises(ResourceNotFoundError):
            get()



def test_nsg_shows_the_subnets_and_nics_it_is_associated_with(client):
    nsg = create_nsg(client, unique("nsg"))
    vnet = create_vnet(client, unique("vnet"), "10.61.0.0/16", [subnet("s", "10.61.1.0/24", nsg)])
    nic = create_nic(client, unique("nic"), vnet.subnets[0].id, nsg=nsg)
    got = client.network_security_groups.get(RESOURCE_GROUP, nsg.name)
    assert [s.id.lower() for s in got.subnets or []] == [vnet.subnets[0].id.lower()]
    assert [n.id.lower() for n in got.network_interfaces or []] == [nic.id.lower()]


# --- virtual machines (Microsoft.Compute, raw requests) ---------------------------------------


def test_virtual_machines_reduced_to_location_and_network_profile(client):
    vnet = create_vnet(client, unique("vnet"), "10.70.0.0/16", [subnet("s", "10.70.1.0/24")])
    nic = create_nic(client, unique("nic"), vnet.subnets[0].id)
    name = unique("vm")
    path = f"{vm_id(name)}?api-version={COMPUTE_API_VERSION}"
    body = {"location": LOCATION, "properties": {"networkProfile": {"networkInterfaces": [{"id": nic.id, "properties": {"primary": True}}]}}}
    created = raw(client, "PUT", path, body=body)
    assert created.status_code == 201, created.text()
    assert raw(client, "PUT", path, body=body).status_code == 200
    got = raw(client, "GET", path)
    assert got.status_code == 200
    doc = got.json()
    assert doc["id"] == vm_id(name)
    assert doc["type"] == "Microsoft.Compute/virtualMachines"
    assert doc["location"] == LOCATION
    assert [n["id"].lower() for n in doc["properties"]["networkProfile"]["networkInterfaces"]] == [nic.id.lower()]
    listed = raw(client, "GET", f"{vm_id(name).rsplit('/', 1)[0]}?api-version={COMPUTE_API_VERSION}")
    assert listed.status_code == 200
    assert vm_id(name) in [v["id"] for v in listed.json()["value"]]
    assert raw(client, "DELETE", path).status_code in (200, 202)
    assert raw(client, "GET", path).status_code == 404
    assert raw(client, "DELETE", path).status_code == 204


def test_a_vm_referencing_a_missing_nic_is_rejected(client):
    body = {"location": LOCATION, "properties": {"networkProfile": {"networkInterfaces": [{"id": network_id(RESOURCE_GROUP, "networkInterfaces", unique("gone"))}]}}}
    response = raw(client, "PUT", f"{vm_id(unique('vm'))}?api-version={COMPUTE_API_VERSION}", body=body)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "InvalidResourceReference"
