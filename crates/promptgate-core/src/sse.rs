//! Incremental Server-Sent Events decoder (WHATWG HTML §9.2.6).
//!
//! Bytes arrive in arbitrary pieces: a frame, a line, even a multi-byte UTF-8
//! character can be split across reads. The decoder keeps only the unfinished
//! line between calls and decodes text only once a whole line is present, so a
//! split character is never mangled. It tells the caller where the last
//! complete event of each piece ends, and refuses an event longer than its
//! limit: a stream without newlines must not grow its buffers without bound.

/// The default limit on one event's bytes (`max_sse_event_bytes`).
pub const DEFAULT_MAX_EVENT_BYTES: usize = 4 << 20;

/// One dispatched event. `event` is `None` when the frame had no `event:` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent<'a> {
    pub event: Option<&'a str>,
    pub data: &'a str,
}

/// An event grew past the decoder's limit before its blank line arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "the provider sent a server-sent event longer than {limit} bytes (max_sse_event_bytes); the stream was cut there"
)]
pub struct EventTooLarge {
    pub limit: usize,
}

#[derive(Debug)]
pub struct SseDecoder {
    /// The line being received, without its terminator.
    line: Vec<u8>,
    /// The previous chunk ended in `\r`: a `\n` at the start of the next one
    /// belongs to the same terminator.
    after_cr: bool,
    /// That `\r` ended an event (a blank line), so that `\n` is none of the
    /// next event's bytes.
    cr_ended_event: bool,
    event: String,
    data: String,
    has_data: bool,
    /// Bytes of the unfinished event received in earlier chunks.
    event_bytes: usize,
    max_event_bytes: usize,
    /// An event overflowed: the stream is no longer decoded.
    overflowed: bool,
}

impl Default for SseDecoder {
    fn default() -> SseDecoder {
        SseDecoder::new(DEFAULT_MAX_EVENT_BYTES)
    }
}

impl SseDecoder {
    /// A decoder that refuses events longer than `max_event_bytes`.
    pub fn new(max_event_bytes: usize) -> SseDecoder {
        SseDecoder {
            line: Vec::new(),
            after_cr: false,
            cr_ended_event: false,
            event: String::new(),
            data: String::new(),
            has_data: false,
            event_bytes: 0,
            max_event_bytes,
            overflowed: false,
        }
    }

