"""Service tags (`client.service_tags.list`) from the files the server loaded, and
`GET /subscriptions` (what `az login` reads)."""

from __future__ import annotations

import ipaddress
import json

from azure.mgmt.network import models

from conformance_support import SUBSCRIPTION, raw


def _loaded_tags(server) -> tuple:
    """(cloud, change number, {name: tag}) of the service tag files the server was started with."""
    cloud, change, tags = None, None, {}
    for path in server.service_tags:
        data = json.loads(path.read_text())
        cloud, change = data.get("cloud", cloud), data.get("changeNumber", change)
        for tag in data["values"]:
            tags[tag["name"]] = tag
    return cloud, change, tags


def _networks(prefixes) -> set:
    return {ipaddress.ip_network(p, strict=False) for p in prefixes}


def test_service_tags_are_the_loaded_files(client, server):
    result = client.service_tags.list("westeurope")
    assert isinstance(result, models.ServiceTagsListResult)
    cloud, change, expected = _loaded_tags(server)
    # Python pitfall: the list is `values_property` (`values` is the mapping method).
    got = {t.name: t for t in result.values_property or []}
    assert set(got) == set(expected)
    if not expected:
        return
    assert result.type == "Microsoft.Network/serviceTags"
    assert result.cloud == cloud
    assert result.name == cloud.lower()
    assert result.id == f"/subscriptions/{SUBSCRIPTION}/providers/Microsoft.Network/serviceTags/{cloud.lower()}"
    assert result.change_number == str(change)
    for name, tag in expected.items():
        answered = got[name]
        properties = tag["properties"]
        assert answered.id == tag["id"]
        assert answered.properties.change_number == str(properties["changeNumber"]), name
        assert answered.properties.region == properties["region"], name
        assert answered.properties.system_service == properties["systemService"], name
        assert len(answered.properties.address_prefixes) == len(properties["addressPrefixes"]), name
        assert _networks(answered.properties.address_prefixes) == _networks(properties["addressPrefixes"]), name


def test_service_tags_are_the_same_for_every_location(client):
    west = client.service_tags.list("westeurope")
    east = client.service_tags.list("eastus")
    assert [t.name for t in west.values_property or []] == [t.name for t in east.values_property or []]


def test_the_big_tags_are_complete(client, server):
    _, _, expected = _loaded_tags(server)
    got = {t.name: t for t in client.service_tags.list("westeurope").values_property or []}
    for name in ("AzureCloud", "Storage", "Storage.WestEurope"):
        if name in expected:
            assert len(got[name].properties.address_prefixes) == len(expected[name]["properties"]["addressPrefixes"])


def test_get_subscriptions_lists_the_suites_subscription(client):
    response = raw(client, "GET", "/subscriptions?api-version=2022-12-01")
    assert response.status_code == 200, response.text()
    subscriptions = {s["subscriptionId"]: s for s in response.json()["value"]}
    assert SUBSCRIPTION in subscriptions
    mine = subscriptions[SUBSCRIPTION]
    assert mine["id"] == f"/subscriptions/{SUBSCRIPTION}"
    assert mine["state"] == "Enabled"
    assert mine["tenantId"]
    assert mine["displayName"]


def test_get_subscriptions_needs_the_token(server):
    with server.client(token="wrong") as intruder:
        response = raw(intruder, "GET", "/subscriptions?api-version=2022-12-01")
    assert response.status_code == 401
