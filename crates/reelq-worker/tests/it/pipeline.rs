//! The walking pipeline: a batch through two worker processes into the store.

use std::time::Duration;

use sha2::{Digest, Sha256};

use reelq_e2e::{Deployment, WebhookReceiver, files_under, prompts, read_object};
use reelq_testkit::{BUCKET, S3Server};

#[tokio::test]
async fn twenty_jobs_through_two_worker_processes_are_stored_once_each() {
    let deployment = Deployment::start(
        env!("CARGO_BIN_EXE_reelq-worker"),
        Duration::from_millis(300),
    )
    .await;
    let _workers = [
        deployment.spawn_worker_process("w1"),
        deployment.spawn_worker_process("w2"),
    ];
    let job_ids = deployment.enqueue_manifest(&prompts("e2e", 20)).await;

    let records = deployment.settled(&job_ids).await;

    deployment.assert_stored_once(&records);
    for record in &records {
        let task_id = record.task_id.as_deref().expect("stored job has a task id");
        let stored = read_object(
            &deployment.store_dir(),
            record.object_key.as_deref().unwrap(),
        );
        assert!(
            stored == deployment.sim.video(task_id).unwrap(),
            "job {} differs from what was served",
            record.job_id
        );
        assert_eq!(record.bytes, Some(stored.len() as u64));
        assert_eq!(
            record.sha256.as_deref(),
            Some(hex::encode(Sha256::digest(&stored)).as_str())
        );
    }
    let files = files_under(&deployment.store_dir());
    let videos = files.iter().filter(|name| name.ends_with(".mp4")).count();
    let checksums = files
        .iter()
        .filter(|name| name.ends_with(".mp4.sha256"))
        .count();
    assert_eq!(
        (videos, checksums, files.len()),
        (20, 20, 40),
        "one object and its checksum file per job, nothing else: {files:?}"
    );
}

#[tokio::test]
async fn a_job_lands_in_an_s3_bucket_when_the_store_url_says_so() {
    let s3 = S3Server::start().unwrap();
    let mut deployment = Deployment::start(
        env!("CARGO_BIN_EXE_reelq-worker"),
        Duration::from_millis(50),
    )
    .await;
    deployment.store_section = format!(
        "url = \"s3://{BUCKET}/renders\"\n\n[store.s3]\nendpoint = \"{}\"\nregion = \"us-east-1\"\n\
         access_key_id = \"test\"\nsecret_access_key = \"test\"\nallow_http = true",
        s3.endpoint()
    );
    let mut webhooks = WebhookReceiver::start(vec![]).await;
    deployment.enable_notify();
    let _worker = deployment.spawn_worker_process("w");
    let job_ids = vec![deployment.enqueue_notified("s3", &webhooks.url).await];

    let records = deployment.settled(&job_ids).await;

    deployment.assert_stored_once(&records);
    let key = records[0].object_key.clone().unwrap();
    assert!(
        key.starts_with("renders/") && key.ends_with(&format!("{}.mp4", job_ids[0])),
        "{key}"
    );
    let read_back = s3
        .boto3(&format!(
            "sys.stdout.buffer.write(s3.get_object(Bucket=BUCKET, Key='{key}')['Body'].read())"
        ))
        .unwrap();
    let video = deployment
        .sim
        .video(records[0].task_id.as_deref().unwrap())
        .unwrap();
    assert!(read_back == video);

    // The completion webhook carries a presigned link: anyone holding it downloads the video,
    // no credentials needed.
    let (_, body) = webhooks.next().await;
    let event: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let link = event["data"]["video_url"]
        .as_str()
        .expect("a link to the video");
    assert!(link.contains("X-Amz-Signature="), "{link}");
    let curl = tokio::process::Command::new("curl")
        .args(["--silent", "--fail", "--output", "-", link])
        .output()
        .await
        .expect("curl runs");
    assert!(curl.status.success(), "curl: {curl:?}");
    assert!(curl.stdout == video, "the link serves the video");
}