    /// Feeds the next piece of the stream, calling `on_event` for each event
    /// it completes. Returns how many bytes of `chunk` end complete events
    /// (the rest belongs to an event still unfinished), or the error once an
    /// event exceeds the limit; from then on every call fails.
    pub fn feed(
        &mut self,
        chunk: &[u8],
        on_event: &mut impl FnMut(SseEvent<'_>),
    ) -> Result<usize, EventTooLarge> {
        let too_large = EventTooLarge {
            limit: self.max_event_bytes,
        };
        if self.overflowed {
            return Err(too_large);
        }
        if chunk.is_empty() {
            // Keeps `after_cr` for the piece that may start with its `\n`.
            return Ok(0);
        }
        let mut rest = chunk;
        // Offsets into `chunk`: where the unfinished event's bytes in it begin,
        // and the end of the last complete event. An event's size counts its
        // lines with their terminators, not the blank line that ends it, so
        // it does not depend on where the chunks were cut.
        let mut event_start = 0;
        if self.after_cr {
            self.after_cr = false;
            if let Some(after) = rest.strip_prefix(b"\n") {
                rest = after;
                if self.cr_ended_event {
                    event_start = 1;
                }
            }
        }
        let mut complete = 0;
        while let Some(end) = rest.iter().position(|&b| b == b'\n' || b == b'\r') {
            let line_start = chunk.len() - rest.len();
            let (line, after) = rest.split_at(end);
            let terminator = after[0];
            let mut after = &after[1..];
            if terminator == b'\r' {
                match after.first() {
                    Some(b'\n') => after = &after[1..],
                    None => self.after_cr = true,
                    Some(_) => {}
                }
            }
            let blank = line.is_empty() && self.line.is_empty();
            self.cr_ended_event = blank;
            let line_end = chunk.len() - after.len();
            // Checked before the event is dispatched: an event over the limit is never seen.
            if blank && self.event_bytes + (line_start - event_start) > self.max_event_bytes {
                return Err(self.overflow());
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
            rest = after;
            if blank {
                self.event_bytes = 0;
                event_start = line_end;
                complete = line_end;
            }
        }
        self.event_bytes += chunk.len() - event_start;
        if self.event_bytes > self.max_event_bytes {
            return Err(self.overflow());
        }
        self.line.extend_from_slice(rest);
        Ok(complete)
    }

    /// Stops decoding and frees the buffers.
    fn overflow(&mut self) -> EventTooLarge {
        self.overflowed = true;
        self.line = Vec::new();
        self.event = String::new();
        self.data = String::new();
        self.has_data = false;
        EventTooLarge {
            limit: self.max_event_bytes,
        }
    }

    /// Ends the stream. Per the spec an unterminated final event is discarded,
    /// but providers that close without the last blank line still meant it, so
    /// a complete pending `data` is dispatched.
    pub fn finish(&mut self, on_event: &mut impl FnMut(SseEvent<'_>)) {
        if self.overflowed {
            return;
        }
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
        let mut decoder = SseDecoder::default();
        let mut events = Vec::new();
        let mut collect =
            |e: SseEvent<'_>| events.push((e.event.map(str::to_owned), e.data.to_owned()));
        for piece in pieces {
            decoder
                .feed(piece, &mut collect)
                .expect("the test events are small");
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

    #[test]
    fn reports_where_complete_events_end() {
        let mut decoder = SseDecoder::default();
        let mut ignore = |_: SseEvent<'_>| {};
        assert_eq!(decoder.feed(b"data: a\n\ndata: b", &mut ignore), Ok(9));
        assert_eq!(decoder.feed(b"\n", &mut ignore), Ok(0));
        assert_eq!(decoder.feed(b"\r\n: c\n\n", &mut ignore), Ok(7));
        // A `\r` ending a chunk ends the event; the `\n` after it is the next
        // piece's, even after an empty piece.
        assert_eq!(decoder.feed(b": d\r\r", &mut ignore), Ok(5));
        assert_eq!(decoder.feed(b"", &mut ignore), Ok(0));
        assert_eq!(decoder.feed(b"\ndata: e\r", &mut ignore), Ok(0));
        assert_eq!(decoder.feed(b"", &mut ignore), Ok(0));
        assert_eq!(decoder.feed(b"\n\n", &mut ignore), Ok(2));
    }

    #[test]
    fn an_event_longer_than_the_limit_stops_the_decoder() {
        let mut events = 0;
        let mut count = |_: SseEvent<'_>| events += 1;
        let mut decoder = SseDecoder::new(16);
        assert_eq!(decoder.feed(b"data: 012345678\n\n", &mut count), Ok(17));
        assert_eq!(decoder.feed(b"data: 0123", &mut count), Ok(0));
        assert_eq!(
            decoder.feed(b"4567890", &mut count),
            Err(EventTooLarge { limit: 16 })
        );
        // Failed for good, and the buffers are freed.
        assert_eq!(decoder.line.capacity(), 0);
        assert_eq!(
            decoder.feed(b"\n\n", &mut count),
            Err(EventTooLarge { limit: 16 })
        );
        decoder.finish(&mut count);
        // A long event inside one chunk counts too, as do many short lines.
        let mut decoder = SseDecoder::new(16);
        assert!(decoder.feed(b"data: 0123456789a\n\n", &mut count).is_err());
        let mut decoder = SseDecoder::new(16);
        assert!(
            decoder
                .feed(b"data: 1\ndata: 2\ndata: 3\n", &mut count)
                .is_err()
        );
        assert_eq!(events, 1, "only the first event, within the limit");
    }
}
