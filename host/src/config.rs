//! Host configuration (TOML). Every key has a default; unknown keys and bad
//! values are errors that name the key. The documented reference is
//! `examples/wicket.toml`; `wicket config` prints the defaults.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::app::DEFAULT_RESUME_GRACE;
use crate::policy::{LimitOverrides, Limits};
use crate::proxy::fairness::ClientLimits;
use crate::proxy::pool::PoolSettings;
use crate::proxy::ticket_ws::WsTiming;
use crate::proxy::trust::TrustedProxies;
use crate::proxy::wire::{self, Trailers};
use crate::proxy::{ClientTimeouts, ProxySettings};
use crate::rules::{
    DISPLAY_NAME_MAX_CHARS, RESUME_GRACE_MAX, RESUME_GRACE_MIN, valid_display_name, valid_name,
};
use crate::state::AppSettings;

/// The whole host configuration.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// The users' side: listen address and ticket timing.
    pub proxy: ProxyConfig,
    /// The Prometheus endpoint.
    pub metrics: MetricsConfig,
    /// Policy limits and the optional policy file.
    pub policy: PolicyConfig,
    /// Defaults for every app.
    pub apps: AppsConfig,
    /// Connections to the pods.
    pub backend: BackendConfig,
    /// `wicket demo`: the local app and its pods.
    pub demo: DemoConfig,
    /// `wicket run`: the Kubernetes controller.
    pub kubernetes: KubernetesConfig,
    /// Where tickets are kept: this process, or Redis shared by replicas.
    pub store: StoreConfig,
}

/// Which store keeps the tickets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreKind {
    /// This process only (one replica).
    #[default]
    Memory,
    /// A Redis server shared by every replica.
    Redis,
}

/// `[store]`: where tickets, per-pod counts and last uses are kept.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// `memory` (default) or `redis`.
    pub kind: StoreKind,
    /// The Redis URL (`redis://[user:password@]host[:port][/db]`,
    /// `rediss://` for TLS); required with `kind = "redis"`.
    pub url: String,
    /// Prefix of every key, so several hosts may share one Redis.
    pub key_prefix: String,
    /// Longest wait for a connection to Redis.
    pub connect_timeout_ms: u64,
    /// Longest wait for an answer from Redis.
    pub response_timeout_ms: u64,
    /// How often each replica writes its tickets' last uses and checks the
    /// version (one round trip): the bound on how long a ticket freed on
    /// one replica still opens on another.
    pub refresh_ms: u64,
    /// How often each replica reloads every ticket even if the version did
    /// not change (merging last uses of other replicas).
    pub resync_ms: u64,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            kind: StoreKind::Memory,
            url: String::new(),
            key_prefix: "wicket:".into(),
            connect_timeout_ms: 2000,
            response_timeout_ms: 1000,
            refresh_ms: 200,
            resync_ms: 1000,
        }
    }
}

