//! Parked streams on `parked`: one document per consumer and stream
//! (`id` = `{consumer}|{streamId}`), every write conditional on its ETag.

use async_trait::async_trait;
use azure_core::http::Etag;
use azure_data_cosmos::options::{ItemWriteOptions, Precondition};
use azure_data_cosmos::{FeedScope, Query};
use orderflow_pipeline::ports::{ParkedStream, Parking, Versioned};
use orderflow_pipeline::StoreError;
use serde::{Deserialize, Serialize};

use crate::{status, unavailable, CosmosStore};

#[derive(Serialize, Deserialize)]
struct ParkedDoc {
    id: String,
    #[serde(flatten)]
    parked: ParkedStream,
    /// The service's ETag, as queries return it.
    #[serde(rename = "_etag", default, skip_serializing)]
    etag: Option<String>,
}

fn parked_id(consumer: &str, stream_id: &str) -> String {
    format!("{consumer}|{stream_id}")
}

fn if_match(version: &str) -> ItemWriteOptions {
    ItemWriteOptions::default().with_precondition(Precondition::IfMatch(Etag::from(version.to_string())))
}

#[async_trait]
impl Parking for CosmosStore {
    async fn parked(&self, consumer: Option<&str>) -> Result<Vec<Versioned<ParkedStream>>, StoreError> {
        let query = match consumer {
            Some(consumer) => Query::from("SELECT * FROM c WHERE c.consumer = @consumer")
                .with_parameter("@consumer", consumer)
                .map_err(|e| StoreError::Corrupt(format!("query: {e}")))?,
            None => Query::from("SELECT * FROM c"),
        };
        let docs: Vec<ParkedDoc> =
            self.query_all("query-parked", &self.inner.parked, query, FeedScope::full_container()).await?;
        docs.into_iter()
            .map(|doc| {
                let version =
                    doc.etag.ok_or_else(|| StoreError::Corrupt(format!("{} came without an ETag", doc.id)))?;
                Ok(Versioned { value: doc.parked, version })
            })
            .collect()
    }

    async fn put_parked(&self, parked: &ParkedStream, version: Option<&str>) -> Result<Option<String>, StoreError> {
        let id = parked_id(&parked.consumer, &parked.stream_id);
        let doc = ParkedDoc { id: id.clone(), parked: parked.clone(), etag: None };
        let container = &self.inner.parked;
        let written = match version {
            Some(version) => container.replace_item(id.clone(), id.as_str(), &doc, Some(if_match(version))).await,
            None => container.create_item(id.clone(), id.as_str(), &doc, None).await,
        };
        match written {
            Ok(response) => {
                self.inner.units.record_response("write-parked", response.headers());
                let etag = response.headers().etag().map(|e| e.to_string());
                etag.map(Some).ok_or_else(|| StoreError::Corrupt(format!("{id} written without an ETag")))
            }
            Err(error) if matches!(status(&error), 404 | 409 | 412) => Ok(None),
            Err(error) => Err(unavailable(error)),
        }
    }

    async fn unpark(&self, consumer: &str, stream_id: &str, version: &str) -> Result<bool, StoreError> {
        let id = parked_id(consumer, stream_id);
        match self.inner.parked.delete_item(id.clone(), id.as_str(), Some(if_match(version))).await {
            Ok(response) => {
                self.inner.units.record_response("write-parked", response.headers());
                Ok(true)
            }
            Err(error) if matches!(status(&error), 404 | 412) => Ok(false),
            Err(error) => Err(unavailable(error)),
        }
    }
}
