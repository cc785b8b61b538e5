//! The simulator's shared state, its control surface (in-process for tests, `/sim/*` over HTTP
//! for scripts) and its server lifecycle.

use std::{
    collections::{HashMap, VecDeque},
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use reelq_core::ProviderKind;
use serde::Serialize;
use tokio::{
    net::TcpListener,
    sync::{broadcast, watch},
};
use tokio_util::sync::{CancellationToken, DropGuard};

pub use crate::config::{CallbackMode, SimConfig};

use crate::{
    contract::Outcome,
    video::{VideoShape, render_video},
};

/// A way a result download can go wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DownloadFault {
    /// 404, as an expired pre-signed URL answers.
    Expired,
    /// The full `Content-Length`, then half the body and a closed connection.
    Truncated,
    /// HTTP 200 with an HTML error page, as a CDN or gateway in front of the bucket answers.
    Page,
    /// HTTP 200 with the first half of the video and an honest `Content-Length` for it: a
    /// file cut short at the source, which no length check can catch.
    CutShort,
    /// HTTP 200 with a whole video a fifth of the duration asked (at least a second): a
    /// generation the provider cut short and billed whole.
    TooShort,
}

/// Something a test can wait for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SimEvent {
    /// A create request arrived (before any simulated latency).
    CreateReceived,
    /// A create was answered with an injected error code.
    CreateRefused { code: i64 },
    /// A create was accepted (and, at a real provider, paid for).
    Created {
        task_id: String,
        fingerprint: String,
    },
    /// A result file was served in full.
    Downloaded { task_id: String },
    /// A callback was answered with this status (0: no answer).
    CallbackAnswered { task_id: String, status: u16 },
}

/// Counters for scripts and the demo's summary.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct SimStats {
    pub creates: u64,
    pub max_creates_per_fingerprint: u32,
    /// The most tasks made for one prompt, at any provider: a job paid twice across a
    /// route's candidates shows here (their bodies differ).
    pub max_creates_per_prompt: u32,
    /// The prompts made more than once (a job paid twice), for whoever reads a failed run.
    pub prompts_made_twice: Vec<String>,
    pub downloads: u64,
    /// Injected download faults still waiting for a download to meet them.
    pub download_faults_left: usize,
    /// The most generations running at once (created, not yet finished), seen at creates.
    pub max_in_flight: u64,
    /// The same per account: `api_key`'s first, then `other_api_keys`' in order.
    pub max_in_flight_per_account: Vec<u64>,
    /// The most API calls (creates and queries) in any one-second window.
    pub max_requests_per_second: u64,
    /// Generations stopped by a cancel call while they ran.
    pub cancels: u64,
}

pub(crate) struct Task {
    pub(crate) provider: ProviderKind,
    pub(crate) created: Instant,
    pub(crate) outcome: Outcome,
    /// Where the callback goes; for tests to aim at, as an attacker who learnt it would.
    pub(crate) callback_url: Option<String>,
    /// The create's body, for contracts whose task records echo it.
    pub(crate) request: serde_json::Value,
    /// The duration and frame the create asked for: what its video's header claims.
    pub(crate) shape: VideoShape,
    pub(crate) created_unix_ms: u64,
    /// Creation order, for lists newest first.
    pub(crate) seq: u64,
}

/// A task as a contract's create hands it over, before it is recorded.
pub(crate) struct NewTask {
    pub(crate) provider: ProviderKind,
    pub(crate) outcome: Outcome,
    pub(crate) fingerprint: String,
    /// The create's prompt: one job's creates at several providers (a route's candidates)
    /// share it, whatever each provider's body looks like.
    pub(crate) prompt: String,
    pub(crate) callback_url: Option<String>,
    pub(crate) request: serde_json::Value,
    pub(crate) shape: VideoShape,
    /// Which account (by key) made it.
    pub(crate) account: usize,
}