/// `[proxy]`
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProxyConfig {
    /// Shared port: every app at `/<app>/`.
    pub listen: SocketAddr,
    /// A ticket unused for this long is freed (k8sTicket: 3000).
    pub ticket_expiry_ms: u64,
    /// Ping interval on the ticket WebSocket (k8sTicket: 5000).
    pub ws_ping_ms: u64,
    /// How often waiting users get the waiting message (k8sTicket: 10000).
    pub waiting_message_ms: u64,
    /// Threads serving user connections, each with its own listening
    /// socket on the port (`SO_REUSEPORT`); 0 is one per CPU.
    pub threads: usize,
    /// A request head must arrive in full within this long of its first
    /// byte (slow clients are closed).
    pub header_timeout_ms: u64,
    /// A user connection with no request for this long is closed.
    pub idle_timeout_ms: u64,
    /// Forward the trailer fields of chunked bodies (both ways), but never
    /// the fields wicket checks in a head; when false they are checked
    /// and dropped.
    pub forward_trailers: bool,
    /// Protocols an upgrade request may ask a pod for; an upgrade to any
    /// other is dropped and the request forwarded as an ordinary one.
    pub upgrade_protocols: Vec<String>,
    /// Networks (CIDRs or addresses) of proxies in front of wicket whose
    /// `X-Forwarded-For`, `X-Forwarded-Proto` and `Forwarded` are believed;
    /// anyone else's are replaced.
    pub trusted_proxies: Vec<String>,
    /// A forwarded request body with no byte from the user for this long:
    /// 408 and close.
    pub body_timeout_ms: u64,
    /// No byte of the pod's response (or the pod takes no byte of the
    /// request) for this long: 504 if no response head came yet, else close.
    pub response_timeout_ms: u64,
    /// The user takes no byte of a response for this long: close.
    pub send_timeout_ms: u64,
    /// A WebSocket (or other upgraded connection) to a pod with no byte
    /// either way for this long: close.
    pub tunnel_idle_timeout_ms: u64,
    /// DNS mode: the domain users reach pods under
    /// (`<pod>.<uid>.<dns_domain>`), and the `Domain` of the cookies set
    /// there. Empty: taken from each request's `Host` (not recommended).
    pub dns_domain: String,
    /// Origins (`https://host[:port]`) besides the host's own whose pages
    /// may open the ticket WebSocket or frame the waiting room.
    pub ws_origins: Vec<String>,
    /// The host names users reach wicket by. When set, the ticket
    /// WebSocket and polls (what takes a place in line) answer only
    /// requests whose `Host` is one of them (or `dns_domain`): a name an
    /// attacker's DNS points at wicket (DNS rebinding) is not the host's
    /// own origin. Empty: any host.
    pub public_hosts: Vec<String>,
    /// User connections the proxy keeps open at once, per process (0: no
    /// limit). More are answered 503 and closed.
    pub max_connections: u32,
    /// User connections one client may keep open at once (0: no limit).
    /// More are answered 429 and closed.
    pub connections_per_client: u32,
    /// Ticket WebSockets and no-JavaScript polls one client may have open
    /// at once (0: no limit). More are answered 429.
    pub sockets_per_client: u32,
    /// Places in line one client may hold in one app (0: no limit). More
    /// get a waiting-room message (WebSocket) or 429 (poll).
    pub places_per_client: u32,
    /// Live tickets one client may hold over all apps (0: no limit). While
    /// it holds as many, a new place or ticket gets a waiting-room message
    /// (WebSocket) or 429 (poll).
    pub tickets_per_client: u32,
    /// Places in one app's line, over all clients, per process (0: no
    /// limit): many addresses together cannot grow it past this. A
    /// newcomer who would wait gets a waiting-room message (WebSocket) or
    /// 503 (poll); coming back with a resume id is never refused.
    pub places_per_app: u32,
    /// On SIGTERM (or Ctrl-C): how long connections still open (requests
    /// in flight, WebSocket tunnels to pods) get to end before they are
    /// closed and the process exits.
    pub shutdown_grace_ms: u64,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 9001)),
            ticket_expiry_ms: 3000,
            ws_ping_ms: 5000,
            waiting_message_ms: 10_000,
            threads: 0,
            header_timeout_ms: 30_000,
            idle_timeout_ms: 120_000,
            forward_trailers: false,
            upgrade_protocols: vec!["websocket".into()],
            trusted_proxies: Vec::new(),
            body_timeout_ms: 30_000,
            response_timeout_ms: 60_000,
            send_timeout_ms: 60_000,
            tunnel_idle_timeout_ms: 600_000,
            dns_domain: String::new(),
            ws_origins: Vec::new(),
            public_hosts: Vec::new(),
            max_connections: 16_384,
            connections_per_client: 256,
            sockets_per_client: 32,
            places_per_client: 32,
            tickets_per_client: 32,
            places_per_app: 10_000,
            shutdown_grace_ms: 30_000,
        }
    }
}

/// `[metrics]`
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Serves `/metrics` and `/healthz` (k8sTicket: port 9999).
    pub listen: SocketAddr,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 9999)),
        }
    }
}

