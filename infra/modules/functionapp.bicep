// The Function App on the Flex Consumption plan (Linux), running the custom
// handler: its storage (reached by managed identity, no shared keys), a Key
// Vault for the two secrets, the app settings that functions/*/function.json
// and the handler read, and the roles its identity needs.

param name string
param storageName string
param vaultName string
param location string
param maximumInstanceCount int
param zoneRedundant bool
param appInsightsName string
param cosmosAccountName string
param eventHubsNamespaceName string
param eventHubsAuthorizationRuleName string
param databaseName string = 'orderflow'

resource appInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: appInsightsName
}

resource cosmos 'Microsoft.DocumentDB/databaseAccounts@2024-11-15' existing = {
  name: cosmosAccountName
}

resource eventHubs 'Microsoft.EventHub/namespaces@2024-01-01' existing = {
  name: eventHubsNamespaceName
  resource appRule 'authorizationRules' existing = {
    name: eventHubsAuthorizationRuleName
  }
}

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  // checkov:skip=CKV_AZURE_35:The Flex Consumption runtime reaches its storage over the public endpoint (no VNet in this template); shared keys are off, so only Entra identities get in.
  // checkov:skip=CKV_AZURE_59:Same: public network access is needed without VNet integration.
  // checkov:skip=CKV_AZURE_43:The name is lower-case letters and digits (toLower of the name parameter and a uniqueString), which checkov cannot evaluate.
  // checkov:skip=CKV_AZURE_206:The account holds only the deployment package and the host's locks; locally redundant storage is enough.
  name: storageName
  location: location
  kind: 'StorageV2'
  sku: { name: 'Standard_LRS' }
  properties: {
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    allowBlobPublicAccess: false
    allowSharedKeyAccess: false
    defaultToOAuthAuthentication: true
  }
  resource blobs 'blobServices' = {
    name: 'default'
    resource deployments 'containers' = {
      name: 'deployments'
      properties: { publicAccess: 'None' }
    }
  }
}

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  // checkov:skip=CKV_AZURE_109:The Function App reads its secrets over the public endpoint (no VNet); RBAC allows only its identity.
  // checkov:skip=CKV_AZURE_189:Same: public network access is needed without VNet integration.
  name: vaultName
  location: location
  properties: {
    tenantId: subscription().tenantId
    sku: { family: 'A', name: 'standard' }
    enableRbacAuthorization: true
    enableSoftDelete: true
    softDeleteRetentionInDays: 90
    enablePurgeProtection: true
  }
}

// The Rust Cosmos DB client and the Kafka clients need these two secrets;
// they go to Key Vault, never to outputs, and reach the app as references.
resource cosmosSecret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = {
  parent: vault
  name: 'cosmos-connection'
  properties: {
    value: 'AccountEndpoint=${cosmos.properties.documentEndpoint};AccountKey=${cosmos.listKeys().primaryMasterKey};'
    contentType: 'Cosmos DB connection string'
    attributes: { exp: dateTimeToEpoch(dateTimeAdd(utcNow(), 'P1Y')) }
  }
}

resource kafkaSecret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = {
  parent: vault
  name: 'eventhubs-connection'
  properties: {
    value: eventHubs::appRule.listKeys().primaryConnectionString
    contentType: 'Event Hubs connection string (Kafka SASL password)'
    attributes: { exp: dateTimeToEpoch(dateTimeAdd(utcNow(), 'P1Y')) }
  }
}

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  // checkov:skip=CKV_AZURE_225:Zone redundant for the medium and large profiles (zoneRedundant); small stays in one zone so that it deploys in every region.
  name: '${name}-plan'
  location: location
  kind: 'functionapp'
  sku: { name: 'FC1', tier: 'FlexConsumption' }
  properties: { reserved: true, zoneRedundant: zoneRedundant }
}

var keyVaultReference = 'https://${vault.name}${environment().suffixes.keyvaultDns}/secrets'

