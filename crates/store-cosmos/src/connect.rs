//! Reaching an account, as the Azure Functions settings name it: the
//! `CosmosDBConnection` connection string (an account key: the emulators,
//! and users who choose keys), or the identity-based connection
//! `CosmosDBConnection__accountEndpoint` (Microsoft Entra ID, no key: what
//! Microsoft recommends, with key auth disabled on the account). One
//! function builds every client, so a test run can point at a live account
//! by setting them.

use std::fmt;
use std::sync::Arc;

use azure_core::credentials::{Secret, TokenCredential};
use azure_data_cosmos::options::Region;
use azure_data_cosmos::{AccountReference, CosmosClient, RoutingStrategy};
use azure_identity::{
    DeveloperToolsCredential, ManagedIdentityCredential, ManagedIdentityCredentialOptions, UserAssignedId,
    WorkloadIdentityCredential,
};
use orderflow_pipeline::StoreError;

/// `AccountEndpoint=https://...;AccountKey=...;`
#[derive(Clone)]
pub struct ConnectionString {
    pub endpoint: String,
    key: String,
}

impl fmt::Debug for ConnectionString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AccountEndpoint={};AccountKey=*****;", self.endpoint)
    }
}

impl ConnectionString {
    /// Parses the string; errors never repeat the key.
    pub fn parse(text: &str) -> Result<ConnectionString, String> {
        let mut endpoint = None;
        let mut key = None;
        for part in text.split(';').map(str::trim).filter(|p| !p.is_empty()) {
            match part.split_once('=') {
                Some((name, value)) if name.eq_ignore_ascii_case("AccountEndpoint") => {
                    endpoint = Some(value.to_string())
                }
                Some((name, value)) if name.eq_ignore_ascii_case("AccountKey") => key = Some(value.to_string()),
                Some(_) => {}
                None => return Err("expected AccountEndpoint=...;AccountKey=...;".into()),
            }
        }
        match (endpoint, key) {
            (Some(endpoint), Some(key)) if !key.is_empty() => {
                check_url(&endpoint)?;
                Ok(ConnectionString { endpoint, key })
            }
            (None, _) => Err("AccountEndpoint is missing".into()),
            _ => Err("AccountKey is missing".into()),
        }
    }
}

fn check_url(endpoint: &str) -> Result<(), String> {
    match endpoint.parse::<azure_core::http::Url>() {
        Ok(_) => Ok(()),
        Err(_) => Err(format!("AccountEndpoint {endpoint:?} is not a URL")),
    }
}

/// How the identity-based connection gets its Entra ID token.
#[derive(Clone, Debug, PartialEq)]
pub enum Identity {
    /// The managed identity of the Function App, Container App or VM
    /// (`__credential` = `managedidentity`; `__clientId` names a
    /// user-assigned one); the platform's endpoint (`IDENTITY_ENDPOINT`).
    Managed { client_id: Option<String> },
    /// Kubernetes workload identity (`AZURE_FEDERATED_TOKEN_FILE`).
    Workload,
    /// A developer's own login: the Azure CLI (`az login`) or the Azure
    /// Developer CLI.
    Developer,
}

impl Identity {
    /// The credential the settings ask for: `managedidentity` (the Functions
    /// convention) or, when unset, what the environment offers.
    pub fn choose(credential: Option<&str>, client_id: Option<String>) -> Result<Identity, String> {
        match credential.map(str::to_ascii_lowercase).as_deref() {
            Some("managedidentity") => Ok(Identity::Managed { client_id }),
            Some(other) => Err(format!("credential {other:?}: only managedidentity is known")),
            None if std::env::var_os("AZURE_FEDERATED_TOKEN_FILE").is_some() => Ok(Identity::Workload),
            None if std::env::var_os("IDENTITY_ENDPOINT").is_some() => Ok(Identity::Managed { client_id }),
            None => Ok(Identity::Developer),
        }
    }

    fn credential(&self) -> azure_core::Result<Arc<dyn TokenCredential>> {
        Ok(match self {
            Identity::Managed { client_id } => {
                let options = ManagedIdentityCredentialOptions {
                    user_assigned_id: client_id.clone().map(UserAssignedId::ClientId),
                    ..Default::default()
                };
                ManagedIdentityCredential::new(Some(options))?
            }
            Identity::Workload => WorkloadIdentityCredential::new(None)?,
            Identity::Developer => DeveloperToolsCredential::new(None)?,
        })
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Identity::Managed { client_id: Some(id) } => write!(f, "managed identity (user-assigned, client id {id})"),
            Identity::Managed { client_id: None } => write!(f, "managed identity (system-assigned)"),
            Identity::Workload => write!(f, "workload identity (AZURE_FEDERATED_TOKEN_FILE)"),
            Identity::Developer => write!(f, "developer login (Azure CLI / Azure Developer CLI)"),
        }
    }
}

