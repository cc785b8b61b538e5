//! What a provider's result file is. Providers answer HTTP 200 with whatever they have: an
//! HTML error page, a file cut short, a video. [`Mp4Inspector`] is fed the bytes as they
//! stream to storage and, at the end, says whether they are a whole MP4 and what it holds
//! (duration, size, codec, frame rate), so a file that is not a video is never `stored`.
//!
//! The walk over top-level boxes (ISO/IEC 14496-12 §4.2: 32-bit size and type, a 64-bit
//! size when the first is 1, size 0 for "to the end of the file") is done here, because it
//! must run on a stream: the movie box (`moov`, small: kilobytes to a few megabytes) is kept,
//! the media data (`mdat`, the bulk) is only counted. The kept `ftyp` and `moov` are then
//! read by Mozilla's `mp4parse` (the parser Firefox ships, pure Rust, maintained; chosen over
//! the `mp4` crate, which needs `Seek` over the whole file and so a second read of it).

use std::io::Cursor;

/// The most bytes of `moov` kept for reading. Real movie boxes of minutes-long videos are a
/// few megabytes; a larger one is refused rather than held in memory.
pub const MAX_MOOV_BYTES: usize = 64 * 1024 * 1024;

/// Why a file is not the video that was asked for: not a video at all, or one far from the
/// duration or shape asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct NotAVideo(pub String);

/// The frame's shape a job asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Orientation {
    Landscape,
    Portrait,
    Square,
}

/// What a job asked for, to hold a video against.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Expected {
    pub duration_s: f64,
    /// None where the job could not ask for one (the provider picks the frame).
    pub orientation: Option<Orientation>,
}

/// How far a video's duration may be from the one asked: providers round to their frame
/// grid and trim a few frames (a 10 s job comes back 9.8–10.1 s), so a second or a tenth,
/// whichever is more. A 2 s clip for a 10 s job is far outside it.
pub fn duration_tolerance_s(asked_s: f64) -> f64 {
    (asked_s * 0.1).max(1.0)
}

impl VideoFacts {
    /// Whether these facts are the video `expected` describes: its duration within
    /// [`duration_tolerance_s`], its frame the shape asked, if one was (a square within 5 %).
    pub fn check(&self, expected: Expected) -> Result<(), NotAVideo> {
        let tolerance = duration_tolerance_s(expected.duration_s);
        if (self.duration_s - expected.duration_s).abs() > tolerance {
            return Err(NotAVideo(format!(
                "not the video asked for: {:.2} s long where {} s was asked (tolerance {tolerance} s)",
                self.duration_s, expected.duration_s
            )));
        }
        let (width, height) = (f64::from(self.width), f64::from(self.height));
        let shape = if (width - height).abs() <= 0.05 * width.max(height) {
            Orientation::Square
        } else if width > height {
            Orientation::Landscape
        } else {
            Orientation::Portrait
        };
        if let Some(asked) = expected.orientation
            && shape != asked
        {
            return Err(NotAVideo(format!(
                "not the video asked for: {}x{} is {shape:?} where {asked:?} was asked",
                self.width, self.height
            )));
        }
        Ok(())
    }
}

/// What the movie header says about a whole MP4.
#[derive(Debug, Clone, PartialEq)]
pub struct VideoFacts {
    pub duration_s: f64,
    pub width: u32,
    pub height: u32,
    /// `h264`, `av1`, `vp9`, …, or `other` for a codec the parser does not name (HEVC).
    pub codec: &'static str,
    /// Samples per second of the video track, where its sample table says.
    pub frame_rate: Option<f64>,
}

impl VideoFacts {
    /// One short line, e.g. `h264 1280x720 10.00s 30.00fps`: how the ledger keeps them.
    pub fn summary(&self) -> String {
        let mut line = format!(
            "{} {}x{} {:.2}s",
            self.codec, self.width, self.height, self.duration_s
        );
        if let Some(rate) = self.frame_rate {
            line.push_str(&format!(" {rate:.2}fps"));
        }
        line
    }
}

const CODECS: [(mp4parse::CodecType, &str); 6] = [
    (mp4parse::CodecType::H264, "h264"),
    (mp4parse::CodecType::AV1, "av1"),
    (mp4parse::CodecType::VP9, "vp9"),
    (mp4parse::CodecType::VP8, "vp8"),
    (mp4parse::CodecType::MP4V, "mp4v"),
    (mp4parse::CodecType::H263, "h263"),
];

