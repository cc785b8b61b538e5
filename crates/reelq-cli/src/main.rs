//! `reelq`: enqueue jobs and batches, read their status, watch them finish, operate batches
//! and uncertain jobs, and serve the HTTP API and the dashboard.

mod args;
mod batch;
mod cluster;
mod jobs;
mod print;
mod providers;
mod routes;
mod serve;
mod setup;
mod store;
mod tenants;
mod tokens;
mod usage;
mod verify;
mod watch;

use args::{Cli, Command};
use print::print_stats;
use setup::Setup;

use clap::{CommandFactory, Parser};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    stop_quietly_when_the_reader_goes();
    let (setup, command) = Setup::read(Cli::parse())?;
    match command {
        Command::Completions { shell } => {
            let mut command = Cli::command();
            clap_complete::generate(shell, &mut command, "reelq", &mut std::io::stdout());
        }
        Command::Man => clap_mangen::Man::new(Cli::command()).render(&mut std::io::stdout())?,
        Command::Providers {
            config,
            output,
            command,
        } => providers::run(&setup, config.as_deref(), output.json(), command).await?,
        Command::Batch { command } => batch::run(&setup, command).await?,
        Command::Cluster { command } => cluster::run(&setup, command).await?,
        Command::Tenants { command } => tenants::run(&setup, command).await?,
        Command::Tokens { command } => tokens::run(&setup, command).await?,
        Command::Usage(args) => usage::run(&setup, args).await?,
        Command::Submit(args) => {
            let client = setup.client().await?;
            let request: reelq_core::JobRequest = (*args).into();
            let spec = request
                .validate(client.catalog(), reelq_producer::now_ms())
                .map_err(reelq_producer::ProducerError::Invalid)?;
            for notice in client.lifecycle_notices(std::slice::from_ref(&spec)) {
                eprintln!("warning: {notice}");
            }
            println!("{}", client.enqueue_spec(spec).await?);
        }
        Command::Status { job_id, output } => {
            watch::show(&setup.client().await?, job_id, output.json()).await?
        }
        Command::Stats { output } => {
            print_stats(&setup.client().await?.stats().await?, output.json())?
        }
        Command::Workers { output } => {
            print::print_workers(&setup.client().await?.workers().await?, output.json())?
        }
        Command::Migrate {
            to_partitions,
            output,
        } => {
            print::print_migration(&setup.client().await?.migrate().await?, output.json())?;
            if let Some(partitions) = to_partitions {
                let done = reelq_queue::partition_ledger(setup.ledger_config(), partitions).await?;
                print::print_partitioning(&done, output.json())?;
            }
        }
        Command::Jobs { command } => jobs::run(&setup.client().await?, command).await?,
        Command::Dlq { command } => jobs::dlq(&setup.client().await?, command).await?,
        Command::Serve(args) => serve::run(&setup, args).await?,
        Command::Verify(args) => {
            let client = setup.client().await?;
            if !verify::run(&client, args, setup.store()?).await? {
                std::process::exit(2);
            }
        }
        Command::Watch { job_ids, batch } => {
            watch::run(&setup.client().await?, job_ids, batch).await?
        }
    }
    Ok(())
}

/// `reelq stats | head -3`: once the reader has gone, stdout answers "broken pipe" (Rust
/// ignores SIGPIPE), and `println!` panics. Stop as a SIGPIPE would have stopped us: quietly,
/// with status 141 (128 + 13).
fn stop_quietly_when_the_reader_goes() {
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let message = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or_default();
        if message.starts_with("failed printing to stdout") && message.contains("Broken pipe") {
            std::process::exit(141);
        }
        report(info);
    }));
}