pub(crate) struct SimState {
    pub(crate) config: SimConfig,
    pub(crate) base_url: String,
    pub(crate) tasks: Mutex<HashMap<String, Task>>,
    creates_by_fingerprint: Mutex<HashMap<String, u32>>,
    creates_by_prompt: Mutex<HashMap<String, u32>>,
    downloads: Mutex<u64>,
    cancels: Mutex<u64>,
    exchanges: Mutex<Vec<crate::journal::Exchange>>,
    /// While true, no task finishes; tests use it to keep jobs waiting.
    pub(crate) held: watch::Sender<bool>,
    pub(crate) callback_mode: Mutex<CallbackMode>,
    pub(crate) http: reqwest::Client,
    /// Error codes the next creates answer with, one each, before normal service resumes.
    create_faults: Mutex<VecDeque<i64>>,
    /// While set and not past, every create and query answers with this code: an outage.
    outage: Mutex<Option<(i64, Instant)>>,
    /// How long each create takes to answer.
    pub(crate) create_latency: Mutex<Duration>,
    /// Where OpenAI-style webhooks go (set on the account, not per request).
    pub(crate) account_webhook_url: Mutex<Option<String>>,
    /// When the API calls of the last second arrived, and the most seen in one second.
    recent_requests: Mutex<(VecDeque<Instant>, u64)>,
    max_in_flight: Mutex<u64>,
    /// When each task still within its generation time was created, oldest first.
    generating: Mutex<VecDeque<Instant>>,
    /// Per account (by key), its generations in creation order, and the most seen at once.
    generating_per_account: Mutex<Vec<(VecDeque<Instant>, u64)>>,
    /// Faults the next downloads meet, one each.
    download_faults: Mutex<VecDeque<DownloadFault>>,
    /// Statuses a failing gateway answers to the next creates, after each was accepted.
    gateway_faults: Mutex<VecDeque<u16>>,
    /// While set and not past, every accepted create is answered with this status instead.
    gateway_outage: Mutex<Option<(u16, Instant)>>,
    /// How many of the next accepted creates the provider's own server answers with its own
    /// 500 (its server failed after the task was made).
    server_errors_after_accept: Mutex<usize>,
    events: broadcast::Sender<SimEvent>,
}

impl SimState {
    pub(crate) fn is_finished(&self, task: &Task) -> bool {
        task.outcome == Outcome::Cancelled
            || (!*self.held.borrow() && task.created.elapsed() >= self.config.generation_time)
    }

    pub(crate) fn count_cancel(&self) {
        *self.cancels.lock().unwrap() += 1;
    }

    fn outage_code(&self) -> Option<i64> {
        let outage = *self.outage.lock().unwrap();
        outage.and_then(|(code, until)| (Instant::now() < until).then_some(code))
    }

    pub(crate) fn next_create_fault(&self) -> Option<i64> {
        let queued = self.create_faults.lock().unwrap().pop_front();
        let fault = queued.or_else(|| self.outage_code());
        if let Some(code) = fault {
            let _ = self.events.send(SimEvent::CreateRefused { code });
        }
        fault
    }

    pub(crate) fn fail_next_creates(&self, code: i64, n: usize) {
        let faults = std::iter::repeat_n(code, n);
        self.create_faults.lock().unwrap().extend(faults);
    }

    pub(crate) fn outage(&self, code: i64, length: Duration) {
        *self.outage.lock().unwrap() = Some((code, Instant::now() + length));
    }

    /// Counts a query and returns the outage code it meets, if any.
    pub(crate) fn next_query_fault(&self) -> Option<i64> {
        self.count_request();
        self.outage_code()
    }

    fn count_request(&self) {
        let now = Instant::now();
        let mut recent = self.recent_requests.lock().unwrap();
        let (times, max) = &mut *recent;
        times.push_back(now);
        while times
            .front()
            .is_some_and(|&t| now.duration_since(t) >= Duration::from_secs(1))
        {
            times.pop_front();
        }
        *max = (*max).max(times.len() as u64);
    }

    pub(crate) fn gateway_outage(&self, code: u16, length: Duration) {
        *self.gateway_outage.lock().unwrap() = Some((code, Instant::now() + length));
    }

