//! Incremental Server-Sent Events decoder (WHATWG HTML §9.2.6).
//!
//! Bytes arrive in arbitrary pieces: a frame, a line, even a multi-byte UTF-8
//! character can be split across reads. The decoder keeps only the unfinished
//! line between calls and decodes text only once a whole line is present, so a
//! split character is never mangled. It never holds bytes back from the caller:
//! it only observes copies of what is forwarded.

/// One dispatched event. `event` is `None` when the frame had no `event:` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent<'a> {
    pub event: Option<&'a str>,
    pub data: &'a str,
}

#[derive(Debug, Default)]
pub struct SseDecoder {
    /// The line being received, without its terminator.
    line: Vec<u8>,
    /// The previous chunk ended in `\r`: a `\n` at the start of the next one
    /// belongs to the same terminator.
    after_cr: bool,
    event: String,
    data: String,
    has_data: bool,
}

impl SseDecoder {
    pub fn new() -> SseDecoder {
        SseDecoder::default()
    }

    /// Feeds the next piece of the stream, calling `on_event` for each event it completes.
    pub fn feed(&mut self, mut chunk: &[u8], on_event: &mut impl FnMut(SseEvent<'_>)) {
        if self.after_cr {
            self.after_cr = false;
            if let Some(rest) = chunk.strip_prefix(b"\n") {
                chunk = rest;
            }
        }
        while let Some(end) = chunk.iter().position(|&b| b == b'\n' || b == b'\r') {
            let (line, rest) = chunk.split_at(end);
            let terminator = rest[0];
            let mut rest = &rest[1..];
            if terminator == b'\r' {
                match rest.first() {
                    Some(b'\n') => rest = &rest[1..],
                    None => self.after_cr = true,
                    Some(_) => {}
                }
            }
            if self.line.is_empty() {
                self.process_line(line, on_event);
            } else {
                let mut whole = std::mem::take(&mut self.line);
                whole.extend_from_slice(line);
                self.process_line(&whole, on_event);
                whole.clear();
                self.line = whole;
            }
            chunk = rest;
        }
        self.line.extend_from_slice(chunk);
    }

    /// Ends the stream. Per the spec an unterminated final event is discarded,
    /// but providers that close without the last blank line still meant it, so
    /// a complete pending `data` is dispatched.
    pub fn finish(&mut self, on_event: &mut impl FnMut(SseEvent<'_>)) {
        if !self.line.is_empty() {
            let line = std::mem::take(&mut self.line);
            self.process_line(&line, on_event);
        }
        self.dispatch(on_event);
    }

    fn process_line(&mut self, line: &[u8], on_event: &mut impl FnMut(SseEvent<'_>)) {
        if line.is_empty() {
            self.dispatch(on_event);
            return;
        }
        if line[0] == b':' {
            return; // comment
        }
        let (field, value) = match line.iter().position(|&b| b == b':') {
            Some(colon) => {
                let value = &line[colon + 1..];
                (&line[..colon], value.strip_prefix(b" ").unwrap_or(value))
            }
            None => (line, &[][..]),
        };
        match field {
            b"data" => {
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(&String::from_utf8_lossy(value));
                self.has_data = true;
            }
            b"event" => {
                self.event.clear();
                self.event.push_str(&String::from_utf8_lossy(value));
            }
            _ => {} // `id`, `retry` and unknown fields carry nothing we record
        }
    }

    fn dispatch(&mut self, on_event: &mut impl FnMut(SseEvent<'_>)) {
        if self.has_data {
            on_event(SseEvent {
                event: (!self.event.is_empty()).then_some(self.event.as_str()),
                data: &self.data,
            });
        }
        self.data.clear();
        self.event.clear();
        self.has_data = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_in_pieces(pieces: &[&[u8]]) -> Vec<(Option<String>, String)> {
        let mut decoder = SseDecoder::new();
        let mut events = Vec::new();
        let mut collect =
            |e: SseEvent<'_>| events.push((e.event.map(str::to_owned), e.data.to_owned()));
        for piece in pieces {
            decoder.feed(piece, &mut collect);
        }
        decoder.finish(&mut collect);
        events
    }

    const ANTHROPIC: &str = "event: message_start\ndata: {\"type\":\"message_start\"}\n\nevent: ping\ndata: {\"type\": \"ping\"}\n\n: keep-alive comment\n\nevent: content_block_delta\ndata: {\"text\":\"h\u{e9}llo \u{1F600} w\u{f6}rld\"}\n\n";

    fn expected_anthropic() -> Vec<(Option<String>, String)> {
        vec![
            (
                Some("message_start".into()),
                "{\"type\":\"message_start\"}".into(),
            ),
            (Some("ping".into()), "{\"type\": \"ping\"}".into()),
            (
                Some("content_block_delta".into()),
                "{\"text\":\"h\u{e9}llo \u{1F600} w\u{f6}rld\"}".into(),
            ),
        ]
    }

    #[test]
    fn decodes_a_whole_stream() {
        assert_eq!(
            decode_in_pieces(&[ANTHROPIC.as_bytes()]),
            expected_anthropic()
        );
    }

    #[test]
    fn every_split_point_gives_the_same_events() {
        // Includes splits inside the multi-byte characters é, 😀 and ö.
        let bytes = ANTHROPIC.as_bytes();
        for split in 0..=bytes.len() {
            let (a, b) = bytes.split_at(split);
            assert_eq!(
                decode_in_pieces(&[a, b]),
                expected_anthropic(),
                "split at {split}"
            );
        }
    }

    #[test]
    fn byte_by_byte_with_crlf_terminators() {
        let crlf = ANTHROPIC.replace('\n', "\r\n");
        let pieces: Vec<&[u8]> = crlf.as_bytes().chunks(1).collect();
        assert_eq!(decode_in_pieces(&pieces), expected_anthropic());
        for split in 0..=crlf.len() {
            let (a, b) = crlf.as_bytes().split_at(split);
            assert_eq!(
                decode_in_pieces(&[a, b]),
                expected_anthropic(),
                "split at {split}"
            );
        }
    }

    #[test]
    fn bare_cr_terminators() {
        let cr = ANTHROPIC.replace('\n', "\r");
        let pieces: Vec<&[u8]> = cr.as_bytes().chunks(3).collect();
        assert_eq!(decode_in_pieces(&pieces), expected_anthropic());
    }

    #[test]
    fn openai_frames_without_event_names_and_multiline_data() {
        let stream = "data: {\"a\":1}\n\ndata: first\ndata: second\n\ndata: [DONE]\n\n";
        assert_eq!(
            decode_in_pieces(&[stream.as_bytes()]),
            vec![
                (None, "{\"a\":1}".into()),
                (None, "first\nsecond".into()),
                (None, "[DONE]".into())
            ]
        );
    }

    #[test]
    fn field_without_space_and_without_colon() {
        let stream = "event:x\ndata:y\n\ndata\n\n";
        assert_eq!(
            decode_in_pieces(&[stream.as_bytes()]),
            vec![(Some("x".into()), "y".into()), (None, "".into())]
        );
    }

    #[test]
    fn unterminated_last_event_is_still_seen() {
        assert_eq!(
            decode_in_pieces(&[b"data: tail"]),
            vec![(None, "tail".into())]
        );
    }

    #[test]
    fn event_name_does_not_leak_into_the_next_event() {
        let stream = "event: a\ndata: 1\n\ndata: 2\n\n";
        assert_eq!(
            decode_in_pieces(&[stream.as_bytes()]),
            vec![(Some("a".into()), "1".into()), (None, "2".into())]
        );
    }
}
