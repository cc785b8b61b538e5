//! A rolling upgrade over a ledger the previous release wrote (`tests/fixtures`, schema 2):
//! this release reads and moves its jobs as they are, `migrate` waits for the older workers
//! to go, moves every record (and only once), and the jobs then finish without one paid
//! generation submitted twice.

use std::{collections::HashMap, time::Duration};

use reelq_core::{JobId, JobState};
use reelq_queue::{
    Cancel, LEDGER_SCHEMA, Lease, Ledger, LedgerConfig, QueueError, Transition, TransitionOutcome,
};
use reelq_testkit::RedisServer;
use serde::Deserialize;

use crate::ledger::{LEASE, begin_submit, cancel_of, claim_opts, encoding, spec};

/// One key of the fixture, as `tests/fixtures/README.md` describes it.
#[derive(Deserialize)]
struct FixtureKey {
    key: String,
    #[serde(rename = "type")]
    kind: String,
    pttl_ms: i64,
    value: serde_json::Value,
}

const FIXTURE: &str = include_str!("../fixtures/ledger-schema2.jsonl");

fn fixture() -> Vec<FixtureKey> {
    FIXTURE
        .lines()
        .map(|line| serde_json::from_str(line).expect("a fixture line"))
        .collect()
}

/// Writes the fixture's keys into `redis`. Due times still ahead (the fixture's first polls
/// and leases ran an hour and 30 s) are brought to now: the fixture stands for a ledger
/// whose work has come due by the time it is upgraded, whenever this test runs.
pub(crate) async fn load(redis: &RedisServer) -> redis::aio::MultiplexedConnection {
    let client = redis::Client::open(redis.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let now = now_ms();
    let mut pipe = redis::pipe();
    for entry in fixture() {
        let key = &entry.key;
        match entry.kind.as_str() {
            "string" => {
                pipe.cmd("SET").arg(key).arg(entry.value.as_str().unwrap());
            }
            "hash" | "zset" => {
                let pairs = entry.value.as_array().unwrap();
                let cmd = pipe.cmd(if entry.kind == "hash" { "HSET" } else { "ZADD" });
                cmd.arg(key);
                for pair in pairs {
                    let (a, b) = (&pair[0], &pair[1]);
                    if entry.kind == "hash" {
                        cmd.arg(a.as_str().unwrap()).arg(b.as_str().unwrap());
                    } else {
                        let mut score = b.as_f64().unwrap();
                        if key.ends_with(":due") {
                            score = score.min(now as f64);
                        }
                        cmd.arg(score).arg(a.as_str().unwrap());
                    }
                }
            }
            "list" => {
                let items: Vec<&str> = entry
                    .value
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_str().unwrap())
                    .collect();
                pipe.cmd("RPUSH").arg(key).arg(items);
            }
            other => panic!("fixture key type {other}"),
        }
        if entry.pttl_ms > 0 {
            pipe.cmd("PEXPIRE").arg(key).arg(entry.pttl_ms);
        }
    }
    let _: () = pipe.query_async(&mut conn).await.unwrap();
    conn
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// The fixture's jobs: id -> (state, event log) as the old release left them.
pub(crate) fn fixture_jobs() -> HashMap<JobId, (JobState, Vec<String>)> {
    let keys = fixture();
    let logs: HashMap<&str, Vec<String>> = keys
        .iter()
        .filter_map(|k| Some((k.key.strip_prefix("{reelq}:log:")?, &k.value)))
        .map(|(id, v)| (id, serde_json::from_value(v.clone()).unwrap()))
        .collect();
    keys.iter()
        .filter_map(|k| {
            let id = k.key.strip_prefix("{reelq}:job:")?;
            let fields: Vec<(String, String)> = serde_json::from_value(k.value.clone()).unwrap();
            let state = fields.iter().find(|(f, _)| f == "state").unwrap().1.parse();
            Some((id.parse().unwrap(), (state.unwrap(), logs[id].clone())))
        })
        .collect()
}

/// Moves a claimed job on as a worker whose provider answers at once would: submits get a
/// task, polls find the video and store it, a cancel asked of the provider ends it.
/// Claims and moves on every job due until none is, as [`finish_step`] does each.
pub(crate) async fn finish_all(ledger: &Ledger) {
    loop {
        let claim = ledger
            .claim(&claim_opts("new-worker", 10, LEASE))
            .await
            .unwrap();
        if claim.leases.is_empty() {
            return;
        }
        for lease in claim.leases {
            finish_step(ledger, lease).await;
        }
    }
}

pub(crate) async fn finish_step(ledger: &Ledger, lease: Lease) -> TransitionOutcome {
    let move_on = match lease.state() {
        JobState::Queued => {
            let lease = begin_submit(ledger, lease, LEASE).await;
            let submitted = Transition::Submitted {
                task_id: format!("task-after-upgrade-{}", lease.job_id()),
                first_poll: Duration::ZERO,
            };
            return ledger.transition(&lease, submitted).await.unwrap();
        }
        JobState::Waiting if cancel_of(&lease) != Cancel::NotRequested => {
            Transition::CancelledAtProvider {
                detail: "the provider stopped it".into(),
            }
        }
        JobState::Waiting | JobState::Fetching => Transition::Stored {
            object_key: format!("2026/12/02/{}.mp4", lease.job_id()),
            bytes: 1000,
            sha256: "cd".repeat(32),
            video: "h264 1280x720 10.0 s 30 fps".into(),
            thumbnail_key: None,
            polls: None,
        },
        other => panic!("a claim gave a {other} lease"),
    };
    ledger.transition(&lease, move_on).await.unwrap()
}

#[tokio::test]
async fn a_ledger_of_the_previous_release_is_read_migrated_once_and_finished() {
    let redis = RedisServer::start().unwrap();
    let mut conn = load(&redis).await;
    let before = fixture_jobs();
    let ledger = Ledger::connect(&LedgerConfig::new(redis.url(), "reelq"))
        .await
        .expect("this release runs on the previous release's ledger");

    // During the rolling upgrade: this release reads the old records and moves them on,
    // beside a worker of the old release (its heartbeat does not name a schema).
    let ids: Vec<JobId> = before.keys().copied().collect();
    let records = ledger.jobs(&ids).await.unwrap();
    assert_eq!(records.len(), before.len(), "every old record reads");
    for record in &records {
        assert_eq!(record.state, before[&record.job_id].0);
        assert_eq!(
            ledger.history(record.job_id).await.unwrap(),
            before[&record.job_id].1,
            "the old event log reads"
        );
    }
    let claim = ledger
        .claim(&claim_opts("new-worker", 3, LEASE))
        .await
        .unwrap();
    assert!(!claim.leases.is_empty(), "old records are claimed");
    for lease in claim.leases {
        assert_eq!(
            finish_step(&ledger, lease).await,
            TransitionOutcome::Applied
        );
    }
    let old_worker = serde_json::json!({
        "name": "old-replica", "role": "all", "version": "0.1.0", "accounts": ["kie"],
        "concurrency": 8, "started_ms": 1, "seen_ms": 1,
    });
    let _: () = redis::pipe()
        .cmd("SET")
        .arg("{reelq}:worker:old-replica")
        .arg(old_worker.to_string())
        .arg("PX")
        .arg(60_000)
        .cmd("ZADD")
        .arg("{reelq}:workers")
        .arg(1)
        .arg("old-replica")
        .query_async(&mut conn)
        .await
        .unwrap();
    // A job enqueued now keeps its spec in the record, where the old workers read it.
    let during = JobId::new();
    ledger
        .enqueue(None, &[(during, spec("enqueued during the upgrade"))])
        .await
        .unwrap();
    let spec_field: Option<String> = redis::cmd("HGET")
        .arg(format!("{{reelq}}:job:{during}"))
        .arg("spec")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(spec_field.is_some(), "an old worker could read it");
    let ids: Vec<JobId> = ids.into_iter().chain([during]).collect();
    let mut read = HashMap::new();
    for record in ledger.jobs(&ids).await.unwrap() {
        let history = ledger.history(record.job_id).await.unwrap();
        read.insert(record.job_id, (record.state, history));
    }
    let listed = ledger.workers().await.unwrap();
    assert_eq!(
        listed.iter().map(|w| w.ledger_schema).collect::<Vec<_>>(),
        [2]
    );
    match ledger.migrate().await {
        Err(QueueError::OlderWorkersLive { workers, needed }) => {
            assert_eq!(
                (workers, needed),
                (vec!["old-replica".to_string()], LEDGER_SCHEMA)
            );
        }
        other => panic!("migrating beside an old worker: {other:?}"),
    }
    let schema: String = redis::cmd("GET")
        .arg("{reelq}:schema")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(schema, "2", "a refused migration changes nothing");

    // The old replica is upgraded: the migration runs, then again (nothing left to move).
    ledger.forget_worker("old-replica").await.unwrap();
    let done = ledger.migrate().await.unwrap();
    assert_eq!(
        (done.from, done.to, done.records_seen, done.records_moved),
        (2, LEDGER_SCHEMA, 15, 15)
    );
    let again = ledger.migrate().await.unwrap();
    assert_eq!((again.from, again.records_moved), (LEDGER_SCHEMA, 0));
    let logs: Vec<String> = redis::cmd("KEYS")
        .arg("{reelq}:log:*")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(logs.is_empty(), "every event log folded in: {logs:?}");
    for (job_id, (state, log)) in &before {
        let record = ledger.job(*job_id).await.unwrap().expect("kept");
        assert_eq!(
            encoding(&redis, format!("{{reelq}}:job:{job_id}")).await,
            "listpack",
            "{state} record rewritten compact"
        );
        let history = ledger.history(*job_id).await.unwrap();
        assert_eq!(&history[..log.len()], &log[..], "{state}: old events first");
        assert_eq!(
            (record.state, &history),
            (read[job_id].0, &read[job_id].1),
            "{state}: the migration changes no state and no event"
        );
        if state.is_terminal() {
            let ttl: i64 = redis::cmd("PTTL")
                .arg(format!("{{reelq}}:job:{job_id}"))
                .query_async(&mut conn)
                .await
                .unwrap();
            assert!(ttl > 0, "{state}: the rewritten record keeps its expiry");
        }
    }

    assert_eq!(
        encoding(&redis, format!("{{reelq}}:job:{during}")).await,
        "listpack",
        "the job enqueued during the upgrade is moved too"
    );
    let after_upgrade = JobId::new();
    ledger
        .enqueue(None, &[(after_upgrade, spec("enqueued after the upgrade"))])
        .await
        .unwrap();
    let ids: Vec<JobId> = ids.into_iter().chain([after_upgrade]).collect();
    assert_eq!(
        encoding(&redis, format!("{{reelq}}:job:{after_upgrade}")).await,
        "listpack",
        "the spec is kept in short pieces"
    );

    // After the upgrade: every job that can finish does, and none is submitted twice.
    finish_all(&ledger).await;
    let after = ledger.jobs(&ids).await.unwrap();
    let states: HashMap<JobState, usize> = after.iter().fold(HashMap::new(), |mut n, r| {
        *n.entry(r.state).or_default() += 1;
        n
    });
    let expect = |state: JobState| states.get(&state).copied().unwrap_or(0);
    // The one left submitting by a dead worker is uncertain, not resubmitted; the one the
    // batch budget held stays held; the rest end.
    assert_eq!(expect(JobState::Uncertain), 2, "{states:?}");
    assert_eq!(expect(JobState::BudgetHeld), 1, "{states:?}");
    assert_eq!(expect(JobState::Stored), 8, "{states:?}");
    for record in &after {
        let was = before
            .get(&record.job_id)
            .map_or(JobState::Queued, |(state, _)| *state);
        let paid_before = !matches!(
            was,
            JobState::Queued | JobState::Expired | JobState::Cancelled | JobState::BudgetHeld
        );
        assert!(
            record.submits <= 1,
            "{was} -> {}: submitted twice",
            record.state
        );
        if paid_before {
            assert_eq!(record.submits, 1, "{was}: its one submit is kept");
        }
    }
}

#[tokio::test]
async fn a_finished_job_of_the_previous_release_is_archived_with_its_event_list() {
    let redis = RedisServer::start().unwrap();
    load(&redis).await;
    let ledger = Ledger::connect(&LedgerConfig::new(redis.url(), "reelq"))
        .await
        .unwrap();
    assert!(
        ledger.schema().await.unwrap() < LEDGER_SCHEMA,
        "not migrated"
    );
    let lease = ledger.take_archive_lease(LEASE).await.unwrap().unwrap();
    let no_grace = reelq_queue::ArchiveGrace::NONE;
    let read = ledger
        .archive_candidates(&lease, no_grace, 100)
        .await
        .unwrap();
    let jobs = fixture_jobs();
    let ended = jobs
        .values()
        .filter(|(state, _)| state.is_terminal())
        .count();
    assert!(
        ended > 0 && read.len() == ended,
        "{} of {ended}",
        read.len()
    );
    for candidate in &read {
        let (_, logged) = &jobs[&candidate.job_id()];
        assert!(!logged.is_empty());
        assert!(
            candidate.job.events.starts_with(logged),
            "{:?} keeps {logged:?}",
            candidate.job.events
        );
    }
}