    /// The status a gateway answers an accepted create with, if one is failing now.
    pub(crate) fn next_gateway_fault(&self) -> Option<u16> {
        let queued = self.gateway_faults.lock().unwrap().pop_front();
        let outage = *self.gateway_outage.lock().unwrap();
        queued.or_else(|| outage.and_then(|(code, until)| (Instant::now() < until).then_some(code)))
    }

    /// Whether the provider's own server fails this accepted create (one of those asked for).
    pub(crate) fn next_server_error_after_accept(&self) -> bool {
        let mut left = self.server_errors_after_accept.lock().unwrap();
        let fails = *left > 0;
        *left = left.saturating_sub(1);
        fails
    }

    pub(crate) fn next_download_fault(&self) -> Option<DownloadFault> {
        self.download_faults.lock().unwrap().pop_front()
    }

    /// Announces and counts a create as it arrives.
    pub(crate) fn create_received(&self) {
        self.count_request();
        let _ = self.events.send(SimEvent::CreateReceived);
    }

    pub(crate) fn record_create(self: &Arc<Self>, task_id: &str, new: NewTask) {
        let NewTask {
            provider,
            outcome,
            fingerprint,
            prompt,
            callback_url,
            request,
            shape,
            account,
        } = new;
        {
            let mut tasks = self.tasks.lock().unwrap();
            let task = Task {
                provider,
                created: Instant::now(),
                outcome,
                callback_url: callback_url.clone(),
                request,
                shape,
                created_unix_ms: crate::contract::unix_ms(),
                seq: tasks.len() as u64,
            };
            tasks.insert(task_id.to_owned(), task);
            // Every task takes the same generation time, so they finish in creation order:
            // the ones still generating are the newest, kept in order (not a scan of every
            // task ever made, which made a long run slower and slower).
            let held = *self.held.borrow();
            let running = |generating: &mut VecDeque<Instant>| {
                while generating
                    .front()
                    .is_some_and(|created| created.elapsed() >= self.config.generation_time)
                {
                    generating.pop_front();
                }
                generating.push_back(Instant::now());
                generating.len() as u64
            };
            // Held, no task finishes: every one counts.
            let all = running(&mut self.generating.lock().unwrap());
            let all = if held { tasks.len() as u64 } else { all };
            let mut max_in_flight = self.max_in_flight.lock().unwrap();
            *max_in_flight = (*max_in_flight).max(all);
            let mut per_account = self.generating_per_account.lock().unwrap();
            if let Some((generating, max)) = per_account.get_mut(account) {
                *max = (*max).max(running(generating));
            }
        }
        if let Some(url) = callback_url {
            tokio::spawn(crate::callbacks::deliver(
                self.clone(),
                task_id.to_owned(),
                url,
            ));
        }
        *self
            .creates_by_fingerprint
            .lock()
            .unwrap()
            .entry(fingerprint.clone())
            .or_default() += 1;
        *self
            .creates_by_prompt
            .lock()
            .unwrap()
            .entry(prompt)
            .or_default() += 1;
        let _ = self.events.send(SimEvent::Created {
            task_id: task_id.to_owned(),
            fingerprint,
        });
    }

    pub(crate) fn journal(&self, exchange: crate::journal::Exchange) {
        self.exchanges.lock().unwrap().push(exchange);
    }

    pub(crate) fn emit(&self, event: SimEvent) {
        let _ = self.events.send(event);
    }

    pub(crate) fn record_download(&self, task_id: &str) {
        *self.downloads.lock().unwrap() += 1;
        let _ = self.events.send(SimEvent::Downloaded {
            task_id: task_id.to_owned(),
        });
    }