/// `[policy]`
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct PolicyConfig {
    /// A policy component to use instead of the embedded default; watched and
    /// hot-swapped when it changes. Empty: the embedded default.
    pub file: Option<PathBuf>,
    /// How often the file is checked for changes where the system has no
    /// file change notifications (inotify); else changes are seen at once.
    pub watch_interval_ms: u64,
    /// Deadline of one policy call.
    pub timeout_ms: u64,
    /// Memory cap of one policy instance.
    pub memory_mib: u64,
    /// Deadline of one policy instantiation.
    pub instantiate_timeout_ms: u64,
    /// Log lines one policy call may write.
    pub log_lines_per_call: u32,
    /// Limits of the policy in `file` only, where they differ from the
    /// defaults above (`[policy.file_limits]`).
    pub file_limits: LimitOverrides,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        let l = Limits::default();
        Self {
            file: None,
            watch_interval_ms: 1000,
            timeout_ms: l.timeout.as_millis() as u64,
            memory_mib: (l.memory_bytes >> 20) as u64,
            instantiate_timeout_ms: l.instantiate_timeout.as_millis() as u64,
            log_lines_per_call: l.log_lines_per_call,
            file_limits: LimitOverrides::default(),
        }
    }
}

/// `[apps]`: defaults for every app (an app's annotations override them).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AppsConfig {
    /// IANA time zone whose UTC offset policies see
    /// (`wicket.dev/timezone` overrides it per app).
    pub timezone: String,
}

impl Default for AppsConfig {
    fn default() -> Self {
        Self {
            timezone: "UTC".into(),
        }
    }
}

/// `[backend]`
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct BackendConfig {
    /// Dial timeout to a pod (k8sTicket: 5000).
    pub connect_timeout_ms: u64,
    /// Idle keep-alive connections are closed after this long.
    pub pool_idle_timeout_ms: u64,
    /// Most idle keep-alive connections kept per pod (per edge thread).
    pub pool_max_idle_per_pod: usize,
}

impl Default for BackendConfig {
    fn default() -> Self {
        Self {
            connect_timeout_ms: 5000,
            pool_idle_timeout_ms: 90_000,
            pool_max_idle_per_pod: 512,
        }
    }
}

/// `[demo]`: the app `wicket demo` serves, with settings that make scaling
/// visible.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DemoConfig {
    /// App name (URL prefix).
    pub app: String,
    /// Pods of the app's own (never deleted by the policy).
    pub replicas: u32,
    /// Tickets per pod.
    pub tickets_max: u32,
    /// Free tickets kept ahead of demand.
    pub tickets_spare: u32,
    /// Most autoscaled pods.
    pub pods_max: u32,
    /// Seconds an autoscaled pod must be idle before deletion.
    pub cooldown_seconds: u64,
    /// Opaque string handed to the policy.
    pub policy_config: String,
    /// How long a new pod takes to become ready (simulates booting).
    pub pod_start_delay_ms: u64,
    /// Serve at `<pod>.<uid>.<host>/<app>/` (k8sTicket's ingress.dns).
    pub dns: bool,
    /// The name on the waiting page (`wicket.dev/display-name`); empty: the
    /// app name.
    pub display_name: String,
    /// How long a waiting user who lost the connection keeps their place
    /// (`wicket.dev/resume-grace`); written like `30s`.
    #[serde(with = "crate::duration::text")]
    pub resume_grace: Duration,
    /// Addresses of app instances that already run, served as extra
    /// replicas (ready at once, never deleted). For benchmarks and for
    /// trying wicket in front of your own app.
    pub static_backends: Vec<SocketAddr>,
}

impl Default for DemoConfig {
    fn default() -> Self {
        Self {
            app: "demo".into(),
            replicas: 1,
            tickets_max: 2,
            tickets_spare: 2,
            pods_max: 4,
            cooldown_seconds: 10,
            policy_config: String::new(),
            pod_start_delay_ms: 1500,
            dns: false,
            display_name: String::new(),
            resume_grace: DEFAULT_RESUME_GRACE,
            static_backends: Vec::new(),
        }
    }
}

