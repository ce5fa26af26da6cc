"""The repository's data-driven scenarios (tests/scenarios, tests/fixtures) loaded into the server
through the SDK, each into a subscription of its own, for Network Watcher's questions."""

from __future__ import annotations

import hashlib
import json
import pathlib
from dataclasses import dataclass, field
from typing import Optional

from azure.core.exceptions import HttpResponseError
from azure.mgmt.network import models

from conformance_support import COMPUTE_API_VERSION, LOCATION, SUBSCRIPTION, create_group, raw

REPO = pathlib.Path(__file__).resolve().parent.parent
SCENARIOS = REPO / "tests" / "scenarios"
# Where `az network watcher configure` puts the region's watcher.
WATCHER_GROUP = "NetworkWatcherRG"
WATCHER = f"NetworkWatcher_{LOCATION}"

# Creation order: what is referenced comes first.
ORDER = [
    ("Microsoft.Network/applicationSecurityGroups", "application_security_groups", models.ApplicationSecurityGroup),
    ("Microsoft.Network/networkSecurityGroups", "network_security_groups", models.NetworkSecurityGroup),
    ("Microsoft.Network/virtualNetworks", "virtual_networks", models.VirtualNetwork),
    ("Microsoft.Network/networkInterfaces", "network_interfaces", models.NetworkInterface),
    ("Microsoft.Compute/virtualMachines", None, None),
]


def subscription_for(key: str) -> str:
    """A subscription id of its own for `key` (Network Watcher reads a whole subscription)."""
    digest = hashlib.sha256(key.encode()).hexdigest()
    return f"{digest[:8]}-{digest[8:12]}-{digest[12:16]}-{digest[16:20]}-{digest[20:32]}"


def split_id(resource_id: str) -> tuple:
    """(resource group, name) of an ARM id."""
    parts = resource_id.strip("/").split("/")
    return parts[3], parts[-1]


@dataclass
class Environment:
    """One fixture set as stored in the server."""

    subscription: str
    resources: list = field(default_factory=list)

    def of_type(self, arm_type: str) -> list:
        return [r for r in self.resources if r["type"].lower() == arm_type.lower()]

    def find(self, arm_type: str, name: str) -> Optional[dict]:
        return next((r for r in self.of_type(arm_type) if r["name"].lower() == name.lower()), None)

    def nic_id(self, reference: str) -> str:
        """A scenario's `nic` (NIC or VM, by name or id) as a NIC id."""
        name = reference.rstrip("/").rsplit("/", 1)[-1]
        if "/virtualmachines/" in reference.lower() or ("/" not in reference and self.find("Microsoft.Compute/virtualMachines", name)):
            vm = self.find("Microsoft.Compute/virtualMachines", name)
            nics = vm["properties"]["networkProfile"]["networkInterfaces"]
            primary = next((n for n in nics if (n.get("properties") or {}).get("primary")), nics[0])
            return primary["id"]
        return self.find("Microsoft.Network/networkInterfaces", name)["id"]

    def vm_of(self, nic_id: str) -> Optional[dict]:
        for vm in self.of_type("Microsoft.Compute/virtualMachines"):
            if any(n["id"].lower() == nic_id.lower() for n in vm["properties"]["networkProfile"]["networkInterfaces"]):
                return vm
        return None


def load_environment(server, fixture_paths: list, subscription: str) -> Environment:
    """PUTs every resource of the fixtures into `subscription`, through the SDK (raw requests
    for Microsoft.Compute virtual machines, which azure-mgmt-network does not cover)."""
    documents = _documents(fixture_paths, subscription)
    environment = Environment(subscription=subscription, resources=documents)
    with server.client(subscription) as client:
        for group in sorted({split_id(doc["id"])[0] for doc in documents}):
            create_group(client, group)
        for arm_type, operations, model in ORDER:
            for doc in environment.of_type(arm_type):
                group, name = split_id(doc["id"])
                if operations is None:
                    response = raw(
                        client, "PUT",
                        f"{doc['id']}?api-version={COMPUTE_API_VERSION}",
                        body={k: v for k, v in doc.items() if k in ("location", "tags", "properties")},
                    )
                    assert response.status_code in (200, 201), f"PUT {doc['id']}: {response.status_code} {response.text()}"
                else:
                    getattr(client, operations).begin_create_or_update(group, name, model(doc)).result()
    return environment


def scenario(name: str) -> dict:
    path = SCENARIOS / name
    data = json.loads(path.read_text())
    data["environment"] = [(path.parent / p).resolve() for p in data["environment"]]
    return data


