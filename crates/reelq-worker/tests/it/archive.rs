//! Finished jobs leave Redis for the object store (the archiver), and every reader still
//! finds them: on a real S3-compatible server (moto) read back by boto3, and in a local
//! directory read by DuckDB, as users would read a day of history.

use std::time::Duration;

use reelq_core::{JobId, JobState, Secret};
use reelq_e2e::{API_KEY, Deployment, WebhookReceiver, prompts};
use reelq_queue::{ArchiveGrace, ArchiveStatus};
use reelq_sim::FAILING_WORD;
use reelq_storage::{HistoryStore, S3Options, StoreConfig};
use reelq_testkit::{BUCKET, EVENT_TIMEOUT, RedisServer, S3Server};
use reelq_worker::{Listeners, WorkerConfig};

/// Archive at once (a failed job waits an hour: operators retry those), every 100 ms.
const ARCHIVE_AT_ONCE: &str =
    "[history]\ngrace = \"0s\"\nfailed_grace = \"1h\"\nevery = \"100ms\"\n";

fn s3_store(s3: &S3Server, url: &str) -> StoreConfig {
    StoreConfig {
        url: url.into(),
        part_size: 5 * 1024 * 1024,
        s3: S3Options {
            endpoint: Some(s3.endpoint()),
            region: Some("us-east-1".into()),
            access_key_id: Some("test".into()),
            secret_access_key: Some(Secret::new("test")),
            allow_http: true,
        },
    }
}

fn s3_section(s3: &S3Server, url: &str) -> String {
    format!(
        "url = \"{url}\"\n\n[store.s3]\nendpoint = \"{}\"\nregion = \"us-east-1\"\n\
         access_key_id = \"test\"\nsecret_access_key = \"test\"\nallow_http = true",
        s3.endpoint()
    )
}

