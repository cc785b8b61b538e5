//! `reelq status` and `reelq watch`: one job's record, and live progress until jobs settle.

use std::{collections::HashMap, time::Duration};

use anyhow::{Context, bail};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use reelq_core::{BatchId, JobId, JobState};
use reelq_producer::Client;

use crate::print::{print_json, print_table};

/// `reelq watch`: the jobs named, and a batch's.
pub(crate) async fn run(
    client: &Client,
    mut job_ids: Vec<JobId>,
    batch: Option<BatchId>,
) -> anyhow::Result<()> {
    if let Some(batch_id) = batch {
        job_ids.extend(client.batch_jobs(batch_id).await?);
    }
    if job_ids.is_empty() {
        bail!("nothing to watch: give job ids or --batch");
    }
    watch(client, &job_ids).await
}

pub(crate) async fn show(client: &Client, job_id: JobId, json: bool) -> anyhow::Result<()> {
    let record = client
        .status(job_id)
        .await?
        .with_context(|| format!("job {job_id} not found"))?;
    if json {
        let mut value = serde_json::to_value(&record)?;
        value["history"] = serde_json::to_value(client.history(job_id).await?)?;
        value["trace_id"] = job_id.trace_id().into();
        print_json(&value)?;
    } else {
        print_table(std::slice::from_ref(&record));
        print_route(&record);
    }
    Ok(())
}

/// A routed job's route under its table: the candidate it is at (or was served by) and the
/// ones it left, and why.
fn print_route(record: &reelq_queue::JobRecord) {
    let Some(route) = &record.spec.route else {
        return;
    };
    let at = match record.served_by() {
        Some(served) => format!(
            "served by {} / {}{}",
            served.account,
            served.model,
            served
                .estimated_cost_usd
                .map(|usd| format!(" at ${usd:.3}"))
                .unwrap_or_default()
        ),
        None => format!(
            "at candidate {} of {}",
            route.at + 1,
            route.candidates.len()
        ),
    };
    println!("route {}: {at}", route.name);
    for left in &route.left {
        let label = route
            .candidates
            .get(left.candidate)
            .map(|candidate| candidate.label())
            .unwrap_or_default();
        println!("  left {label} at {} ({})", left.account, left.reason);
    }
}

/// Live progress until the jobs settle: one bar for all of them with an ETA, and one bar per
/// state showing how many jobs are in it now.
pub(crate) async fn watch(client: &Client, job_ids: &[JobId]) -> anyhow::Result<()> {
    let total = job_ids.len() as u64;
    let bars = MultiProgress::new();
    let overall = bars.add(ProgressBar::new(total));
    overall.set_style(
        ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} settled, ETA {eta}")
            .expect("the template is valid")
            .progress_chars("=> "),
    );
    overall.enable_steady_tick(Duration::from_millis(200));
    let per_state_style = ProgressStyle::with_template("  {msg:>12} [{bar:30}] {pos}")
        .expect("the template is valid")
        .progress_chars("=> ");
    let state_bars: HashMap<JobState, ProgressBar> = JobState::ALL
        .iter()
        .map(|&state| {
            let bar = bars.add(ProgressBar::new(total));
            bar.set_style(per_state_style.clone());
            bar.set_message(state.as_str());
            (state, bar)
        })
        .collect();
    let records = client
        .wait(job_ids, |states| {
            let mut counts: HashMap<JobState, u64> = HashMap::new();
            for state in states.values() {
                *counts.entry(*state).or_default() += 1;
            }
            let settled = states.values().filter(|s| s.is_settled()).count();
            overall.set_position(settled as u64);
            for (state, bar) in &state_bars {
                bar.set_position(counts.get(state).copied().unwrap_or(0));
            }
        })
        .await?;
    overall.finish();
    for bar in state_bars.values() {
        bar.finish();
    }
    print_table(&records);
    let n_stored = records
        .iter()
        .filter(|r| r.state == JobState::Stored)
        .count();
    let estimated: f64 = records
        .iter()
        .filter_map(|r| r.spec.estimated_cost_usd)
        .sum();
    println!(
        "{n_stored} of {} jobs stored, estimated cost ${estimated:.2}",
        records.len()
    );
    if n_stored != records.len() {
        std::process::exit(2);
    }
    Ok(())
}