/// `[kubernetes]`: `wicket run`, the drop-in replacement for k8sTicket.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct KubernetesConfig {
    /// Namespaces to watch; empty: the one the host runs in.
    pub namespaces: Vec<String>,
    /// Open each app's own port (k8sTicket's deployment.port annotation).
    pub app_ports: bool,
    /// First delay when retrying a failed API call or watch.
    pub retry_initial_ms: u64,
    /// Longest delay between retries.
    pub retry_max_ms: u64,
    /// How long one pod creation or deletion is retried (the pauses between
    /// its attempts, added up) before it is given up.
    pub action_timeout_ms: u64,
    /// Elect the one replica that scales through a Lease; off: this host
    /// always scales (one replica only).
    pub leader_election: bool,
    /// The Lease's name, in the host's own namespace.
    pub lease_name: String,
    /// How long a leader holds the Lease after its last renewal: the
    /// failover bound when a leader dies.
    pub lease_duration_seconds: u64,
    /// The leader renews this long before the Lease would expire (and this
    /// much clock skew between nodes is tolerated).
    pub lease_renew_before_seconds: u64,
}

impl Default for KubernetesConfig {
    fn default() -> Self {
        Self {
            namespaces: Vec::new(),
            app_ports: true,
            retry_initial_ms: 250,
            retry_max_ms: 5000,
            action_timeout_ms: 120_000,
            leader_election: true,
            lease_name: "wicket-leader".into(),
            lease_duration_seconds: 15,
            lease_renew_before_seconds: 5,
        }
    }
}

/// A Kubernetes object name (RFC 1123 subdomain): what the API accepts.
fn dns_subdomain(s: &str) -> bool {
    let edge = |b: Option<&u8>| b.is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    s.len() <= 253
        && edge(s.as_bytes().first())
        && edge(s.as_bytes().last())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
}

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// TOML syntax, an unknown key or a value of the wrong type.
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message (it names the key and line).
        message: String,
    },
    /// A value of the right type that cannot work.
    #[error("{path}: `{key}` {problem}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// The key, e.g. `policy.timeout_ms`.
        key: &'static str,
        /// What is wrong.
        problem: &'static str,
    },
}

