// The Azure SDK for JavaScript (@azure/arm-network, pinned in package.json) against a real
// `opennsg serve` over HTTPS with its self-signed certificate, trusted through
// NODE_EXTRA_CA_CERTS, as a user would. ../js.sh starts the server and sets OPENNSG_URL,
// OPENNSG_TOKEN, OPENNSG_SUBSCRIPTION and OPENNSG_SERVICE_TAGS (the files it loaded).

import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { NetworkManagementClient } from "@azure/arm-network";

const url = process.env.OPENNSG_URL;
const token = process.env.OPENNSG_TOKEN;
const subscription = process.env.OPENNSG_SUBSCRIPTION;
assert.ok(url && token && subscription, "run by conformance/js.sh");

// Any TokenCredential: the server accepts its bearer token whatever the scope.
const credential = {
  getToken: async () => ({ token, expiresOnTimestamp: Date.now() + 3600_000 }),
};
const client = new NetworkManagementClient(credential, subscription, { endpoint: url });
const location = "westeurope";
const group = "js-rg";
const watcherGroup = "NetworkWatcherRG";
const id = (kind, name, rg = group) =>
  `/subscriptions/${subscription}/resourceGroups/${rg}/providers/Microsoft.Network/${kind}/${name}`;
const vmId = (name) =>
  `/subscriptions/${subscription}/resourceGroups/${group}/providers/Microsoft.Compute/virtualMachines/${name}`;

