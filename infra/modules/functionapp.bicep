// The Function App on the Flex Consumption plan (Linux), running the custom
// handler: its identity (user-assigned, so that its roles exist before the
// app first starts), its storage (reached by that identity, no shared keys),
// Cosmos DB by identity (no account key anywhere), a Key Vault for the one
// secret left (the Event Hubs connection string Kafka's SASL PLAIN needs),
// and the app settings that functions/*/function.json and the handler read.
//
// Checked against Microsoft's documentation (docs/deploy.md cites it):
// Flex Consumption refuses siteConfig.ftpsState and the other properties
// tests/infra.rs lists; utcNow() is allowed only as a parameter default.

param name string
param storageName string
param vaultName string
param location string
param maximumInstanceCount int
@allowed([512, 2048, 4096])
param instanceMemoryMB int
param zoneRedundant bool
param appInsightsName string
param cosmosAccountName string
param eventHubsNamespaceName string
param eventHubsAuthorizationRuleName string
param databaseName string = 'orderflow'
@description('Now, for the Key Vault secret\'s expiry (Bicep takes the current time only as a parameter default).')
param now string = utcNow()

resource appInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: appInsightsName
}

resource cosmos 'Microsoft.DocumentDB/databaseAccounts@2024-11-15' existing = {
  name: cosmosAccountName
}

// The app's identity, created with its roles before the app itself (a
// system-assigned one exists only once the app does, which then starts
// without its roles).
resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: '${name}-identity'
  location: location
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
  // checkov:skip=CKV_AZURE_206:Zone-redundant storage where the app is zone redundant (Microsoft's advice for zone-redundant Flex apps); locally redundant for the small profile, which stays in one zone.
  name: storageName
  location: location
  kind: 'StorageV2'
  sku: { name: zoneRedundant ? 'Standard_ZRS' : 'Standard_LRS' }
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

// Kafka's SASL PLAIN on Event Hubs takes the connection string as password:
// it goes to Key Vault, never to outputs, and reaches the app as a reference.
resource kafkaSecret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = {
  parent: vault
  name: 'eventhubs-connection'
  properties: {
    value: eventHubs::appRule.listKeys().primaryConnectionString
    contentType: 'Event Hubs connection string (Kafka SASL password)'
    attributes: { exp: dateTimeToEpoch(dateTimeAdd(now, 'P1Y')) }
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


// Built-in role definitions.
var roles = {
  storageBlobDataOwner: 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'
  storageTableDataContributor: '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3'
  keyVaultSecretsUser: '4633458b-17de-408a-b874-0445c86b69e6'
  monitoringMetricsPublisher: '3913510d-42f4-4e42-8a64-420c390055eb'
}

// The host's storage (AzureWebJobsStorage): Blob Data Owner, and Table Data
// Contributor for its diagnostic events.
resource storageRoles 'Microsoft.Authorization/roleAssignments@2022-04-01' = [
  for role in [roles.storageBlobDataOwner, roles.storageTableDataContributor]: {
    name: guid(storage.id, identity.id, role)
    scope: storage
    properties: {
      principalId: identity.properties.principalId
      principalType: 'ServicePrincipal'
      roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', role)
    }
  }
]

resource vaultRole 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(vault.id, identity.id, roles.keyVaultSecretsUser)
  scope: vault
  properties: {
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.keyVaultSecretsUser)
  }
}

resource insightsRole 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(appInsights.id, identity.id, roles.monitoringMetricsPublisher)
  scope: appInsights
  properties: {
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.monitoringMetricsPublisher)
  }
}

// Cosmos DB Built-in Data Contributor: the handler's own client and the
// change-feed triggers (their leases too) reach the account by identity.
resource cosmosDataRole 'Microsoft.DocumentDB/databaseAccounts/sqlRoleAssignments@2024-11-15' = {
  parent: cosmos
  name: guid(cosmos.id, identity.id, 'data-contributor')
  properties: {
    principalId: identity.properties.principalId
    roleDefinitionId: '${cosmos.id}/sqlRoleDefinitions/00000000-0000-0000-0000-000000000002'
    scope: cosmos.id
  }
}

