#!/usr/bin/env bash
# The real Azure CLI against `opennsg serve`: HTTPS with a self-signed certificate, a registered
# cloud, `az login --identity`, then nsg / rule / asg / vnet / nic create, `nic list-effective-nsg`,
# `watcher test-ip-flow`, `watcher run-configuration-diagnostic`, `watcher flow-log
# create/show/list/update/delete` and `list-service-tags`,
# each answer checked. Installs the pinned
# azure-cli into target/az-venv (under $CARGO_TARGET_DIR when set) if it is not there. Bounded: every az call has a timeout, and the
# server is stopped whatever happens.
set -euo pipefail
cd "$(dirname "$0")/.."

AZURE_CLI_VERSION=2.91.0
cargo build --release -p opennsg --locked
opennsg="${OPENNSG_BIN:-${CARGO_TARGET_DIR:-target}/release/opennsg}"
venv="${CARGO_TARGET_DIR:-target}/az-venv"
if [ ! -x "$venv/bin/az" ] || ! "$venv/bin/python" -m pip show azure-cli 2>/dev/null | grep -qx "Version: $AZURE_CLI_VERSION"; then
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/python" -m pip install --no-input --disable-pip-version-check -q "azure-cli==$AZURE_CLI_VERSION"
fi

. conformance/https_server.sh --identity-endpoint

export AZURE_CONFIG_DIR="$work/az"
export AZURE_CORE_COLLECT_TELEMETRY=false
export AZURE_CORE_ONLY_SHOW_ERRORS=true
export OPENNSG_TOKEN="$token"
endpoint="https://127.0.0.1:$port"
sub="00000000-0000-0000-0000-000000000001"
az() { timeout 120 "$venv/bin/az" "$@"; }
passed=0
check() { # check WHAT EXPECTED ACTUAL
    if [ "$2" != "$3" ]; then
        echo "az: $1: expected '$2', got '$3'" >&2
        tail -20 "$work/server.log" >&2
        exit 1
    fi
    echo "az: $1: $3"
    passed=$((passed + 1))
}

# The commands `serve` printed for its own address, certificate and token, run as printed (the
# README shows the same block).
setup="$(sed -n '/^opennsg: to use the Azure CLI with this server:$/,/^  az login --identity$/p' "$work/server.log" | tail -n +2)"
[ -n "$setup" ] || { echo "az: serve printed no Azure CLI setup" >&2; cat "$work/server.log" >&2; exit 1; }
eval "$setup" > "$work/login.json"
check "login --identity" "$sub" "$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))[0]["id"])' "$work/login.json")"

# Microsoft's tutorial "Filter network traffic with a network security group using the Azure
# CLI", in its own form (no location but the group's; the VMs it creates are not served here).
az group create --name myResourceGroup --location eastus -o none
check "group exists" "true" "$(az group exists --name myResourceGroup)"
az network asg create --resource-group myResourceGroup --name myAsgWebServers --location eastus -o none
az network asg create --resource-group myResourceGroup --name myAsgMgmtServers --location eastus -o none
az network nsg create --resource-group myResourceGroup --name myNsg -o none
check "nsg location from its group" "eastus" \
    "$(az network nsg show --resource-group myResourceGroup --name myNsg --query location -o tsv)"
az network nsg rule create --resource-group myResourceGroup --nsg-name myNsg --name Allow-Web-All \
    --access Allow --protocol Tcp --direction Inbound --priority 100 --source-address-prefix Internet \
    --source-port-range "*" --destination-asgs "myAsgWebServers" --destination-port-range 80 443 -o none
az network nsg rule create --resource-group myResourceGroup --nsg-name myNsg --name Allow-SSH-All \
    --access Allow --protocol Tcp --direction Inbound --priority 110 --source-address-prefix Internet \
    --source-port-range "*" --destination-asgs "myAsgMgmtServers" --destination-port-range 22 -o none
check "nsg rule list -o table" "2" \
    "$(az network nsg rule list --resource-group myResourceGroup --nsg-name myNsg -o table | grep -c Allow-)"
