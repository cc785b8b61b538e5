//! The `/sim/*` control routes, for scripts that drive a simulator running as a process (the
//! demo, the chaos binary): its counters, hold and release, and injected faults.

use std::{sync::Arc, time::Duration};

use axum::{
    Json, Router,
    extract::State,
    routing::{get, post},
};

use crate::simulator::{SimState, SimStats};

pub(crate) fn routes() -> Router<Arc<SimState>> {
    Router::new()
        .route("/sim/stats", get(stats))
        .route("/sim/hold", post(hold))
        .route("/sim/release", post(release))
        .route("/sim/faults", post(faults))
        .route("/sim/outage", post(outage))
        .route("/sim/gateway", post(gateway))
}

async fn stats(State(state): State<Arc<SimState>>) -> Json<SimStats> {
    Json(state.stats())
}

async fn hold(State(state): State<Arc<SimState>>) {
    state.held.send_replace(true);
}

async fn release(State(state): State<Arc<SimState>>) {
    state.held.send_replace(false);
}

/// `POST /sim/faults {"code": 429, "count": 3}`: the next creates meet that fault.
#[derive(serde::Deserialize)]
struct FaultsRequest {
    code: i64,
    count: usize,
}

async fn faults(State(state): State<Arc<SimState>>, Json(request): Json<FaultsRequest>) {
    state.fail_next_creates(request.code, request.count);
}

/// `POST /sim/outage {"code": 455, "ms": 2000}`: every create and query meets that fault.
#[derive(serde::Deserialize)]
struct OutageRequest {
    code: i64,
    ms: u64,
}

async fn outage(State(state): State<Arc<SimState>>, Json(request): Json<OutageRequest>) {
    state.outage(request.code, Duration::from_millis(request.ms));
}

/// `POST /sim/gateway {"code": 502, "ms": 2000}`: for that long, every create is accepted and
/// paid, then answered by a failing gateway.
#[derive(serde::Deserialize)]
struct GatewayRequest {
    code: u16,
    ms: u64,
}

async fn gateway(State(state): State<Arc<SimState>>, Json(request): Json<GatewayRequest>) {
    state.gateway_outage(request.code, Duration::from_millis(request.ms));
}
