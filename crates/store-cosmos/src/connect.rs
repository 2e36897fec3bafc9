//! Reaching an account: the `CosmosDBConnection` connection string (the
//! Azure Functions setting), for a live account, the official emulator, or
//! `orderflow dev cosmos-emulator`. One function builds every client, so a
//! test run can point at a live account by setting the connection string.

use std::fmt;

use azure_core::credentials::Secret;
use azure_data_cosmos::options::Region;
use azure_data_cosmos::{AccountReference, CosmosClient, RoutingStrategy};
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
                if endpoint.parse::<azure_core::http::Url>().is_err() {
                    return Err(format!("AccountEndpoint {endpoint:?} is not a URL"));
                }
                Ok(ConnectionString { endpoint, key })
            }
            (None, _) => Err("AccountEndpoint is missing".into()),
            _ => Err("AccountKey is missing".into()),
        }
    }
}

/// A client for the account; `region` is the preferred region.
pub async fn client(connection: &ConnectionString, region: &str) -> Result<CosmosClient, StoreError> {
    let endpoint = connection
        .endpoint
        .parse()
        .map_err(|_| StoreError::Unavailable(format!("CosmosDBConnection: bad endpoint {}", connection.endpoint)))?;
    let account = AccountReference::with_authentication_key(endpoint, Secret::new(connection.key.clone()));
    CosmosClient::builder()
        .build(account, RoutingStrategy::ProximityTo(Region::from(region.to_string())))
        .await
        .map_err(|error| {
            let endpoint = &connection.endpoint;
            // One line naming the setting; the key itself never appears.
            StoreError::Unavailable(match u16::from(error.status().status_code()) {
                401 | 403 => format!("CosmosDBConnection: {endpoint} refused the account key"),
                _ => format!("CosmosDBConnection: cannot reach Cosmos DB at {endpoint}: {error}"),
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
}