impl Config {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.into(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// Parses and validates TOML text (`path` only names it in errors).
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.into(),
            message: e.to_string(),
        })?;
        config
            .validate()
            .map_err(|(key, problem)| ConfigError::Invalid {
                path: path.into(),
                key,
                problem,
            })?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), (&'static str, &'static str)> {
        if let Err((key, problem)) = self.policy.file_limits.validate() {
            // Static keys, for the error type.
            let key = match key {
                "timeout_ms" => "policy.file_limits.timeout_ms",
                "memory_mib" => "policy.file_limits.memory_mib",
                _ => "policy.file_limits.instantiate_timeout_ms",
            };
            return Err((key, problem));
        }
        let token = |p: &String| {
            !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
        };
        // A slice: the checks are counted by the compiler, not by hand.
        let checks: &[(bool, &'static str, &'static str)] = &[
            (
                self.proxy.upgrade_protocols.iter().all(token),
                "proxy.upgrade_protocols",
                "each must be a protocol name (an HTTP token)",
            ),
            (
                crate::proxy::trust::TrustedProxies::parse(&self.proxy.trusted_proxies).is_ok(),
                "proxy.trusted_proxies",
                "each must be a CIDR (10.0.0.0/8) or an IP address",
            ),
            (
                self.proxy.ticket_expiry_ms >= 100,
                "proxy.ticket_expiry_ms",
                "must be at least 100",
            ),
            (
                self.proxy.header_timeout_ms >= 100,
                "proxy.header_timeout_ms",
                "must be at least 100",
            ),
            (
                self.proxy.idle_timeout_ms >= 100,
                "proxy.idle_timeout_ms",
                "must be at least 100",
            ),
            (
                self.proxy.body_timeout_ms >= 100,
                "proxy.body_timeout_ms",
                "must be at least 100",
            ),
            (
                self.proxy.response_timeout_ms >= 100,
                "proxy.response_timeout_ms",
                "must be at least 100",
            ),
            (
                self.proxy.send_timeout_ms >= 100,
                "proxy.send_timeout_ms",
                "must be at least 100",
            ),
            (
                self.proxy.tunnel_idle_timeout_ms >= 100,
                "proxy.tunnel_idle_timeout_ms",
                "must be at least 100",
            ),
            (
                self.proxy
                    .dns_domain
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.'),
                "proxy.dns_domain",
                "must be a host name (letters, digits, '-' and '.')",
            ),
            (
                self.proxy.ws_origins.iter().all(|o| {
                    let rest = o
                        .strip_prefix("https://")
                        .or_else(|| o.strip_prefix("http://"));
                    rest.is_some_and(|r| !r.is_empty() && !r.trim_end_matches('/').contains('/'))
                }),
                "proxy.ws_origins",
                "must be origins: http:// or https://, a host, maybe a port, no path",
            ),
            (
                self.proxy.public_hosts.iter().all(|h| {
                    !h.is_empty()
                        && h.bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
                }),
                "proxy.public_hosts",
                "must be host names (letters, digits, '-' and '.'; no port)",
            ),
            (
                self.store.kind == StoreKind::Memory || !self.store.url.is_empty(),
                "store.url",
                "is required with kind = \"redis\"",
            ),
            (
                self.store.kind == StoreKind::Memory
                    || redis::Client::open(self.store.url.as_str()).is_ok(),
                "store.url",
                "is not a Redis URL (redis://[user:password@]host[:port][/db], rediss:// for TLS)",
            ),
            (
                self.store.connect_timeout_ms >= 10 && self.store.response_timeout_ms >= 10,
                "store.connect_timeout_ms",
                "and store.response_timeout_ms must be at least 10",
            ),
            (
                self.store.refresh_ms >= 10 && self.store.refresh_ms <= 1000,
                "store.refresh_ms",
                "must be between 10 and 1000 (it bounds how long a freed ticket still opens)",
            ),
            (
                self.store.kind == StoreKind::Memory
                    || self.store.refresh_ms * 2 <= self.proxy.ticket_expiry_ms,
                "store.refresh_ms",
                "must be at most half of proxy.ticket_expiry_ms (replicas write uses once per interval)",
            ),
            (
                self.store.resync_ms >= self.store.refresh_ms,
                "store.resync_ms",
                "must be at least store.refresh_ms",
            ),
            (
                self.proxy.ws_ping_ms >= 100,
                "proxy.ws_ping_ms",
                "must be at least 100",
            ),
            (
                self.proxy.waiting_message_ms >= 100,
                "proxy.waiting_message_ms",
                "must be at least 100",
            ),
            (
                self.policy.timeout_ms >= 1 && self.policy.timeout_ms <= 10_000,
                "policy.timeout_ms",
                "must be between 1 and 10000",
            ),
            (
                self.policy.memory_mib >= 1 && self.policy.memory_mib <= 4096,
                "policy.memory_mib",
                "must be between 1 and 4096",
            ),
            (
                self.policy.instantiate_timeout_ms >= 1
                    && self.policy.instantiate_timeout_ms
                        <= crate::policy::INSTANTIATE_TIMEOUT_MS_MAX,
                "policy.instantiate_timeout_ms",
                "must be between 1 and 60000",
            ),
            (
                crate::state::zone(&self.apps.timezone).is_ok(),
                "apps.timezone",
                "is not an IANA time zone name (such as \"Europe/Berlin\", \"America/New_York\" or \"UTC\")",
            ),
            (
                self.policy.watch_interval_ms >= 50,
                "policy.watch_interval_ms",
                "must be at least 50",
            ),
            (
                self.backend.connect_timeout_ms >= 1,
                "backend.connect_timeout_ms",
                "must be at least 1",
            ),
            (
                self.demo.tickets_max >= 1,
                "demo.tickets_max",
                "must be at least 1",
            ),
            (
                self.demo.cooldown_seconds >= 1,
                "demo.cooldown_seconds",
                "must be at least 1",
            ),
            (
                valid_name(&self.demo.app),
                "demo.app",
                "must be a name of letters, digits, '-', '_' or '.'",
            ),
            // The messages are static: keep them in step with the bounds.
            (
                valid_display_name(&self.demo.display_name),
                "demo.display_name",
                "must be at most 80 characters, without control characters",
            ),
            (
                self.demo.resume_grace >= RESUME_GRACE_MIN
                    && self.demo.resume_grace <= RESUME_GRACE_MAX,
                "demo.resume_grace",
                "must be from 1s to 1h",
            ),
            (
                self.kubernetes.retry_initial_ms >= 10,
                "kubernetes.retry_initial_ms",
                "must be at least 10",
            ),
            (
                self.kubernetes.retry_max_ms >= self.kubernetes.retry_initial_ms,
                "kubernetes.retry_max_ms",
                "must be at least kubernetes.retry_initial_ms",
            ),
            (
                self.kubernetes.action_timeout_ms >= 1000,
                "kubernetes.action_timeout_ms",
                "must be at least 1000",
            ),
            (
                dns_subdomain(&self.kubernetes.lease_name),
                "kubernetes.lease_name",
                "must be a Kubernetes object name (lower-case letters, digits, '-' and '.')",
            ),
            (
                self.kubernetes.lease_duration_seconds >= 2
                    && self.kubernetes.lease_duration_seconds <= 3600,
                "kubernetes.lease_duration_seconds",
                "must be between 2 and 3600",
            ),
            (
                self.kubernetes.lease_renew_before_seconds >= 1
                    && self.kubernetes.lease_renew_before_seconds
                        < self.kubernetes.lease_duration_seconds,
                "kubernetes.lease_renew_before_seconds",
                "must be at least 1 and less than kubernetes.lease_duration_seconds",
            ),
        ];
        match checks.iter().find(|(ok, _, _)| !ok) {
            Some(&(_, key, problem)) => Err((key, problem)),
            None => Ok(()),
        }
    }

    /// The host's default policy limits, from `[policy]`.
    pub fn limits(&self) -> Limits {
        Limits {
            timeout: Duration::from_millis(self.policy.timeout_ms),
            memory_bytes: (self.policy.memory_mib as usize) << 20,
            instantiate_timeout: Duration::from_millis(self.policy.instantiate_timeout_ms),
            log_lines_per_call: self.policy.log_lines_per_call,
        }
    }

    /// The policy file that replaces the embedded default, if any.
    pub fn policy_file(&self) -> Option<crate::policy::PolicyFile> {
        self.policy
            .file
            .as_ref()
            .map(|path| crate::policy::PolicyFile {
                path: path.clone(),
                limits: self.file_limits(),
                watch_interval: Duration::from_millis(self.policy.watch_interval_ms),
            })
    }

    /// The limits of the policy in `policy.file`: the defaults with
    /// `[policy.file_limits]` applied.
    pub fn file_limits(&self) -> Limits {
        self.policy.file_limits.apply(self.limits())
    }

    /// The apps' default time zone (`apps.timezone`; UTC if it is invalid,
    /// which [`Config::parse`] refuses).
    pub fn timezone(&self) -> jiff::tz::TimeZone {
        crate::state::zone(&self.apps.timezone).unwrap_or(jiff::tz::TimeZone::UTC)
    }

    /// The proxy's settings from `[proxy]` and `[backend]`.
    pub fn proxy_settings(&self) -> ProxySettings {
        let ms = Duration::from_millis;
        ProxySettings {
            pods: PoolSettings {
                connect_timeout: ms(self.backend.connect_timeout_ms),
                idle_timeout: ms(self.backend.pool_idle_timeout_ms),
                max_idle_per_host: self.backend.pool_max_idle_per_pod,
            },
            ws: WsTiming {
                ping: ms(self.proxy.ws_ping_ms),
                message: ms(self.proxy.waiting_message_ms),
            },
            clients: ClientTimeouts {
                header: ms(self.proxy.header_timeout_ms),
                idle: ms(self.proxy.idle_timeout_ms),
                body: ms(self.proxy.body_timeout_ms),
                response: ms(self.proxy.response_timeout_ms),
                send: ms(self.proxy.send_timeout_ms),
                tunnel_idle: ms(self.proxy.tunnel_idle_timeout_ms),
            },
            dns_domain: Some(self.proxy.dns_domain.trim())
                .filter(|d| !d.is_empty())
                .map(std::sync::Arc::from),
            ws_origins: self
                .proxy
                .ws_origins
                .iter()
                .map(|o| Box::from(o.trim_end_matches('/')))
                .collect(),
            public_hosts: self
                .proxy
                .public_hosts
                .iter()
                .map(|h| Box::from(h.to_ascii_lowercase()))
                .collect(),
            limits: ClientLimits {
                max_connections: self.proxy.max_connections,
                connections_per_client: self.proxy.connections_per_client,
                sockets_per_client: self.proxy.sockets_per_client,
                places_per_client: self.proxy.places_per_client,
                tickets_per_client: self.proxy.tickets_per_client,
                places_per_app: self.proxy.places_per_app,
            },
            wire: wire::Rules {
                trailers: if self.proxy.forward_trailers {
                    Trailers::Forward
                } else {
                    Trailers::Drop
                },
                upgrades: self
                    .proxy
                    .upgrade_protocols
                    .iter()
                    .map(|p| p.as_str().into())
                    .collect(),
            },
            // Checked when the config was read.
            trusted: TrustedProxies::parse(&self.proxy.trusted_proxies).unwrap_or_default(),
        }
    }

    /// The demo app's scaling settings.
    pub fn demo_settings(&self) -> AppSettings {
        let d = &self.demo;
        AppSettings {
            tickets_max: d.tickets_max,
            tickets_spare: d.tickets_spare,
            pods_max: d.pods_max,
            cooldown: Duration::from_secs(d.cooldown_seconds),
            policy_config: d.policy_config.clone(),
        }
    }
}

