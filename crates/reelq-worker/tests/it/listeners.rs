//! The worker's listeners under a flood: more connections than it has file descriptors,
//! idle or half-sent, and it still finishes its jobs and reclaims every connection.

use std::time::Duration;

use reelq_e2e::{Deployment, prompts};
use reelq_testkit::EVENT_TIMEOUT;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

/// The worker process's descriptor limit: the flood is larger.
const FD_LIMIT: u64 = 256;
const IDLE: usize = 500;
const HALF_SENT: usize = 100;

/// Connects once the worker listens on `addr`.
async fn connect_when_up(addr: &str) -> TcpStream {
    tokio::time::timeout(EVENT_TIMEOUT, async {
        loop {
            match TcpStream::connect(addr).await {
                Ok(stream) => return stream,
                // Not listening yet: the worker process is still starting.
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    })
    .await
    .expect("the worker's callback receiver listens")
}

/// Reads until the peer closes the connection (or resets it).
async fn closed_by_peer(mut stream: TcpStream) {
    let mut buf = [0u8; 256];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

#[tokio::test]
async fn more_idle_connections_than_descriptors_neither_stop_the_worker_nor_stay_open() {
    let mut deployment = Deployment::start(
        env!("CARGO_BIN_EXE_reelq-worker"),
        Duration::from_millis(50),
    )
    .await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    deployment.extra_config =
        format!("[callbacks]\npublic_base_url = \"http://{addr}\"\nlisten = \"{addr}\"\n");
    deployment.settings = "http_max_connections = 64\nhttp_header_timeout_ms = 1000".into();
    deployment.fd_limit = Some(FD_LIMIT);
    let _worker = deployment.spawn_worker_process("flooded");

    let mut flood = vec![connect_when_up(&addr).await];
    for _ in 1..IDLE {
        flood.push(TcpStream::connect(&addr).await.unwrap());
    }
    for _ in 0..HALF_SENT {
        let mut stream = TcpStream::connect(&addr).await.unwrap();
        stream
            .write_all(b"POST /callbacks/kie/x/y HTTP/1.1\r\nHost: reelq\r\nContent-Le")
            .await
            .unwrap();
        flood.push(stream);
    }
    assert!(flood.len() as u64 > FD_LIMIT);

    // Jobs enqueued while the flood is open still finish (polling needs descriptors too).
    let job_ids = deployment.enqueue_manifest(&prompts("flooded", 4)).await;
    let records = deployment.settled(&job_ids).await;
    deployment.assert_stored_once(&records);

    // Every flooding connection is taken in turn and closed after the header timeout.
    tokio::time::timeout(
        EVENT_TIMEOUT,
        futures_util::future::join_all(flood.into_iter().map(closed_by_peer)),
    )
    .await
    .expect("the worker closes every idle and half-sent connection");
    // And the receiver still answers.
    let answer = reqwest::Client::new()
        .post(format!(
            "http://{addr}/callbacks/kie/01M8000000000000000000000X/t"
        ))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 404);
}
