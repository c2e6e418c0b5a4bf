//! k8sTicket's labels and annotations (and wicket's own `wicket.dev/…`
//! ones), parsed into wicket's settings. Pure: no I/O, no clock. A malformed
//! value falls back to the default and is reported as a [`Warning`] (the
//! caller logs it and records an Event).

use std::collections::BTreeMap;
use std::time::Duration;

use crate::app::DEFAULT_RESUME_GRACE;
use crate::duration;
use crate::policy::{INSTANTIATE_TIMEOUT_MS_MAX, LimitOverrides, MEMORY_MIB_MAX, TIMEOUT_MS_MAX};
pub use crate::rules::{DISPLAY_NAME_MAX_CHARS, valid_app_name, valid_display_name};
use crate::rules::{RESUME_GRACE_MAX, RESUME_GRACE_MIN};
use crate::state::AppSettings;

/// Deployment label that enables an app (`"true"`; any other value drains it).
pub const ENABLED_LABEL: &str = "ipb-halle.de/k8sticket";
/// App name: Deployment annotation and pod (template) label.
pub const APP_NAME: &str = "ipb-halle.de/k8sticket.deployment.app.name";
/// Autoscaled pods the controller may create on top of the replicas.
pub const PODS_MAX: &str = "ipb-halle.de/k8sticket.deployment.pods.max";
/// Tickets (users) per pod.
pub const TICKETS_MAX: &str = "ipb-halle.de/k8sticket.deployment.tickets.max";
/// Free tickets kept ahead of demand.
pub const TICKETS_SPARE: &str = "ipb-halle.de/k8sticket.deployment.tickets.spare";
/// Seconds an autoscaled pod must be idle before deletion.
pub const COOLDOWN: &str = "ipb-halle.de/k8sticket.deployment.pods.cooldown";
/// The app's own listening port.
pub const PORT: &str = "ipb-halle.de/k8sticket.deployment.port";
/// Serve at `<pod>.<uid>.<domain>/<app>`.
pub const DNS: &str = "ipb-halle.de/k8sticket.ingress.dns";
/// The app's port in the pod.
pub const POD_PORT: &str = "ipb-halle.de/k8sticket.pod.port";
/// The app's HTTP path in the pod.
pub const POD_PATH: &str = "ipb-halle.de/k8sticket.pod.path";
/// Label of the pods wicket (or k8sTicket) created. Note the capital T: it
/// is k8sTicket's spelling.
pub const SCALED_LABEL: &str = "ipb-halle.de/k8sTicket.scaled";
/// wicket: the policy of an app, `<configmap>/<key>`.
pub const POLICY: &str = "wicket.dev/policy";
/// wicket: the opaque string handed to the policy.
pub const POLICY_CONFIG: &str = "wicket.dev/policy-config";
/// wicket: ConfigMap label marking policy components.
pub const POLICY_LABEL: &str = "wicket.dev/policy";
/// wicket: the app's name as users see it on the waiting page.
pub const DISPLAY_NAME: &str = "wicket.dev/display-name";
/// wicket: how long a waiting user who lost the connection keeps their place
/// in line (a duration such as `15s`).
pub const RESUME_GRACE: &str = "wicket.dev/resume-grace";
/// wicket: the app's IANA time zone (policies see its UTC offset).
pub const TIMEZONE: &str = "wicket.dev/timezone";
/// wicket: label of a ConfigMap that carries one part of a policy
/// component too large for one ConfigMap; its value is the name of the
/// policy ConfigMap whose key the parts make up (see `policy_parts`).
pub const POLICY_PART_OF: &str = "wicket.dev/policy-part-of";
/// wicket, on a policy part: its index (0, 1, …) among the parts.
pub const POLICY_PART: &str = "wicket.dev/policy-part";
/// wicket, on a policy part: the sha256 digest (hex) of the whole component
/// (unpacked) that the part belongs to.
pub const POLICY_DIGEST: &str = "wicket.dev/policy-digest";
/// wicket, on a policy ConfigMap: deadline of one call of its policies (ms).
pub const POLICY_TIMEOUT_MS: &str = "wicket.dev/policy-timeout-ms";
/// wicket, on a policy ConfigMap: memory cap of one instance (MiB).
pub const POLICY_MEMORY_MIB: &str = "wicket.dev/policy-memory-mib";
/// wicket, on a policy ConfigMap: deadline of one instantiation (ms).
pub const POLICY_INSTANTIATE_TIMEOUT_MS: &str = "wicket.dev/policy-instantiate-timeout-ms";

