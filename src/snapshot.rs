//! The whole routing state as one immutable value. A request loads the current
//! snapshot once and keeps it to the end; a reload builds a complete new one
//! (which may fail, leaving the old one serving) and swaps it in atomically.
//! This module is the only one that touches the `ArcSwap`.

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwap;
use http::HeaderValue;

use crate::providers::Upstreams;
use promptgate_core::config::feedback::FeedbackConfig;
use promptgate_core::config::limits::LimitsConfig;
use promptgate_core::config::{AdminConfig, AuthConfig, Config, ServerConfig};
use promptgate_core::experiments::model::Experiment;
use promptgate_core::routing::RouteTable;

pub struct Snapshot {
    pub version: Arc<str>,
    /// `version` as the `x-promptgate-config-version` header every answer
    /// carries, made once per config rather than once per request.
    pub version_header: Option<HeaderValue>,
    pub startup_only_digest: Arc<str>,
    pub server: ServerConfig,
    pub admin: AdminConfig,
    pub auth: AuthConfig,
    pub routes: RouteTable,
    pub experiments: HashMap<Arc<str>, Experiment>,
    pub upstreams: Upstreams,
    pub feedback: FeedbackConfig,
    pub limits: LimitsConfig,
    pub tags: promptgate_core::tags::TagsConfig,
}

impl Snapshot {
    pub fn new(config: Config) -> Snapshot {
        let upstreams = Upstreams::new(&config);
        let Config {
            server,
            admin,
            auth,
            routes,
            experiments,
            feedback,
            limits,
            tags,
            version,
            startup_only_digest,
            ..
        } = config;
        Snapshot {
            version_header: HeaderValue::from_str(&version).ok(),
            version,
            startup_only_digest,
            server,
            admin,
            auth,
            routes: RouteTable::new(routes),
            experiments: experiments.into_iter().map(|e| (e.id.clone(), e)).collect(),
            upstreams,
            feedback,
            limits,
            tags,
        }
    }
}

pub struct SnapshotHandle {
    current: ArcSwap<Snapshot>,
}

impl SnapshotHandle {
    pub fn new(snapshot: Snapshot) -> SnapshotHandle {
        SnapshotHandle {
            current: ArcSwap::from_pointee(snapshot),
        }
    }

    pub fn load(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    pub fn replace(&self, snapshot: Snapshot) {
        self.current.store(Arc::new(snapshot));
    }
}
