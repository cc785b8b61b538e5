//! A producer's webhook endpoint for tests: answers with scripted statuses and hands every
//! delivery (headers and body) to the test.

use std::sync::Arc;

use axum::{
    Router,
    body::Bytes,
    extract::State,
    http::{HeaderMap, StatusCode},
    routing::post,
};
use reelq_testkit::EVENT_TIMEOUT;
use tokio::sync::{Mutex, mpsc};

/// A Standard Webhooks test secret (base64 of 24 bytes), known to workers and receivers.
pub const NOTIFY_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

type Delivery = (HeaderMap, Bytes);
type Script = Arc<(
    Mutex<std::vec::IntoIter<u16>>,
    mpsc::UnboundedSender<Delivery>,
)>;

pub struct WebhookReceiver {
    pub url: String,
    deliveries: mpsc::UnboundedReceiver<Delivery>,
}

impl WebhookReceiver {
    /// Serves on a free loopback port; answers `statuses` in turn, then 200.
    pub async fn start(statuses: Vec<u16>) -> WebhookReceiver {
        let (tx, deliveries) = mpsc::unbounded_channel();
        let script: Script = Arc::new((Mutex::new(statuses.into_iter()), tx));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binding a port");
        let url = format!(
            "http://{}/hook",
            listener.local_addr().expect("bound address")
        );
        let app = Router::new().route("/hook", post(hook)).with_state(script);
        tokio::spawn(async move { axum::serve(listener, app).await });
        WebhookReceiver { url, deliveries }
    }

    /// A delivery already received, if any (without waiting).
    pub fn try_next(&mut self) -> Option<Delivery> {
        self.deliveries.try_recv().ok()
    }

    /// The next delivery, waited for with the test timeout.
    pub async fn next(&mut self) -> Delivery {
        tokio::time::timeout(EVENT_TIMEOUT, self.deliveries.recv())
            .await
            .expect("a webhook in time")
            .expect("receiver open")
    }
}

async fn hook(State(script): State<Script>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let _ = script.1.send((headers, body));
    let status = script.0.lock().await.next().unwrap_or(200);
    StatusCode::from_u16(status).unwrap_or(StatusCode::OK)
}