    pub(crate) fn stats(&self) -> SimStats {
        let creates = self.creates_by_fingerprint.lock().unwrap();
        // One lock of the prompts' counts (a struct literal keeps its temporaries, guards
        // too, to its end).
        let (max_creates_per_prompt, prompts_made_twice) = {
            let by_prompt = self.creates_by_prompt.lock().unwrap();
            let twice = by_prompt.iter().filter(|(_, n)| **n > 1);
            (
                by_prompt.values().copied().max().unwrap_or(0),
                twice.map(|(prompt, _)| prompt.clone()).collect(),
            )
        };
        SimStats {
            creates: creates.values().map(|&n| u64::from(n)).sum(),
            max_creates_per_fingerprint: creates.values().copied().max().unwrap_or(0),
            max_creates_per_prompt,
            prompts_made_twice,
            downloads: *self.downloads.lock().unwrap(),
            download_faults_left: self.download_faults.lock().unwrap().len(),
            max_in_flight: *self.max_in_flight.lock().unwrap(),
            max_in_flight_per_account: self
                .generating_per_account
                .lock()
                .unwrap()
                .iter()
                .map(|(_, max)| *max)
                .collect(),
            max_requests_per_second: self.recent_requests.lock().unwrap().1,
            cancels: *self.cancels.lock().unwrap(),
        }
    }
}

/// A running simulator on 127.0.0.1. Stops when dropped.
pub struct Simulator {
    addr: SocketAddr,
    state: Arc<SimState>,
    /// Cancels the server task when the handle goes away.
    _shutdown: DropGuard,
}

