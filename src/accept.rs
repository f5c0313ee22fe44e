//! What an accept loop does when `accept` fails. The usual cause is running
//! out of file descriptors (EMFILE): the pending connection stays in the
//! backlog, so accepting again at once fails again at once and the loop spins
//! a core. Waiting, longer on each failure in a row, lets connections close
//! meanwhile; one line per burst keeps the log readable.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};

const FIRST_PAUSE: Duration = Duration::from_millis(10);
const LONGEST_PAUSE: Duration = Duration::from_secs(1);

/// The state of one listener's accept loop.
#[derive(Debug, Default)]
pub struct AcceptBackoff {
    /// Failures in a row since the last accepted connection.
    failures: u64,
}

impl AcceptBackoff {
    /// The next connection of `listener`, waiting out failed accepts.
    /// Cancel-safe: a shutdown may drop it while it waits.
    pub async fn next_connection(
        &mut self,
        listener: &TcpListener,
        name: &'static str,
    ) -> (TcpStream, SocketAddr) {
        loop {
            match listener.accept().await {
                Ok(accepted) => {
                    self.accepted(name);
                    return accepted;
                }
                Err(error) => tokio::time::sleep(self.failed(name, &error)).await,
            }
        }
    }

    /// Call after a failed accept: logs the first failure of a burst and
    /// returns how long to wait before accepting again (10 ms, doubling up to 1 s).
    fn failed(&mut self, listener: &'static str, error: &std::io::Error) -> Duration {
        if self.failures == 0 {
            tracing::warn!(
                listener,
                %error,
                "accept failed; retrying with backoff until a connection is accepted"
            );
        }
        self.failures += 1;
        pause_after(self.failures)
    }

    /// Call after an accepted connection: ends a burst of failures.
    fn accepted(&mut self, listener: &'static str) {
        if self.failures > 0 {
            tracing::info!(
                listener,
                failures = self.failures,
                "accepting connections again"
            );
            self.failures = 0;
        }
    }
}

/// The pause after the `failures`-th failure in a row (from 1).
fn pause_after(failures: u64) -> Duration {
    let doublings = u32::try_from(failures.saturating_sub(1))
        .unwrap_or(u32::MAX)
        .min(7);
    FIRST_PAUSE
        .saturating_mul(1 << doublings)
        .min(LONGEST_PAUSE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_from_ten_milliseconds_up_to_one_second_and_resets() {
        let error = std::io::Error::from_raw_os_error(24); // EMFILE
        let mut backoff = AcceptBackoff::default();
        let pauses: Vec<u64> = (0..10)
            .map(|_| backoff.failed("test", &error).as_millis() as u64)
            .collect();
        assert_eq!(pauses, [10, 20, 40, 80, 160, 320, 640, 1000, 1000, 1000]);
        backoff.accepted("test");
        assert_eq!(backoff.failed("test", &error), FIRST_PAUSE);
        assert_eq!(pause_after(u64::MAX), LONGEST_PAUSE);
    }
}
