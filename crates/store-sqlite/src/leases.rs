//! Change-feed leases, parked streams and refused reactions on SQLite. One
//! `serve` holds a data directory, but a replay or a retry may run beside
//! it: lease and park writes are conditional on the version, as on every
//! store.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use orderflow_pipeline::ports::{
    Lease, LeaseStore, ParkedStream, Parking, Refusals, RefusedReaction, Versioned, HEARTBEAT,
};
use orderflow_pipeline::StoreError;
use rusqlite::{params, OptionalExtension, Row};

use crate::columns::{parse_json, timestamp};
use crate::writer::unavailable;
use crate::SqliteStore;

const LEASE_COLUMNS: &str = "consumer, range, continuation, owner, expires_at, requested_by, version";

type LeaseRow = (String, String, Option<String>, Option<String>, String, Option<String>, String);

fn lease_row(row: &Row) -> rusqlite::Result<LeaseRow> {
    Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?, row.get(4)?, row.get(5)?, row.get(6)?))
}

fn to_lease(
    (consumer, range, continuation, owner, expires_at, requested_by, version): LeaseRow,
) -> Result<Versioned<Lease>, StoreError> {
    let expires_at = DateTime::parse_from_rfc3339(&expires_at)
        .map_err(|e| StoreError::Corrupt(format!("lease expiry {expires_at}: {e}")))?
        .to_utc();
    Ok(Versioned { value: Lease { consumer, range, continuation, owner, expires_at, requested_by }, version })
}

#[async_trait]
impl LeaseStore for SqliteStore {
    async fn leases(&self, consumer: &str) -> Result<Vec<Versioned<Lease>>, StoreError> {
        let consumer = consumer.to_string();
        let rows = self
            .read(move |conn| {
                let mut statement = conn.prepare_cached(&format!(
                    "SELECT {LEASE_COLUMNS} FROM leases WHERE consumer = ?1 ORDER BY range"
                ))?;
                let rows = statement.query_map([consumer], lease_row)?;
                rows.collect::<Result<Vec<_>, _>>()
            })
            .await?;
        rows.into_iter().map(to_lease).collect()
    }

    async fn lease(&self, consumer: &str, range: &str) -> Result<Option<Versioned<Lease>>, StoreError> {
        let (consumer, range) = (consumer.to_string(), range.to_string());
        let row = self
            .read(move |conn| {
                conn.prepare_cached(&format!("SELECT {LEASE_COLUMNS} FROM leases WHERE consumer = ?1 AND range = ?2"))?
                    .query_row([consumer, range], lease_row)
                    .optional()
            })
            .await?;
        row.map(to_lease).transpose()
    }

    async fn put(&self, lease: &Lease, version: Option<&str>) -> Result<Option<String>, StoreError> {
        let lease = lease.clone();
        let expected = version.map(str::to_string);
        self.write(move |conn| {
            // A version never used before, so that a lease deleted and
            // created again cannot match a version read before.
            let version = uuid::Uuid::new_v4().simple().to_string();
            let expires_at = timestamp(lease.expires_at);
            let (owner, continuation, requested_by) = (&lease.owner, &lease.continuation, &lease.requested_by);
            let changed = match &expected {
                None => conn
                    .prepare_cached(
                        "INSERT INTO leases (consumer, range, continuation, owner, expires_at, requested_by, version)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT DO NOTHING",
                    )
                    .and_then(|mut s| {
                        s.execute(params![lease.consumer, lease.range, continuation, owner, expires_at, requested_by, version])
                    }),
                Some(expected) => conn
                    .prepare_cached(
                        "UPDATE leases SET continuation = ?3, owner = ?4, expires_at = ?5, requested_by = ?6, version = ?7
                         WHERE consumer = ?1 AND range = ?2 AND version = ?8",
                    )
                    .and_then(|mut s| {
                        s.execute(params![
                            lease.consumer,
                            lease.range,
                            continuation,
                            owner,
                            expires_at,
                            requested_by,
                            version,
                            expected
                        ])
                    }),
            }
            .map_err(unavailable)?;
            Ok((changed == 1).then_some(version))
        })
        .await
    }

    async fn delete(&self, consumer: &str, range: &str, version: Option<&str>) -> Result<bool, StoreError> {
        let (consumer, range, version) = (consumer.to_string(), range.to_string(), version.map(str::to_string));
        self.write(move |conn| {
            let changed = conn
                .prepare_cached(
                    "DELETE FROM leases WHERE consumer = ?1 AND range = ?2 AND (?3 IS NULL OR version = ?3)",
                )
                .and_then(|mut s| s.execute(params![consumer, range, version]))
                .map_err(unavailable)?;
            Ok(changed == 1)
        })
        .await
    }

    async fn heartbeat(&self, instance: &str) -> Result<(), StoreError> {
        let heartbeat = Lease::heartbeat(instance);
        let expires_at = timestamp(heartbeat.expires_at);
        self.write(move |conn| {
            let version = uuid::Uuid::new_v4().simple().to_string();
            conn.prepare_cached(
                "INSERT INTO leases (consumer, range, owner, expires_at, version) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT DO UPDATE SET expires_at = excluded.expires_at, version = excluded.version",
            )
            .and_then(|mut s| {
                s.execute(params![heartbeat.consumer, heartbeat.range, heartbeat.owner, expires_at, version])
            })
            .map_err(unavailable)?;
            Ok(())
        })
        .await
    }
}