az network vnet create --name myVirtualNetwork --resource-group myResourceGroup --address-prefixes 10.0.0.0/16 -o none
az network vnet subnet create --vnet-name myVirtualNetwork --resource-group myResourceGroup --name mySubnet \
    --address-prefix 10.0.0.0/24 --network-security-group myNsg -o none
check "subnet's nsg" "myNsg" \
    "$(az network vnet subnet show --vnet-name myVirtualNetwork --resource-group myResourceGroup --name mySubnet --query 'networkSecurityGroup.id' -o tsv | sed 's#.*/##')"
az group delete --name myResourceGroup --yes
check "group deleted" "false" "$(az group exists --name myResourceGroup)"

az group create -n rg1 -l westeurope -o none
az network nsg create -g rg1 -n nsg1 -l westeurope -o none
az network nsg rule create -g rg1 --nsg-name nsg1 -n allow-http --priority 200 --direction Inbound \
    --access Allow --protocol Tcp --source-address-prefixes Internet --destination-port-ranges 80 -o none
check "nsg rule list" "allow-http" "$(az network nsg rule list -g rg1 --nsg-name nsg1 --query '[].name' -o tsv)"
check "default rules" "6" "$(az network nsg show -g rg1 -n nsg1 --query 'length(defaultSecurityRules)' -o tsv)"
az network asg create -g rg1 -n web -l westeurope -o none
az network vnet create -g rg1 -n vnet1 -l westeurope --address-prefixes 10.0.0.0/16 \
    --subnet-name subnet1 --subnet-prefixes 10.0.1.0/24 -o none
az network vnet subnet update -g rg1 --vnet-name vnet1 -n subnet1 --network-security-group nsg1 -o none
az network nic create -g rg1 -n nic1 -l westeurope --vnet-name vnet1 --subnet subnet1 --asgs web -o none
check "nic address" "10.0.1.4" "$(az network nic show -g rg1 -n nic1 --query 'ipConfigurations[0].privateIPAddress' -o tsv)"
az rest --method put --url "$endpoint/subscriptions/$sub/resourceGroups/rg1/providers/Microsoft.Compute/virtualMachines/vm1?api-version=2024-07-01" \
    --body "{\"location\": \"westeurope\", \"properties\": {\"networkProfile\": {\"networkInterfaces\": [{\"id\": \"/subscriptions/$sub/resourceGroups/rg1/providers/Microsoft.Network/networkInterfaces/nic1\"}]}}}" -o none

check "nic list-effective-nsg" "securityRules/allow-http" \
    "$(az network nic list-effective-nsg -g rg1 -n nic1 --query 'value[0].effectiveSecurityRules[0].name' -o tsv)"
az group create -n NetworkWatcherRG -l westeurope -o none
az network watcher configure -g NetworkWatcherRG -l westeurope --enabled true -o none
check "watcher test-ip-flow (allowed)" "Allow securityRules/allow-http" \
    "$(az network watcher test-ip-flow -g rg1 --vm vm1 --direction Inbound --protocol TCP --local 10.0.1.4:80 --remote 203.0.113.10:50000 --query '[access, ruleName]' -o tsv | tr '\t\n' '  ' | sed 's/ *$//')"
check "watcher test-ip-flow (denied)" "Deny defaultSecurityRules/DenyAllInBound" \
    "$(az network watcher test-ip-flow -g rg1 --vm vm1 --direction Inbound --protocol TCP --local 10.0.1.4:22 --remote 203.0.113.10:50000 --query '[access, ruleName]' -o tsv | tr '\t\n' '  ' | sed 's/ *$//')"
# NSG diagnostics: the CLI reads the target's location (provider metadata, then the resource),
# finds the watcher there, POSTs and polls the Location it is given. By id, by name and type,
# a NIC, and a query list with every protocol.
vm1_id="/subscriptions/$sub/resourceGroups/rg1/providers/Microsoft.Compute/virtualMachines/vm1"
nic1_id="/subscriptions/$sub/resourceGroups/rg1/providers/Microsoft.Network/networkInterfaces/nic1"
verdict='results[0].networkSecurityGroupResult.[securityRuleAccessResult, evaluatedNetworkSecurityGroups[0].matchedRule.ruleName]'
check "watcher run-configuration-diagnostic (allowed)" "Allow UserRule_allow-http" \
    "$(az network watcher run-configuration-diagnostic --resource "$vm1_id" --direction Inbound --protocol TCP \
        --source Internet --destination 10.0.1.4 --port 80 --query "$verdict" -o tsv | tr '\t\n' '  ' | sed 's/ *$//')"
