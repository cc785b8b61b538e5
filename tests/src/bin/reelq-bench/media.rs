//! `media`: what looking inside a video costs the worker: CPU per GiB to hash (SHA-256, which
//! the store always does) and to walk the MP4 and read its movie header (`reelq-media`), over
//! a simulator video padded to the size asked, fed in the 64 KiB chunks a download arrives in.

use std::{path::PathBuf, time::Instant};

use anyhow::Context;
use reelq_media::Mp4Inspector;
use serde_json::json;
use sha2::{Digest, Sha256};

const CHUNK: usize = 64 * 1024;

pub(crate) fn media(mib: u64, out: PathBuf) -> anyhow::Result<()> {
    // The simulator's real MP4, then a `free` box of zeros to the size asked.
    let shape = reelq_sim::VideoShape {
        duration_s: 10,
        aspect: reelq_core::Aspect::Landscape,
    };
    let head = reelq_sim::render_video("bench", shape);
    let padding = mib * 1024 * 1024;
    let mut free_box = Vec::with_capacity(8);
    free_box.extend_from_slice(&u32::try_from(8 + padding)?.to_be_bytes());
    free_box.extend_from_slice(b"free");
    let zeros = vec![0u8; CHUNK];
    let total = head.len() as u64 + 8 + padding;
    let chunks = || {
        let full = (padding / CHUNK as u64) as usize;
        let rest = (padding % CHUNK as u64) as usize;
        [&head[..], &free_box[..]]
            .into_iter()
            .chain(std::iter::repeat_n(&zeros[..], full))
            .chain((rest > 0).then_some(&zeros[..rest]))
    };

    let hash_s = cpu_seconds(|| {
        let mut hasher = Sha256::new();
        chunks().for_each(|chunk| hasher.update(chunk));
        std::hint::black_box(hasher.finalize());
    })?;
    let inspect_s = cpu_seconds(|| {
        let mut inspector = Mp4Inspector::default();
        chunks().for_each(|chunk| inspector.feed(chunk));
        std::hint::black_box(inspector.finish().expect("the sample is a video"));
    })?;
    let gib = total as f64 / (1u64 << 30) as f64;
    let figures = json!({
        "section": "media",
        "bytes": total,
        "sha256_cpu_s_per_gib": hash_s / gib,
        "inspect_cpu_s_per_gib": inspect_s / gib,
    });
    std::fs::write(&out, serde_json::to_string_pretty(&figures)?)
        .with_context(|| format!("writing {}", out.display()))?;
    println!(
        "media: {total} bytes in 64 KiB chunks: SHA-256 {:.3} CPU s/GiB, MP4 inspection {:.4} CPU s/GiB",
        hash_s / gib,
        inspect_s / gib
    );
    Ok(())
}

/// Seconds `work` takes on this thread: it is CPU-bound and single-threaded, so its wall time
/// is its CPU time (clock ticks, 10 ms each, are too coarse for the inspection).
fn cpu_seconds(work: impl FnOnce()) -> anyhow::Result<f64> {
    let started = Instant::now();
    work();
    Ok(started.elapsed().as_secs_f64())
}