// The messages of `Config::validate` spell these bounds out.
const _: () = assert!(DISPLAY_NAME_MAX_CHARS == 80);
const _: () = assert!(RESUME_GRACE_MIN.as_millis() == 1000);
const _: () = assert!(RESUME_GRACE_MAX.as_millis() == 3_600_000);

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("test.toml"))
    }

    #[test]
    fn empty_file_gives_defaults() {
        assert_eq!(parse("").expect("defaults"), Config::default());
    }

    #[test]
    fn documented_example_matches_defaults() {
        let example = include_str!("../../examples/wicket.toml");
        assert_eq!(parse(example).expect("example parses"), Config::default());
    }

    #[test]
    fn bad_values_name_the_key() {
        let cases = [
            ("[proxy]\nlisten = \"not an address\"", "listen"),
            ("[proxy]\nticket_expiry_ms = -1", "ticket_expiry_ms"),
            ("[proxy]\nticket_expiry_ms = \"3s\"", "ticket_expiry_ms"),
            (
                "[proxy]\ntrusted_proxies = [\"10.0.0.0/33\"]",
                "proxy.trusted_proxies",
            ),
            (
                "[proxy]\ntrusted_proxies = \"10.0.0.0/8\"",
                "trusted_proxies",
            ),
            (
                "[proxy]\nupgrade_protocols = [\"web socket\"]",
                "proxy.upgrade_protocols",
            ),
            ("[proxy]\nforward_trailers = 1", "forward_trailers"),
            ("[policy]\ntimeout_ms = 0", "policy.timeout_ms"),
            ("[store]\nkind = \"redis\"", "store.url"),
            (
                "[store]\nkind = \"redis\"\nurl = \"http://x/\"",
                "store.url",
            ),
            ("[store]\nkind = \"etcd\"", "kind"),
            ("[store]\nrefresh_ms = 5000", "store.refresh_ms"),
            (
                "[proxy]\nticket_expiry_ms = 1000\n[store]\nkind = \"redis\"\nurl = \"redis://x/\"\nrefresh_ms = 600",
                "store.refresh_ms",
            ),
            ("[store]\nurl_typo = \"redis://x\"", "url_typo"),
            ("[policy]\nmemory_mib = 100000", "policy.memory_mib"),
            (
                "[policy]\ninstantiate_timeout_ms = 0",
                "policy.instantiate_timeout_ms",
            ),
            (
                "[policy.file_limits]\nmemory_mib = 5000",
                "policy.file_limits.memory_mib",
            ),
            (
                "[policy.file_limits]\ntimeout_ms = 0",
                "policy.file_limits.timeout_ms",
            ),
            (
                "[policy.file_limits]\ninstantiate_timeout_ms = 60001",
                "policy.file_limits.instantiate_timeout_ms",
            ),
            ("[policy.file_limits]\nfuel = 1", "fuel"),
            ("[apps]\ntimezone = \"Europe/Berlim\"", "apps.timezone"),
            ("[apps]\ntimezone = \"\"", "apps.timezone"),
            ("[demo]\ntickets_max = 0", "demo.tickets_max"),
            ("[demo]\napp = \"a b\"", "demo.app"),
            ("[demo]\nbogus = 1", "bogus"),
            ("[demo]\nresume_grace = \"soon\"", "resume_grace"),
            ("[demo]\nresume_grace = 30", "resume_grace"),
            ("[demo]\nresume_grace = \"30\"", "resume_grace"),
            ("[demo]\nresume_grace = \"0s\"", "demo.resume_grace"),
            ("[demo]\nresume_grace = \"2h\"", "demo.resume_grace"),
            (
                "[demo]\ndisplay_name = \"two\\nlines\"",
                "demo.display_name",
            ),
            (
                "[kubernetes]\nretry_initial_ms = 1",
                "kubernetes.retry_initial_ms",
            ),
            (
                "[kubernetes]\nretry_initial_ms = 500\nretry_max_ms = 100",
                "kubernetes.retry_max_ms",
            ),
            ("[kubernetes]\nnamespaces = \"ns\"", "namespaces"),
            (
                "[kubernetes]\nlease_name = \"Wicket_Leader\"",
                "kubernetes.lease_name",
            ),
            (
                "[kubernetes]\nlease_duration_seconds = 1",
                "kubernetes.lease_duration_seconds",
            ),
            (
                "[kubernetes]\nlease_duration_seconds = 5\nlease_renew_before_seconds = 5",
                "kubernetes.lease_renew_before_seconds",
            ),
            ("[nonsense]", "nonsense"),
            ("[proxy\n", "test.toml"),
        ];
        for (text, key) in cases {
            let err = parse(text).expect_err(text).to_string();
            assert!(
                err.contains(key),
                "{text:?}: error {err:?} should name {key:?}"
            );
        }
    }

    #[test]
    fn file_limits_override_the_defaults_key_by_key() {
        let c = parse(
            "[policy]\ntimeout_ms = 20\n[policy.file_limits]\nmemory_mib = 128\ninstantiate_timeout_ms = 5000\n[apps]\ntimezone = \"Europe/Berlin\"",
        )
        .expect("valid");
        let l = c.file_limits();
        assert_eq!(l.timeout, Duration::from_millis(20), "not overridden");
        assert_eq!(l.memory_bytes, 128 << 20);
        assert_eq!(l.instantiate_timeout, Duration::from_secs(5));
        assert_eq!(c.limits().memory_bytes, 16 << 20, "the default stays");
        assert_eq!(c.timezone().iana_name(), Some("Europe/Berlin"));
    }

    #[test]
    fn display_name_and_resume_grace_are_read() {
        let c = parse("[demo]\ndisplay_name = \"Gene Atlas\"\nresume_grace = \"1m30s\"")
            .expect("valid");
        assert_eq!(c.demo.display_name, "Gene Atlas");
        assert_eq!(c.demo.resume_grace, Duration::from_secs(90));
    }

    #[test]
    fn printed_defaults_parse_back() {
        // `wicket config` prints this; it must be a valid config itself.
        let text = toml::to_string_pretty(&Config::default()).expect("renders");
        assert!(text.contains("resume_grace = \"30s\""), "{text}");
        assert_eq!(parse(&text).expect("parses"), Config::default());
    }
}
