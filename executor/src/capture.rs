//! Bounded capture of a job's stdout or stderr.
//!
//! A job can print without limit (`yes`), but we keep at most `cap` bytes of each stream: the rest is read and
//! dropped, so the container never blocks on a full pipe and our memory stays at the cap. The kept bytes are
//! decoded as UTF-8 at the end, in one piece, so a character split across two engine frames is not damaged.

/// Bytes kept from one stream, at most `cap` of them.
#[derive(Debug)]
pub struct BoundedBuffer {
    cap: usize,
    kept: Vec<u8>,
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
        BoundedBuffer { cap, kept: Vec::new(), seen: 0 }
    }

    pub fn push(&mut self, chunk: &[u8]) {
        self.seen = self.seen.saturating_add(chunk.len() as u64);
        let room = self.cap.saturating_sub(self.kept.len());
        let take = room.min(chunk.len());
        self.kept.extend_from_slice(&chunk[..take]);
    }

    pub fn truncated(&self) -> bool {
        self.seen > self.kept.len() as u64
    }

    pub fn finish(self) -> Captured {
        let mut truncated = self.truncated();
        let mut bytes: &[u8] = &self.kept;
        if truncated {
            // The cut may have landed inside a character: drop its first bytes rather than turn them into U+FFFD.
            bytes = &bytes[..complete_prefix_len(bytes)];
        }
        let mut text = String::from_utf8_lossy(bytes).into_owned();
        // Invalid bytes grow into 3-byte U+FFFD when decoded; the cap is a promise about what we hand on, so hold
        // the decoded text to it too.
        if text.len() > self.cap {
            let mut end = self.cap;
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            text.truncate(end);
            truncated = true;
        }
        Captured { text, truncated, bytes_seen: self.seen }
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

/// Length of `bytes` without a trailing, incomplete UTF-8 sequence (all of `bytes` when it ends cleanly).
fn complete_prefix_len(bytes: &[u8]) -> usize {
    let len = bytes.len();
    // A UTF-8 sequence is at most 4 bytes, so only the last 3 can start one that is cut short.
    for back in 1..=len.min(3) {
        let i = len - back;
        let b = bytes[i];
        if b & 0xC0 == 0x80 {
            continue; // continuation byte: look further back for the lead byte
        }
        let needed = match b {
            0xC0..=0xDF => 2,
            0xE0..=0xEF => 3,
            0xF0..=0xF7 => 4,
            _ => 1, // ASCII, or an invalid lead byte the lossy decoder will replace anyway
        };
        return if back < needed { i } else { len };
    }
    len
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
        assert!(b.kept.capacity() < 64, "memory must not grow with the flood");
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

    #[test]
    fn prefix_len_cases() {
        assert_eq!(complete_prefix_len(b""), 0);
        assert_eq!(complete_prefix_len(b"abc"), 3);
        assert_eq!(complete_prefix_len(&"é".as_bytes()[..1]), 0);
        assert_eq!(complete_prefix_len("é".as_bytes()), 2);
        assert_eq!(complete_prefix_len(&"😀".as_bytes()[..3]), 0);
        assert_eq!(complete_prefix_len("😀".as_bytes()), 4);
    }
}