/// k8sTicket's default per-app port.
pub const DEFAULT_PORT: u16 = 9001;
/// k8sTicket's default pod port.
pub const DEFAULT_POD_PORT: u16 = 80;

/// A malformed annotation: which, the value, and what was used instead.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Warning {
    /// The annotation key.
    pub annotation: String,
    /// The value found.
    pub value: String,
    /// Why it is refused and what is used instead.
    pub problem: String,
}

impl std::fmt::Display for Warning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "annotation {}: {:?} {}",
            self.annotation, self.value, self.problem
        )
    }
}

/// Which policy component an app uses.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PolicyRef {
    /// ConfigMap name.
    pub configmap: String,
    /// Key in its `binaryData`.
    pub key: String,
}

impl std::fmt::Display for PolicyRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.configmap, self.key)
    }
}

/// An app as its Deployment describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppSpec {
    /// URL prefix `/<name>` (the app.name annotation, else the Deployment's name).
    pub name: String,
    /// Scaling settings (and the policy-config string).
    pub settings: AppSettings,
    /// The app's own port.
    pub port: u16,
    /// DNS mode.
    pub dns: bool,
    /// The selected policy; None: the embedded default.
    pub policy: Option<PolicyRef>,
    /// The name on the waiting page; None: the app name.
    pub display_name: Option<String>,
    /// How long a disconnected waiting user keeps their place.
    pub resume_grace: Duration,
    /// The app's IANA time zone name; None: the host's `apps.timezone`.
    /// A name that is not a zone is reported and read as `UTC`.
    pub timezone: Option<String>,
}

/// Where an app listens inside its pods.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodTarget {
    /// `pod.port`.
    pub port: u16,
    /// `pod.path`.
    pub path: String,
}

impl Default for PodTarget {
    fn default() -> Self {
        Self {
            port: DEFAULT_POD_PORT,
            path: "/".into(),
        }
    }
}

/// Labels or annotations.
pub type Map = BTreeMap<String, String>;

/// Is the app enabled by its Deployment's labels (label value exactly `"true"`)?
pub fn enabled(labels: Option<&Map>) -> bool {
    labels
        .and_then(|l| l.get(ENABLED_LABEL))
        .is_some_and(|v| v == "true")
}

/// Is the pod one of the autoscaled ones (k8sTicket's or wicket's)?
pub fn autoscaled(labels: Option<&Map>) -> bool {
    labels
        .and_then(|l| l.get(SCALED_LABEL))
        .is_some_and(|v| v == "true")
}

/// The app a pod belongs to (its app-name label).
pub fn pod_app(labels: Option<&Map>) -> Option<&str> {
    labels
        .and_then(|l| l.get(APP_NAME))
        .map(String::as_str)
        .filter(|s| !s.is_empty())
}

struct Reader<'a> {
    map: Option<&'a Map>,
    warnings: Vec<Warning>,
}