/** A request the network client has no operation for, through plain HTTPS. */
async function raw(method, path, body, headers = {}) {
  const response = await fetch(`${url}${path}`, {
    method,
    headers: { authorization: `Bearer ${token}`, "content-type": "application/json", ...headers },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  return { status: response.status, body: text ? JSON.parse(text) : null };
}

const rule = (name, priority, port, fields = {}) => ({
  name,
  protocol: "Tcp",
  sourcePortRange: "*",
  destinationPortRange: port,
  sourceAddressPrefix: "Internet",
  destinationAddressPrefix: "*",
  access: "Allow",
  priority,
  direction: "Inbound",
  ...fields,
});

async function rejects(promise, status, code) {
  await assert.rejects(promise, (error) => {
    assert.equal(error.statusCode, status, String(error));
    assert.equal(error.code, code, String(error));
    return true;
  });
}

test("a resource group is created for the tests", async () => {
  for (const rg of [group, watcherGroup]) {
    const reply = await raw("PUT", `/subscriptions/${subscription}/resourcegroups/${rg}?api-version=2021-04-01`, { location });
    assert.ok([200, 201].includes(reply.status), JSON.stringify(reply));
  }
});

test("an NSG with inline rules, its rules and its six default rules", async () => {
  const nsg = await client.networkSecurityGroups.createOrUpdate(group, "inline", {
    location,
    securityRules: [rule("allow-http", 200, "80")],
  });
  assert.equal(nsg.provisioningState, "Succeeded");
  assert.deepEqual(nsg.securityRules.map((r) => r.name), ["allow-http"]);
  assert.deepEqual(nsg.securityRules[0].sourcePortRanges, []);
  assert.equal(nsg.defaultSecurityRules.length, 6);

  const added = await client.securityRules.createOrUpdate(group, "inline", "allow-ssh", rule("allow-ssh", 210, "22"));
  assert.equal(added.destinationPortRange, "22");
  const rules = [];
  for await (const r of client.securityRules.list(group, "inline")) rules.push(r.name);
  assert.deepEqual(rules.sort(), ["allow-http", "allow-ssh"]);
  assert.equal((await client.securityRules.get(group, "inline", "allow-ssh")).priority, 210);
  await client.securityRules.delete(group, "inline", "allow-ssh");
  await rejects(client.securityRules.get(group, "inline", "allow-ssh"), 404, "NotFound");

  const defaults = [];
  for await (const r of client.defaultSecurityRules.list(group, "inline")) defaults.push(r.name);
  assert.ok(defaults.includes("DenyAllInBound"), defaults.join());
  const deny = await client.defaultSecurityRules.get(group, "inline", "DenyAllInBound");
  assert.equal(deny.priority, 65500);
  assert.equal(deny.access, "Deny");
});

test("paging over more than 100 NSGs, in the group and in the subscription", async () => {
  const pagingGroup = "js-paging";
  await raw("PUT", `/subscriptions/${subscription}/resourcegroups/${pagingGroup}?api-version=2021-04-01`, { location });
  const names = Array.from({ length: 105 }, (_, i) => `nsg-${String(i).padStart(3, "0")}`);
  for (const name of names) {
    await client.networkSecurityGroups.createOrUpdate(pagingGroup, name, { location });
  }
  const listed = [];
  for await (const nsg of client.networkSecurityGroups.list(pagingGroup)) listed.push(nsg.name);
  assert.deepEqual(listed.sort(), names);
  const everywhere = [];
  for await (const nsg of client.networkSecurityGroups.listAll()) everywhere.push(nsg.id);
  assert.ok(everywhere.length >= 106, `${everywhere.length} NSGs in the subscription`);
  assert.ok(everywhere.includes(id("networkSecurityGroups", "inline")));
});

test("tags are updated with PATCH", async () => {
  await client.networkSecurityGroups.createOrUpdate(group, "tagged", { location, tags: { a: "1" } });
  const updated = await client.networkSecurityGroups.updateTags(group, "tagged", { tags: { env: "test" } });
  assert.deepEqual(updated.tags, { env: "test" });
  assert.deepEqual((await client.networkSecurityGroups.get(group, "tagged")).tags, { env: "test" });
});

test("VNet and subnet association, a NIC with ASGs, effective NSGs, IP flow verify, security group view", async () => {
  const nsg = await client.networkSecurityGroups.createOrUpdate(group, "subnet-nsg", {
    location,
    securityRules: [rule("allow-web", 100, "80")],
  });
  const asg = await client.applicationSecurityGroups.createOrUpdate(group, "web", { location });
  const vnet = await client.virtualNetworks.createOrUpdate(group, "vnet1", {
    location,
    addressSpace: { addressPrefixes: ["10.0.0.0/16"] },
    subnets: [{ name: "s1", addressPrefix: "10.0.1.0/24", networkSecurityGroup: { id: nsg.id } }],
  });
  const subnetId = vnet.subnets[0].id;
  const associated = await client.networkSecurityGroups.get(group, "subnet-nsg");
  assert.deepEqual(associated.subnets.map((s) => s.id), [subnetId]);

  const nic = await client.networkInterfaces.createOrUpdate(group, "nic1", {
    location,
    ipConfigurations: [
      { name: "ipconfig1", subnet: { id: subnetId }, applicationSecurityGroups: [{ id: asg.id }] },
    ],
  });
  const config = nic.ipConfigurations[0];
  assert.equal(config.privateIPAddress, "10.0.1.4");
  assert.equal(config.primary, true);
  assert.deepEqual(config.applicationSecurityGroups.map((a) => a.id), [asg.id]);
  assert.equal(nic.enableIPForwarding, false);
  const subnet = await client.subnets.get(group, "vnet1", "s1");
  assert.deepEqual(subnet.ipConfigurations.map((c) => c.id), [config.id]);

  const effective = await client.networkInterfaces.listEffectiveNetworkSecurityGroups(group, "nic1");
  const names = effective.value.flatMap((g) => g.effectiveSecurityRules.map((r) => r.name));
  assert.ok(names.includes("securityRules/allow-web"), names.join());

  const vm = await raw("PUT", `${vmId("vm1")}?api-version=2024-07-01`, {
    location,
    properties: { networkProfile: { networkInterfaces: [{ id: nic.id }] } },
  });
  assert.equal(vm.status, 201, JSON.stringify(vm));
  await client.networkWatchers.createOrUpdate(watcherGroup, "NetworkWatcher_westeurope", { location });
  const flow = (localPort) => ({
    targetResourceId: vmId("vm1"),
    direction: "Inbound",
    protocol: "TCP",
    localIPAddress: "10.0.1.4",
    localPort,
    remoteIPAddress: "203.0.113.10",
    remotePort: "50000",
  });
  const allowed = await client.networkWatchers.verifyIPFlow(watcherGroup, "NetworkWatcher_westeurope", flow("80"));
  assert.deepEqual([allowed.access, allowed.ruleName], ["Allow", "securityRules/allow-web"]);
  const withNic = await client.networkWatchers.verifyIPFlow(watcherGroup, "NetworkWatcher_westeurope", {
    ...flow("22"),
    targetNicResourceId: nic.id,
  });
  assert.deepEqual([withNic.access, withNic.ruleName], ["Deny", "defaultSecurityRules/DenyAllInBound"]);

  const view = await client.networkWatchers.getVMSecurityRules(watcherGroup, "NetworkWatcher_westeurope", {
    targetResourceId: vmId("vm1"),
  });
  const interfaceView = view.networkInterfaces[0];
  assert.equal(interfaceView.id, nic.id);
  const subnetRules = interfaceView.securityRuleAssociations.subnetAssociation.securityRules.map((r) => r.name);
  assert.ok(subnetRules.includes("allow-web"), subnetRules.join());

  // In use: the NSG cannot be deleted while the subnet names it.
  await rejects(
    client.networkSecurityGroups.delete(group, "subnet-nsg"),
    400,
    "InUseNetworkSecurityGroupCannotBeDeleted",
  );
});

test("service tags come from the loaded files", async () => {
  const loaded = new Map();
  for (const file of (process.env.OPENNSG_SERVICE_TAGS ?? "").split(":").filter(Boolean)) {
    for (const tag of JSON.parse(readFileSync(file, "utf8")).values) loaded.set(tag.name, tag);
  }
  const tags = await client.serviceTags.list(location);
  assert.deepEqual(tags.values.map((t) => t.name).sort(), [...loaded.keys()].sort());
  const storage = tags.values.find((t) => t.name === "Storage.WestEurope");
  assert.equal(
    storage.properties.addressPrefixes.length,
    loaded.get("Storage.WestEurope").properties.addressPrefixes.length,
  );
});

test("a stale If-Match is refused with 412", async () => {
  const first = await client.networkSecurityGroups.createOrUpdate(group, "etagged", { location });
  await client.networkSecurityGroups.createOrUpdate(group, "etagged", { location, tags: { v: "2" } });
  await rejects(
    client.networkSecurityGroups.createOrUpdate(
      group,
      "etagged",
      { location, tags: { v: "3" } },
      { requestOptions: { headers: { "If-Match": first.etag } } },
    ),
    412,
    "PreconditionFailed",
  );
  assert.deepEqual((await client.networkSecurityGroups.get(group, "etagged")).tags, { v: "2" });
});
