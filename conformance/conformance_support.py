"""Shared constants and helpers of the conformance suite (imported by conftest.py and the tests)."""

from __future__ import annotations

import contextlib
import json
import uuid
from typing import Any, Iterator, Optional

import pytest
from azure.core.exceptions import HttpResponseError
from azure.core.rest import HttpRequest
from azure.mgmt.network import models

SUBSCRIPTION = "00000000-0000-0000-0000-000000000001"
RESOURCE_GROUP = "rg1"
LOCATION = "westeurope"
# The api-version azure-mgmt-network 33.1.0 sends on every call.
SDK_API_VERSION = "2026-03-01"
# What the server is asked about Microsoft.Compute virtual machines with.
COMPUTE_API_VERSION = "2024-07-01"
# The server's list page size (`opennsg serve` answers 100 items a page).
PAGE_SIZE = 100

NETWORK = f"/subscriptions/{SUBSCRIPTION}/resourceGroups/{RESOURCE_GROUP}/providers/Microsoft.Network"

# Azure's six default security rules, in the order Azure lists them.
DEFAULT_RULES = [
    # name, direction, priority, access, source prefix, destination prefix
    ("AllowVnetInBound", "Inbound", 65000, "Allow", "VirtualNetwork", "VirtualNetwork"),
    ("AllowAzureLoadBalancerInBound", "Inbound", 65001, "Allow", "AzureLoadBalancer", "*"),
    ("DenyAllInBound", "Inbound", 65500, "Deny", "*", "*"),
    ("AllowVnetOutBound", "Outbound", 65000, "Allow", "VirtualNetwork", "VirtualNetwork"),
    ("AllowInternetOutBound", "Outbound", 65001, "Allow", "*", "Internet"),
    ("DenyAllOutBound", "Outbound", 65500, "Deny", "*", "*"),
]


def unique(prefix: str) -> str:
    """A resource name no other test uses (the server lives for the whole session)."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def network_id(resource_group: str, kind: str, name: str, subscription: str = SUBSCRIPTION) -> str:
    return f"/subscriptions/{subscription}/resourceGroups/{resource_group}/providers/Microsoft.Network/{kind}/{name}"


def rule(
    name: Optional[str] = None,
    *,
    priority: int = 100,
    direction: str = "Inbound",
    access: str = "Allow",
    protocol: str = "Tcp",
    port: str = "22",
    source: Optional[str] = "*",
    destination: Optional[str] = "*",
    **extra: Any,
) -> models.SecurityRule:
    """A security rule model with the fields the SDK's users usually set."""
    fields: dict[str, Any] = dict(
        protocol=protocol,
        source_port_range="*",
        destination_port_range=port,
        access=access,
        priority=priority,
        direction=direction,
    )
    if source is not None:
        fields["source_address_prefix"] = source
    if destination is not None:
        fields["destination_address_prefix"] = destination
    fields.update(extra)
    if name is not None:
        fields["name"] = name
    return models.SecurityRule(**fields)


def create_group(client, name: str) -> None:
    """Creates resource group `name` in the client's subscription (writes go into groups that
    exist, as in Azure); creating an existing one is harmless."""
    subscription = client._config.subscription_id
    response = raw(client, "PUT", f"/subscriptions/{subscription}/resourcegroups/{name}?api-version=2021-04-01",
                   body={"location": LOCATION})
    assert response.status_code in (200, 201), f"group {name}: {response.status_code} {response.text()}"


def create_nsg(client, name: str, rules=(), resource_group: str = RESOURCE_GROUP, **fields: Any):
    """Creates (or replaces) an NSG through the SDK's long-running operation; returns the model."""
    create_group(client, resource_group)
    nsg = models.NetworkSecurityGroup(location=LOCATION, security_rules=list(rules), **fields)
    return client.network_security_groups.begin_create_or_update(resource_group, name, nsg).result()


@contextlib.contextmanager
def raises_arm_error(status: int, code: Optional[str] = None) -> Iterator[pytest.ExceptionInfo]:
    """Expects an `HttpResponseError` (or a subclass) with this HTTP status and ARM error code."""
    with pytest.raises(HttpResponseError) as caught:
        yield caught
    error = caught.value
    assert error.status_code == status, f"expected HTTP {status}, got {error.status_code}: {error}"
    if code is not None:
        assert error.error is not None, f"no ARM error body in: {error}"
        assert error.error.code == code, f"expected code {code}, got {error.error.code}: {error}"


def raw(client, method: str, path: str, body: Any = None, headers: Optional[dict] = None):
    """Sends one request through the client's pipeline (bearer token included) and returns the
    `azure.core.rest.HttpResponse` without raising on its status."""
    request = HttpRequest(
        method,
        path,
        headers={"Content-Type": "application/json", **(headers or {})},
        content=None if body is None else json.dumps(body),
    )
    response = client.send_request(request)
    response.read()
    return response


# --- virtual networks, NICs, VMs ---------------------------------------------------------------


def vm_id(name: str, resource_group: str = RESOURCE_GROUP) -> str:
    return f"/subscriptions/{SUBSCRIPTION}/resourceGroups/{resource_group}/providers/Microsoft.Compute/virtualMachines/{name}"


def create_vnet(client, name: str, prefix: str = "10.0.0.0/16", subnets=(), resource_group: str = RESOURCE_GROUP, **fields):
    create_group(client, resource_group)
    vnet = models.VirtualNetwork(
        location=LOCATION,
        address_space=models.AddressSpace(address_prefixes=[prefix]),
        subnets=list(subnets),
        **fields,
    )
    return client.virtual_networks.begin_create_or_update(resource_group, name, vnet).result()


def subnet(name: str, prefix: str, nsg=None) -> models.Subnet:
    fields = {"name": name, "address_prefix": prefix}
    if nsg is not None:
        fields["network_security_group"] = models.NetworkSecurityGroup(id=nsg.id)
    return models.Subnet(**fields)


def nic_model(subnet_id: str, nsg=None, asgs=(), static_ip: str = None) -> models.NetworkInterface:
    ip = models.NetworkInterfaceIPConfiguration(
        name="ipconfig1",
        subnet=models.Subnet(id=subnet_id),
        private_ip_allocation_method="Static" if static_ip else "Dynamic",
    )
    if static_ip:
        ip.private_ip_address = static_ip
    if asgs:
        ip.application_security_groups = [models.ApplicationSecurityGroup(id=a.id) for a in asgs]
    fields = {"location": LOCATION, "ip_configurations": [ip]}
    if nsg is not None:
        fields["network_security_group"] = models.NetworkSecurityGroup(id=nsg.id)
    return models.NetworkInterface(**fields)


def create_nic(client, name: str, subnet_id: str, **kwargs):
    return client.network_interfaces.begin_create_or_update(RESOURCE_GROUP, name, nic_model(subnet_id, **kwargs)).result()


def address(nic) -> str:
    return nic.ip_configurations[0].private_ip_address
