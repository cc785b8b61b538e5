//! The videos the simulator serves: a real 1-second H.264 MP4 (made with ffmpeg, checked with
//! ffprobe) followed by a `free` box naming the task, so every task's file is distinct and
//! still a valid MP4.

const SAMPLE_MP4: &[u8] = include_bytes!("../assets/sample.mp4");

/// The exact bytes served for `task_id`.
pub fn render_video(task_id: &str) -> Vec<u8> {
    let payload = task_id.as_bytes();
    let box_len = u32::try_from(8 + payload.len()).expect("task ids are short");
    let mut video = Vec::with_capacity(SAMPLE_MP4.len() + box_len as usize);
    video.extend_from_slice(SAMPLE_MP4);
    video.extend_from_slice(&box_len.to_be_bytes());
    video.extend_from_slice(b"free");
    video.extend_from_slice(payload);
    video
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
}
