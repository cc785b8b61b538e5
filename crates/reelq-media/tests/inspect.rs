//! The inspector against a real MP4 (the simulator's sample, made with ffmpeg) and the
//! things providers serve instead.

use reelq_media::{Mp4Inspector, VideoFacts};

const SAMPLE: &[u8] = include_bytes!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../reelq-sim/assets/sample.mp4"
));

fn inspect(bytes: &[u8], chunk: usize) -> Result<VideoFacts, String> {
    let mut inspector = Mp4Inspector::default();
    for piece in bytes.chunks(chunk) {
        inspector.feed(piece);
    }
    inspector.finish().map_err(|err| err.to_string())
}

#[test]
fn a_whole_mp4_reads_the_same_in_any_chunking() {
    let facts = inspect(SAMPLE, 64 * 1024).unwrap();
    assert_eq!(facts.codec, "h264");
    assert!((facts.duration_s - 1.0).abs() < 0.1, "{facts:?}");
    assert!(facts.width > 0 && facts.height > 0, "{facts:?}");
    assert!(facts.frame_rate.is_some_and(|rate| rate > 1.0), "{facts:?}");
    for chunk in [1, 7, 4096] {
        assert_eq!(inspect(SAMPLE, chunk).unwrap(), facts, "chunks of {chunk}");
    }
}

#[test]
fn trailing_boxes_after_the_media_are_fine() {
    // The simulator appends a `free` box naming the task, as some encoders pad files.
    let mut padded = SAMPLE.to_vec();
    padded.extend_from_slice(&12u32.to_be_bytes());
    padded.extend_from_slice(b"freetask");
    assert!(inspect(&padded, 1000).is_ok());
}

#[test]
fn an_html_page_served_as_the_video_is_refused_and_named() {
    let page = b"<!DOCTYPE html><html><body><h1>502 Bad Gateway</h1></body></html>";
    let err = inspect(page, 16).unwrap_err();
    assert!(err.contains("HTML"), "{err}");
}

#[test]
fn a_file_cut_short_is_refused_wherever_it_stops() {
    for cut in [3, 8, 20, SAMPLE.len() / 2, SAMPLE.len() - 1] {
        let err = inspect(&SAMPLE[..cut], 1000).unwrap_err();
        assert!(err.contains("truncated"), "cut at {cut}: {err}");
    }
}

#[test]
fn empty_json_and_mp4_without_a_movie_are_refused() {
    assert!(inspect(b"", 10).unwrap_err().contains("empty"));
    assert!(
        inspect(br#"{"error":"expired"}"#, 10)
            .unwrap_err()
            .contains("JSON")
    );
    // An ftyp box and media data, but no movie header.
    let ftyp_end = u32::from_be_bytes(SAMPLE[..4].try_into().unwrap()) as usize;
    let mut headless = SAMPLE[..ftyp_end].to_vec();
    headless.extend_from_slice(&16u32.to_be_bytes());
    headless.extend_from_slice(b"mdat01234567");
    assert!(inspect(&headless, 10).unwrap_err().contains("moov"));
}

#[test]
fn the_summary_is_one_short_line() {
    let facts = inspect(SAMPLE, 4096).unwrap();
    let line = facts.summary();
    assert!(line.starts_with("h264 ") && line.contains("fps"), "{line}");
    assert!(line.len() <= 64, "fits a compact hash field: {line}");
}

#[test]
fn a_video_far_from_the_duration_or_shape_asked_is_refused() {
    use reelq_media::{Expected, Orientation};
    // The sample: 1 s, 160x90.
    let facts = inspect(SAMPLE, 4096).unwrap();
    let asked = |duration_s, orientation| Expected {
        duration_s,
        orientation: Some(orientation),
    };
    let unasked = Expected {
        duration_s: 1.0,
        orientation: None,
    };
    assert!(facts.check(asked(1.0, Orientation::Landscape)).is_ok());
    // Within a second either way: providers round to their frame grid.
    assert!(facts.check(asked(2.0, Orientation::Landscape)).is_ok());
    let short = facts
        .check(asked(10.0, Orientation::Landscape))
        .unwrap_err();
    assert!(short.to_string().contains("10 s was asked"), "{short}");
    let turned = facts.check(asked(1.0, Orientation::Portrait)).unwrap_err();
    assert!(
        turned.to_string().contains("Portrait was asked"),
        "{turned}"
    );
    assert!(facts.check(asked(1.0, Orientation::Square)).is_err());
    // A frame the job could not ask for (the provider picks it) is any shape.
    assert!(facts.check(unasked).is_ok());
}