resource app 'Microsoft.Web/sites@2024-04-01' = {
  // checkov:skip=CKV_AZURE_222:The orders API is public by design; function keys (authLevel: function) guard it.
  // checkov:skip=CKV_AZURE_212:Flex Consumption adds instances on demand; always-ready instances are a cost choice (docs/cost.md).
  // checkov:skip=CKV_AZURE_213:Flex Consumption has no App Service health check; the platform replaces failed instances, and /health answers for external probes.
  // checkov:skip=CKV_AZURE_17:Client certificates are not how the API's callers authenticate.
  // checkov:skip=CKV_AZURE_78:FTP(S) is not a Flex Consumption feature: ARM refuses siteConfig.ftpsState on a Flex site (error 51021).
  // checkov:skip=CKV_AZURE_71:The app has a (user-assigned) managed identity; checkov looks for a system-assigned one.
  name: name
  location: location
  kind: 'functionapp,linux'
  identity: { type: 'UserAssigned', userAssignedIdentities: { '${identity.id}': {} } }
  // Its roles first: the app must not start without them.
  dependsOn: [storageRoles, vaultRole, insightsRole, cosmosDataRole]
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    clientCertEnabled: false
    keyVaultReferenceIdentity: identity.id
    siteConfig: {
      minTlsVersion: '1.2'
      http20Enabled: true
      appSettings: [
        { name: 'AzureWebJobsStorage__accountName', value: storage.name }
        { name: 'AzureWebJobsStorage__credential', value: 'managedidentity' }
        { name: 'AzureWebJobsStorage__clientId', value: identity.properties.clientId }
        { name: 'APPLICATIONINSIGHTS_CONNECTION_STRING', value: appInsights.properties.ConnectionString }
        { name: 'APPLICATIONINSIGHTS_AUTHENTICATION_STRING', value: 'ClientId=${identity.properties.clientId};Authorization=AAD' }
        // Identity-based: no key (the account has local auth disabled).
        { name: 'CosmosDBConnection__accountEndpoint', value: cosmos.properties.documentEndpoint }
        { name: 'CosmosDBConnection__credential', value: 'managedidentity' }
        { name: 'CosmosDBConnection__clientId', value: identity.properties.clientId }
        { name: 'CosmosDatabase', value: databaseName }
        // When the `deadlines` timer function passes due deadlines (NCRONTAB,
        // with seconds): every minute. Deadlines are minutes long; a shorter
        // schedule keeps an instance awake for nothing else.
        { name: 'OrderflowDeadlinesSchedule', value: '0 */1 * * * *' }
        { name: 'KafkaBrokerList', value: '${eventHubs.name}.servicebus.windows.net:9093' }
        { name: 'KafkaProtocol', value: 'SASL_SSL' }
        { name: 'KafkaAuthenticationMode', value: 'PLAIN' }
        { name: 'KafkaUsername', value: '$ConnectionString' }
        { name: 'KafkaPassword', value: '@Microsoft.KeyVault(SecretUri=${kafkaSecret.properties.secretUri})' }
        // One consumer group per Kafka function: on Flex each function
        // scales on its own, and a shared group would rebalance them all.
        { name: 'KafkaConsumerGroupPayments', value: 'orderflow-ingest-payments' }
        { name: 'KafkaConsumerGroupWarehouse', value: 'orderflow-ingest-warehouse' }
        { name: 'KafkaConsumerGroupStock', value: 'orderflow-ingest-stock' }
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
          authentication: { type: 'UserAssignedIdentity', userAssignedIdentityResourceId: identity.id }
        }
      }
      scaleAndConcurrency: {
        maximumInstanceCount: maximumInstanceCount
        instanceMemoryMB: instanceMemoryMB
      }
      runtime: { name: 'custom', version: '1.0' }
    }
  }
}

output functionAppName string = app.name
output url string = 'https://${app.properties.defaultHostName}'