/// Where the walk is inside the current top-level box.
#[derive(Debug)]
enum Within {
    /// Reading a box header (8 bytes, or 16 with a 64-bit size) into `header`.
    Header,
    /// Inside a box's body: `left` bytes to go (None: to the end of the file); `keep` when
    /// the body is copied out (`ftyp`, `moov`).
    Body { left: Option<u64>, keep: Kept },
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kept {
    No,
    Ftyp,
    Moov,
}

/// Walks an MP4's top-level boxes as its bytes arrive ([`Mp4Inspector::feed`]), then reads
/// its movie header ([`Mp4Inspector::finish`]).
#[derive(Debug)]
pub struct Mp4Inspector {
    within: Within,
    header: Vec<u8>,
    /// Bytes fed so far.
    offset: u64,
    /// Top-level boxes seen, in order (at most the first 16 are kept, for messages).
    boxes: Vec<[u8; 4]>,
    has_mdat: bool,
    ftyp: Vec<u8>,
    moov: Vec<u8>,
    /// The first thing found wrong; the rest of the file is only counted.
    broken: Option<String>,
}

impl Default for Mp4Inspector {
    fn default() -> Self {
        Mp4Inspector {
            within: Within::Header,
            header: Vec::with_capacity(16),
            offset: 0,
            boxes: Vec::new(),
            has_mdat: false,
            ftyp: Vec::new(),
            moov: Vec::new(),
            broken: None,
        }
    }
}

impl Mp4Inspector {
    pub fn feed(&mut self, mut chunk: &[u8]) {
        while !chunk.is_empty() && self.broken.is_none() {
            let taken = match &mut self.within {
                Within::Header => self.read_header(chunk),
                Within::Body { left, keep } => {
                    let n = left.map_or(chunk.len(), |left| chunk.len().min(left as usize));
                    let body = &chunk[..n];
                    match keep {
                        Kept::No => {}
                        Kept::Ftyp => self.ftyp.extend_from_slice(body),
                        Kept::Moov => self.moov.extend_from_slice(body),
                    }
                    if let Some(left) = left {
                        *left -= n as u64;
                        if *left == 0 {
                            self.within = Within::Header;
                        }
                    }
                    n
                }
            };
            self.offset += taken as u64;
            chunk = &chunk[taken..];
        }
        self.offset += chunk.len() as u64;
    }

    /// Takes header bytes from `chunk`; returns how many.
    fn read_header(&mut self, chunk: &[u8]) -> usize {
        let want = if self.header.len() >= 4 && self.header[..4] == [0, 0, 0, 1] {
            16
        } else {
            8
        };
        let n = (want - self.header.len()).min(chunk.len());
        self.header.extend_from_slice(&chunk[..n]);
        if self.header.len() < want {
            return n;
        }
        if want == 8 && self.header[..4] == [0, 0, 0, 1] {
            // A 64-bit size follows: read 8 more.
            return n;
        }
        let size32 = u32::from_be_bytes(self.header[..4].try_into().expect("4 bytes"));
        let kind: [u8; 4] = self.header[4..8].try_into().expect("4 bytes");
        let header_len = self.header.len() as u64;
        let size = match size32 {
            0 => None,
            1 => Some(u64::from_be_bytes(
                self.header[8..16].try_into().expect("8 bytes"),
            )),
            size => Some(u64::from(size)),
        };
        let start: [u8; 8] = self.header[..8].try_into().expect("8 bytes");
        self.header.clear();
        let at = self.offset + n as u64 - header_len;
        if !kind.iter().all(|b| b.is_ascii_graphic() || *b == b' ') {
            self.broken = Some(format!(
                "bytes at offset {at} are not an MP4 box ({})",
                describe_start(&start)
            ));
            return n;
        }
        if self.boxes.is_empty() && &kind != b"ftyp" {
            self.broken = Some(format!(
                "starts with {:?}, not an MP4 file type box ({})",
                String::from_utf8_lossy(&kind),
                describe_start(&start)
            ));
            return n;
        }
        if size.is_some_and(|size| size < header_len) {
            self.broken = Some(format!(
                "box {:?} at offset {at} has an impossible size",
                String::from_utf8_lossy(&kind)
            ));
            return n;
        }
        if self.boxes.len() < 16 {
            self.boxes.push(kind);
        }
        self.has_mdat |= &kind == b"mdat";
        let keep = match &kind {
            b"ftyp" => Kept::Ftyp,
            b"moov" if self.moov.is_empty() => Kept::Moov,
            _ => Kept::No,
        };
        let left = size.map(|size| size - header_len);
        if keep != Kept::No {
            let body = left.unwrap_or(u64::MAX);
            if body > MAX_MOOV_BYTES as u64 {
                self.broken = Some(format!(
                    "box {:?} is {body} bytes, more than reelq reads",
                    String::from_utf8_lossy(&kind)
                ));
                return n;
            }
            let header = if keep == Kept::Ftyp {
                &mut self.ftyp
            } else {
                &mut self.moov
            };
            // Kept with a plain 32-bit header (the body is under MAX_MOOV_BYTES).
            header.extend_from_slice(&((body + 8) as u32).to_be_bytes());
            header.extend_from_slice(&kind);
        }
        self.within = match left {
            Some(0) => Within::Header,
            left => Within::Body { left, keep },
        };
        n
    }

