//! Hot reload from a mounted Kubernetes ConfigMap. The kubelet never edits a
//! ConfigMap volume's files in place: it writes the new contents into a fresh
//! `..<timestamp>` directory, points a temporary `..data_tmp` symlink at it,
//! renames that over `..data` (one atomic step), and removes the old
//! directory. The names the gateway opens (`promptgate.toml`, the prompt
//! files) are symlinks `name → ..data/name` that never change. These tests
//! replay exactly that sequence (kubelet's `AtomicWriter`) under a running
//! gateway.

use crate::support;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use http::{Method, StatusCode};
use promptgate::app::App;
use promptgate_core::config::LoadOptions;
use support::{RecordingSink, TestClient, client, send};

const CONFIG: &str = "promptgate.toml";
const PROMPT: &str = "control-system.txt";

/// A ConfigMap volume as the kubelet lays it out.
struct ConfigMapVolume {
    dir: tempfile::TempDir,
    generation: u32,
}

impl ConfigMapVolume {
    fn new(files: &[(&str, &str)]) -> ConfigMapVolume {
        let mut volume = ConfigMapVolume {
            dir: tempfile::tempdir().unwrap(),
            generation: 0,
        };
        volume.project(files);
        volume
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// One kubelet update: the new payload in a new timestamped directory,
    /// `..data` swapped to it by rename, a symlink for each new key, the
    /// symlinks of keys no longer in the payload and the old directory
    /// removed.
    fn project(&mut self, files: &[(&str, &str)]) {
        let root = self.dir.path();
        self.generation += 1;
        let payload = format!(
            "..2026_12_05_17_00_{:02}.{}",
            self.generation,
            1000 + self.generation
        );
        std::fs::create_dir(root.join(&payload)).unwrap();
        for (name, content) in files {
            std::fs::write(root.join(&payload).join(name), content).unwrap();
        }
        let previous = std::fs::read_link(root.join("..data")).ok();
        std::os::unix::fs::symlink(&payload, root.join("..data_tmp")).unwrap();
        std::fs::rename(root.join("..data_tmp"), root.join("..data")).unwrap();
        for (name, _) in files {
            let link = root.join(name);
            if std::fs::symlink_metadata(&link).is_err() {
                std::os::unix::fs::symlink(Path::new("..data").join(name), link).unwrap();
            }
        }
        for entry in std::fs::read_dir(root).unwrap() {
            let name = entry.unwrap().file_name().to_string_lossy().into_owned();
            if !name.starts_with("..") && !files.iter().any(|(kept, _)| *kept == name) {
                std::fs::remove_file(root.join(name)).unwrap();
            }
        }
        if let Some(previous) = previous {
            std::fs::remove_dir_all(root.join(previous)).unwrap();
        }
    }
}

/// A 100/0 or 0/100 experiment whose control variant reads its system prompt
/// from a prompt file beside the config (relative path, as in the chart).
fn config(control: u32, treatment: u32) -> String {
    format!(
        r#"
[server]
config_poll_ms = 20
[auth]
open = true
[providers.demo]
kind = "demo"
[[routes]]
models = ["*"]
providers = ["demo"]
[experiments.greeting]
unit_key = {{ header = "x-user-id" }}
[[experiments.greeting.variants]]
name = "control"
weight = {control}
model = "demo-a"
providers = ["demo"]
system_file = "{PROMPT}"
[[experiments.greeting.variants]]
name = "treatment"
weight = {treatment}
model = "demo-b"
providers = ["demo"]
system = "Be warm."
"#
    )
}

async fn start(volume: &ConfigMapVolume) -> App {
    App::start(
        volume.path(CONFIG),
        LoadOptions {
            listen_override: Some("127.0.0.1:0".parse().unwrap()),
            admin_listen_override: Some("127.0.0.1:0".parse().unwrap()),
        },
        Arc::new(RecordingSink::default()),
    )
    .await
    .unwrap_or_else(|e| panic!("the first projection must be a valid config:\n{e}"))
}

/// The variant and config version a new user gets.
async fn served(client: &TestClient, app: &App, user: &str) -> (String, String) {
    let reply = send(
        client,
        Method::POST,
        &format!("http://{}/v1/chat/completions", app.addr),
        &[("x-user-id", user)],
        r#"{"model":"greeting","messages":[{"role":"user","content":"hi"}]}"#,
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let header = |name: &str| reply.headers[name].to_str().unwrap().to_owned();
    (
        header("x-promptgate-variant"),
        header("x-promptgate-config-version"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configmap_update_swapped_in_by_symlink_rename_is_hot_reloaded() {
    let mut volume = ConfigMapVolume::new(&[(CONFIG, &config(100, 0)), (PROMPT, "Be brief.")]);
    let app = start(&volume).await;
    let client = client();
    let (variant, first_version) = served(&client, &app, "user-0").await;
    assert_eq!(variant, "control");

    // New weights: every new user goes to the treatment once the swap is seen.
    volume.project(&[(CONFIG, &config(0, 100)), (PROMPT, "Be brief.")]);
    let (_, second_version) = support::wait::eventually(
        "the swapped-in ConfigMap (weights 0/100) to be in force",
        Duration::from_secs(10),
        async || {
            let (variant, version) = served(&client, &app, "user-1").await;
            (variant == "treatment").then_some((variant, version))
        },
    )
    .await;
    assert_ne!(second_version, first_version);

    // Only the prompt file changes: it is read through the same ..data
    // symlink, and the new text is a new config version.
    volume.project(&[(CONFIG, &config(0, 100)), (PROMPT, "Be very brief.")]);
    support::wait::eventually(
        "the swapped-in prompt file to give a new config version",
        Duration::from_secs(10),
        async || {
            let (_, version) = served(&client, &app, "user-2").await;
            (version != second_version).then_some(())
        },
    )
    .await;
    let status = app.reloader.status();
    assert_eq!((status.reloads_ok, status.reloads_failed), (2, 0));
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_configmap_swapped_in_keeps_the_running_config() {
    let mut volume = ConfigMapVolume::new(&[(CONFIG, &config(100, 0)), (PROMPT, "Be brief.")]);
    let app = start(&volume).await;
    let client = client();
    let (_, good_version) = served(&client, &app, "user-0").await;

    // Broken two ways, one after the other: a config that does not validate,
    // then a valid config whose prompt file is no longer in the ConfigMap.
    let broken: [&[(&str, &str)]; 2] = [
        &[
            (
                CONFIG,
                &config(100, 0).replace("weight = 0", "weight = \"none\""),
            ),
            (PROMPT, "Be brief."),
        ],
        &[(CONFIG, &config(0, 100))],
    ];
    for (attempt, files) in broken.into_iter().enumerate() {
        volume.project(files);
        let failed = attempt as u64 + 1;
        support::wait::until(
            &format!("reload failure number {failed} (the broken projection seen)"),
            Duration::from_secs(10),
            || app.reloader.status().reloads_failed == failed,
        )
        .await;
        let (variant, version) = served(&client, &app, &format!("user-{failed}")).await;
        assert_eq!(
            (variant.as_str(), version.as_str()),
            ("control", good_version.as_str()),
            "a broken ConfigMap must leave the running config in force"
        );
        assert!(app.reloader.status().last_error.is_some());
    }

    // Fixed: the next swap is taken.
    volume.project(&[(CONFIG, &config(0, 100)), (PROMPT, "Be brief.")]);
    support::wait::eventually(
        "the repaired ConfigMap to be in force",
        Duration::from_secs(10),
        async || {
            let (variant, _) = served(&client, &app, "user-fixed").await;
            (variant == "treatment").then_some(())
        },
    )
    .await;
    assert_eq!(app.reloader.status().last_error, None);
    app.shutdown().await;
}
