//! `wicket policy configmap POLICY.wasm --name NAME`: prints the ConfigMaps
//! that carry a policy component into a cluster, ready for
//! `kubectl apply --server-side -f -`. The component is gzip-compressed; if
//! that fits one ConfigMap it is one, as `kubectl create configmap` would
//! make it; else it is split into parts (see `kube::policy_parts`), printed
//! before the policy ConfigMap that names them, so that the host sees the
//! new version complete when the policy ConfigMap changes.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::Path;

use anyhow::{Context, bail};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::ObjectMeta;
use sha2::{Digest, Sha256};

use crate::kube::annotations as ann;
use crate::kube::policy_parts::{self, Manifest};
use crate::policy::LimitOverrides;

/// What to make.
#[derive(Debug, Clone)]
pub struct Options {
    /// The policy ConfigMap's name (what apps name in `wicket.dev/policy`).
    pub name: String,
    /// Its namespace (else kubectl's current one).
    pub namespace: Option<String>,
    /// The key (else the file's name).
    pub key: Option<String>,
    /// Limits to set as annotations.
    pub limits: LimitOverrides,
    /// Largest chunk in one part.
    pub part_bytes: usize,
}

/// Prints the ConfigMaps for the component at `file` to stdout, and a
/// summary to stderr.
pub fn run(file: &Path, options: &Options) -> anyhow::Result<()> {
    let component = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let key = match &options.key {
        Some(k) => k.clone(),
        None => file
            .file_name()
            .and_then(|n| n.to_str())
            .context("the file has no name to use as the key; give --key")?
            .to_owned(),
    };
    // A mistake is reported before, not after, the note and the seconds.
    check_input(&component, &key, options)?;
    // stdout is the YAML kubectl reads: the note goes to stderr.
    if let Some(note) = crate::policy::large_component_notice(
        "compressing",
        &file.display().to_string(),
        component.len() as u64,
    ) {
        eprintln!("{note}");
    }
    let cms = configmaps(&component, &key, options)?;
    let yaml = to_yaml(&cms)?;
    std::io::stdout()
        .write_all(yaml.as_bytes())
        .context("writing the ConfigMaps")?;
    eprintln!(
        "{}",
        summary(&component, &key, cms.len().saturating_sub(1), options)
    );
    Ok(())
}

/// What was made and the two steps that follow: applying it, and the
/// annotation that makes an app use it.
fn summary(component: &[u8], key: &str, parts: usize, o: &Options) -> String {
    let digest = hex::encode(Sha256::digest(component));
    let ns = o
        .namespace
        .as_deref()
        .map_or_else(String::new, |n| format!("-n {n} "));
    format!(
        "{}/{key}: component {} ({} bytes), {}; apply with `kubectl apply --server-side -f -`, \
         then point an app at it: `kubectl {ns}annotate deployment APP wicket.dev/policy={}/{key}`",
        o.name,
        &digest[..12],
        component.len(),
        if parts == 0 {
            "one ConfigMap".to_owned()
        } else {
            format!("{parts} parts and the policy ConfigMap naming them")
        },
        o.name
    )
}

/// A ConfigMap name (DNS subdomain).
fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && s.starts_with(|c: char| c.is_ascii_alphanumeric())
        && s.ends_with(|c: char| c.is_ascii_alphanumeric())
}