impl<'a> Reader<'a> {
    fn raw(&self, key: &str) -> Option<&'a str> {
        self.map.and_then(|m| m.get(key)).map(String::as_str)
    }

    fn warn(&mut self, key: &str, value: &str, problem: String) {
        self.warnings.push(Warning {
            annotation: key.into(),
            value: value.into(),
            problem,
        });
    }

    /// A whole number in `min..=max`; else the default.
    fn number<T>(&mut self, key: &str, default: T, min: T, max: T) -> T
    where
        T: std::str::FromStr + PartialOrd + Copy + std::fmt::Display,
    {
        let Some(raw) = self.raw(key) else {
            return default;
        };
        match raw.trim().parse::<T>() {
            Ok(v) if v >= min && v <= max => v,
            _ => {
                self.warn(
                    key,
                    raw,
                    format!(
                        "is not a whole number from {min} to {max}; using the default {default}"
                    ),
                );
                default
            }
        }
    }

    /// A duration such as `15s` or `1m30s` in `min..=max`; else the default.
    fn duration(&mut self, key: &str, default: Duration, min: Duration, max: Duration) -> Duration {
        let Some(raw) = self.raw(key) else {
            return default;
        };
        match duration::parse(raw) {
            Some(d) if d >= min && d <= max => d,
            _ => {
                self.warn(
                    key,
                    raw,
                    format!(
                        "is not a duration from {} to {} ({}); using the default {}",
                        duration::format(min),
                        duration::format(max),
                        duration::EXPECTED,
                        duration::format(default)
                    ),
                );
                default
            }
        }
    }

    /// `true`/`false` (any case, like Go's strconv.ParseBool also 1/0/t/f).
    fn boolean(&mut self, key: &str, default: bool) -> bool {
        let Some(raw) = self.raw(key) else {
            return default;
        };
        match raw.trim().to_ascii_lowercase().as_str() {
            "true" | "t" | "1" => true,
            "false" | "f" | "0" => false,
            _ => {
                self.warn(
                    key,
                    raw,
                    format!("is not a boolean (true/false); using the default {default}"),
                );
                default
            }
        }
    }
}

