// orderflow on Azure: Cosmos DB (events, snapshots, leases, key claims,
// refusals, parked streams), Event Hubs with its Kafka endpoint (the topics),
// a Function App on the Flex Consumption plan running the custom handler,
// Key Vault for the one secret Kafka's SASL PLAIN needs, and Application
// Insights.
//
//   az deployment group create -g <group> -f infra/main.bicep -p size=small
//
// Secure by default: TLS 1.2 only, HTTPS only, no keys in outputs; the Function
// App reaches Storage, Key Vault, Application Insights and Cosmos DB (whose
// keys are disabled) by its managed identity. See docs/deploy.md.

targetScope = 'resourceGroup'

@description('Prefix of every resource name: 3-11 letters and digits, starting with a letter (Key Vault and Event Hubs names must); used in lower case (Cosmos DB and Storage names must be).')
@minLength(3)
@maxLength(11)
param name string = 'orderflow'

@description('Region of every resource.')
param location string = resourceGroup().location

@description('Traffic profile: small (up to ~10 orders/s), medium (~100/s), large (~1,000/s). See docs/cost.md.')
@allowed(['small', 'medium', 'large'])
param size string = 'small'

@description('Cosmos DB capacity: serverless (pay per request; small, spiky traffic) or autoscale (provisioned RU/s that scale between 10% and 100% of the maximum).')
@allowed(['serverless', 'autoscale'])
param cosmosCapacity string = size == 'small' ? 'serverless' : 'autoscale'

// Every profile has 32 partitions per topic, Event Hubs Standard's most: a
// Standard event hub's partition count is fixed when it is created (only
// Premium and Dedicated add partitions later), so a deployment that moves
// to a larger profile keeps its topics. Partitions cost nothing by
// themselves; throughput units are what a profile buys. The Cosmos DB
// maxima fit `orderflow cost --ru-from planning` (about 335 RU an order).
// Flex Consumption bills each instance's memory while it executes, at least
// a second at a time: the handler needs under 100 MB, so the small profile
// takes the smallest instance (512 MB) and the others the default (2,048 MB,
// more concurrency per instance). A region's Flex apps share a quota of
// 512,000 MB per subscription: 250 instances of 2,048 MB (raise it with a
// quota request before going further). src/cost/model.rs prices the same
// profiles.
var profiles = {
  small: { cosmosMaxThroughput: 1000, kafkaPartitions: 32, eventHubsCapacity: 1, maximumInstanceCount: 40, instanceMemoryMB: 512, zoneRedundant: false }
  medium: { cosmosMaxThroughput: 40000, kafkaPartitions: 32, eventHubsCapacity: 2, maximumInstanceCount: 100, instanceMemoryMB: 2048, zoneRedundant: true }
  large: { cosmosMaxThroughput: 400000, kafkaPartitions: 32, eventHubsCapacity: 8, maximumInstanceCount: 250, instanceMemoryMB: 2048, zoneRedundant: true }
}
var profile = profiles[size]
var prefix = toLower(name)
var suffix = uniqueString(resourceGroup().id, prefix)

module monitoring 'modules/monitoring.bicep' = {
  name: 'monitoring'
  params: { name: prefix, location: location }
}

module cosmos 'modules/cosmos.bicep' = {
  name: 'cosmos'
  params: {
    accountName: '${prefix}-${suffix}'
    location: location
    capacity: cosmosCapacity
    maxThroughput: profile.cosmosMaxThroughput
    zoneRedundant: profile.zoneRedundant
  }
}

module eventHubs 'modules/eventhubs.bicep' = {
  name: 'eventhubs'
  params: {
    namespaceName: '${prefix}-${suffix}'
    location: location
    partitions: profile.kafkaPartitions
    capacity: profile.eventHubsCapacity
    zoneRedundant: profile.zoneRedundant
  }
}

module functionApp 'modules/functionapp.bicep' = {
  name: 'functionapp'
  params: {
    name: '${prefix}-${suffix}'
    storageName: take('${prefix}${suffix}', 24)
    vaultName: take('${prefix}-${suffix}', 24)
    location: location
    maximumInstanceCount: profile.maximumInstanceCount
    instanceMemoryMB: profile.instanceMemoryMB
    zoneRedundant: profile.zoneRedundant
    appInsightsName: monitoring.outputs.appInsightsName
    cosmosAccountName: cosmos.outputs.accountName
    eventHubsNamespaceName: eventHubs.outputs.namespaceName
    eventHubsAuthorizationRuleName: eventHubs.outputs.authorizationRuleName
  }
}

output functionAppName string = functionApp.outputs.functionAppName
output functionAppUrl string = functionApp.outputs.url
output cosmosEndpoint string = cosmos.outputs.endpoint
output kafkaBootstrapServers string = eventHubs.outputs.kafkaBootstrapServers