def endpoint(text: str) -> tuple:
    """'10.0.1.4:80' -> ('10.0.1.4', '80'); '[fd00::4]:80' -> ('fd00::4', '80')."""
    if text.startswith("["):
        address, _, port = text[1:].partition("]:")
        return address, port
    address, _, port = text.rpartition(":")
    return address, port


# --- validation scenarios ----------------------------------------------------------------------


def _documents(fixture_paths: list, subscription: str) -> list:
    documents = []
    for path in fixture_paths:
        text = pathlib.Path(path).read_text().replace(f"/subscriptions/{SUBSCRIPTION}/", f"/subscriptions/{subscription}/")
        loaded = json.loads(text)
        documents.extend(loaded["value"] if isinstance(loaded, dict) and "value" in loaded else loaded if isinstance(loaded, list) else [loaded])
    return documents


def check_validation_scenario(server, name: str) -> None:
    """PUTs a tests/scenarios/validation-*.json environment, resource by resource in dependency
    order, into a subscription of its own, and checks what Azure would answer:

    - a resource the scenario lists errors for is rejected with 400, the error's code is one of
      them and its details hold every one of them (code and target = the scenario's field);
    - every code of the scenario is answered by some write (the store never holds the invalid
      environment, whichever write completes it);
    - any other write succeeds, unless it references a resource that was rejected (then 400
      InvalidResourceReference), and extra details are only such references;
    - afterwards the effective NSGs of every stored NIC can still be asked (200).
    """
    data = scenario(name)
    subscription = subscription_for("validation:" + name)
    documents = _documents(data["environment"], subscription)
    expected: dict = {}
    for error in data["errors"]:
        resource = error["resource"].replace(f"/subscriptions/{SUBSCRIPTION}/", f"/subscriptions/{subscription}/").lower()
        expected.setdefault(resource, set()).add((error["code"], error["field"]))

    failures: dict = {}  # id (lower) -> (status, code, {(detail code, target)})
    with server.client(subscription) as client:
        for group in sorted({split_id(doc["id"])[0] for doc in documents}):
            create_group(client, group)
        for arm_type, operations, model in ORDER:
            for doc in [d for d in documents if d["type"].lower() == arm_type.lower()]:
                group, resource_name = split_id(doc["id"])
                if operations is None:
                    response = raw(client, "PUT", f"{doc['id']}?api-version={COMPUTE_API_VERSION}",
                                   body={k: v for k, v in doc.items() if k in ("location", "tags", "properties")})
                    if response.status_code >= 300:
                        error = response.json()["error"]
                        failures[doc["id"].lower()] = (response.status_code, error["code"],
                                                       {(d["code"], d.get("target")) for d in error.get("details") or []} or {(error["code"], error.get("target"))})
                    continue
                try:
                    getattr(client, operations).begin_create_or_update(group, resource_name, model(doc)).result()
                except HttpResponseError as caught:
                    error = caught.error
                    details = {(d.code, d.target) for d in (error.details or [])} if error else set()
                    failures[doc["id"].lower()] = (caught.status_code, error.code if error else None,
                                                   details or {(error.code if error else None, error.target if error else None)})

        def cascade(doc_id: str, details: set) -> bool:
            """Only references to resources that were themselves rejected."""
            text = json.dumps(next(d for d in documents if d["id"].lower() == doc_id)).lower()
            return all(code == "InvalidResourceReference" for code, _ in details) and any(f in text for f in failures if f != doc_id)

        for resource, wanted in expected.items():
            if resource in failures:
                status, code, details = failures[resource]
                assert status == 400, (resource, failures[resource])
                assert code in {c for c, _ in wanted}, (resource, code, wanted)
                assert wanted <= details, f"{resource}: details lack {wanted - details}"
                extra = details - wanted
                assert not extra or cascade(resource, extra), f"{resource}: unexpected {extra}"
        answered = {c for _, code, details in failures.values() for c in {code} | {d for d, _ in details}}
        missing = {c for wanted in expected.values() for c, _ in wanted} - answered
        assert not missing, f"no write was rejected with {missing}; rejected: {failures}"
        for resource, (status, code, details) in failures.items():
            if resource not in expected:
                assert status == 400 and cascade(resource, details), f"{resource} rejected: {failures[resource]}"

        for doc in documents:
            if doc["type"].lower() == "microsoft.network/networkinterfaces" and doc["id"].lower() not in failures:
                group, nic = split_id(doc["id"])
                try:
                    client.network_interfaces.begin_list_effective_network_security_groups(group, nic).result()
                except HttpResponseError as caught:
                    raise AssertionError(f"effective NSGs of {nic} after the scenario's writes: {caught}") from caught
