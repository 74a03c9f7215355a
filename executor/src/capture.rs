//! Bounded capture of a job's stdout or stderr, and the live view of it.
//!
//! A job can print without limit (`yes`), but we keep at most `cap` bytes of each stream's text: the rest is read
//! and dropped, so the container never blocks on a full pipe and our memory stays at the cap. Bytes are decoded as
//! UTF-8 as they arrive (invalid bytes become U+FFFD, exactly as a whole-buffer lossy decoding would; a character
//! split across two engine frames waits for its end), and only whole characters are kept, so the text the edge
//! streams live is, piece by piece, exactly the final `output`.

use std::collections::VecDeque;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use ouro_core::dispatch::{OutputChunk, OutputStream};
use tokio::sync::Notify;

/// Text kept from one stream, at most `cap` bytes of it.
#[derive(Debug)]
pub struct BoundedBuffer {
    cap: usize,
    text: String,
    /// The start of a character whose end has not arrived yet (at most 3 bytes).
    pending: Vec<u8>,
    /// A character did not fit: nothing more is kept (keeping a later, shorter one would leave a gap).
    full: bool,
    /// Every byte seen, kept or not (for logs).
    seen: u64,
}

/// A stream's captured text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Captured {
    pub text: String,
    pub truncated: bool,
    pub bytes_seen: u64,
}

impl BoundedBuffer {
    pub fn new(cap: usize) -> Self {
        // No pre-allocation: most jobs print a few lines and caps can be megabytes.
        BoundedBuffer { cap, text: String::new(), pending: Vec::new(), full: false, seen: 0 }
    }

    /// Takes the next bytes of the stream; answers the text this kept (empty once the cap is reached).
    pub fn push(&mut self, chunk: &[u8]) -> &str {
        self.seen = self.seen.saturating_add(chunk.len() as u64);
        let start = self.text.len();
        if self.full {
            return "";
        }
        let joined;
        let mut rest: &[u8] = if self.pending.is_empty() {
            chunk
        } else {
            let mut bytes = std::mem::take(&mut self.pending);
            bytes.extend_from_slice(chunk);
            joined = bytes;
            &joined
        };
        while !rest.is_empty() && !self.full {
            match std::str::from_utf8(rest) {
                Ok(valid) => {
                    self.keep(valid);
                    break;
                }
                Err(e) => {
                    let (valid, after) = rest.split_at(e.valid_up_to());
                    // from_utf8 vouched for these bytes.
                    self.keep(std::str::from_utf8(valid).unwrap_or_default());
                    match e.error_len() {
                        // The input ends inside a character: wait for the rest of it.
                        None => {
                            if !self.full {
                                self.pending = after.to_vec();
                            }
                            break;
                        }
                        Some(bad) => {
                            self.keep("\u{FFFD}");
                            rest = &after[bad..];
                        }
                    }
                }
            }
        }
        &self.text[start..]
    }

    /// Appends whole characters of `s` while they fit under the cap.
    fn keep(&mut self, s: &str) {
        if self.full {
            return;
        }
        let room = self.cap - self.text.len();
        if s.len() <= room {
            self.text.push_str(s);
            return;
        }
        let mut end = room;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        self.text.push_str(&s[..end]);
        self.full = true;
    }

    pub fn truncated(&self) -> bool {
        self.full
    }

    /// The final text; a character left incomplete by the end of the stream becomes U+FFFD.
    pub fn finish(self) -> Captured {
        self.finish_into(OutputStream::Stdout, None)
    }

    /// [`BoundedBuffer::finish`], also handing the text it adds at the end to `live`.
    pub fn finish_into(mut self, stream: OutputStream, live: Option<&LiveOutput>) -> Captured {
        let before = self.text.len();
        if !self.pending.is_empty() {
            self.pending.clear();
            self.keep("\u{FFFD}");
        }
        if let Some(live) = live {
            live.push(stream, &self.text[before..]);
        }
        Captured { truncated: self.full, text: self.text, bytes_seen: self.seen }
    }
}

/// Largest piece of text in one chunk sent to the edge.
pub const CHUNK_BYTES: usize = 16 * 1024;

