//! `reelq jobs` (list, cancel, resolve) and `reelq dlq` (the failed jobs).

use anyhow::{bail, ensure};
use reelq_core::JobState;
use reelq_producer::Client;
use reelq_queue::{CancelOutcome, Resolution};

use crate::{
    args::{DlqCommand, JobsCommand},
    print::{print_json, print_table},
    watch::show,
};

pub(crate) async fn run(client: &Client, command: JobsCommand) -> anyhow::Result<()> {
    match command {
        JobsCommand::List {
            state,
            limit,
            after,
            day,
            after_id,
            tenant,
            output,
        } => {
            ensure!(limit > 0, "--limit must be at least 1");
            // Archived jobs by day and id, or live ones most recently changed first.
            let (records, next, more) = match day {
                Some(day) => {
                    let (records, next) =
                        client.archived_page(day, &state, after_id, limit).await?;
                    let next = next.map(|job_id| job_id.to_string());
                    let more = next
                        .as_ref()
                        .map(|next| format!("--day {day} --after-id {next}"));
                    (records, next, more)
                }
                None => {
                    let (records, next) = client.jobs_page(&state, after, limit).await?;
                    let next = next.map(|cursor| cursor.to_string());
                    let more = next.as_ref().map(|next| format!("--after {next}"));
                    (records, next, more)
                }
            };
            let records: Vec<_> = records
                .into_iter()
                .filter(|record| {
                    tenant
                        .as_ref()
                        .is_none_or(|tenant| record.spec.tenant_name() == tenant.as_str())
                })
                .collect();
            if output.json() {
                print_json(&serde_json::json!({ "data": records, "next_cursor": next }))?;
            } else {
                print_table(&records);
                if let Some(more) = more {
                    println!("more: {more}");
                }
            }
        }
        JobsCommand::Cancel { job_ids } => {
            let mut refused = 0;
            for job_id in job_ids {
                match client.cancel_job(job_id).await? {
                    CancelOutcome::Cancelled => println!("job {job_id} cancelled"),
                    CancelOutcome::AskedProvider(provider) => println!(
                        "job {job_id} is submitted: {provider} was asked to stop it; it ends \
                         cancelled once {provider} has (a video ready first is stored; reelq \
                         watch {job_id})"
                    ),
                    CancelOutcome::NotCancellable { state, provider } => {
                        refused += 1;
                        let why = match (state, provider.cancels_generations()) {
                            (JobState::Waiting, false) => {
                                format!("{provider} has no call to stop a generation")
                            }
                            _ => format!("it is {state}"),
                        };
                        eprintln!("job {job_id} was not cancelled: {why} (reelq status {job_id})");
                    }
                }
            }
            ensure!(refused == 0, "{refused} job(s) not cancelled");
        }
        JobsCommand::Resolve {
            job_id,
            task_id,
            resubmit,
            fail,
        } => {
            let resolution = match (task_id, resubmit, fail) {
                (Some(task_id), _, _) => Resolution::TaskId(task_id),
                (None, true, _) => Resolution::Resubmit,
                (None, false, true) => Resolution::Fail,
                (None, false, false) => bail!("say how: --task-id T, --resubmit or --fail"),
            };
            if !client.resolve(job_id, resolution).await? {
                bail!("job {job_id} is not uncertain; nothing changed");
            }
            println!("job {job_id} resolved");
        }
    }
    Ok(())
}

pub(crate) async fn dlq(client: &Client, command: DlqCommand) -> anyhow::Result<()> {
    match command {
        DlqCommand::List { limit, output } => {
            let records = client.jobs_in_state(JobState::Failed, limit).await?;
            match output.json() {
                true => print_json(&serde_json::json!(records))?,
                false => print_table(&records),
            }
        }
        DlqCommand::Show { job_id, output } => show(client, job_id, output.json()).await?,
        DlqCommand::Retry { job_ids } => {
            if job_ids.is_empty() {
                bail!("nothing to retry: give the failed jobs' ids (reelq dlq list shows them)");
            }
            for job_id in job_ids {
                match client.retry_failed(job_id).await? {
                    true => println!("job {job_id} sent back"),
                    false => eprintln!("job {job_id} is not failed; skipped"),
                }
            }
        }
    }
    Ok(())
}
