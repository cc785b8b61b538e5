//! `reelq cluster ...`: operating the ledger on a Redis Cluster. `move-slot` moves one of the
//! ledger's hash slots to another master while workers and producers run
//! (`crates/reelq-queue/src/slot_move.rs`).

use crate::{
    print::{OutputArgs, print_json},
    setup::Setup,
};

#[derive(clap::Subcommand)]
pub(crate) enum ClusterCommand {
    /// Move one of the ledger's hash slots to another master of its cluster (one just added,
    /// or to rebalance) while everything runs: the scripts of that slot wait out the move, and
    /// nothing is overwritten. If it is interrupted, the slot stays frozen until it is run
    /// again, which finishes the move.
    MoveSlot {
        /// `host:port` of the master to move the slot to.
        #[arg(long)]
        to: String,
        /// The slot of this partition (0 up to the ledger's partitions), in a ledger whose
        /// home has a slot of its own; without it, the home's slot (a one-slot ledger's only
        /// one).
        #[arg(long)]
        partition: Option<u16>,
        #[command(flatten)]
        output: OutputArgs,
    },
}

pub(crate) async fn run(setup: &Setup, command: ClusterCommand) -> anyhow::Result<()> {
    match command {
        ClusterCommand::MoveSlot {
            to,
            partition,
            output,
        } => {
            let which = partition.map_or(reelq_queue::LedgerSlot::Home, |n| {
                reelq_queue::LedgerSlot::Partition(n)
            });
            let moved = reelq_queue::move_ledger_slot(setup.ledger_config(), which, &to).await?;
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