/// An account, and how this process proves who it is to it.
#[derive(Clone, Debug)]
pub enum CosmosAccount {
    Key(ConnectionString),
    Identity { endpoint: String, identity: Identity },
}

impl CosmosAccount {
    /// An identity-based connection to `endpoint`.
    pub fn identity(endpoint: &str, identity: Identity) -> Result<CosmosAccount, String> {
        check_url(endpoint)?;
        Ok(CosmosAccount::Identity { endpoint: endpoint.to_string(), identity })
    }

    pub fn endpoint(&self) -> &str {
        match self {
            CosmosAccount::Key(connection) => &connection.endpoint,
            CosmosAccount::Identity { endpoint, .. } => endpoint,
        }
    }

    /// How it authenticates, for people (`config show`).
    pub fn auth(&self) -> String {
        match self {
            CosmosAccount::Key(_) => "account key (CosmosDBConnection)".into(),
            CosmosAccount::Identity { identity, .. } => format!("Entra ID: {identity}"),
        }
    }

    /// The setting a problem with it names.
    fn setting(&self) -> &'static str {
        match self {
            CosmosAccount::Key(_) => "CosmosDBConnection",
            CosmosAccount::Identity { .. } => "CosmosDBConnection__accountEndpoint",
        }
    }
}

/// A client for the account; `region` is the preferred region.
pub async fn client(account: &CosmosAccount, region: &str) -> Result<CosmosClient, StoreError> {
    let setting = account.setting();
    let endpoint = account.endpoint();
    let url = endpoint.parse().map_err(|_| StoreError::Unavailable(format!("{setting}: bad endpoint {endpoint}")))?;
    let reference = match account {
        CosmosAccount::Key(connection) => {
            AccountReference::with_authentication_key(url, Secret::new(connection.key.clone()))
        }
        CosmosAccount::Identity { identity, .. } => {
            let credential = identity
                .credential()
                .map_err(|error| StoreError::Unavailable(format!("{setting}: no {identity} here: {error}")))?;
            AccountReference::with_credential(url, credential)
        }
    };
    CosmosClient::builder()
        .build(reference, RoutingStrategy::ProximityTo(Region::from(region.to_string())))
        .await
        .map_err(|error| {
            // One line naming the setting; a key never appears.
            StoreError::Unavailable(match u16::from(error.status().status_code()) {
                401 | 403 => match account {
                    CosmosAccount::Key(_) => format!("{setting}: {endpoint} refused the account key"),
                    CosmosAccount::Identity { identity, .. } => format!(
                        "{setting}: no token of the {identity} that {endpoint} takes (does the identity have the \
                         Cosmos DB Built-in Data Contributor role?): {error}"
                    ),
                },
                _ => format!("{setting}: cannot reach Cosmos DB at {endpoint}: {error}"),
            })
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_never_shows_the_key() {
        let parsed =
            ConnectionString::parse("AccountEndpoint=https://acct.documents.azure.com:443/;AccountKey=c2VjcmV0;")
                .expect("valid");
        assert_eq!(parsed.endpoint, "https://acct.documents.azure.com:443/");
        assert!(!format!("{parsed:?}").contains("c2VjcmV0"));
        assert!(ConnectionString::parse("AccountEndpoint=https://a/").is_err_and(|e| e.contains("AccountKey")));
        let bad = ConnectionString::parse("AccountEndpoint=nope;AccountKey=c2VjcmV0").expect_err("not a URL");
        assert!(!bad.contains("c2VjcmV0"));
    }

    #[test]
    fn the_credential_follows_the_functions_settings() {
        let managed = Identity::choose(Some("managedidentity"), Some("1234".into())).expect("known");
        assert_eq!(managed, Identity::Managed { client_id: Some("1234".into()) });
        assert!(Identity::choose(Some("certificate"), None).is_err());
        assert!(CosmosAccount::identity("nope", Identity::Developer).is_err());
    }
}