check "watcher run-configuration-diagnostic (denied, by name)" "Deny DefaultRule_DenyAllInBound" \
    "$(az network watcher run-configuration-diagnostic --resource vm1 --resource-type virtualMachines -g rg1 \
        --direction Inbound --protocol TCP --source '*' --destination '*' --port 22 --query "$verdict" -o tsv | tr '\t\n' '  ' | sed 's/ *$//')"
# (OpenNSG's `example` in the answer is not in the CLI's output: it keeps only the fields of
# Azure's schema. The SDK tests read it.)
check "watcher run-configuration-diagnostic (nic, partly allowed)" "Deny DefaultRule_DenyAllInBound" \
    "$(az network watcher run-configuration-diagnostic --resource "$nic1_id" --direction Inbound --protocol TCP \
        --source '*' --destination '*' --port 80 --query "$verdict" -o tsv | tr '\t\n' '  ' | sed 's/ *$//')"
check "watcher run-configuration-diagnostic (queries)" "Allow Deny" \
    "$(az network watcher run-configuration-diagnostic --resource "$vm1_id" --queries '[
        {"direction": "Outbound", "protocol": "*", "source": "10.0.1.4", "destination": "Internet", "destinationPort": "*"},
        {"direction": "Inbound", "protocol": "*", "source": "Storage", "destination": "*", "destinationPort": "*"}]' \
        --query 'results[].networkSecurityGroupResult.securityRuleAccessResult' -o tsv | tr '\t\n' '  ' | sed 's/ *$//')"
# VNet flow logs as Microsoft's "Manage virtual network flow logs using the Azure CLI" makes them:
# the watcher found by location, a VNet target, a storage account id (its form only is checked).
storage="/subscriptions/$sub/resourceGroups/rg1/providers/Microsoft.Storage/storageAccounts/flowlogs1"
vnet1_id="/subscriptions/$sub/resourceGroups/rg1/providers/Microsoft.Network/virtualNetworks/vnet1"
az network watcher flow-log create -l westeurope -n vnet1-log --vnet "$vnet1_id" --storage-account "$storage" -o none
check "flow-log show" "Succeeded $vnet1_id true" \
    "$(az network watcher flow-log show -l westeurope -n vnet1-log --query '[provisioningState, targetResourceId, enabled]' -o tsv | tr '\t\n' '  ' | sed 's/ *$//')"
check "flow-log list" "vnet1-log" "$(az network watcher flow-log list -l westeurope --query '[].name' -o tsv)"
az network watcher flow-log update -l westeurope -n vnet1-log --retention 7 --enabled false -o none
check "flow-log update" "7 true false" \
    "$(az network watcher flow-log show -l westeurope -n vnet1-log --query '[retentionPolicy.days, retentionPolicy.enabled, enabled]' -o tsv | tr '\t\n' '  ' | sed 's/ *$//')"
refused="$(az network watcher flow-log create -l westeurope -n nsg1-log -g rg1 --nsg nsg1 --storage-account "$storage" -o none 2>&1 || true)"
check "new NSG flow log refused" "NsgFlowLogCreationBlocked" "$(grep -o NsgFlowLogCreationBlocked <<<"$refused" | head -1)"
az network watcher flow-log delete -l westeurope -n vnet1-log
check "flow-log delete" "0" "$(az network watcher flow-log list -l westeurope --query 'length(@)' -o tsv)"
loaded_tags="$(python3 -c 'import json, sys; print(len({t["name"] for f in sys.argv[1:] for t in json.load(open(f))["values"]}))' ${service_tags//:/ })"
check "list-service-tags" "$loaded_tags" "$(az network list-service-tags -l westeurope --query 'length(values)' -o tsv)"
echo "az: $passed passed, 0 failed"
