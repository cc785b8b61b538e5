//! `durability`: what each durability mode costs a lifecycle, rounds interleaved.

use super::*;

/// One durability mode's figures from one round.
#[derive(Clone, Copy)]
pub(crate) struct DurabilityRound {
    pub(crate) single_enqueues_per_s: f64,
    pub(crate) bulk_enqueues_per_s: f64,
    pub(crate) lifecycles_per_s: f64,
}

pub(crate) async fn durability_cost(
    worker_bin: PathBuf,
    jobs: usize,
    singles: usize,
    rounds: usize,
    out: PathBuf,
) -> anyhow::Result<()> {
    let modes = [
        ("everysec (unsafe)", RedisSetup::UnsafeEverysec),
        ("always", RedisSetup::Always),
        ("replicas:1", RedisSetup::Replica),
    ];
    let mut figures: HashMap<&str, Vec<DurabilityRound>> = HashMap::new();
    for _ in 0..rounds {
        for (name, setup) in modes {
            let round = durability_round(&worker_bin, setup, jobs, singles).await?;
            figures.entry(name).or_default().push(round);
        }
    }
    let median = |values: &mut Vec<f64>| {
        values.sort_by(f64::total_cmp);
        values[values.len() / 2]
    };
    println!(
        "durability: {jobs} bulk + {singles} single enqueues, then all through 1 worker (concurrency 8); median of {rounds} interleaved rounds"
    );
    println!(
        "  {:<20} {:>14} {:>14} {:>14}",
        "mode", "single enq/s", "bulk enq/s", "lifecycles/s"
    );
    let mut summary = serde_json::Map::new();
    for (name, _) in modes {
        let rounds = &figures[name];
        let pick = |f: fn(&DurabilityRound) -> f64| median(&mut rounds.iter().map(f).collect());
        let (single, bulk, lifecycles) = (
            pick(|r| r.single_enqueues_per_s),
            pick(|r| r.bulk_enqueues_per_s),
            pick(|r| r.lifecycles_per_s),
        );
        println!("  {name:<20} {single:>14.0} {bulk:>14.0} {lifecycles:>14.0}");
        let figures = |single: f64, bulk: f64, lifecycles: f64| {
            json!({ "single_enqueues_per_s": single, "bulk_enqueues_per_s": bulk,
                    "lifecycles_per_s": lifecycles })
        };
        let each: Vec<_> = rounds
            .iter()
            .map(|r| {
                figures(
                    r.single_enqueues_per_s,
                    r.bulk_enqueues_per_s,
                    r.lifecycles_per_s,
                )
            })
            .collect();
        summary.insert(
            name.to_owned(),
            json!({ "median": figures(single, bulk, lifecycles), "rounds": each }),
        );
    }
    let result =
        json!({ "section": "durability", "jobs": jobs, "singles": singles, "modes": summary });
    std::fs::write(&out, serde_json::to_string_pretty(&result)?)
        .with_context(|| format!("writing {}", out.display()))?;
    Ok(())
}

pub(crate) async fn durability_round(
    worker_bin: &Path,
    setup: RedisSetup,
    jobs: usize,
    singles: usize,
) -> anyhow::Result<DurabilityRound> {
    let deployment = Deployment::start_with(worker_bin, Duration::ZERO, setup).await;
    let started = Instant::now();
    for prompt in prompts("single", singles) {
        let request = reelq_core::JobRequest {
            provider: Some("kie".into()),
            model: Some(deployment.model().into()),
            prompt: Some(prompt),
            ..Default::default()
        };
        deployment.client.enqueue(request).await?;
    }
    let single_enqueues_per_s = singles as f64 / started.elapsed().as_secs_f64();
    let started = Instant::now();
    deployment.enqueue_manifest(&prompts("bulk", jobs)).await;
    let bulk_enqueues_per_s = jobs as f64 / started.elapsed().as_secs_f64();
    let started = Instant::now();
    let _worker = deployment.spawn_worker_process("durability");
    settled_count(&deployment, jobs + singles).await?;
    let lifecycles_per_s = (jobs + singles) as f64 / started.elapsed().as_secs_f64();
    Ok(DurabilityRound {
        single_enqueues_per_s,
        bulk_enqueues_per_s,
        lifecycles_per_s,
    })
}