#[async_trait]
impl Refusals for SqliteStore {
    async fn record(&self, refusal: &RefusedReaction) -> Result<(), StoreError> {
        let json = serde_json::to_string(refusal).map_err(|e| StoreError::Corrupt(format!("refusal: {e}")))?;
        let (id, time) = (refusal.id.clone(), timestamp(refusal.time));
        self.write(move |conn| {
            conn.prepare_cached(
                "INSERT INTO refused_reactions (id, time, refusal) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING",
            )
            .and_then(|mut s| s.execute(params![id, time, json]))
            .map_err(unavailable)?;
            Ok(())
        })
        .await
    }

    async fn latest(&self, limit: usize) -> Result<(Vec<RefusedReaction>, u64), StoreError> {
        let (rows, count) = self
            .read(move |conn| {
                let mut statement =
                    conn.prepare_cached("SELECT refusal FROM refused_reactions ORDER BY time DESC LIMIT ?1")?;
                let rows = statement.query_map([limit as i64], |row| row.get::<_, String>(0))?;
                let rows = rows.collect::<Result<Vec<_>, _>>()?;
                let count: u64 = conn.query_row("SELECT COUNT(*) FROM refused_reactions", [], |row| row.get(0))?;
                Ok((rows, count))
            })
            .await?;
        let refusals = rows
            .iter()
            .map(|text| {
                serde_json::from_value(parse_json(text)?).map_err(|e| StoreError::Corrupt(format!("refusal: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok((refusals, count))
    }
}

#[async_trait]
impl Parking for SqliteStore {
    async fn parked(&self, consumer: Option<&str>) -> Result<Vec<Versioned<ParkedStream>>, StoreError> {
        let consumer = consumer.map(str::to_string);
        let rows = self
            .read(move |conn| {
                let mut statement = conn.prepare_cached(
                    "SELECT parked, version FROM parked_streams WHERE ?1 IS NULL OR consumer = ?1
                     ORDER BY consumer, stream_id",
                )?;
                let rows = statement.query_map([consumer], |row| Ok((row.get::<_, String>(0)?, row.get(1)?)))?;
                rows.collect::<Result<Vec<(String, String)>, _>>()
            })
            .await?;
        rows.into_iter()
            .map(|(parked, version)| {
                let value = serde_json::from_value(parse_json(&parked)?)
                    .map_err(|e| StoreError::Corrupt(format!("parked stream: {e}")))?;
                Ok(Versioned { value, version })
            })
            .collect()
    }

    async fn put_parked(&self, parked: &ParkedStream, version: Option<&str>) -> Result<Option<String>, StoreError> {
        let json = serde_json::to_string(parked).map_err(|e| StoreError::Corrupt(format!("parked stream: {e}")))?;
        let (consumer, stream_id) = (parked.consumer.clone(), parked.stream_id.clone());
        let expected = version.map(str::to_string);
        self.write(move |conn| {
            let version = uuid::Uuid::new_v4().simple().to_string();
            let changed = match &expected {
                None => conn
                    .prepare_cached(
                        "INSERT INTO parked_streams (consumer, stream_id, parked, version) VALUES (?1, ?2, ?3, ?4)
                         ON CONFLICT DO NOTHING",
                    )
                    .and_then(|mut s| s.execute(params![consumer, stream_id, json, version])),
                Some(expected) => conn
                    .prepare_cached(
                        "UPDATE parked_streams SET parked = ?3, version = ?4
                         WHERE consumer = ?1 AND stream_id = ?2 AND version = ?5",
                    )
                    .and_then(|mut s| s.execute(params![consumer, stream_id, json, version, expected])),
            }
            .map_err(unavailable)?;
            Ok((changed == 1).then_some(version))
        })
        .await
    }

    async fn unpark(&self, consumer: &str, stream_id: &str, version: &str) -> Result<bool, StoreError> {
        let (consumer, stream_id, version) = (consumer.to_string(), stream_id.to_string(), version.to_string());
        self.write(move |conn| {
            let changed = conn
                .prepare_cached("DELETE FROM parked_streams WHERE consumer = ?1 AND stream_id = ?2 AND version = ?3")
                .and_then(|mut s| s.execute(params![consumer, stream_id, version]))
                .map_err(unavailable)?;
            Ok(changed == 1)
        })
        .await
    }
}

/// Deletes the heartbeats of instances gone for the heartbeat retention.
pub(crate) fn expire_heartbeats(conn: &rusqlite::Connection) -> rusqlite::Result<()> {
    conn.prepare_cached("DELETE FROM leases WHERE consumer = ?1 AND expires_at < ?2")?
        .execute(params![HEARTBEAT, timestamp(Utc::now())])
        .map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn heartbeats_of_instances_gone_for_the_retention_are_deleted_and_no_other_lease() {
        let dir = tempfile::TempDir::new().expect("temp dir");
        let store = SqliteStore::open(dir.path()).expect("store");
        store.heartbeat("gone").await.expect("heartbeat");
        store.heartbeat("alive").await.expect("heartbeat");
        let range = Lease {
            consumer: "fulfillment".into(),
            range: "all".into(),
            continuation: Some("42".into()),
            owner: None,
            expires_at: DateTime::UNIX_EPOCH,
            requested_by: None,
        };
        store.put(&range, None).await.expect("a feed range's lease, expired long ago");
        let conn = rusqlite::Connection::open(store.path()).expect("open");
        conn.execute("UPDATE leases SET expires_at = '2000-01-01T00:00:00.000000Z' WHERE range = 'gone'", [])
            .expect("a week and more ago");
        expire_heartbeats(&conn).expect("expire");
        assert!(store.lease(HEARTBEAT, "gone").await.expect("read").is_none());
        assert!(store.lease(HEARTBEAT, "alive").await.expect("read").is_some());
        let kept = store.lease("fulfillment", "all").await.expect("read").expect("a position is kept for good");
        assert_eq!(kept.value.continuation.as_deref(), Some("42"));
    }
}