    /// Whether the bytes fed are a whole MP4 with a video track, and what it holds.
    pub fn finish(self) -> Result<VideoFacts, NotAVideo> {
        let refuse = |why: String| Err(NotAVideo(format!("not a video: {why}")));
        if let Some(broken) = self.broken {
            return refuse(broken);
        }
        if self.offset == 0 {
            return refuse("the file is empty".into());
        }
        match self.within {
            Within::Header if !self.header.is_empty() => {
                return refuse(format!(
                    "truncated: the file ends inside a box header at offset {}",
                    self.offset
                ));
            }
            Within::Body {
                left: Some(left), ..
            } => {
                let kind = self
                    .boxes
                    .last()
                    .map(|k| String::from_utf8_lossy(k).into_owned());
                return refuse(format!(
                    "truncated: box {:?} needs {left} more bytes than the file's {}",
                    kind.unwrap_or_default(),
                    self.offset
                ));
            }
            _ => {}
        }
        if self.moov.is_empty() {
            return refuse(format!(
                "no movie box (moov) among the top-level boxes {}",
                self.box_list()
            ));
        }
        if !self.has_mdat && !self.boxes.iter().any(|k| k == b"moof") {
            return refuse("no media data (mdat)".into());
        }
        let mut header = self.ftyp;
        header.extend_from_slice(&self.moov);
        let context = mp4parse::read_mp4(&mut Cursor::new(header))
            .map_err(|err| NotAVideo(format!("not a video: unreadable movie box: {err:?}")))?;
        let track = context
            .tracks
            .iter()
            .find(|track| track.track_type == mp4parse::TrackType::Video)
            .ok_or_else(|| NotAVideo("not a video: no video track".into()))?;
        let duration_s = match (&track.duration, &track.timescale) {
            (Some(duration), Some(scale)) if scale.0 > 0 => duration.0 as f64 / scale.0 as f64,
            _ => return refuse("the video track has no duration".into()),
        };
        let entry = track.stsd.as_ref().and_then(|stsd| {
            stsd.descriptions.iter().find_map(|entry| match entry {
                mp4parse::SampleEntry::Video(video) => Some(video),
                _ => None,
            })
        });
        let (width, height) = match (entry, &track.tkhd) {
            (Some(video), _) => (u32::from(video.width), u32::from(video.height)),
            // tkhd keeps 16.16 fixed point.
            (None, Some(tkhd)) => (tkhd.width >> 16, tkhd.height >> 16),
            (None, None) => (0, 0),
        };
        let codec = entry
            .and_then(|video| {
                CODECS
                    .iter()
                    .find(|(kind, _)| *kind == video.codec_type)
                    .map(|(_, name)| *name)
            })
            .unwrap_or("other");
        let frames: u64 = track.stts.as_ref().map_or(0, |stts| {
            stts.samples.iter().map(|s| u64::from(s.sample_count)).sum()
        });
        let frame_rate = (frames > 0 && duration_s > 0.0).then(|| frames as f64 / duration_s);
        Ok(VideoFacts {
            duration_s,
            width,
            height,
            codec,
            frame_rate,
        })
    }

    fn box_list(&self) -> String {
        let names: Vec<String> = self
            .boxes
            .iter()
            .map(|k| String::from_utf8_lossy(k).into_owned())
            .collect();
        format!("[{}]", names.join(", "))
    }
}

/// What the first bytes look like when they are not MP4, for the operator reading the error.
fn describe_start(first: &[u8]) -> &'static str {
    let lower: Vec<u8> = first.iter().map(u8::to_ascii_lowercase).collect();
    if lower.starts_with(b"<") {
        "looks like an HTML or XML page"
    } else if lower.starts_with(b"{") || lower.starts_with(b"[") {
        "looks like JSON"
    } else {
        "unrecognised content"
    }
}
