//! Moving a live ledger forward to this release's record format (`reelq migrate`).
//!
//! The order keeps every step safe while this release's workers run: no worker of an older
//! release may be live (its heartbeat says which schema it writes); the schema is raised
//! first, so an older binary started meanwhile refuses the ledger instead of writing old
//! records into it; then every record is moved in its own script step (`migrate.lua`), which
//! leaves records already moved alone. Interrupted, it is run again.

use crate::{LEDGER_SCHEMA, Ledger, QueueError, scripts};

/// How many records one script step moves: long enough to amortise the round trip, short
/// enough that other clients wait a millisecond or so.
const MIGRATE_CHUNK: usize = 200;

/// What a migration did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Migration {
    /// The ledger's schema before (the same as `to` if it was already migrated).
    pub from: u32,
    pub to: u32,
    /// Job records looked at and moved (records already in this format are not).
    pub records_seen: u64,
    pub records_moved: u64,
}

impl Ledger {
    /// Moves the ledger to [`LEDGER_SCHEMA`]. Refused while a worker of an older release is
    /// live: it would keep writing records in the old format.
    pub async fn migrate(&self) -> Result<Migration, QueueError> {
        let older: Vec<String> = self
            .workers()
            .await?
            .into_iter()
            .filter(|worker| worker.ledger_schema < LEDGER_SCHEMA)
            .map(|worker| worker.name)
            .collect();
        if !older.is_empty() {
            return Err(QueueError::OlderWorkersLive {
                workers: older,
                needed: LEDGER_SCHEMA,
            });
        }
        let from = self.stored_schema(&mut self.home_conn().await?).await?;
        self.on_every_slot("schema", |key| {
            let mut set = redis::cmd("SET");
            set.arg(key).arg(LEDGER_SCHEMA);
            set
        })
        .await?;
        let (mut seen, mut moved) = (0, 0);
        for part in self.parts() {
            let mut conn = part.conn().await?;
            let record_prefix = part.key("job:");
            let pattern = format!("{record_prefix}*");
            let mut cursor = 0_u64;
            loop {
                let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                    .arg(cursor)
                    .arg("MATCH")
                    .arg(&pattern)
                    .arg("COUNT")
                    .arg(1000)
                    .query_async(&mut conn)
                    .await?;
                let ids: Vec<&str> = keys
                    .iter()
                    .filter_map(|key| key.strip_prefix(&record_prefix))
                    .collect();
                for chunk in ids.chunks(MIGRATE_CHUNK) {
                    let args = scripts::migrate::Args { job_ids: chunk };
                    moved += self.run_script(part, &mut conn, &args).await?.moved;
                }
                seen += ids.len() as u64;
                if next == 0 {
                    break;
                }
                cursor = next;
            }
        }
        Ok(Migration {
            from,
            to: LEDGER_SCHEMA,
            records_seen: seen,
            records_moved: moved,
        })
    }
}
