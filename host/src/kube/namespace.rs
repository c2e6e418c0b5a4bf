//! Which namespaces the host watches.

/// Where the service-account namespace is mounted in a pod.
pub const SERVICE_ACCOUNT_NAMESPACE: &str =
    "/var/run/secrets/kubernetes.io/serviceaccount/namespace";

/// The namespaces to watch: those named in the config; else the one the host
/// runs in: the downward API's `POD_NAMESPACE`, then the service-account
/// namespace file, then the kubeconfig context's namespace, then `default`.
pub fn resolve(
    configured: &[String],
    pod_namespace: Option<&str>,
    sa_file: Option<&str>,
    kubeconfig: Option<&str>,
) -> Vec<String> {
    if !configured.is_empty() {
        let mut v: Vec<String> = configured
            .iter()
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .collect();
        v.sort();
        v.dedup();
        if !v.is_empty() {
            return v;
        }
    }
    let own = [pod_namespace, sa_file, kubeconfig]
        .into_iter()
        .flatten()
        .map(str::trim)
        .find(|s| !s.is_empty())
        .unwrap_or("default");
    vec![own.to_owned()]
}

/// [`resolve`] with the process environment, the mounted file and the
/// client's default namespace (the kubeconfig context's, or the mounted one).
pub fn from_environment(configured: &[String], client_default: &str) -> Vec<String> {
    let env = std::env::var("POD_NAMESPACE").ok();
    let file = std::fs::read_to_string(SERVICE_ACCOUNT_NAMESPACE).ok();
    resolve(
        configured,
        env.as_deref(),
        file.as_deref(),
        Some(client_default),
    )
}

#[cfg(test)]
mod tests {
    use super::resolve;

    #[test]
    fn order_of_precedence() {
        let cfg = vec!["b".to_owned(), "a".to_owned(), "a".to_owned()];
        assert_eq!(
            resolve(&cfg, Some("env"), Some("file"), Some("ctx")),
            vec!["a", "b"]
        );
        assert_eq!(
            resolve(&[], Some("env"), Some("file"), Some("ctx")),
            vec!["env"]
        );
        assert_eq!(
            resolve(&[], Some(" "), Some("file\n"), Some("ctx")),
            vec!["file"]
        );
        assert_eq!(resolve(&[], None, None, Some("ctx")), vec!["ctx"]);
        assert_eq!(resolve(&[], None, None, None), vec!["default"]);
        assert_eq!(resolve(&[String::new()], None, None, None), vec!["default"]);
    }
}
