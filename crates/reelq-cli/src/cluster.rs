//! `reelq cluster ...`: operating the ledger on a Redis Cluster. `move-slot` moves the
//! ledger's hash slot to another master while workers and producers run
//! (`crates/reelq-queue/src/slot_move.rs`).

use crate::{
    print::{OutputArgs, print_json},
    setup::Setup,
};

#[derive(clap::Subcommand)]
pub(crate) enum ClusterCommand {
    /// Move the ledger's hash slot to another master of its cluster (one just added, or to
    /// rebalance) while everything runs: the ledger's scripts wait out the move, and nothing
    /// is overwritten. If it is interrupted, the ledger stays frozen until it is run again,
    /// which finishes the move.
    MoveSlot {
        /// `host:port` of the master to move the slot to.
        #[arg(long)]
        to: String,
        #[command(flatten)]
        output: OutputArgs,
    },
}

pub(crate) async fn run(setup: &Setup, command: ClusterCommand) -> anyhow::Result<()> {
    match command {
        ClusterCommand::MoveSlot { to, output } => {
            let moved = reelq_queue::move_ledger_slot(setup.ledger_config(), &to).await?;
            if output.json() {
                return print_json(&serde_json::json!(moved));
            }
            println!(
                "slot {} moved from {} to {}: {} keys, scripts waited {} ms",
                moved.slot, moved.from, moved.to, moved.keys_moved, moved.frozen_ms
            );
        }
    }
    Ok(())
}