resource app 'Microsoft.Web/sites@2024-04-01' = {
  // checkov:skip=CKV_AZURE_222:The orders API is public by design; function keys (authLevel: function) guard it.
  // checkov:skip=CKV_AZURE_212:Flex Consumption adds instances on demand; always-ready instances are a cost choice (docs/cost.md).
  // checkov:skip=CKV_AZURE_213:Flex Consumption has no App Service health check; the platform replaces failed instances, and /health answers for external probes.
  // checkov:skip=CKV_AZURE_17:Client certificates are not how the API's callers authenticate.
  name: name
  location: location
  kind: 'functionapp,linux'
  identity: { type: 'SystemAssigned' }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    clientCertEnabled: false
    siteConfig: {
      minTlsVersion: '1.2'
      ftpsState: 'Disabled'
      http20Enabled: true
      appSettings: [
        { name: 'AzureWebJobsStorage__accountName', value: storage.name }
        { name: 'AzureWebJobsStorage__credential', value: 'managedidentity' }
        { name: 'APPLICATIONINSIGHTS_CONNECTION_STRING', value: appInsights.properties.ConnectionString }
        { name: 'APPLICATIONINSIGHTS_AUTHENTICATION_STRING', value: 'Authorization=AAD' }
        { name: 'CosmosDBConnection', value: '@Microsoft.KeyVault(SecretUri=${keyVaultReference}/cosmos-connection)' }
        { name: 'CosmosDatabase', value: databaseName }
        { name: 'KafkaBrokerList', value: '${eventHubs.name}.servicebus.windows.net:9093' }
        { name: 'KafkaProtocol', value: 'SASL_SSL' }
        { name: 'KafkaAuthenticationMode', value: 'PLAIN' }
        { name: 'KafkaUsername', value: '$ConnectionString' }
        { name: 'KafkaPassword', value: '@Microsoft.KeyVault(SecretUri=${keyVaultReference}/eventhubs-connection)' }
        { name: 'KafkaConsumerGroup', value: 'orderflow-ingest' }
        { name: 'KafkaTopicPayments', value: 'payments' }
        { name: 'KafkaTopicWarehouse', value: 'warehouse' }
        { name: 'KafkaTopicStock', value: 'stock' }
        { name: 'KafkaTopicOrders', value: 'orderflow.orders' }
        { name: 'KafkaTopicInventory', value: 'orderflow.inventory' }
        { name: 'KafkaTopicDeadletter', value: 'orderflow.deadletter' }
      ]
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${storage.properties.primaryEndpoints.blob}deployments'
          authentication: { type: 'SystemAssignedIdentity' }
        }
      }
      scaleAndConcurrency: {
        maximumInstanceCount: maximumInstanceCount
        instanceMemoryMB: 2048
      }
      runtime: { name: 'custom', version: '1.0' }
    }
  }
}

// Built-in role definitions.
var roles = {
  storageBlobDataOwner: 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'
  keyVaultSecretsUser: '4633458b-17de-408a-b874-0445c86b69e6'
  monitoringMetricsPublisher: '3913510d-42f4-4e42-8a64-420c390055eb'
}

resource storageRole 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, app.id, roles.storageBlobDataOwner)
  scope: storage
  properties: {
    principalId: app.identity.principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageBlobDataOwner)
  }
}

resource vaultRole 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(vault.id, app.id, roles.keyVaultSecretsUser)
  scope: vault
  properties: {
    principalId: app.identity.principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.keyVaultSecretsUser)
  }
}

resource insightsRole 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(appInsights.id, app.id, roles.monitoringMetricsPublisher)
  scope: appInsights
  properties: {
    principalId: app.identity.principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.monitoringMetricsPublisher)
  }
}

// Cosmos DB Built-in Data Contributor, for identity-based connections
// (CosmosDBConnection__accountEndpoint) once the handler's own client uses one.
resource cosmosDataRole 'Microsoft.DocumentDB/databaseAccounts/sqlRoleAssignments@2024-11-15' = {
  parent: cosmos
  name: guid(cosmos.id, app.id, 'data-contributor')
  properties: {
    principalId: app.identity.principalId
    roleDefinitionId: '${cosmos.id}/sqlRoleDefinitions/00000000-0000-0000-0000-000000000002'
    scope: cosmos.id
  }
}

output functionAppName string = app.name
output url string = 'https://${app.properties.defaultHostName}'
