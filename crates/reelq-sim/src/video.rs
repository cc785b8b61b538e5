//! The videos the simulator serves: a real 1-second H.264 MP4 (made with ffmpeg, checked with
//! ffprobe) followed by a `free` box naming the task, so every task's file is distinct and
//! still a valid MP4.

use bytes::Bytes;
use reelq_core::Aspect;

const SAMPLE_MP4: &[u8] = include_bytes!("../assets/sample.mp4");

/// The still image the OpenAI-style contract serves for a finished video
/// (`content?variant=thumbnail`): a 1x1 lossless WebP.
pub(crate) const THUMBNAIL_WEBP: &[u8] = b"RIFF\x1a\x00\x00\x00WEBPVP8L\x0d\x00\x00\x00\x2f\x00\x00\x00\x10\x07\x10\x11\x11\x88\x88\xfe\x07\x00";

/// Padding is streamed in chunks of this many zeros, so a 1 GiB video costs the simulator no
/// memory.
const ZERO_CHUNK: usize = 1024 * 1024;
static ZEROS: [u8; ZERO_CHUNK] = [0; ZERO_CHUNK];

/// What a task's video claims to be: the duration and the frame its create asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VideoShape {
    pub duration_s: u32,
    pub aspect: Aspect,
}

/// Offsets of the sample's header fields (version-0 boxes; `every_task_gets_a_distinct_well_
/// formed_mp4` checks the layout): movie, track and media durations, the edit's length, the
/// frame count, and the frame size in the track header (16.16) and the sample entry.
const MVHD_DURATION: usize = 64;
const TKHD_DURATION: usize = 184;
const TKHD_WIDTH: usize = 240;
const TKHD_HEIGHT: usize = 244;
const ELST_SEGMENT: usize = 272;
const MDHD_DURATION: usize = 316;
const AVC1_SIZE: usize = 489;
const STTS_COUNT: usize = 651;
/// The sample's timescales (movie, media), its frame rate, and its frame (landscape).
const MOVIE_SCALE: u32 = 1000;
const MEDIA_SCALE: u32 = 10240;
const FRAMES_PER_S: u32 = 10;
const FRAME: (u16, u16) = (160, 90);

/// The sample MP4 with its header rewritten to claim `shape`: the simulator stands in for a
/// provider that renders to order, so a worker can hold each video against its job. The
/// media data stays the sample's one second (the header is all a reader checks here).
fn shaped_sample(shape: VideoShape) -> Vec<u8> {
    let mut mp4 = SAMPLE_MP4.to_vec();
    let mut put = |at: usize, value: u32| mp4[at..at + 4].copy_from_slice(&value.to_be_bytes());
    let seconds = shape.duration_s;
    put(MVHD_DURATION, seconds * MOVIE_SCALE);
    put(TKHD_DURATION, seconds * MOVIE_SCALE);
    put(ELST_SEGMENT, seconds * MOVIE_SCALE);
    put(MDHD_DURATION, seconds * MEDIA_SCALE);
    put(STTS_COUNT, seconds * FRAMES_PER_S);
    let (long, short) = FRAME;
    let (width, height) = match shape.aspect {
        Aspect::Landscape => (long, short),
        Aspect::Portrait => (short, long),
        Aspect::Square => (short, short),
    };
    put(TKHD_WIDTH, u32::from(width) << 16);
    put(TKHD_HEIGHT, u32::from(height) << 16);
    mp4[AVC1_SIZE..AVC1_SIZE + 2].copy_from_slice(&width.to_be_bytes());
    mp4[AVC1_SIZE + 2..AVC1_SIZE + 4].copy_from_slice(&height.to_be_bytes());
    mp4
}

/// The exact bytes served for `task_id` of `shape` (without padding).
pub fn render_video(task_id: &str, shape: VideoShape) -> Vec<u8> {
    video_chunks(task_id, shape, 0)
        .flat_map(|chunk| chunk.to_vec())
        .collect()
}

/// The video for `task_id` whose trailing `free` box carries `padding` zero bytes after the
/// task id, in chunks; and its total length.
pub(crate) fn video_chunks(
    task_id: &str,
    shape: VideoShape,
    padding: u64,
) -> impl Iterator<Item = Bytes> + use<> {
    let payload = task_id.as_bytes();
    let box_len = u32::try_from(8 + payload.len() as u64 + padding)
        .expect("a video's padding fits an MP4 box (under 4 GiB)");
    let mut head = Vec::with_capacity(SAMPLE_MP4.len() + 8 + payload.len());
    head.extend_from_slice(&shaped_sample(shape));
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

    const TEN_S_LANDSCAPE: VideoShape = VideoShape {
        duration_s: 10,
        aspect: Aspect::Landscape,
    };

    #[test]
    fn the_header_fields_rewritten_are_where_the_sample_keeps_them() {
        let at =
            |offset: usize| u32::from_be_bytes(SAMPLE_MP4[offset..offset + 4].try_into().unwrap());
        assert_eq!(&SAMPLE_MP4[MVHD_DURATION - 20..MVHD_DURATION - 16], b"mvhd");
        assert_eq!(at(MVHD_DURATION - 4), MOVIE_SCALE);
        for duration in [MVHD_DURATION, TKHD_DURATION, ELST_SEGMENT] {
            assert_eq!(at(duration), MOVIE_SCALE, "one second at {duration}");
        }
        assert_eq!(at(MDHD_DURATION), MEDIA_SCALE);
        assert_eq!(at(STTS_COUNT), FRAMES_PER_S);
        assert_eq!(at(TKHD_WIDTH) >> 16, u32::from(FRAME.0));
        assert_eq!(&SAMPLE_MP4[AVC1_SIZE - 28..AVC1_SIZE - 24], b"avc1");
    }

    #[test]
    fn a_rendered_video_claims_the_duration_and_frame_asked() {
        for (duration_s, aspect, size) in [
            (10, Aspect::Landscape, (160, 90)),
            (15, Aspect::Portrait, (90, 160)),
            (4, Aspect::Square, (90, 90)),
        ] {
            let video = render_video("t", VideoShape { duration_s, aspect });
            let mut inspector = reelq_media::Mp4Inspector::default();
            inspector.feed(&video);
            let facts = inspector.finish().unwrap();
            assert_eq!((facts.width, facts.height), size);
            assert!(
                (facts.duration_s - f64::from(duration_s)).abs() < 0.01,
                "{facts:?}"
            );
            assert!(
                facts
                    .frame_rate
                    .is_some_and(|rate| (rate - 10.0).abs() < 0.01),
                "{facts:?}"
            );
        }
    }

    #[test]
    fn every_task_gets_a_distinct_well_formed_mp4() {
        let a = render_video("task-a", TEN_S_LANDSCAPE);
        let b = render_video("task-b", TEN_S_LANDSCAPE);
        assert_ne!(a, b);
        assert_eq!(
            top_level_boxes(&a),
            ["ftyp", "moov", "free", "mdat", "free"]
        );
        assert!(a.ends_with(b"freetask-a"));
    }

    #[test]
    fn padding_streams_inside_the_free_box() {
        let padded: Vec<u8> = video_chunks("t", TEN_S_LANDSCAPE, 3 * ZERO_CHUNK as u64 + 5)
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
        assert!(padded.starts_with(&shaped_sample(TEN_S_LANDSCAPE)));
        let task_id_at = SAMPLE_MP4.len() + 8;
        assert_eq!(&padded[task_id_at..task_id_at + 1], b"t");
        assert!(padded[task_id_at + 1..].iter().all(|&byte| byte == 0));
    }
}
