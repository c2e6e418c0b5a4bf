//! What a Pod object means to an app (pure): ready or not, where its app
//! listens, whether wicket created it.

use std::net::{IpAddr, SocketAddr};

use k8s_openapi::api::core::v1::Pod;

use super::annotations::{self, Map, Warning};
use crate::state::{Backend, PodInfo};

/// A pod as the app sees it: present (with what is known) or gone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum View {
    /// The pod exists and is not terminating.
    Present(PodInfo),
    /// Terminating or deleted: drain it.
    Gone,
}

/// Running, with condition Ready=True.
pub fn is_ready(pod: &Pod) -> bool {
    let Some(status) = pod.status.as_ref() else {
        return false;
    };
    status.phase.as_deref() == Some("Running")
        && status
            .conditions
            .iter()
            .flatten()
            .any(|c| c.type_ == "Ready" && c.status == "True")
}

/// The pod's IP, if it has a valid one.
pub fn pod_ip(pod: &Pod) -> Option<IpAddr> {
    pod.status.as_ref()?.pod_ip.as_deref()?.parse().ok()
}

/// The app's view of `pod`; `template` is the Deployment template's
/// annotations, used for `pod.port`/`pod.path` the pod itself lacks.
pub fn view(pod: &Pod, template: Option<&Map>) -> (View, Vec<Warning>) {
    if pod.metadata.deletion_timestamp.is_some() {
        return (View::Gone, Vec::new());
    }
    let (target, warnings) = annotations::pod_target(pod.metadata.annotations.as_ref(), template);
    let backend =
        pod_ip(pod).map(|ip| Backend::new(SocketAddr::new(ip, target.port), &target.path));
    let info = PodInfo {
        name: pod.metadata.name.clone().unwrap_or_default(),
        ready: is_ready(pod) && backend.is_some(),
        backend,
        autoscaled: annotations::autoscaled(pod.metadata.labels.as_ref()),
    };
    (View::Present(info), warnings)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PodCondition, PodStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

    fn pod(phase: &str, ready: &str, ip: Option<&str>) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some("p".into()),
                labels: Some([(annotations::SCALED_LABEL.to_owned(), "true".to_owned())].into()),
                annotations: Some([(annotations::POD_PORT.to_owned(), "3838".to_owned())].into()),
                ..ObjectMeta::default()
            },
            spec: None,
            status: Some(PodStatus {
                phase: Some(phase.into()),
                pod_ip: ip.map(Into::into),
                conditions: Some(vec![PodCondition {
                    type_: "Ready".into(),
                    status: ready.into(),
                    ..PodCondition::default()
                }]),
                ..PodStatus::default()
            }),
        }
    }

    #[test]
    fn running_and_ready_with_an_ip_serves() {
        let (v, w) = view(
            &pod("Running", "True", Some("10.0.0.7")),
            Some(&[(annotations::POD_PATH.to_owned(), "/app".to_owned())].into()),
        );
        assert!(w.is_empty());
        let View::Present(info) = v else {
            panic!("present")
        };
        assert!(info.ready && info.autoscaled);
        let b = info.backend.expect("backend");
        assert_eq!(b.addr, "10.0.0.7:3838".parse().expect("addr"));
        assert_eq!(b.base_path, "/app/");
    }

    #[test]
    fn not_ready_cases() {
        for (phase, ready, ip) in [
            ("Pending", "True", Some("10.0.0.1")),
            ("Running", "False", Some("10.0.0.1")),
            ("Running", "True", None),
            ("Running", "True", Some("bogus")),
        ] {
            let (v, _) = view(&pod(phase, ready, ip), None);
            let View::Present(info) = v else {
                panic!("present")
            };
            assert!(!info.ready, "{phase} {ready} {ip:?}");
        }
        let mut p = pod("Running", "True", Some("10.0.0.1"));
        p.metadata.deletion_timestamp = Some(Time(k8s_openapi::jiff::Timestamp::now()));
        assert_eq!(view(&p, None).0, View::Gone);
    }
}