/// The text kept from a running job's streams and not yet sent to the edge, in the order it was read. Filled by
/// the capture (never waiting: a short lock, no I/O), emptied by the reporter. It only ever holds kept text, so it
/// is bounded by the caps like the buffers themselves.
#[derive(Debug, Default)]
pub struct LiveOutput {
    queue: Mutex<Unsent>,
    /// Wakes the reporter when a full chunk is waiting.
    pub ready: Notify,
    /// The raw bytes of both streams, for the job's full log (none when the executor keeps no logs).
    raw: Mutex<Option<RawLogs>>,
}

/// The raw bytes of a job's stdout and stderr, written to files as they arrive, each up to `cap` bytes.
#[derive(Debug)]
pub struct RawLogs {
    cap: u64,
    streams: [RawLog; 2],
}

#[derive(Debug)]
struct RawLog {
    path: PathBuf,
    file: Option<std::io::BufWriter<std::fs::File>>,
    written: u64,
    seen: u64,
}

/// A finished raw log: where it is, and whether bytes were dropped at the cap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawLogFile {
    pub stream: OutputStream,
    pub path: PathBuf,
    pub truncated: bool,
    pub bytes_seen: u64,
}

impl RawLogs {
    /// Opens `{dir}/{job_id}.stdout` and `.stderr`.
    pub fn create(dir: &Path, job_id: &str, cap: u64) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let open = |name: &str| -> std::io::Result<RawLog> {
            let path = dir.join(format!("{job_id}.{name}"));
            let file = std::fs::File::create(&path)?;
            Ok(RawLog { path, file: Some(std::io::BufWriter::with_capacity(64 * 1024, file)), written: 0, seen: 0 })
        };
        Ok(RawLogs { cap, streams: [open("stdout")?, open("stderr")?] })
    }

    fn write(&mut self, stream: OutputStream, bytes: &[u8]) {
        let log = &mut self.streams[stream as usize];
        log.seen = log.seen.saturating_add(bytes.len() as u64);
        let room = usize::try_from(self.cap.saturating_sub(log.written)).unwrap_or(usize::MAX);
        let take = room.min(bytes.len());
        if take == 0 {
            return;
        }
        if let Some(file) = log.file.as_mut() {
            match file.write_all(&bytes[..take]) {
                Ok(()) => log.written += take as u64,
                Err(e) => {
                    // A full disk loses the log, never the job or its capped output.
                    tracing::warn!(path = %log.path.display(), error = %e, "raw log write failed; the log stops here");
                    log.file = None;
                }
            }
        }
    }

    fn finish(self) -> Vec<RawLogFile> {
        let [stdout, stderr] = self.streams;
        [(OutputStream::Stdout, stdout), (OutputStream::Stderr, stderr)]
            .into_iter()
            .filter_map(|(stream, mut log)| {
                let flushed = log.file.as_mut().map(|f| f.flush());
                match flushed {
                    Some(Ok(())) => Some(RawLogFile {
                        stream,
                        truncated: log.seen > log.written,
                        bytes_seen: log.seen,
                        path: log.path,
                    }),
                    _ => {
                        let _ = std::fs::remove_file(&log.path);
                        None
                    }
                }
            })
            .collect()
    }
}

#[derive(Debug, Default)]
struct Unsent {
    pieces: VecDeque<(OutputStream, String)>,
    bytes: usize,
    next_seq: u64,
}

impl LiveOutput {
    /// A live view that also writes the raw bytes to `logs`.
    pub fn with_raw_logs(logs: RawLogs) -> Self {
        LiveOutput { raw: Mutex::new(Some(logs)), ..LiveOutput::default() }
    }

    /// The next raw bytes of `stream` (before decoding), for the full log.
    pub fn raw(&self, stream: OutputStream, bytes: &[u8]) {
        if let Ok(mut raw) = self.raw.lock() {
            if let Some(logs) = raw.as_mut() {
                logs.write(stream, bytes);
            }
        }
    }

    /// Closes the raw logs and answers their files (none without logs).
    pub fn finish_raw_logs(&self) -> Vec<RawLogFile> {
        self.raw.lock().ok().and_then(|mut r| r.take()).map(RawLogs::finish).unwrap_or_default()
    }

