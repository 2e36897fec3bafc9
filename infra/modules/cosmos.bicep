// The Cosmos DB for NoSQL account, database and the containers of DESIGN §3
// (and orderflow's own: key claims, refused reactions, parked streams, timers,
// the archive), with allow-list indexing (only the paths queries use).

param accountName string
param location string
@allowed(['serverless', 'autoscale'])
param capacity string
@description('Autoscale maximum RU/s of the database (shared by its containers); ignored when serverless.')
param maxThroughput int
param zoneRedundant bool
param databaseName string = 'orderflow'

var serverless = capacity == 'serverless'

// Indexing is an allow-list: everything is excluded but the paths the
// queries filter or sort on. In `expiring` containers TTL is on with no
// default expiry (`defaultTtl: -1`): idempotency records and key claims
// carry their own `ttl` (the idempotency retention); the rest is kept.
var containers = [
  { name: 'events', partitionKey: '/streamId', includedPaths: [{ path: '/index/?' }], expiring: true }
  { name: 'snapshots', partitionKey: '/id', includedPaths: [{ path: '/customerId/?' }, { path: '/updatedAt/?' }, { path: '/state/status/?' }, { path: '/version/?' }, { path: '/archivedThrough/?' }], expiring: false }
  { name: 'leases', partitionKey: '/id', includedPaths: [{ path: '/consumer/?' }], expiring: true }
  { name: 'idempotency', partitionKey: '/id', includedPaths: [], expiring: true }
  { name: 'refusals', partitionKey: '/id', includedPaths: [], expiring: false }
  { name: 'parked', partitionKey: '/id', includedPaths: [{ path: '/consumer/?' }], expiring: false }
  { name: 'timers', partitionKey: '/id', includedPaths: [{ path: '/dueAt/?' }], expiring: false }
  { name: 'archive', partitionKey: '/streamId', includedPaths: [], expiring: false }
]

resource account 'Microsoft.DocumentDB/databaseAccounts@2024-11-15' = {
  // checkov:skip=CKV_AZURE_99:The Flex Consumption app reaches Cosmos DB over its public endpoint (no VNet in this template); access needs a key or an Entra role.
  // checkov:skip=CKV_AZURE_101:Same: public network access is how the Function App reaches the account without VNet integration.
  name: accountName
  location: location
  kind: 'GlobalDocumentDB'
  properties: {
    databaseAccountOfferType: 'Standard'
    consistencyPolicy: { defaultConsistencyLevel: 'Session' }
    locations: [{ locationName: location, failoverPriority: 0, isZoneRedundant: zoneRedundant }]
    capabilities: serverless ? [{ name: 'EnableServerless' }] : []
    minimalTlsVersion: 'Tls12'
    disableKeyBasedMetadataWriteAccess: true
    // Entra ID only: the app, its triggers and operators reach the data by
    // identity and the Cosmos DB Built-in Data Contributor role; no key works.
    disableLocalAuth: true
    enableAutomaticFailover: false
    backupPolicy: { type: 'Continuous', continuousModeProperties: { tier: 'Continuous7Days' } }
  }
}

resource database 'Microsoft.DocumentDB/databaseAccounts/sqlDatabases@2024-11-15' = {
  parent: account
  name: databaseName
  properties: {
    resource: { id: databaseName }
    options: serverless ? {} : { autoscaleSettings: { maxThroughput: maxThroughput } }
  }
}

resource container 'Microsoft.DocumentDB/databaseAccounts/sqlDatabases/containers@2024-11-15' = [
  for c in containers: {
    parent: database
    name: c.name
    properties: {
      resource: {
        id: c.name
        partitionKey: { paths: [c.partitionKey], kind: 'Hash', version: 2 }
        indexingPolicy: {
          indexingMode: 'consistent'
          automatic: true
          includedPaths: c.includedPaths
          excludedPaths: [{ path: '/*' }]
        }
        // null leaves TTL off (the property is omitted).
        defaultTtl: c.expiring ? -1 : null
      }
    }
  }
]

output accountName string = account.name
output endpoint string = account.properties.documentEndpoint
output databaseName string = database.name