/// Is `s` a valid ConfigMap name or data key?
fn valid_ref_part(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

/// Parses `<configmap>/<key>`.
pub fn parse_policy_ref(s: &str) -> Option<PolicyRef> {
    let (cm, key) = s.trim().split_once('/')?;
    (valid_ref_part(cm) && valid_ref_part(key)).then(|| PolicyRef {
        configmap: cm.into(),
        key: key.into(),
    })
}

/// Reads an app from its Deployment's name and annotations. Never fails:
/// malformed values become defaults plus warnings.
pub fn app_spec(deployment: &str, annotations: Option<&Map>) -> (AppSpec, Vec<Warning>) {
    let mut r = Reader {
        map: annotations,
        warnings: Vec::new(),
    };
    let d = AppSettings::default();
    let name = match r.raw(APP_NAME).map(str::trim) {
        None | Some("") => deployment.to_owned(),
        Some(n) if valid_app_name(n) => n.to_owned(),
        Some(n) => {
            let n = n.to_owned();
            r.warn(APP_NAME, &n, format!("is not a valid app name (letters, digits, '-', '_', '.'); using the default, the Deployment's name {deployment:?}"));
            deployment.to_owned()
        }
    };
    let tickets_max = r.number(TICKETS_MAX, d.tickets_max, 1, 1_000_000);
    let tickets_spare = r.number(TICKETS_SPARE, d.tickets_spare, 0, 1_000_000);
    let pods_max = r.number(PODS_MAX, d.pods_max, 0, 10_000);
    let cooldown = r.number(COOLDOWN, d.cooldown.as_secs(), 1, 86_400 * 365);
    let port = r.number(PORT, DEFAULT_PORT, 1, u16::MAX);
    let dns = r.boolean(DNS, false);
    let policy = match r.raw(POLICY) {
        None => None,
        Some(raw) if raw.trim().is_empty() => None,
        Some(raw) => match parse_policy_ref(raw) {
            Some(p) => Some(p),
            None => {
                r.warn(
                    POLICY,
                    raw,
                    "is not <configmap>/<key>; using the embedded default policy".into(),
                );
                None
            }
        },
    };
    let policy_config = r.raw(POLICY_CONFIG).unwrap_or("").to_owned();
    let display_name = match r.raw(DISPLAY_NAME) {
        None => None,
        Some(raw) if valid_display_name(raw) => {
            Some(raw.trim().to_owned()).filter(|n| !n.is_empty())
        }
        Some(raw) => {
            r.warn(
                DISPLAY_NAME,
                raw,
                format!("is not a display name (at most {DISPLAY_NAME_MAX_CHARS} characters, no control characters); using the default, the app name {name:?}"),
            );
            None
        }
    };
    let resume_grace = r.duration(
        RESUME_GRACE,
        DEFAULT_RESUME_GRACE,
        RESUME_GRACE_MIN,
        RESUME_GRACE_MAX,
    );
    let timezone = match r.raw(TIMEZONE) {
        None => None,
        Some(raw) if raw.trim().is_empty() => None,
        Some(raw) => match crate::state::zone(raw) {
            Ok(_) => Some(raw.trim().to_owned()),
            Err(e) => {
                r.warn(TIMEZONE, raw, format!("{}; using UTC", e.problem()));
                Some("UTC".to_owned())
            }
        },
    };
    let settings = AppSettings {
        tickets_max,
        tickets_spare,
        pods_max,
        cooldown: Duration::from_secs(cooldown),
        policy_config,
    };
    (
        AppSpec {
            name,
            settings,
            port,
            dns,
            policy,
            display_name,
            resume_grace,
            timezone,
        },
        r.warnings,
    )
}

/// Reads the limits a policy ConfigMap sets for its policies from its
/// annotations. Never fails: a malformed value is left unset (the host's
/// default applies) and reported as a warning.
pub fn policy_limits(annotations: Option<&Map>) -> (LimitOverrides, Vec<Warning>) {
    let mut r = Reader {
        map: annotations,
        warnings: Vec::new(),
    };
    let mut optional = |key: &str, max: u64| {
        let raw = r.raw(key)?;
        match raw.trim().parse::<u64>() {
            Ok(v) if (1..=max).contains(&v) => Some(v),
            _ => {
                r.warn(
                    key,
                    raw,
                    format!("is not a whole number from 1 to {max}; using the host's default"),
                );
                None
            }
        }
    };
    let limits = LimitOverrides {
        timeout_ms: optional(POLICY_TIMEOUT_MS, TIMEOUT_MS_MAX),
        memory_mib: optional(POLICY_MEMORY_MIB, MEMORY_MIB_MAX),
        instantiate_timeout_ms: optional(POLICY_INSTANTIATE_TIMEOUT_MS, INSTANTIATE_TIMEOUT_MS_MAX),
    };
    (limits, r.warnings)
}

/// Reads where the app listens in a pod from the pod's annotations, falling
/// back to the Deployment template's annotations for keys the pod lacks.
pub fn pod_target(pod: Option<&Map>, template: Option<&Map>) -> (PodTarget, Vec<Warning>) {
    let pick = |key: &str| {
        pod.and_then(|m| m.get(key))
            .or_else(|| template.and_then(|m| m.get(key)))
    };
    let mut merged = Map::new();
    for key in [POD_PORT, POD_PATH] {
        if let Some(v) = pick(key) {
            merged.insert(key.to_owned(), v.clone());
        }
    }
    let mut r = Reader {
        map: Some(&merged),
        warnings: Vec::new(),
    };
    let port = r.number(POD_PORT, DEFAULT_POD_PORT, 1, u16::MAX);
    let path = match r.raw(POD_PATH) {
        None => "/".to_owned(),
        Some(p) if valid_pod_path(p) => p.trim().to_owned(),
        Some(p) => {
            r.warn(
                POD_PATH,
                p,
                "is not an absolute URL path; using the default \"/\"".into(),
            );
            "/".to_owned()
        }
    };
    (PodTarget { port, path }, r.warnings)
}

fn valid_pod_path(p: &str) -> bool {
    let p = p.trim();
    p.starts_with('/')
        && !p.contains("//")
        && p.bytes()
            .all(|b| b.is_ascii_graphic() && b != b'?' && b != b'#')
        && !p.split('/').any(|seg| seg == ".." || seg == ".")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> Map {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn no_annotations_give_k8sticket_defaults() {
        let (spec, warnings) = app_spec("shiny", None);
        assert!(warnings.is_empty());
        assert_eq!(spec.name, "shiny");
        assert_eq!(spec.settings, AppSettings::default());
        assert_eq!(spec.settings.tickets_max, 1);
        assert_eq!(spec.settings.tickets_spare, 2);
        assert_eq!(spec.settings.pods_max, 1);
        assert_eq!(spec.settings.cooldown, Duration::from_secs(10));
        assert_eq!(spec.port, 9001);
        assert!(!spec.dns);
        assert_eq!(spec.policy, None);
        assert_eq!(spec.display_name, None, "the app name is shown");
        assert_eq!(spec.resume_grace, Duration::from_secs(30));
        assert_eq!(spec.timezone, None, "the host's default zone");
    }

    #[test]
    fn every_annotation_is_read() {
        let a = map(&[
            (APP_NAME, "myapp"),
            (PODS_MAX, "5"),
            (TICKETS_MAX, "3"),
            (TICKETS_SPARE, "4"),
            (COOLDOWN, "30"),
            (PORT, "9002"),
            (DNS, "true"),
            (POLICY, "policies/fifo.wasm"),
            (POLICY_CONFIG, "{\"x\":1}"),
            (DISPLAY_NAME, " Gene Atlas <beta> — Lab 3 "),
            (RESUME_GRACE, "1m30s"),
            (TIMEZONE, " Europe/Berlin "),
        ]);
        let (spec, warnings) = app_spec("deploy", Some(&a));
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(spec.name, "myapp");
        assert_eq!(
            spec.settings,
            AppSettings {
                tickets_max: 3,
                tickets_spare: 4,
                pods_max: 5,
                cooldown: Duration::from_secs(30),
                policy_config: "{\"x\":1}".into()
            }
        );
        assert_eq!(spec.port, 9002);
        assert!(spec.dns);
        assert_eq!(
            spec.policy,
            Some(PolicyRef {
                configmap: "policies".into(),
                key: "fifo.wasm".into()
            })
        );
        assert_eq!(
            spec.display_name.as_deref(),
            Some("Gene Atlas <beta> — Lab 3"),
            "trimmed; the page escapes HTML"
        );
        assert_eq!(spec.resume_grace, Duration::from_secs(90));
        assert_eq!(spec.timezone.as_deref(), Some("Europe/Berlin"));
    }

    #[test]
    fn a_bad_time_zone_warns_and_reads_as_utc() {
        for bad in ["Europe/Berlim", "CEST", "+02:00", "Mars/Olympus"] {
            let (spec, warnings) = app_spec("d", Some(&map(&[(TIMEZONE, bad)])));
            assert_eq!(spec.timezone.as_deref(), Some("UTC"), "{bad}");
            assert_eq!(warnings.len(), 1, "{bad}");
            assert_eq!(warnings[0].annotation, TIMEZONE);
            let text = warnings[0].to_string();
            assert!(text.contains("IANA") && text.contains("UTC"), "{text}");
        }
        // Blank: the host's default, silently.
        let (spec, warnings) = app_spec("d", Some(&map(&[(TIMEZONE, " ")])));
        assert_eq!((spec.timezone, warnings.len()), (None, 0));
    }

    #[test]
    fn policy_limits_are_read_from_the_configmap() {
        let (l, w) = policy_limits(None);
        assert_eq!((l, w.len()), (LimitOverrides::default(), 0));
        let a = map(&[
            (POLICY_TIMEOUT_MS, "50"),
            (POLICY_MEMORY_MIB, " 96 "),
            (POLICY_INSTANTIATE_TIMEOUT_MS, "3000"),
        ]);
        let (l, w) = policy_limits(Some(&a));
        assert!(w.is_empty(), "{w:?}");
        assert_eq!(
            l,
            LimitOverrides {
                timeout_ms: Some(50),
                memory_mib: Some(96),
                instantiate_timeout_ms: Some(3000)
            }
        );
        for (key, bad) in [
            (POLICY_TIMEOUT_MS, "0"),
            (POLICY_TIMEOUT_MS, "10001"),
            (POLICY_MEMORY_MIB, "64Mi"),
            (POLICY_MEMORY_MIB, "4097"),
            (POLICY_INSTANTIATE_TIMEOUT_MS, "-1"),
            (POLICY_INSTANTIATE_TIMEOUT_MS, "1.5"),
        ] {
            let (l, w) = policy_limits(Some(&map(&[(key, bad)])));
            assert_eq!(l, LimitOverrides::default(), "{key}={bad}");
            assert_eq!(w.len(), 1, "{key}={bad}");
            assert_eq!(w[0].annotation, key);
            assert!(w[0].to_string().contains("default"), "{}", w[0]);
        }
    }

    #[test]
    fn bad_values_fall_back_to_defaults_and_name_the_annotation() {
        let cases: &[(&str, &str)] = &[
            (TICKETS_MAX, "two"),
            (TICKETS_MAX, "0"),
            (TICKETS_MAX, "-1"),
            (TICKETS_MAX, "1.5"),
            (TICKETS_SPARE, "lots"),
            (TICKETS_SPARE, "99999999999"),
            (PODS_MAX, ""),
            (PODS_MAX, "1e3"),
            (COOLDOWN, "10s"),
            (COOLDOWN, "0"),
            (PORT, "0"),
            (PORT, "65536"),
            (PORT, "http"),
            (DNS, "yes please"),
            (APP_NAME, "my app"),
            (APP_NAME, "a/b"),
            (APP_NAME, "ws"),
            (POLICY, "no-slash"),
            (POLICY, "cm/"),
            (POLICY, "a/b/c"),
            (DISPLAY_NAME, "line one\nline two"),
            (DISPLAY_NAME, "bell\u{7}"),
            (DISPLAY_NAME, &"x".repeat(DISPLAY_NAME_MAX_CHARS + 1)),
            (RESUME_GRACE, "15"),
            (RESUME_GRACE, "soon"),
            (RESUME_GRACE, "-5s"),
            (RESUME_GRACE, "0s"),
            (RESUME_GRACE, "999ms"),
            (RESUME_GRACE, "2h"),
            (RESUME_GRACE, "s"),
            (RESUME_GRACE, ""),
            (RESUME_GRACE, "99999999999999999999s"),
        ];
        let defaults = app_spec("deploy", None).0;
        for (key, value) in cases {
            let a = map(&[(key, value)]);
            let (spec, warnings) = app_spec("deploy", Some(&a));
            assert_eq!(warnings.len(), 1, "{key}={value:?}: {warnings:?}");
            assert_eq!(warnings[0].annotation, *key);
            assert_eq!(warnings[0].value, *value);
            assert_eq!(
                spec, defaults,
                "{key}={value:?} must fall back to the default"
            );
            let text = warnings[0].to_string();
            assert!(text.contains(key) && text.contains("default"), "{text}");
        }
    }

    #[test]
    fn display_names_and_resume_graces_within_bounds_are_taken() {
        for (value, want) in [
            ("15s", 15_000),
            (" 15s ", 15_000),
            ("1s", 1000),
            ("1000ms", 1000),
            ("1500ms", 1500),
            ("2m", 120_000),
            ("1m30s", 90_000),
            ("1h", 3_600_000),
            ("59m59s999ms", 3_599_999),
            // humantime's spellings.
            ("1.5s", 1500),
            ("5 s", 5000),
            ("5sec", 5000),
            ("1m 30s", 90_000),
        ] {
            let (spec, warnings) = app_spec("d", Some(&map(&[(RESUME_GRACE, value)])));
            assert!(warnings.is_empty(), "{value:?}: {warnings:?}");
            assert_eq!(spec.resume_grace, Duration::from_millis(want), "{value:?}");
        }
        let longest = "é".repeat(DISPLAY_NAME_MAX_CHARS);
        for (value, want) in [
            ("Shiny", Some("Shiny")),
            ("", None),
            ("   ", None),
            (longest.as_str(), Some(longest.as_str())),
        ] {
            let (spec, warnings) = app_spec("d", Some(&map(&[(DISPLAY_NAME, value)])));
            assert!(warnings.is_empty(), "{value:?}: {warnings:?}");
            assert_eq!(spec.display_name.as_deref(), want, "{value:?}");
        }
        let (_, w) = app_spec("d", Some(&map(&[(RESUME_GRACE, "soon")])));
        assert!(
            w[0].to_string().contains("from 1s to 1h") && w[0].to_string().contains("30s"),
            "the warning names the bounds and the default: {}",
            w[0]
        );
    }

    #[test]
    fn several_bad_values_each_warn_and_good_ones_still_apply() {
        let a = map(&[(TICKETS_MAX, "x"), (TICKETS_SPARE, "5"), (COOLDOWN, "-3")]);
        let (spec, warnings) = app_spec("d", Some(&a));
        assert_eq!(warnings.len(), 2);
        assert_eq!(spec.settings.tickets_max, 1);
        assert_eq!(spec.settings.tickets_spare, 5);
        assert_eq!(spec.settings.cooldown, Duration::from_secs(10));
    }

    #[test]
    fn numbers_and_booleans_tolerate_whitespace_and_case() {
        let a = map(&[(TICKETS_MAX, " 4 "), (DNS, "TRUE"), (APP_NAME, " ")]);
        let (spec, warnings) = app_spec("d", Some(&a));
        assert!(warnings.is_empty());
        assert_eq!(spec.settings.tickets_max, 4);
        assert!(spec.dns);
        assert_eq!(spec.name, "d", "a blank name means the Deployment's");
        for f in ["false", "0", "F"] {
            assert!(!app_spec("d", Some(&map(&[(DNS, f)]))).0.dns);
        }
    }

    #[test]
    fn enabled_only_for_exactly_true() {
        assert!(enabled(Some(&map(&[(ENABLED_LABEL, "true")]))));
        for v in ["false", "True", "yes", ""] {
            assert!(!enabled(Some(&map(&[(ENABLED_LABEL, v)]))), "{v:?}");
        }
        assert!(!enabled(None));
        assert!(autoscaled(Some(&map(&[(SCALED_LABEL, "true")]))));
        assert!(
            !autoscaled(Some(&map(&[("ipb-halle.de/k8sticket.scaled", "true")]))),
            "k8sTicket spells it with a capital T"
        );
        assert_eq!(pod_app(Some(&map(&[(APP_NAME, "a")]))), Some("a"));
        assert_eq!(pod_app(Some(&map(&[(APP_NAME, "")]))), None);
    }

    #[test]
    fn pod_target_prefers_the_pod_then_the_template() {
        let (t, w) = pod_target(None, None);
        assert_eq!(
            t,
            PodTarget {
                port: 80,
                path: "/".into()
            }
        );
        assert!(w.is_empty());
        let pod = map(&[(POD_PORT, "3838")]);
        let tpl = map(&[(POD_PORT, "8080"), (POD_PATH, "/app/")]);
        let (t, w) = pod_target(Some(&pod), Some(&tpl));
        assert_eq!(
            t,
            PodTarget {
                port: 3838,
                path: "/app/".into()
            }
        );
        assert!(w.is_empty());
    }

    #[test]
    fn bad_pod_annotations_fall_back() {
        for (k, v) in [
            (POD_PORT, "eighty"),
            (POD_PORT, "0"),
            (POD_PATH, "relative"),
            (POD_PATH, "/a/../b"),
            (POD_PATH, "/a?b"),
        ] {
            let (t, w) = pod_target(Some(&map(&[(k, v)])), None);
            assert_eq!(t, PodTarget::default(), "{k}={v}");
            assert_eq!(w.len(), 1);
            assert_eq!(w[0].annotation, k);
        }
    }

    #[test]
    fn policy_refs() {
        assert_eq!(
            parse_policy_ref("cm/key.wasm"),
            Some(PolicyRef {
                configmap: "cm".into(),
                key: "key.wasm".into()
            })
        );
        assert_eq!(
            parse_policy_ref("cm/key.wasm")
                .map(|p| p.to_string())
                .as_deref(),
            Some("cm/key.wasm")
        );
        for bad in ["", "/", "cm", "/k", "c m/k", "a/b/c"] {
            assert_eq!(parse_policy_ref(bad), None, "{bad:?}");
        }
        assert_eq!(
            app_spec("d", Some(&map(&[(POLICY, "")]))).1,
            vec![],
            "empty: the default, silently"
        );
    }
}