/// A ConfigMap key.
fn valid_key(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s != "."
        && s != ".."
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// Refuses what would make a ConfigMap the API server or wicket refuses,
/// with the reason; before the slow part (compression).
fn check_input(component: &[u8], key: &str, o: &Options) -> anyhow::Result<()> {
    if !component.starts_with(b"\0asm") {
        bail!(
            "not a WebAssembly component (give the .wasm itself, not compressed: this command compresses it)"
        );
    }
    if !valid_name(&o.name) {
        bail!(
            "--name {:?} is not a ConfigMap name (lowercase letters, digits, '-' and '.')",
            o.name
        );
    }
    if !valid_key(key) {
        bail!("the key {key:?} is not a ConfigMap key (letters, digits, '-', '_' and '.')");
    }
    if !(1024..=policy_parts::MAX_PART_BYTES).contains(&o.part_bytes) {
        bail!(
            "--part-bytes must be from 1024 to {}",
            policy_parts::MAX_PART_BYTES
        );
    }
    o.limits
        .validate()
        .map_err(|(k, why)| anyhow::anyhow!("--{}: {why}", k.replace('_', "-")))
}

/// The ConfigMaps that carry `component` under `key`: the parts (if any)
/// first, the policy ConfigMap last.
pub fn configmaps(component: &[u8], key: &str, o: &Options) -> anyhow::Result<Vec<ConfigMap>> {
    check_input(component, key, o)?;
    let packed = gzip(component).context("compressing the component")?;
    let digest = hex::encode(Sha256::digest(component));
    let meta =
        |name: String, labels: &[(&str, &str)], annotations: Vec<(&str, String)>| ObjectMeta {
            name: Some(name),
            namespace: o.namespace.clone(),
            labels: Some(
                labels
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect(),
            ),
            annotations: (!annotations.is_empty()).then(|| {
                annotations
                    .into_iter()
                    .map(|(k, v)| (k.to_owned(), v))
                    .collect()
            }),
            ..ObjectMeta::default()
        };
    let limits: Vec<(&str, String)> = [
        (ann::POLICY_TIMEOUT_MS, o.limits.timeout_ms),
        (ann::POLICY_MEMORY_MIB, o.limits.memory_mib),
        (
            ann::POLICY_INSTANTIATE_TIMEOUT_MS,
            o.limits.instantiate_timeout_ms,
        ),
    ]
    .into_iter()
    .filter_map(|(k, v)| v.map(|v| (k, v.to_string())))
    .collect();
    let data = |bytes: &[u8]| {
        Some(BTreeMap::from([(
            key.to_owned(),
            ByteString(bytes.to_vec()),
        )]))
    };
    let head = |bytes: &[u8]| ConfigMap {
        metadata: meta(
            o.name.clone(),
            &[(ann::POLICY_LABEL, "true")],
            limits.clone(),
        ),
        binary_data: data(bytes),
        ..ConfigMap::default()
    };
    if packed.len() <= o.part_bytes {
        return Ok(vec![head(&packed)]);
    }
    if o.name.len() > 63 {
        bail!("--name must be at most 63 characters for a policy in parts (it is a label value)");
    }
    let chunks = policy_parts::split(&packed, o.part_bytes).map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut out: Vec<ConfigMap> = chunks
        .iter()
        .enumerate()
        .map(|(i, chunk)| ConfigMap {
            metadata: meta(
                format!("{}-part-{i}", o.name),
                &[(ann::POLICY_LABEL, "true"), (ann::POLICY_PART_OF, &o.name)],
                vec![
                    (ann::POLICY_PART, i.to_string()),
                    (ann::POLICY_DIGEST, digest.clone()),
                ],
            ),
            binary_data: data(chunk),
            ..ConfigMap::default()
        })
        .collect();
    let manifest = Manifest {
        parts: chunks.len(),
        sha256: digest,
    };
    out.push(head(&manifest.to_bytes()));
    Ok(out)
}

/// Gzip at the best compression: what a policy ConfigMap key holds.
pub(crate) fn gzip(bytes: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    e.write_all(bytes)?;
    e.finish()
}

/// The ConfigMaps as YAML documents. Written by hand rather than with a
/// YAML crate (the workspace has none): the shape is fixed and every
/// scalar is written as a JSON string, which YAML reads as it is.
pub fn to_yaml(cms: &[ConfigMap]) -> anyhow::Result<String> {
    use std::fmt::Write as _;
    let q = |s: &str| serde_json::to_string(s).unwrap_or_default();
    let mut y = String::new();
    for cm in cms {
        let m = &cm.metadata;
        y.push_str("---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n");
        writeln!(y, "  name: {}", q(m.name.as_deref().unwrap_or_default()))?;
        if let Some(ns) = &m.namespace {
            writeln!(y, "  namespace: {}", q(ns))?;
        }
        for (field, map) in [("labels", &m.labels), ("annotations", &m.annotations)] {
            if let Some(map) = map {
                writeln!(y, "  {field}:")?;
                for (k, v) in map {
                    writeln!(y, "    {}: {}", q(k), q(v))?;
                }
            }
        }
        y.push_str("binaryData:\n");
        for (k, v) in cm.binary_data.iter().flatten() {
            // A manifest, readable (binaryData is base64).
            if let Some(Ok(m)) = Manifest::read(&v.0) {
                writeln!(y, "  # {}", String::from_utf8_lossy(&m.to_bytes()))?;
            }
            // ByteString serialises as its base64 JSON string.
            writeln!(y, "  {}: {}", q(k), serde_json::to_string(v)?)?;
        }
    }
    Ok(y)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kube::policy_parts::{Part, Parts};
    use crate::policy::DEFAULT_POLICY;

    fn options(part_bytes: usize) -> Options {
        Options {
            name: "policies".into(),
            namespace: Some("apps".into()),
            key: None,
            limits: LimitOverrides {
                memory_mib: Some(64),
                ..LimitOverrides::default()
            },
            part_bytes,
        }
    }

    #[test]
    fn a_small_component_is_one_gzipped_configmap() {
        let cms = configmaps(
            DEFAULT_POLICY,
            "p.wasm",
            &options(policy_parts::DEFAULT_PART_BYTES),
        )
        .expect("made");
        assert_eq!(cms.len(), 1);
        let cm = &cms[0];
        assert_eq!(cm.metadata.name.as_deref(), Some("policies"));
        assert_eq!(
            cm.metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(ann::POLICY_LABEL))
                .map(String::as_str),
            Some("true")
        );
        assert_eq!(
            cm.metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(ann::POLICY_MEMORY_MIB))
                .map(String::as_str),
            Some("64")
        );
        let packed = &cm.binary_data.as_ref().expect("data")["p.wasm"].0;
        assert!(packed.starts_with(&[0x1f, 0x8b]), "gzip");
        assert!(packed.len() < DEFAULT_POLICY.len());
    }

    #[test]
    fn a_large_component_is_parts_that_assemble_to_it() {
        let part_bytes = 4096;
        let cms = configmaps(DEFAULT_POLICY, "p.wasm", &options(part_bytes)).expect("made");
        let (head, parts) = cms.split_last().expect("some");
        assert!(parts.len() >= 2, "{} parts", parts.len());
        let manifest = Manifest::read(&head.binary_data.as_ref().expect("data")["p.wasm"].0)
            .expect("a manifest")
            .expect("valid");
        assert_eq!(manifest.parts, parts.len());
        assert_eq!(manifest.sha256, hex::encode(Sha256::digest(DEFAULT_POLICY)));
        let mut buffered = Parts::default();
        // Reversed: the order they arrive in does not matter.
        for cm in parts.iter().rev() {
            let p = Part::read(cm).expect("a part").expect("valid");
            assert!(p.bytes.len() <= part_bytes);
            assert_eq!(p.head, "policies");
            let name = cm.metadata.name.clone().expect("name");
            assert_eq!(name, format!("policies-part-{}", p.index));
            buffered.insert("apps", &name, p).expect("kept");
        }
        let packed = buffered
            .assemble("apps", "policies", "p.wasm", &manifest)
            .expect("complete");
        let mut unpacked = Vec::new();
        use std::io::Read as _;
        flate2::read::GzDecoder::new(&packed[..])
            .read_to_end(&mut unpacked)
            .expect("gunzip");
        assert_eq!(unpacked, DEFAULT_POLICY);

        // YAML: one document each, the policy ConfigMap last.
        let yaml = to_yaml(&cms).expect("yaml");
        let docs: Vec<&str> = yaml.split("---\n").filter(|d| !d.is_empty()).collect();
        assert_eq!(docs.len(), cms.len());
        assert!(docs[cms.len() - 1].contains("  name: \"policies\"\n  namespace: \"apps\"\n"));
        assert!(docs[0].contains("    \"wicket.dev/policy-part-of\": \"policies\"\n"));
        assert!(docs[cms.len() - 1].contains(&format!(
            "binaryData:\n  # {{\"parts\":{},\"sha256\":\"{}\"}}\n",
            manifest.parts, manifest.sha256
        )));
    }

    #[test]
    fn the_summary_names_the_annotation_that_selects_the_policy() {
        let line = summary(DEFAULT_POLICY, "policy.wasm", 0, &options(4096));
        assert!(line.contains("one ConfigMap"), "{line}");
        assert!(
            line.contains(
                "kubectl -n apps annotate deployment APP wicket.dev/policy=policies/policy.wasm"
            ),
            "{line}"
        );
        let o = Options {
            namespace: None,
            ..options(4096)
        };
        let line = summary(DEFAULT_POLICY, "p.wasm", 7, &o);
        assert!(line.contains("7 parts"), "{line}");
        assert!(
            line.contains("`kubectl annotate deployment APP wicket.dev/policy=policies/p.wasm`"),
            "{line}"
        );
    }

    #[test]
    fn a_large_component_is_announced_before_it_is_compressed() {
        let note =
            crate::policy::large_component_notice("compressing", "spare-py.wasm", 18_462_599)
                .expect("18 MB is slow");
        assert!(
            note.starts_with("compressing spare-py.wasm (18.5 MB)"),
            "{note}"
        );
        // The same threshold as compiling: a Rust component (~100 KB) is quiet.
        assert_eq!(
            crate::policy::large_component_notice("compressing", "p.wasm", 120_000),
            None
        );
        let at = crate::policy::SLOW_COMPONENT_BYTES;
        assert!(crate::policy::large_component_notice("compressing", "p.wasm", at).is_some());
        assert_eq!(
            crate::policy::large_component_notice("compressing", "p.wasm", at - 1),
            None
        );
    }

    #[test]
    fn bad_input_is_refused_with_the_reason() {
        let o = options(policy_parts::DEFAULT_PART_BYTES);
        let err = |c: &[u8], key: &str, o: &Options| {
            configmaps(c, key, o).expect_err("refused").to_string()
        };
        assert!(err(b"\x1f\x8b\x08", "p.wasm", &o).contains("not compressed"));
        assert!(err(DEFAULT_POLICY, "p/wasm", &o).contains("not a ConfigMap key"));
        let mut upper = o.clone();
        upper.name = "Policies".into();
        assert!(err(DEFAULT_POLICY, "p.wasm", &upper).contains("not a ConfigMap name"));
        let mut tiny = o.clone();
        tiny.part_bytes = 10;
        assert!(err(DEFAULT_POLICY, "p.wasm", &tiny).contains("--part-bytes"));
        let mut limit = o.clone();
        limit.limits.timeout_ms = Some(0);
        assert!(err(DEFAULT_POLICY, "p.wasm", &limit).contains("--timeout-ms"));
        let mut long = options(1024);
        long.name = "a".repeat(64);
        assert!(err(DEFAULT_POLICY, "p.wasm", &long).contains("63 characters"));
    }
}
