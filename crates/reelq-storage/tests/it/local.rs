//! Streaming into a local directory.

use bytes::Bytes;
use futures_util::stream;
use reelq_storage::{StorageError, VideoMeta, VideoStore};
use sha2::{Digest, Sha256};

fn meta() -> VideoMeta {
    VideoMeta {
        job_id: "job".into(),
        provider: "kie".into(),
        task_id: "task".into(),
    }
}

#[tokio::test]
async fn a_streamed_video_lands_whole_with_its_size_and_hash() {
    let dir = tempfile::tempdir().unwrap();
    let store = VideoStore::local(&dir.path().join("videos")).unwrap();
    // Uneven chunks crossing the 5 MiB part boundary.
    let chunks: Vec<Vec<u8>> = (0..7u8).map(|i| vec![i; 1_000_003]).collect();
    let expected: Vec<u8> = chunks.concat();
    let body = stream::iter(
        chunks
            .into_iter()
            .map(|c| Ok::<_, std::io::Error>(Bytes::from(c))),
    );

    let stored = store
        .put_stream("job-1.mp4", &meta(), None, body)
        .await
        .unwrap();

    let on_disk = std::fs::read(dir.path().join("videos/job-1.mp4")).unwrap();
    assert_eq!(on_disk, expected);
    assert_eq!(stored.bytes, expected.len() as u64);
    assert_eq!(stored.sha256, hex::encode(Sha256::digest(&expected)));
    // Its checksum file beside it, which `sha256sum -c` reads as it is.
    let checked = std::process::Command::new("sha256sum")
        .args(["--check", "--strict", "job-1.mp4.sha256"])
        .current_dir(dir.path().join("videos"))
        .output()
        .expect("sha256sum runs");
    assert!(checked.status.success(), "{checked:?}");
    std::fs::write(dir.path().join("videos/job-1.mp4"), b"changed").unwrap();
    let checked = std::process::Command::new("sha256sum")
        .args(["--check", "--strict", "job-1.mp4.sha256"])
        .current_dir(dir.path().join("videos"))
        .output()
        .unwrap();
    assert!(!checked.status.success(), "a changed video fails the check");
}

#[tokio::test]
async fn a_body_that_fails_midway_leaves_no_object() {
    let dir = tempfile::tempdir().unwrap();
    let store = VideoStore::local(dir.path()).unwrap();
    let body = stream::iter([
        Ok(Bytes::from_static(b"partial")),
        Err(std::io::Error::other("connection reset")),
    ]);
    let err = store
        .put_stream("job-2.mp4", &meta(), None, body)
        .await
        .unwrap_err();
    assert!(matches!(err, StorageError::Body(_)), "{err}");
    assert!(!dir.path().join("job-2.mp4").exists());
}

#[tokio::test]
async fn a_complete_upload_sweeps_staging_files_of_killed_uploads_of_its_key() {
    let dir = tempfile::tempdir().unwrap();
    let store = VideoStore::local(dir.path()).unwrap();
    // Two killed uploads of this key took the two lowest free numbers.
    std::fs::write(dir.path().join("job-3.mp4#1"), b"half a video").unwrap();
    std::fs::write(dir.path().join("job-3.mp4#2"), b"a third of a video").unwrap();
    std::fs::write(dir.path().join("job-4.mp4#1"), b"another job's upload").unwrap();
    let body = stream::iter([Ok::<_, std::io::Error>(Bytes::from_static(b"whole"))]);

    store
        .put_stream("job-3.mp4", &meta(), None, body)
        .await
        .unwrap();

    let mut names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["job-3.mp4", "job-3.mp4.sha256", "job-4.mp4#1"]);
}

#[tokio::test]
async fn a_body_shorter_than_announced_is_not_stored() {
    let dir = tempfile::tempdir().unwrap();
    let store = VideoStore::local(dir.path()).unwrap();
    let body = stream::iter([Ok::<_, std::io::Error>(Bytes::from_static(b"1234"))]);
    let err = store
        .put_stream("job-5.mp4", &meta(), Some(10), body)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            StorageError::Truncated {
                expected: 10,
                received: 4
            }
        ),
        "{err}"
    );
    assert!(!dir.path().join("job-5.mp4").exists());
}
