//! Server-Sent Events framing (the `text/event-stream` format of the WHATWG HTML standard), as the events
//! stream of a job writes it.

/// One event: `id:` (what a reconnecting client sends back as `Last-Event-ID`), `event:` and a one-line `data:`.
/// `data` must not contain a line break (compact JSON never does: it escapes them).
pub fn event(id: Option<u64>, kind: &str, data: &str) -> String {
    let mut out = String::with_capacity(data.len() + 48);
    if let Some(id) = id {
        out.push_str(&format!("id: {id}\n"));
    }
    out.push_str(&format!("event: {}\n", one_line(kind)));
    out.push_str("data: ");
    out.push_str(&one_line(data));
    out.push_str("\n\n");
    out
}

/// A comment line (ignored by clients): keep-alives and notes.
pub fn comment(text: &str) -> String {
    format!(": {}\n\n", one_line(text))
}

/// How long a client waits before reconnecting after the stream drops.
pub fn retry(ms: u64) -> String {
    format!("retry: {ms}\n\n")
}

/// The event id to resume after: `Last-Event-ID` (header, or the `last_event_id` query parameter for clients
/// that cannot set headers). Anything but a decimal id means "from the start".
pub fn resume_after(last_event_id: Option<&str>) -> u64 {
    last_event_id.and_then(|v| v.trim().parse().ok()).unwrap_or(0)
}

fn one_line(text: &str) -> std::borrow::Cow<'_, str> {
    if text.contains(['\n', '\r']) {
        std::borrow::Cow::Owned(text.replace("\r\n", " ").replace(['\n', '\r'], " "))
    } else {
        std::borrow::Cow::Borrowed(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_events_and_comments() {
        assert_eq!(event(Some(7), "output", "{\"a\":1}"), "id: 7\nevent: output\ndata: {\"a\":1}\n\n");
        assert_eq!(event(None, "status", "x"), "event: status\ndata: x\n\n");
        assert_eq!(comment("keep-alive"), ": keep-alive\n\n");
        assert_eq!(retry(2000), "retry: 2000\n\n");
    }

    #[test]
    fn a_line_break_can_never_end_the_data_line() {
        assert_eq!(event(Some(1), "x", "a\nb\r\nc"), "id: 1\nevent: x\ndata: a b c\n\n");
        assert_eq!(comment("a\nid: 9"), ": a id: 9\n\n");
    }

    #[test]
    fn resume_point() {
        assert_eq!(resume_after(None), 0);
        assert_eq!(resume_after(Some(" 42 ")), 42);
        assert_eq!(resume_after(Some("abc")), 0);
        assert_eq!(resume_after(Some("-1")), 0);
    }
}