    pub fn push(&self, stream: OutputStream, text: &str) {
        if text.is_empty() {
            return;
        }
        let Ok(mut q) = self.queue.lock() else { return };
        let mut rest = text;
        while !rest.is_empty() {
            let room = match q.pieces.back() {
                Some((s, piece)) if *s == stream && piece.len() < CHUNK_BYTES => CHUNK_BYTES - piece.len(),
                _ => {
                    q.pieces.push_back((stream, String::new()));
                    CHUNK_BYTES
                }
            };
            let mut end = room.min(rest.len());
            while !rest.is_char_boundary(end) {
                end -= 1;
            }
            if end == 0 {
                // Not even one character fits in this piece's room: start the next piece.
                q.pieces.push_back((stream, String::new()));
                end = rest.char_indices().nth(1).map_or(rest.len(), |(i, _)| i);
            }
            if let Some((_, piece)) = q.pieces.back_mut() {
                piece.push_str(&rest[..end]);
            }
            q.bytes += end;
            rest = &rest[end..];
        }
        let wake = q.bytes >= CHUNK_BYTES;
        drop(q);
        if wake {
            self.ready.notify_one();
        }
    }

    /// Takes up to `max_bytes` of unsent text (at least one piece), numbered in order.
    pub fn take(&self, max_bytes: usize) -> Vec<OutputChunk> {
        let Ok(mut q) = self.queue.lock() else { return Vec::new() };
        let mut out = Vec::new();
        let mut size = 0;
        while let Some((_, piece)) = q.pieces.front() {
            if !out.is_empty() && size + piece.len() > max_bytes {
                break;
            }
            let Some((stream, data)) = q.pieces.pop_front() else { break };
            size += data.len();
            q.bytes -= data.len();
            let seq = q.next_seq;
            q.next_seq += 1;
            out.push(OutputChunk { seq, stream, data });
        }
        out
    }

    pub fn is_empty(&self) -> bool {
        self.queue.lock().map(|q| q.pieces.is_empty()).unwrap_or(true)
    }

    /// Bytes waiting to be sent.
    pub fn unsent_bytes(&self) -> usize {
        self.queue.lock().map(|q| q.bytes).unwrap_or(0)
    }
}

/// The last `cap` bytes of a stream (a build log, whose end says what went wrong). Memory stays under `2 * cap`:
/// the buffer is compacted whenever it doubles.
#[derive(Debug)]
pub struct TailBuffer {
    cap: usize,
    buf: Vec<u8>,
    seen: u64,
}

impl TailBuffer {
    pub fn new(cap: usize) -> Self {
        TailBuffer { cap, buf: Vec::new(), seen: 0 }
    }

    pub fn push(&mut self, chunk: &[u8]) {
        self.seen = self.seen.saturating_add(chunk.len() as u64);
        if chunk.len() >= self.cap {
            self.buf.clear();
            self.buf.extend_from_slice(&chunk[chunk.len() - self.cap..]);
            return;
        }
        self.buf.extend_from_slice(chunk);
        if self.buf.len() > self.cap.saturating_mul(2) {
            let cut = self.buf.len() - self.cap;
            self.buf.drain(..cut);
        }
    }

