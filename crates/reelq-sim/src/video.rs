//! The videos the simulator serves: a real 1-second H.264 MP4 (made with ffmpeg, checked with
//! ffprobe) followed by a `free` box naming the task, so every task's file is distinct and
//! still a valid MP4.

use bytes::Bytes;

const SAMPLE_MP4: &[u8] = include_bytes!("../assets/sample.mp4");

/// Padding is streamed in chunks of this many zeros, so a 1 GiB video costs the simulator no
/// memory.
const ZERO_CHUNK: usize = 1024 * 1024;
static ZEROS: [u8; ZERO_CHUNK] = [0; ZERO_CHUNK];

/// The exact bytes served for `task_id` (without padding).
pub fn render_video(task_id: &str) -> Vec<u8> {
    video_chunks(task_id, 0)
        .flat_map(|chunk| chunk.to_vec())
        .collect()
}

/// The video for `task_id` whose trailing `free` box carries `padding` zero bytes after the
/// task id, in chunks; and its total length.
pub(crate) fn video_chunks(task_id: &str, padding: u64) -> impl Iterator<Item = Bytes> + use<> {
    let payload = task_id.as_bytes();
    let box_len = u32::try_from(8 + payload.len() as u64 + padding)
        .expect("a video's padding fits an MP4 box (under 4 GiB)");
    let mut head = Vec::with_capacity(SAMPLE_MP4.len() + 8 + payload.len());
    head.extend_from_slice(SAMPLE_MP4);
    head.extend_from_slice(&box_len.to_be_bytes());
    head.extend_from_slice(b"free");
    head.extend_from_slice(payload);
    let n_full = padding / ZERO_CHUNK as u64;
    let rest = (padding % ZERO_CHUNK as u64) as usize;
    std::iter::once(Bytes::from(head))
        .chain((0..n_full).map(|_| Bytes::from_static(&ZEROS)))
        .chain((rest > 0).then(|| Bytes::from_static(&ZEROS[..rest])))
}

pub(crate) fn video_len(task_id: &str, padding: u64) -> u64 {
    (SAMPLE_MP4.len() + 8 + task_id.len()) as u64 + padding
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Walks the top-level MP4 boxes; a valid file is an exact sequence of them.
    fn top_level_boxes(bytes: &[u8]) -> Vec<String> {
        let mut boxes = Vec::new();
        let mut offset = 0;
        while offset < bytes.len() {
            let size = u32::from_be_bytes(bytes[offset..offset + 4].try_into().unwrap()) as usize;
            assert!(size >= 8, "box at {offset} has size {size}");
            boxes.push(String::from_utf8_lossy(&bytes[offset + 4..offset + 8]).into_owned());
            offset += size;
        }
        assert_eq!(
            offset,
            bytes.len(),
            "boxes end exactly at the end of the file"
        );
        boxes
    }

    #[test]
    fn every_task_gets_a_distinct_well_formed_mp4() {
        let a = render_video("task-a");
        let b = render_video("task-b");
        assert_ne!(a, b);
        assert_eq!(
            top_level_boxes(&a),
            ["ftyp", "moov", "free", "mdat", "free"]
        );
        assert!(a.ends_with(b"freetask-a"));
    }

    #[test]
    fn padding_streams_inside_the_free_box() {
        let padded: Vec<u8> = video_chunks("t", 3 * ZERO_CHUNK as u64 + 5)
            .flat_map(|chunk| chunk.to_vec())
            .collect();
        assert_eq!(
            padded.len() as u64,
            video_len("t", 3 * ZERO_CHUNK as u64 + 5)
        );
        assert_eq!(
            top_level_boxes(&padded),
            ["ftyp", "moov", "free", "mdat", "free"]
        );
        assert!(padded.starts_with(SAMPLE_MP4));
        let task_id_at = SAMPLE_MP4.len() + 8;
        assert_eq!(&padded[task_id_at..task_id_at + 1], b"t");
        assert!(padded[task_id_at + 1..].iter().all(|&byte| byte == 0));
    }
}
