use std::time::Duration;

/// A misbehaviour the simulator can be told to show on one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Answer with this status and an OpenAI-style error body.
    Status {
        status: u16,
        retry_after: Option<u64>,
    },
    /// Answer with this status and a `retry-after` (`name`) or `retry-after-ms`
    /// header holding `value` verbatim, however odd (`1e300`, `-1`, `NaN`).
    StatusWithRawRetryAfter {
        status: u16,
        name: &'static str,
        value: String,
    },
    /// Never answer (until the caller gives up).
    Hang,
    /// Close the connection without answering.
    Close,
    /// Send this many SSE frames, then break the connection.
    DropAfter(usize),
    /// Answer normally after this first-byte delay.
    Delay(Duration),
}

impl Fault {
    /// Parses the `x-sim-fault` header: `status=503`, `status=429;retry-after=1`,
    /// `status=429;retry-after-ms=1e300` (any value, sent as is), `hang`,
    /// `close`, `drop-after=3`, `delay-ms=500`.
    pub fn parse(text: &str) -> Option<Fault> {
        let mut parts = text.split(';').map(str::trim);
        let first = parts.next()?;
        let (name, value) = first.split_once('=').unwrap_or((first, ""));
        match name {
            "status" => {
                let status = value.parse().ok()?;
                let Some((name, value)) = parts.find_map(|p| p.split_once('=')) else {
                    return Some(Fault::Status {
                        status,
                        retry_after: None,
                    });
                };
                let name = match name.trim() {
                    "retry-after" => "retry-after",
                    "retry-after-ms" => "retry-after-ms",
                    _ => return None,
                };
                match value.parse() {
                    Ok(seconds) if name == "retry-after" => Some(Fault::Status {
                        status,
                        retry_after: Some(seconds),
                    }),
                    _ => Some(Fault::StatusWithRawRetryAfter {
                        status,
                        name,
                        value: value.to_owned(),
                    }),
                }
            }
            "hang" => Some(Fault::Hang),
            "close" => Some(Fault::Close),
            "drop-after" => value.parse().ok().map(Fault::DropAfter),
            "delay-ms" => value
                .parse()
                .ok()
                .map(|ms| Fault::Delay(Duration::from_millis(ms))),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_form() {
        assert_eq!(
            Fault::parse("status=503"),
            Some(Fault::Status {
                status: 503,
                retry_after: None
            })
        );
        assert_eq!(
            Fault::parse("status=429; retry-after=2"),
            Some(Fault::Status {
                status: 429,
                retry_after: Some(2)
            })
        );
        assert_eq!(
            Fault::parse("status=429;retry-after-ms=1e300"),
            Some(Fault::StatusWithRawRetryAfter {
                status: 429,
                name: "retry-after-ms",
                value: "1e300".into()
            })
        );
        assert_eq!(
            Fault::parse("status=503;retry-after=-1"),
            Some(Fault::StatusWithRawRetryAfter {
                status: 503,
                name: "retry-after",
                value: "-1".into()
            })
        );
        assert_eq!(Fault::parse("status=503;bogus=1"), None);
        assert_eq!(Fault::parse("hang"), Some(Fault::Hang));
        assert_eq!(Fault::parse("close"), Some(Fault::Close));
        assert_eq!(Fault::parse("drop-after=3"), Some(Fault::DropAfter(3)));
        assert_eq!(
            Fault::parse("delay-ms=20"),
            Some(Fault::Delay(Duration::from_millis(20)))
        );
        assert_eq!(Fault::parse("bogus"), None);
    }
}