    pub fn finish(self) -> Captured {
        let start = self.buf.len().saturating_sub(self.cap);
        let mut bytes = &self.buf[start..];
        let truncated = self.seen > bytes.len() as u64;
        if truncated {
            // The cut may have landed inside a character: skip its continuation bytes.
            let skip = bytes.iter().take(3).take_while(|b| *b & 0xC0 == 0x80).count();
            bytes = &bytes[skip..];
        }
        let mut text = String::from_utf8_lossy(bytes).into_owned();
        let mut truncated = truncated;
        if text.len() > self.cap {
            let mut cut = text.len() - self.cap;
            while !text.is_char_boundary(cut) {
                cut += 1;
            }
            text.drain(..cut);
            truncated = true;
        }
        Captured { text, truncated, bytes_seen: self.seen }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_everything_under_the_cap() {
        let mut b = BoundedBuffer::new(16);
        b.push(b"hello\n");
        b.push(b"world\n");
        let c = b.finish();
        assert_eq!(c.text, "hello\nworld\n");
        assert!(!c.truncated);
        assert_eq!(c.bytes_seen, 12);
    }

    #[test]
    fn exactly_the_cap_is_not_truncated() {
        let mut b = BoundedBuffer::new(4);
        b.push(b"abcd");
        let c = b.finish();
        assert_eq!((c.text.as_str(), c.truncated), ("abcd", false));
    }

    #[test]
    fn drops_bytes_past_the_cap_and_flags_it() {
        let mut b = BoundedBuffer::new(5);
        for _ in 0..10_000 {
            b.push(b"y\n");
        }
        assert!(b.text.capacity() < 64, "memory must not grow with the flood");
        let c = b.finish();
        assert_eq!(c.text, "y\ny\ny");
        assert!(c.truncated);
        assert_eq!(c.bytes_seen, 20_000);
    }

    #[test]
    fn zero_cap_keeps_nothing() {
        let mut b = BoundedBuffer::new(0);
        b.push(b"x");
        let c = b.finish();
        assert_eq!((c.text.as_str(), c.truncated), ("", true));
    }

    #[test]
    fn character_split_across_chunks_survives() {
        let euro = "€".as_bytes(); // 3 bytes
        let mut b = BoundedBuffer::new(64);
        b.push(&euro[..1]);
        b.push(&euro[1..]);
        assert_eq!(b.finish().text, "€");
    }

    #[test]
    fn cut_inside_a_character_drops_the_partial_character() {
        // "a€" is 4 bytes; a cap of 3 cuts the euro sign after its first 2 bytes.
        let mut b = BoundedBuffer::new(3);
        b.push("a€b".as_bytes());
        let c = b.finish();
        assert_eq!(c.text, "a");
        assert!(c.truncated);
        // A 4-byte character cut after 3 bytes.
        let mut b = BoundedBuffer::new(4);
        b.push("x😀".as_bytes());
        assert_eq!(b.finish().text, "x");
    }

    #[test]
    fn cut_after_a_whole_character_keeps_it() {
        let mut b = BoundedBuffer::new(4);
        b.push("a€b".as_bytes());
        assert_eq!(b.finish().text, "a€");
    }

    #[test]
    fn invalid_bytes_are_replaced_and_held_to_the_cap() {
        let mut b = BoundedBuffer::new(4);
        b.push(&[0xFF, 0xFE, 0xFD, 0xFC]);
        let c = b.finish();
        assert!(c.text.len() <= 4);
        assert!(c.text.starts_with('\u{FFFD}'));
        assert!(c.truncated, "decoded text was shortened to the cap");
    }

    #[test]
    fn incomplete_character_without_truncation_is_replaced() {
        let mut b = BoundedBuffer::new(16);
        b.push(&"€".as_bytes()[..2]);
        let c = b.finish();
        assert_eq!(c.text, "\u{FFFD}");
        assert!(!c.truncated);
    }

    #[test]
    fn tail_keeps_the_end() {
        let mut t = TailBuffer::new(8);
        t.push(b"hello ");
        let c = t.finish();
        assert_eq!((c.text.as_str(), c.truncated), ("hello ", false));

        let mut t = TailBuffer::new(8);
        for i in 0..10_000 {
            t.push(format!("line {i}\n").as_bytes());
            assert!(t.buf.len() <= 16 + 16, "memory stays bounded");
        }
        let c = t.finish();
        assert_eq!(c.text, "ne 9999\n");
        assert!(c.truncated);

        let mut t = TailBuffer::new(4);
        t.push(b"0123456789");
        assert_eq!(t.finish().text, "6789");
    }

    #[test]
    fn tail_cut_inside_a_character_drops_it() {
        let mut t = TailBuffer::new(4);
        t.push("ab€c".as_bytes()); // 6 bytes: the last 4 are exactly "€c"
        assert_eq!(t.finish().text, "€c");
        let mut t = TailBuffer::new(3);
        t.push("ab€c".as_bytes()); // the last 3 bytes start inside the euro sign
        let c = t.finish();
        assert_eq!(c.text, "c");
        assert!(c.truncated);
    }

    /// Whatever the frame boundaries, the pieces `push` answers add up to the final text, which is the lossy
    /// decoding of the whole stream (capped).
    #[test]
    fn pieces_add_up_to_the_lossy_decoding_for_any_split() {
        let mut input = "あ\u{FFFD}".as_bytes().to_vec();
        input.extend([0xFF, b'\n', 0xE3, 0x81, b'x', 0xF0, 0x9F, 0x98, 0x80, 0xC3]);
        let whole = String::from_utf8_lossy(&input).into_owned();
        for split in 0..=input.len() {
            for split2 in split..=input.len() {
                let mut b = BoundedBuffer::new(1024);
                let mut pieces = String::new();
                pieces.push_str(b.push(&input[..split]));
                pieces.push_str(b.push(&input[split..split2]));
                pieces.push_str(b.push(&input[split2..]));
                let live = LiveOutput::default();
                let c = b.finish_into(OutputStream::Stdout, Some(&live));
                pieces.extend(live.take(usize::MAX).into_iter().map(|c| c.data));
                assert_eq!(c.text, whole, "split at {split}/{split2}");
                assert_eq!(pieces, whole, "split at {split}/{split2}");
                assert!(!c.truncated);
            }
        }
    }

    #[test]
    fn the_printf_case_of_the_issue() {
        let mut b = BoundedBuffer::new(64);
        b.push("あ".as_bytes());
        b.push(b"\xff\n");
        assert_eq!(b.finish().text, "あ\u{FFFD}\n");
    }

    #[test]
    fn live_output_is_ordered_chunked_and_bounded() {
        let live = LiveOutput::default();
        live.push(OutputStream::Stdout, "a");
        live.push(OutputStream::Stdout, "b");
        live.push(OutputStream::Stderr, "e");
        live.push(OutputStream::Stdout, &"é".repeat(CHUNK_BYTES));
        assert_eq!(live.unsent_bytes(), 3 + 2 * CHUNK_BYTES);
        let first = live.take(4);
        assert_eq!(first.len(), 2, "ab, then e (the next piece would pass the limit)");
        assert_eq!((first[0].seq, first[0].data.as_str(), first[0].stream), (0, "ab", OutputStream::Stdout));
        assert_eq!((first[1].seq, first[1].data.as_str(), first[1].stream), (1, "e", OutputStream::Stderr));
        let rest = live.take(usize::MAX);
        assert!(rest.iter().all(|c| c.data.len() <= CHUNK_BYTES && c.stream == OutputStream::Stdout));
        assert_eq!(rest.iter().map(|c| c.data.len()).sum::<usize>(), 2 * CHUNK_BYTES);
        assert_eq!(rest.first().map(|c| c.seq), Some(2));
        assert!(live.is_empty());
    }

    #[test]
    fn a_flood_keeps_the_cap_and_stops_feeding_the_live_view() {
        let mut b = BoundedBuffer::new(10);
        let live = LiveOutput::default();
        for _ in 0..100_000 {
            let kept = b.push(b"y\n").to_string();
            live.push(OutputStream::Stdout, &kept);
        }
        assert_eq!(live.unsent_bytes(), 10);
        let c = b.finish();
        assert!(c.truncated);
        assert_eq!(c.text, "y\n".repeat(5));
        assert_eq!(c.bytes_seen, 200_000);
    }

    #[test]
    fn raw_logs_keep_the_bytes_up_to_their_cap() {
        let dir = std::env::temp_dir().join(format!("ouro-rawlog-test-{}", std::process::id()));
        let live = LiveOutput::with_raw_logs(RawLogs::create(&dir, "job", 4).unwrap());
        live.raw(OutputStream::Stdout, b"\xffab");
        live.raw(OutputStream::Stdout, b"cdef");
        live.raw(OutputStream::Stderr, b"e");
        let files = live.finish_raw_logs();
        assert_eq!(files.len(), 2);
        assert_eq!(std::fs::read(&files[0].path).unwrap(), b"\xffabc", "raw, invalid byte and all");
        assert!(files[0].truncated && files[0].bytes_seen == 7);
        assert_eq!(std::fs::read(&files[1].path).unwrap(), b"e");
        assert!(!files[1].truncated);
        assert!(live.finish_raw_logs().is_empty(), "finished once");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