/// Waits until the archiver's totals satisfy `done` (the ledger records each pass).
async fn archive_until(
    deployment: &Deployment,
    done: impl Fn(&ArchiveStatus) -> bool,
) -> ArchiveStatus {
    tokio::time::timeout(EVENT_TIMEOUT, async {
        loop {
            let status = deployment.client.archive_status().await.unwrap();
            if done(&status) {
                return status;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the archiver gets there in time")
}

/// The keys in Redis matching `pattern`.
async fn keys(redis: &RedisServer, pattern: &str) -> Vec<String> {
    let client = redis::Client::open(redis.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    redis::cmd("KEYS")
        .arg(pattern)
        .query_async(&mut conn)
        .await
        .unwrap()
}

/// The job records still in Redis.
async fn job_keys(redis: &RedisServer) -> usize {
    keys(redis, "{*}:job:*").await.len()
}

#[tokio::test]
async fn finished_jobs_leave_redis_for_s3_and_every_reader_still_finds_them() {
    let s3 = S3Server::start().unwrap();
    let mut deployment = Deployment::start(
        env!("CARGO_BIN_EXE_reelq-worker"),
        Duration::from_millis(50),
    )
    .await;
    let url = format!("s3://{BUCKET}/renders");
    deployment.store_section = s3_section(&s3, &url);
    deployment.extra_config = ARCHIVE_AT_ONCE.into();
    deployment.client = deployment
        .client
        .clone()
        .with_history(HistoryStore::open(&s3_store(&s3, &url)).unwrap());
    let _workers = [
        deployment.spawn_worker_process("w1"),
        deployment.spawn_worker_process("w2"),
    ];
    let mut manifest = prompts("archive", 60);
    manifest.push(format!("{FAILING_WORD} scene"));
    let job_ids = deployment.enqueue_manifest(&manifest).await;

    let records = deployment.settled(&job_ids).await;
    let (stored, failed) = records.split_at(60);
    assert!(
        stored
            .iter()
            .all(|r| r.state == JobState::Stored && r.submits == 1)
    );
    assert_eq!(failed[0].state, JobState::Failed);
    let sim = deployment.sim.stats();
    assert_eq!((sim.creates, sim.max_creates_per_fingerprint), (61, 1));
    let status = archive_until(&deployment, |status| status.archived >= 60).await;

    // Redis keeps only the failed job (its grace is an hour); the stored ones are gone.
    assert_eq!(status.archived, 60, "{status:?}");
    assert_eq!(job_keys(&deployment.redis).await, 1);
    assert!(
        deployment
            .ledger
            .job(failed[0].job_id)
            .await
            .unwrap()
            .is_some()
    );
    assert!(
        !keys(&deployment.redis, "{*}:batchinfo:*").await.is_empty(),
        "the batch stays while one of its jobs does"
    );
    let tasks = keys(&deployment.redis, "{*}:task:*").await;
    assert_eq!(
        tasks.len(),
        61,
        "every task stays bound to its job until its index entry expires (no other job may adopt it)"
    );
    for record in stored {
        assert!(
            deployment
                .ledger
                .job(record.job_id)
                .await
                .unwrap()
                .is_none()
        );
    }

    // Every read finds an archived job as it found it live: one by one, a batch in manifest
    // order, its events, and a wait on finished jobs (what `reelq watch` does).
    for record in stored {
        let read = deployment.client.status(record.job_id).await.unwrap();
        let read = read.expect("an archived job is found");
        assert_eq!(
            (read.state, &read.object_key, &read.sha256, read.submits),
            (
                JobState::Stored,
                &record.object_key,
                &record.sha256,
                record.submits
            )
        );
        assert_eq!(read.spec.prompt, record.spec.prompt, "the prompt is kept");
    }
    let batch = stored[0].batch.expect("a manifest is a batch");
    let batch_records = deployment.client.batch_records(batch).await.unwrap();
    let order: Vec<JobId> = batch_records.iter().map(|r| r.job_id).collect();
    assert_eq!(order, job_ids, "live and archived, in manifest order");
    let events = deployment.client.history(stored[0].job_id).await.unwrap();
    assert!(events.iter().any(|e| e.contains(" stored ")), "{events:?}");
    let waited = deployment.client.wait(&job_ids, |_| {}).await.unwrap();
    assert_eq!(waited.len(), 61);

    // An independent S3 client reads the same history: gzip JSON Lines under the day.
    let lines = s3
        .boto3(
            "import gzip, json\n\
             pages = s3.get_paginator('list_objects_v2').paginate(Bucket=BUCKET, Prefix='renders/history/v1/')\n\
             ids = []\n\
             for page in pages:\n\
             \x20   for obj in page.get('Contents', []):\n\
             \x20       assert '/day=' in obj['Key'] and obj['Key'].endswith('.jsonl.gz'), obj['Key']\n\
             \x20       body = s3.get_object(Bucket=BUCKET, Key=obj['Key'])['Body'].read()\n\
             \x20       ids += [json.loads(l)['job_id'] for l in gzip.decompress(body).splitlines()]\n\
             print(len(ids), len(set(ids)))",
        )
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&lines).trim(), "60 60");
}

#[tokio::test]
async fn with_the_history_store_down_finished_jobs_stay_in_redis_until_it_is_back() {
    let mut s3 = S3Server::start().unwrap();
    let mut deployment = Deployment::start(
        env!("CARGO_BIN_EXE_reelq-worker"),
        Duration::from_millis(50),
    )
    .await;
    // Videos in a local directory, history in a bucket of its own (`[history] url`).
    let url = format!("s3://{BUCKET}/history-only");
    deployment.store_section = format!(
        "{}\n\n[store.s3]\nendpoint = \"{}\"\nregion = \"us-east-1\"\naccess_key_id = \"test\"\n\
         secret_access_key = \"test\"\nallow_http = true",
        deployment.store_section,
        s3.endpoint()
    );
    deployment.extra_config = format!("{ARCHIVE_AT_ONCE}url = \"{url}\"\n");
    deployment.client = deployment
        .client
        .clone()
        .with_history(HistoryStore::open(&s3_store(&s3, &url)).unwrap());
    s3.stop();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let ops = format!("http://{}", listener.local_addr().unwrap());
    let config = WorkerConfig::load(Some(&deployment.worker_config("w", API_KEY))).unwrap();
    let _worker = deployment.run_worker_task(
        config,
        Listeners {
            callbacks: None,
            ops: Some(listener),
        },
    );
    let job_ids = deployment.enqueue_manifest(&prompts("down", 20)).await;
    let records = deployment.settled(&job_ids).await;
    deployment.assert_stored_once(&records);

    // The store refuses: the passes fail, the alarm is up, and nothing left Redis.
    let failing = archive_until(&deployment, |status| status.failing_since_ms.is_some()).await;
    assert_eq!(failing.archived, 0);
    assert_eq!(job_keys(&deployment.redis).await, 20);
    let readyz = reqwest::get(format!("{ops}/readyz")).await.unwrap();
    assert_eq!(readyz.status().as_u16(), 200, "the worker still works");
    let body = readyz.text().await.unwrap();
    assert!(body.contains("warning: archiving"), "{body}");
    let metrics = reqwest::get(format!("{ops}/metrics")).await.unwrap();
    let metrics = metrics.text().await.unwrap();
    assert!(metrics.contains("reelq_archive_failing 1"), "{metrics}");

    // Back: the next passes archive them all, and they read as before.
    s3.start_again().unwrap();
    let status = archive_until(&deployment, |status| status.archived == 20).await;
    assert_eq!(status.failing_since_ms, None, "{status:?}");
    assert_eq!(job_keys(&deployment.redis).await, 0);
    for record in &records {
        let read = deployment.client.status(record.job_id).await.unwrap();
        assert_eq!(read.map(|r| r.sha256), Some(record.sha256.clone()));
    }
}

#[tokio::test]
async fn a_job_archived_twice_by_a_crash_reads_once_and_duckdb_reads_the_day() {
    let mut deployment = Deployment::start(
        env!("CARGO_BIN_EXE_reelq-worker"),
        Duration::from_millis(50),
    )
    .await;
    let history = HistoryStore::open(&StoreConfig {
        url: deployment.store_dir().display().to_string(),
        part_size: 8 * 1024 * 1024,
        s3: S3Options::default(),
    })
    .unwrap();
    deployment.client = deployment.client.clone().with_history(history.clone());
    let job_ids = {
        deployment.extra_config = "[history]\narchive = false\n".into();
        let _worker = deployment.spawn_worker_process("no-archive");
        let job_ids = deployment.enqueue_manifest(&prompts("twice", 12)).await;
        let records = deployment.settled(&job_ids).await;
        deployment.assert_stored_once(&records);
        job_ids
    };

    // An archiver writes its segment and dies before taking the jobs out of Redis: its
    // lease (short here) runs out by itself.
    let lease = deployment
        .ledger
        .take_archive_lease(Duration::from_millis(500))
        .await
        .unwrap()
        .expect("no other archiver");
    let grace = ArchiveGrace::NONE;
    let read = deployment
        .ledger
        .archive_candidates(&lease, grace, 100)
        .await
        .unwrap();
    assert_eq!(read.len(), 12);
    let lines = read
        .iter()
        .map(|candidate| {
            reelq_storage::HistoryLine::of(
                candidate.job_id(),
                candidate.job.record.updated_ms,
                &candidate.job,
            )
        })
        .collect();
    history.put_lines(lines).await.unwrap();
    drop(lease);

    // A worker archives them again, once the dead one's lease has run out.
    deployment.extra_config = ARCHIVE_AT_ONCE.into();
    let _worker = deployment.spawn_worker_process("archiver");
    archive_until(&deployment, |status| status.archived == 12).await;
    assert_eq!(job_keys(&deployment.redis).await, 0);

    // Its batch, every job of it archived, has left Redis too, and reads as before.
    assert_eq!(
        keys(&deployment.redis, "{*}:batch*").await,
        Vec::<String>::new()
    );
    let batch = deployment
        .client
        .status(job_ids[0])
        .await
        .unwrap()
        .unwrap()
        .batch
        .unwrap();
    let info = deployment
        .client
        .batch_info(batch)
        .await
        .unwrap()
        .expect("found");
    assert_eq!((info.total, info.open), (12, 0));
    let records = deployment.client.batch_records(batch).await.unwrap();
    assert_eq!(
        records.iter().map(|r| r.job_id).collect::<Vec<_>>(),
        job_ids
    );
    let (page, next) = deployment
        .client
        .batch_records_page(batch, 10, 5)
        .await
        .unwrap();
    assert_eq!((page.len(), next), (2, None));

    // Each job is in the store twice; every reader keeps one.
    let day = reelq_storage::history::day_of(job_ids[0]);
    let mut written = 0;
    for segment in history.segments::<JobId>(day).await.unwrap() {
        written += history.read(&segment).await.unwrap().len();
    }
    assert_eq!(written, 24);
    let archived = deployment.client.archived_day(day).await.unwrap();
    assert_eq!(archived.len(), 12);
    for job_id in &job_ids {
        let record = deployment.client.status(*job_id).await.unwrap();
        assert_eq!(record.map(|r| r.state), Some(JobState::Stored));
    }

    // DuckDB reads the day as users would, hive partitioning and all, and keeps one line per
    // job the documented way (the latest `updated_ms`).
    let python =
        std::path::PathBuf::from(std::env::var_os("MOTO_SERVER").expect(
            "MOTO_SERVER is not set: run scripts/test, which installs moto, boto3 and duckdb",
        ))
        .with_file_name("python");
    let glob = format!(
        "{}/history/v1/day=*/*.jsonl.gz",
        deployment.store_dir().display()
    );
    let query = format!(
        "import duckdb\n\
         rows = duckdb.sql(\"\"\"\n\
           select count(*) as lines, count(distinct job_id) as jobs, min(day)::varchar as day,\n\
                  count(*) filter (where state = 'stored') as stored\n\
           from read_json('{glob}', hive_partitioning = true)\"\"\").fetchall()\n\
         kept = duckdb.sql(\"\"\"\n\
           select count(*) from (select job_id from read_json('{glob}', hive_partitioning = true)\n\
           qualify row_number() over (partition by job_id order by updated_ms desc) = 1)\"\"\").fetchall()\n\
         print(rows[0], kept[0][0])"
    );
    let output = std::process::Command::new(&python)
        .arg("-c")
        .arg(query)
        .output()
        .expect("the venv's python runs");
    assert!(
        output.status.success(),
        "duckdb: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).trim(),
        format!("(24, 12, '{day}', 24) 12")
    );
}

#[tokio::test]
async fn a_batch_summary_counts_the_jobs_already_archived() {
    let mut receiver = WebhookReceiver::start(vec![]).await;
    let mut deployment = Deployment::start(
        env!("CARGO_BIN_EXE_reelq-worker"),
        Duration::from_millis(50),
    )
    .await;
    deployment.enable_notify();
    deployment.extra_config += ARCHIVE_AT_ONCE;
    let _worker = deployment.spawn_worker_process("w");
    let failing = format!("{FAILING_WORD} three");
    let receipt = deployment
        .enqueue_batch_notified(&["one", "two", &failing], None, &receiver.url)
        .await;
    deployment.settled(&receipt.job_ids).await;
    receiver.next().await;
    archive_until(&deployment, |status| status.archived == 2).await;

    // An operator retries the failed job (it stays in Redis for its longer grace); it fails
    // again and the batch ends again, its two stored jobs long gone from Redis.
    let failed = receipt.job_ids[2];
    assert!(deployment.client.retry_failed(failed).await.unwrap());
    deployment.all_in(&[failed], JobState::Failed).await;
    let (_, body) = receiver.next().await;
    let event: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(event["type"], "batch.finished");
    assert_eq!(
        event["data"]["states"],
        serde_json::json!({ "stored": 2, "failed": 1 }),
        "{event}"
    );
}
