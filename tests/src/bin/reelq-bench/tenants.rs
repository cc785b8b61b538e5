//! `tenant-claims`: what a claim costs Redis as the tenants with jobs waiting grow from one to
//! ten thousand (the fair share is a sorted set of tenants, so a claim should grow with a
//! logarithm of their number at most). No worker: claims straight on the ledger, on a fresh
//! Redis per tenant count, the jobs spread evenly over the tenants.

use reelq_core::{Aspect, JobId, JobSpec, ProviderKind, Quality, TenantName};
use reelq_queue::{ClaimOptions, Ledger, LedgerConfig};

use super::*;

/// The jobs enqueued before the claims, and the jobs each claim takes.
const PER_CLAIM: usize = 8;

fn job(tenant: &TenantName, n: usize) -> (JobId, JobSpec) {
    let spec = JobSpec {
        provider: ProviderKind::Kie,
        account: None,
        model: "kling-3.0/video".into(),
        prompt: format!("{tenant} shot {n}"),
        duration_s: 5,
        aspect: Aspect::Landscape,
        quality: Quality::Standard,
        image_urls: vec![],
        character: None,
        notify_url: None,
        notify_events: vec![],
        deadline_ms: None,
        tenant: Some(tenant.clone()),
        estimated_cost_usd: None,
        request: None,
        route: None,
    };
    (JobId::new(), spec)
}

pub(crate) async fn tenant_claims(jobs: usize, claims: usize, out: PathBuf) -> anyhow::Result<()> {
    anyhow::ensure!(
        claims * PER_CLAIM <= jobs,
        "--jobs must cover --claims x {PER_CLAIM}"
    );
    println!(
        "tenant claims: {jobs} jobs spread over the tenants, {claims} claims of {PER_CLAIM} jobs each, fresh Redis (appendfsync always) per count"
    );
    println!(
        "  {:>8} {:>14} {:>16} {:>14}",
        "tenants", "CPU us/claim", "commands/claim", "claims/s"
    );
    let mut rows = Vec::new();
    for tenants in [1, 100, 10_000] {
        let redis = reelq_testkit::RedisServer::start()?;
        let ledger = Ledger::connect(&LedgerConfig::new(redis.url(), "bench")).await?;
        let names: Vec<TenantName> = (0..tenants)
            .map(|n| format!("tenant-{n}").parse().expect("a tenant name"))
            .collect();
        let all: Vec<_> = (0..jobs).map(|n| job(&names[n % tenants], n)).collect();
        for chunk in all.chunks(reelq_queue::ENQUEUE_CHUNK) {
            ledger.enqueue(None, chunk).await?;
        }
        let client = redis::Client::open(redis.url())?;
        let mut conn = client.get_multiplexed_async_connection().await?;
        let options = ClaimOptions {
            owner: "bench",
            max_jobs: PER_CLAIM,
            lease: Duration::from_secs(600),
            resubmit_uncertain: false,
            limits: &[],
            accounts: reelq_queue::own_accounts(),
        };
        let before = redis_stats(&mut conn).await?;
        let started = Instant::now();
        let mut taken = 0;
        for _ in 0..claims {
            taken += ledger.claim(&options).await?.leases.len();
        }
        let elapsed = started.elapsed();
        let after = redis_stats(&mut conn).await?;
        anyhow::ensure!(taken == claims * PER_CLAIM, "claimed {taken} jobs");
        let cpu_us = (after.cpu_s - before.cpu_s) * 1e6 / claims as f64;
        let commands = (after.calls.values().sum::<u64>() - before.calls.values().sum::<u64>())
            as f64
            / claims as f64;
        let per_s = claims as f64 / elapsed.as_secs_f64();
        println!("  {tenants:>8} {cpu_us:>14.0} {commands:>16.1} {per_s:>14.0}");
        rows.push(json!({
            "tenants": tenants, "cpu_us_per_claim": cpu_us, "commands_per_claim": commands,
            "claims_per_s": per_s,
        }));
    }
    std::fs::write(
        &out,
        serde_json::to_string_pretty(
            &json!({ "rows": rows, "jobs": jobs, "claims": claims, "jobs_per_claim": PER_CLAIM }),
        )?,
    )
    .with_context(|| format!("writing {}", out.display()))?;
    Ok(())
}