impl Simulator {
    /// Binds `addr` (use port 0 for a free one) and serves until dropped.
    pub async fn start(addr: SocketAddr, config: SimConfig) -> std::io::Result<Simulator> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let (events, _) = broadcast::channel(4096);
        let accounts = 1 + config.other_api_keys.len();
        let state = Arc::new(SimState {
            config,
            base_url: format!("http://{addr}"),
            tasks: Mutex::default(),
            creates_by_fingerprint: Mutex::default(),
            creates_by_prompt: Mutex::default(),
            downloads: Mutex::default(),
            cancels: Mutex::default(),
            exchanges: Mutex::default(),
            held: watch::Sender::new(false),
            callback_mode: Mutex::new(CallbackMode::Deliver),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(15))
                .build()
                .map_err(std::io::Error::other)?,
            create_faults: Mutex::default(),
            outage: Mutex::default(),
            create_latency: Mutex::default(),
            account_webhook_url: Mutex::default(),
            recent_requests: Mutex::default(),
            max_in_flight: Mutex::default(),
            generating: Mutex::default(),
            generating_per_account: Mutex::new(vec![Default::default(); accounts]),
            download_faults: Mutex::default(),
            gateway_faults: Mutex::default(),
            gateway_outage: Mutex::default(),
            server_errors_after_accept: Mutex::default(),
            events,
        });
        let shutdown = CancellationToken::new();
        let app = crate::contracts::app(state.clone());
        let stop = shutdown.clone();
        tokio::spawn(async move {
            let served = axum::serve(listener, app)
                .with_graceful_shutdown(async move { stop.cancelled().await })
                .await;
            if let Err(err) = served {
                tracing::error!(error = %err, "simulator server stopped");
            }
        });
        Ok(Simulator {
            addr,
            state,
            _shutdown: shutdown.drop_guard(),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn base_url(&self) -> &str {
        &self.state.base_url
    }

    /// Subscribe before acting, so no event is missed.
    pub fn events(&self) -> broadcast::Receiver<SimEvent> {
        self.state.events.subscribe()
    }

    /// Keeps every task generating until [`Simulator::release`].
    pub fn hold(&self) {
        self.state.held.send_replace(true);
    }

    pub fn release(&self) {
        self.state.held.send_replace(false);
    }

    /// Where OpenAI-style webhooks of tasks created from now on are sent.
    pub fn set_account_webhook_url(&self, url: impl Into<String>) {
        *self.state.account_webhook_url.lock().unwrap() = Some(url.into());
    }

    /// The next `n` creates answer with fault `code` instead of creating a task, each
    /// contract in its own shape: 402 out of credits, 429 rate limited (retry after 1 s),
    /// 455 maintenance, 500 server error.
    pub fn fail_next_creates(&self, code: i64, n: usize) {
        self.state.fail_next_creates(code, n);
    }

    /// How callbacks are sent from now on.
    pub fn set_callback_mode(&self, mode: CallbackMode) {
        *self.state.callback_mode.lock().unwrap() = mode;
    }

    /// The callback URL the create of `task_id` gave, as an attacker who learnt it would use it.
    pub fn callback_url(&self, task_id: &str) -> Option<String> {
        self.state
            .tasks
            .lock()
            .unwrap()
            .get(task_id)?
            .callback_url
            .clone()
    }

    /// The next `n` result downloads meet `fault`, after any already queued.
    fn queue_download_faults(&self, fault: DownloadFault, n: usize) {
        let faults = std::iter::repeat_n(fault, n);
        self.state.download_faults.lock().unwrap().extend(faults);
    }

    /// The next `n` result downloads answer 404, as expired URLs do.
    pub fn expire_next_downloads(&self, n: usize) {
        self.queue_download_faults(DownloadFault::Expired, n);
    }

    /// The next `n` result downloads announce the full length and then stop half-way.
    pub fn truncate_next_downloads(&self, n: usize) {
        self.queue_download_faults(DownloadFault::Truncated, n);
    }

    /// The next `n` result downloads answer 200 with an HTML page instead of the video.
    pub fn serve_pages_for_next_downloads(&self, n: usize) {
        self.queue_download_faults(DownloadFault::Page, n);
    }

    /// The next `n` result downloads answer 200 with half the video, its length announced
    /// honestly.
    pub fn cut_short_next_downloads(&self, n: usize) {
        self.queue_download_faults(DownloadFault::CutShort, n);
    }

    /// The next `n` result downloads answer 200 with a whole video far shorter than asked.
    pub fn serve_too_short_next_downloads(&self, n: usize) {
        self.queue_download_faults(DownloadFault::TooShort, n);
    }

    /// The exact bytes a finished task's video is served as (without padding): its header
    /// claims the duration and frame the create asked for.
    pub fn video(&self, task_id: &str) -> Option<Vec<u8>> {
        let shape = self.state.tasks.lock().unwrap().get(task_id)?.shape;
        Some(render_video(task_id, shape))
    }

    /// The body of the create that made `task_id`, as received (less its callback URLs).
    pub fn create_body(&self, task_id: &str) -> Option<serde_json::Value> {
        Some(
            self.state
                .tasks
                .lock()
                .unwrap()
                .get(task_id)?
                .request
                .clone(),
        )
    }

    /// The next `n` creates are accepted (a task made and paid for), then answered `code`
    /// (e.g. 502) with a gateway's HTML page: a create whose outcome the client cannot know.
    pub fn fail_after_accepting_next_creates(&self, code: u16, n: usize) {
        let faults = std::iter::repeat_n(code, n);
        self.state.gateway_faults.lock().unwrap().extend(faults);
    }

    /// The next `n` creates are accepted (a task made and paid for), then the provider's own
    /// server fails and answers HTTP 500 in the contract's own error shape (kie: code 500 in
    /// its envelope): proof of nothing, as at a real provider.
    pub fn server_error_after_accepting_next_creates(&self, n: usize) {
        *self.state.server_errors_after_accept.lock().unwrap() += n;
    }

    /// For the next `length`, every accepted create is answered `code` by a failing gateway.
    pub fn gateway_outage(&self, code: u16, length: Duration) {
        self.state.gateway_outage(code, length);
    }

    /// For the next `length`, every create and query answers with fault `code` (as in
    /// [`Simulator::fail_next_creates`]).
    pub fn outage(&self, code: i64, length: Duration) {
        self.state.outage(code, length);
    }

    /// Every create from now on takes `latency` to answer.
    pub fn set_create_latency(&self, latency: Duration) {
        *self.state.create_latency.lock().unwrap() = latency;
    }

    pub fn stats(&self) -> SimStats {
        self.state.stats()
    }

    /// Every exchange so far, when the config keeps a journal ([`SimConfig::journal`]).
    pub fn exchanges(&self) -> Vec<crate::journal::Exchange> {
        self.state.exchanges.lock().unwrap().clone()
    }
}
