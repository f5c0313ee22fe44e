//! Real disk faults for the audit fault tests, each behind a guard that
//! undoes it however the test ends: a small tmpfs (ENOSPC once filled), a
//! read-only bind mount over a directory (EROFS), and a watch on `/readyz`
//! that records when the gateway said it was not ready, and why.
//!
//! Mounting needs root (CI runs the tests as root). Without it the tests say
//! so and stop; in CI (`CI=true`) they fail instead of passing silently.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::watch;

fn run(program: &str, args: &[&str]) -> Result<(), String> {
    let output = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| format!("{program}: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{program} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

/// Whether this process may mount file systems. When it may not, says so on
/// stderr and returns false, so the test can stop; under `CI=true` it panics:
/// the fault matrix must run in CI, not be skipped there.
pub fn mounts_available(test: &str) -> bool {
    let probe = tempfile::tempdir().expect("temp dir");
    let path = probe.path().to_string_lossy().into_owned();
    let outcome = run("mount", &["-t", "tmpfs", "-o", "size=64k", "tmpfs", &path])
        .and_then(|()| run("umount", &[&path]));
    match outcome {
        Ok(()) => true,
        Err(error) => {
            let message = format!(
                "{test}: NOT RUN — it needs to mount file systems (run the tests as root): {error}"
            );
            assert!(std::env::var("CI").as_deref() != Ok("true"), "{message}");
            eprintln!("{message}");
            false
        }
    }
}

/// Unmounts `path`, detaching it lazily when it is busy (a process still has
/// a file open on it): the mount then disappears from the tree at once and
/// is freed when the last file closes, so no test leaves a mount behind.
fn unmount(path: &Path) -> Result<(), String> {
    let path = path.to_string_lossy();
    run("umount", &[&path]).or_else(|_| run("umount", &["--lazy", &path]))
}

/// A tmpfs of a fixed size mounted on a directory, unmounted on drop.
pub struct Tmpfs {
    pub path: PathBuf,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` (as `mount -o size=` takes it: `3m`) on
    /// `path`, created if missing.
    pub fn mount(path: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(path).expect("mount point");
        let target = path.to_string_lossy();
        run(
            "mount",
            &[
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size}"),
                "tmpfs",
                &target,
            ],
        )
        .unwrap_or_else(|e| panic!("{e}"));
        Tmpfs {
            path: path.to_owned(),
        }
    }

    /// Fills the file system and keeps it full, as another process writing
    /// to the volume would: a file of zeros written until the kernel answers
    /// ENOSPC, then topped up every few milliseconds, so what the gateway
    /// frees (a cut segment, an uploaded one) is taken again before it can
    /// recover on it. Every write fails until `Filler::release`.
    pub fn fill(&self) -> Filler {
        let path = self.path.join("filler");
        let mut file = std::fs::File::create(&path).expect("filler file");
        top_up(&mut file, &self.path);
        let stop = Arc::new(AtomicBool::new(false));
        let keeper = {
            let (stop, dir) = (stop.clone(), self.path.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    top_up(&mut file, &dir);
                    std::thread::sleep(Duration::from_millis(5));
                }
            })
        };
        Filler {
            path,
            stop,
            keeper: Some(keeper),
        }
    }
}

/// Writes zeros until ENOSPC, then byte by byte: a full tmpfs can still take
/// a few bytes in a page a file already has, and after this nothing fits.
fn top_up(file: &mut std::fs::File, dir: &Path) {
    use std::io::Write;
    for block in [vec![0u8; 64 << 10], vec![0u8; 1]] {
        loop {
            match file.write(&block) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(28) => break, // ENOSPC
                Err(e) => panic!("filling {}: {e}", dir.display()),
            }
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        if let Err(error) = unmount(&self.path) {
            eprintln!("could not unmount {}: {error}", self.path.display());
        }
    }
}

/// The file that keeps a `Tmpfs` full; `release` (or drop) ends the fault.
pub struct Filler {
    path: PathBuf,
    stop: Arc<AtomicBool>,
    keeper: Option<std::thread::JoinHandle<()>>,
}

impl Filler {
    pub fn release(mut self) {
        self.stop_keeper();
        std::fs::remove_file(&self.path).expect("removing the filler");
    }

    fn stop_keeper(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(keeper) = self.keeper.take() {
            let _ = keeper.join();
        }
    }
}

impl Drop for Filler {
    fn drop(&mut self) {
        self.stop_keeper();
    }
}

/// A read-only bind mount of a directory over itself: from now on, creating,
/// renaming or deleting anything under it fails with EROFS, as on a file
/// system the kernel remounted read-only after an error. (A plain
/// `mount -o remount,ro` of the spool's own file system is refused with EBUSY
/// while the gateway has a file open for writing there: under load, its open
/// segment always.) Files the gateway already has open keep working.
/// Unmounted on drop.
pub struct ReadOnlyBind {
    path: PathBuf,
    mounted: bool,
}

impl ReadOnlyBind {
    /// The bind mount is made read-only on a mount point of its own, where
    /// nothing writes, and only then moved over `path`: made in place, it
    /// could be refused with EBUSY when the gateway opened a file for writing
    /// through it between the bind and the remount (seen under load).
    pub fn over(path: &Path) -> ReadOnlyBind {
        let side = tempfile::tempdir().expect("side mount point");
        let side_path = side.path().to_string_lossy().into_owned();
        let target = path.to_string_lossy();
        run("mount", &["--bind", &target, &side_path]).unwrap_or_else(|e| panic!("{e}"));
        let made = run("mount", &["-o", "remount,bind,ro", &side_path])
            .and_then(|()| run("mount", &["--move", &side_path, &target]));
        if let Err(error) = made {
            let _ = unmount(side.path());
            panic!("{error}");
        }
        ReadOnlyBind {
            path: path.to_owned(),
            mounted: true,
        }
    }

    /// Ends the fault: the directory is writable again.
    pub fn remove(mut self) {
        self.mounted = false;
        unmount(&self.path).unwrap_or_else(|e| panic!("{e}"));
    }
}

impl Drop for ReadOnlyBind {
    fn drop(&mut self) {
        if self.mounted
            && let Err(error) = unmount(&self.path)
        {
            eprintln!("could not unmount {}: {error}", self.path.display());
        }
    }
}

/// One answer of `/readyz`, or the failure to get one.
#[derive(Debug, Clone)]
pub struct ReadySample {
    pub at: Instant,
    pub ready: bool,
    /// The reason given when not ready, or the transport error.
    pub reason: Option<String>,
    /// No HTTP answer at all: the admin listener is gone.
    pub unreachable: bool,
}

/// Polls `/readyz` every 20 ms until stopped and keeps every answer.
pub struct ReadyWatch {
    samples: Arc<Mutex<Vec<ReadySample>>>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl ReadyWatch {
    pub fn start(readyz_url: String) -> ReadyWatch {
        let samples = Arc::new(Mutex::new(Vec::new()));
        let (stop, mut stopped) = watch::channel(false);
        let kept = samples.clone();
        let task = tokio::spawn(async move {
            let client = super::client();
            while !*stopped.borrow() {
                let sample = probe(&client, &readyz_url).await;
                kept.lock().unwrap().push(sample);
                tokio::select! {
                    _ = stopped.changed() => {}
                    () = tokio::time::sleep(Duration::from_millis(20)) => {}
                }
            }
        });
        ReadyWatch {
            samples,
            stop,
            task,
        }
    }

    pub fn samples(&self) -> Vec<ReadySample> {
        self.samples.lock().unwrap().clone()
    }

    /// Waits (up to `within`) for an answer satisfying `ok`.
    pub async fn wait_for(&self, within: Duration, ok: impl Fn(&ReadySample) -> bool) -> bool {
        let deadline = Instant::now() + within;
        loop {
            if self.samples.lock().unwrap().last().is_some_and(&ok) {
                return true;
            }
            if Instant::now() > deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    pub async fn stop(self) -> ReadyLog {
        let _ = self.stop.send(true);
        let _ = self.task.await;
        let samples = self.samples.lock().unwrap().clone();
        ReadyLog { samples }
    }
}

async fn probe(client: &super::TestClient, url: &str) -> ReadySample {
    let request = http::Request::get(url)
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    let answer = tokio::time::timeout(Duration::from_secs(2), async {
        let response = client.request(request).await.map_err(|e| e.to_string())?;
        let status = response.status();
        let body = http_body_util::BodyExt::collect(response.into_body())
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        Ok::<_, String>((status, body))
    })
    .await
    .unwrap_or_else(|_| Err("no answer within 2 s".into()));
    let at = Instant::now();
    match answer {
        Ok((status, body)) => {
            let reason = serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v["reason"].as_str().map(str::to_owned));
            ReadySample {
                at,
                ready: status == http::StatusCode::OK,
                reason,
                unreachable: false,
            }
        }
        Err(error) => ReadySample {
            at,
            ready: false,
            reason: Some(error),
            unreachable: true,
        },
    }
}

/// What `/readyz` said over a test.
pub struct ReadyLog {
    pub samples: Vec<ReadySample>,
}

impl ReadyLog {
    /// Total time between a not-ready answer and the next ready one.
    pub fn not_ready_for(&self) -> Duration {
        let mut total = Duration::ZERO;
        let mut since: Option<Instant> = None;
        for sample in &self.samples {
            match (sample.ready, since) {
                (false, None) => since = Some(sample.at),
                (true, Some(start)) => {
                    total += sample.at.duration_since(start);
                    since = None;
                }
                _ => {}
            }
        }
        if let (Some(start), Some(last)) = (since, self.samples.last()) {
            total += last.at.duration_since(start);
        }
        total
    }

    /// The distinct reasons given, in order of first appearance.
    pub fn reasons(&self) -> Vec<String> {
        let mut reasons: Vec<String> = Vec::new();
        for reason in self.samples.iter().filter_map(|s| s.reason.as_ref()) {
            if !reasons.contains(reason) {
                reasons.push(reason.clone());
            }
        }
        reasons
    }

    /// Whether an answer between `from` and `to` was "not ready".
    pub fn not_ready_between(&self, from: Instant, to: Instant) -> bool {
        self.samples
            .iter()
            .any(|s| !s.ready && !s.unreachable && s.at >= from && s.at <= to)
    }

    /// Answers that never came (a crashed or hung admin listener).
    pub fn unreachable(&self) -> Vec<&ReadySample> {
        self.samples.iter().filter(|s| s.unreachable).collect()
    }

    pub fn ready_at_end(&self) -> bool {
        self.samples.last().is_some_and(|s| s.ready)
    }
}
