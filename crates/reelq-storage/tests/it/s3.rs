//! Streaming into a real S3-compatible server (moto on loopback), checked with boto3.

use bytes::Bytes;
use futures_util::stream;
use reelq_core::Secret;
use reelq_storage::{S3Options, StorageError, StoreConfig, VideoMeta, VideoStore};
use reelq_testkit::{BUCKET, S3Server};
use sha2::{Digest, Sha256};

const MIB: usize = 1024 * 1024;

fn store(server: &S3Server, prefix: &str) -> VideoStore {
    VideoStore::open(&StoreConfig {
        url: format!("s3://{BUCKET}/{prefix}"),
        ..store_config(server)
    })
    .expect("s3 store opens")
}

fn store_config(server: &S3Server) -> StoreConfig {
    StoreConfig {
        url: String::new(),
        part_size: 5 * MIB,
        s3: S3Options {
            endpoint: Some(server.endpoint()),
            region: Some("us-east-1".into()),
            access_key_id: Some("test".into()),
            secret_access_key: Some(Secret::new("test")),
            allow_http: true,
        },
    }
}

fn meta() -> VideoMeta {
    VideoMeta {
        job_id: "01JOB".into(),
        provider: "kie".into(),
        task_id: "task_1".into(),
    }
}

fn chunks(n_chunks: u8, chunk_len: usize) -> Vec<Result<Bytes, std::io::Error>> {
    (0..n_chunks)
        .map(|i| Ok(Bytes::from(vec![i; chunk_len])))
        .collect()
}

fn boto3_text(server: &S3Server, snippet: &str) -> String {
    String::from_utf8(server.boto3(snippet).unwrap())
        .unwrap()
        .trim()
        .to_owned()
}

#[tokio::test]
async fn a_multipart_upload_reads_back_whole_with_type_and_metadata() {
    let server = S3Server::start().unwrap();
    let store = store(&server, "renders");
    let body = chunks(12, MIB + 3);
    let expected: Vec<u8> = body
        .iter()
        .flat_map(|c| c.as_ref().unwrap().to_vec())
        .collect();

    let stored = store
        .put_stream("2026/11/23/a.mp4", &meta(), None, stream::iter(body))
        .await
        .unwrap();

    assert_eq!(stored.key, "renders/2026/11/23/a.mp4");
    assert_eq!(stored.bytes, expected.len() as u64);
    assert_eq!(stored.sha256, hex::encode(Sha256::digest(&expected)));
    let read_back = server
        .boto3("sys.stdout.buffer.write(s3.get_object(Bucket=BUCKET, Key='renders/2026/11/23/a.mp4')['Body'].read())")
        .unwrap();
    assert!(read_back == expected, "boto3 reads back the same bytes");
    let head = boto3_text(
        &server,
        "h = s3.head_object(Bucket=BUCKET, Key='renders/2026/11/23/a.mp4')\n\
         print(h['ContentType'], h['Metadata']['job-id'], h['Metadata']['provider'], h['Metadata']['task-id'])",
    );
    assert_eq!(head, "video/mp4 01JOB kie task_1");
    // Each part was sent with its SHA-256, and the server keeps the parts' composite.
    let checksum = boto3_text(
        &server,
        "h = s3.head_object(Bucket=BUCKET, Key='renders/2026/11/23/a.mp4', ChecksumMode='ENABLED')\n\
         print(h.get('ChecksumSHA256', 'none'))",
    );
    let parts: Vec<Vec<u8>> = expected
        .chunks(5 * MIB)
        .map(|part| Sha256::digest(part).to_vec())
        .collect();
    let composite = base64_of(&Sha256::digest(parts.concat()));
    // AWS appends the part count ("-3"); moto does not.
    let suffix = format!("-{}", parts.len());
    assert_eq!(checksum.trim_end_matches(suffix.as_str()), composite);
}

#[tokio::test]
async fn a_failed_body_aborts_the_upload_and_leaves_nothing() {
    let server = S3Server::start().unwrap();
    let store = store(&server, "");
    let mut body = chunks(3, 4 * MIB);
    body.push(Err(std::io::Error::other("connection reset")));

    let err = store
        .put_stream("b.mp4", &meta(), None, stream::iter(body))
        .await
        .unwrap_err();

    assert!(matches!(err, StorageError::Body(_)), "{err}");
    let listing = boto3_text(
        &server,
        "print(s3.list_objects_v2(Bucket=BUCKET).get('KeyCount', 0), \
         len(s3.list_multipart_uploads(Bucket=BUCKET).get('Uploads', [])))",
    );
    assert_eq!(listing, "0 0", "no object and no upload left open");
}

#[tokio::test]
async fn storing_a_key_twice_keeps_one_object() {
    let server = S3Server::start().unwrap();
    let store = store(&server, "");
    for _ in 0..2 {
        store
            .put_stream("c.mp4", &meta(), None, stream::iter(chunks(1, 10)))
            .await
            .unwrap();
    }
    assert_eq!(
        boto3_text(
            &server,
            "print(s3.list_objects_v2(Bucket=BUCKET)['KeyCount'])"
        ),
        "1"
    );
}

#[tokio::test]
async fn a_truncated_body_is_not_stored() {
    let server = S3Server::start().unwrap();
    let store = store(&server, "");
    let err = store
        .put_stream("d.mp4", &meta(), Some(100), stream::iter(chunks(1, 10)))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            StorageError::Truncated {
                expected: 100,
                received: 10
            }
        ),
        "{err}"
    );
    assert_eq!(
        boto3_text(
            &server,
            "print(s3.list_objects_v2(Bucket=BUCKET).get('KeyCount', 0))"
        ),
        "0"
    );
}

#[test]
fn an_unsupported_store_url_is_refused_naming_the_schemes() {
    let config = StoreConfig {
        url: "ftp://x/y".into(),
        part_size: 5 * MIB,
        s3: S3Options::default(),
    };
    let err = VideoStore::open(&config).unwrap_err();
    assert!(
        err.to_string().contains("supported: file://, s3://"),
        "{err}"
    );
}

#[tokio::test]
async fn the_readiness_check_reads_and_writes_nothing() {
    let server = S3Server::start().unwrap();
    store(&server, "renders").check_readable().await.unwrap();
    let listing = boto3_text(
        &server,
        "print(s3.list_objects_v2(Bucket=BUCKET).get('KeyCount', 0))",
    );
    assert_eq!(listing, "0", "the probe wrote nothing");

    let missing_bucket = VideoStore::open(&StoreConfig {
        url: "s3://no-such-bucket/renders".into(),
        ..store_config(&server)
    })
    .unwrap();
    assert!(
        missing_bucket.check_readable().await.is_err(),
        "no such bucket"
    );
}

fn base64_of(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}
