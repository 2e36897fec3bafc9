// Event Hubs: the managed Kafka on Azure. Each event hub is a Kafka topic,
// reached at <namespace>.servicebus.windows.net:9093 (SASL_SSL, PLAIN).

param namespaceName string
param location string
param partitions int
@description('Throughput units (Standard).')
param capacity int
param zoneRedundant bool

var ingestionTopics = ['payments', 'warehouse', 'stock']
var downstreamTopics = ['orderflow.orders', 'orderflow.inventory', 'orderflow.deadletter']

resource namespace 'Microsoft.EventHub/namespaces@2024-01-01' = {
  name: namespaceName
  location: location
  sku: { name: 'Standard', tier: 'Standard', capacity: capacity }
  properties: {
    minimumTlsVersion: '1.2'
    kafkaEnabled: true
    zoneRedundant: zoneRedundant
    isAutoInflateEnabled: true
    maximumThroughputUnits: capacity * 4
    disableLocalAuth: false
  }
}

resource topics 'Microsoft.EventHub/namespaces/eventhubs@2024-01-01' = [
  for topic in concat(ingestionTopics, downstreamTopics): {
    parent: namespace
    name: topic
    properties: {
      partitionCount: partitions
      messageRetentionInDays: 7
    }
  }
]

// No consumer groups are declared: Kafka clients create theirs as they join
// (one per ingest-* function, see functionapp.bicep).

// Listen and Send only: the app never manages the namespace.
resource appRule 'Microsoft.EventHub/namespaces/authorizationRules@2024-01-01' = {
  parent: namespace
  name: 'orderflow-app'
  properties: { rights: ['Listen', 'Send'] }
}

output namespaceName string = namespace.name
output authorizationRuleName string = appRule.name
output kafkaBootstrapServers string = '${namespace.name}.servicebus.windows.net:9093'
