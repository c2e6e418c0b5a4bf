//! A policy component too large for one ConfigMap (the apiserver keeps a
//! ConfigMap under 1 MiB; a Python component is ~6 MB gzip-compressed),
//! carried by several. Pure: no I/O.
//!
//! - The policy ConfigMap (the *head*, labelled `wicket.dev/policy=true`,
//!   named by the apps) holds under its key a small JSON *manifest*
//!   `{"parts": N, "sha256": "<digest of the component>"}` instead of the
//!   component.
//! - Each *part* is a ConfigMap labelled `wicket.dev/policy=true` (so the
//!   same watch and the same RBAC see it) and `wicket.dev/policy-part-of:
//!   <head>`, with one `binaryData` key (the head's key) holding one chunk,
//!   annotated with its index (`wicket.dev/policy-part`) and the whole
//!   component's digest (`wicket.dev/policy-digest`).
//! - The chunks in index order are the component, usually gzip-compressed.
//!
//! A version is assembled only when the head names its digest and parts
//! 0..N-1 of that digest are all present, each once; the host then checks
//! that the assembled bytes (unpacked) hash to the digest. Parts of other
//! versions (an update half applied, or stale) are ignored, so a half
//! applied update never loads and the last good version keeps serving.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::ResourceExt;
use serde::{Deserialize, Serialize};

use super::annotations::{POLICY_DIGEST, POLICY_PART, POLICY_PART_OF};

/// Most parts one component may have.
pub const MAX_PARTS: usize = 32;
/// Most bytes the parts of one component may add up to (as carried, i.e.
/// usually gzip-compressed; Python's is ~6 MB).
pub const MAX_PACKED_BYTES: usize = 32 << 20;
/// Most bytes of parts buffered for one head (all versions together): the
/// parts of a new version arrive while the old ones are still there.
pub const MAX_BUFFERED_BYTES: usize = 2 * MAX_PACKED_BYTES;
/// Default chunk size of `wicket policy configmap`: room under the
/// apiserver's 1 MiB for the key and metadata.
pub const DEFAULT_PART_BYTES: usize = 900 << 10;
/// Largest chunk `wicket policy configmap` writes.
pub const MAX_PART_BYTES: usize = 1000 << 10;

/// What a head's key holds when the component comes in parts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// How many parts (1 to [`MAX_PARTS`]).
    pub parts: usize,
    /// sha256 (lowercase hex) of the component, unpacked.
    pub sha256: String,
}

impl Manifest {
    /// Reads a key's bytes as a manifest. `None`: the bytes are not one
    /// (a component starts with the Wasm or gzip magic bytes, never `{`).
    pub fn read(bytes: &[u8]) -> Option<Result<Self, String>> {
        if bytes.first() != Some(&b'{') {
            return None;
        }
        let m = match serde_json::from_slice::<Self>(bytes) {
            Ok(m) => m,
            Err(e) => return Some(Err(format!("the parts manifest does not parse: {e}"))),
        };
        Some(if !(1..=MAX_PARTS).contains(&m.parts) {
            Err(format!(
                "the parts manifest names {} parts; 1 to {MAX_PARTS} are allowed",
                m.parts
            ))
        } else if !is_digest(&m.sha256) {
            Err("the parts manifest's sha256 is not 64 lowercase hex digits".to_owned())
        } else {
            Ok(m)
        })
    }

    /// The manifest as a key's bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        // Serialising two plain fields cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }
}

fn is_digest(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// One part as read from its ConfigMap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    /// The head it belongs to (label `wicket.dev/policy-part-of`).
    pub head: String,
    /// The head's key it makes up (the part's one `binaryData` key).
    pub key: String,
    /// Its index among the parts.
    pub index: usize,
    /// The digest of the component it belongs to.
    pub digest: String,
    /// Its chunk.
    pub bytes: Vec<u8>,
}

impl Part {
    /// Reads `cm` as a part. `None`: it is not one (no
    /// `wicket.dev/policy-part-of` label); an error says what is wrong.
    pub fn read(cm: &ConfigMap) -> Option<Result<Self, String>> {
        let head = cm.labels().get(POLICY_PART_OF)?.clone();
        Some(Self::read_part(cm, head))
    }

    fn read_part(cm: &ConfigMap, head: String) -> Result<Self, String> {
        let annotation = |k: &str| cm.annotations().get(k).map(|v| v.trim().to_owned());
        let index = annotation(POLICY_PART)
            .and_then(|v| v.parse::<usize>().ok())
            .filter(|i| *i < MAX_PARTS)
            .ok_or_else(|| {
                format!(
                    "its annotation {POLICY_PART} is not an index from 0 to {}",
                    MAX_PARTS - 1
                )
            })?;
        let digest = annotation(POLICY_DIGEST)
            .filter(|d| is_digest(d))
            .ok_or_else(|| {
                format!("its annotation {POLICY_DIGEST} is not a sha256 digest (64 lowercase hex digits)")
            })?;
        let data = cm.binary_data.as_ref();
        let (key, bytes) = match data.map(|d| d.iter().collect::<Vec<_>>()).as_deref() {
            Some([(key, bytes)]) => ((*key).clone(), bytes.0.clone()),
            _ => {
                return Err("a part holds exactly one binaryData key (the policy's key)".to_owned());
            }
        };
        Ok(Self {
            head,
            key,
            index,
            digest,
            bytes,
        })
    }
}

/// Why a head's key cannot be assembled (yet).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incomplete {
    /// Some parts of the version are not there (yet): an update in
    /// progress, or one applied in part. Says which.
    Missing(String),
    /// The parts of the version contradict each other or the limits.
    Bad(String),
}

impl std::fmt::Display for Incomplete {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Missing(s) | Self::Bad(s) => f.write_str(s),
        }
    }
}

/// The parts seen in the watched namespaces, by namespace and ConfigMap
/// name (sorted, so that messages are stable).
#[derive(Debug, Default)]
pub struct Parts {
    by_name: BTreeMap<(String, String), Part>,
}

impl Parts {
    /// Keeps `part` (ConfigMap `ns/name`), replacing what that ConfigMap
    /// held before. Refused if the head's buffered parts would exceed
    /// [`MAX_BUFFERED_BYTES`] (the ConfigMap's previous part is dropped).
    pub fn insert(&mut self, ns: &str, name: &str, part: Part) -> Result<(), String> {
        let id = (ns.to_owned(), name.to_owned());
        self.by_name.remove(&id);
        let buffered: usize = self
            .by_name
            .iter()
            .filter(|((n, _), p)| n == ns && p.head == part.head)
            .map(|(_, p)| p.bytes.len())
            .sum();
        if buffered + part.bytes.len() > MAX_BUFFERED_BYTES {
            return Err(format!(
                "the parts of {} would exceed {} MiB; delete the parts of old versions",
                part.head,
                MAX_BUFFERED_BYTES >> 20
            ));
        }
        self.by_name.insert(id, part);
        Ok(())
    }

    /// Forgets ConfigMap `ns/name`; the head it was a part of, if any.
    pub fn remove(&mut self, ns: &str, name: &str) -> Option<String> {
        self.by_name
            .remove(&(ns.to_owned(), name.to_owned()))
            .map(|p| p.head)
    }

    /// The bytes of head `ns/head`'s `key` as `manifest` describes them:
    /// the chunks of its version in index order. The caller unpacks them
    /// and checks the digest.
    pub fn assemble(
        &self,
        ns: &str,
        head: &str,
        key: &str,
        manifest: &Manifest,
    ) -> Result<Vec<u8>, Incomplete> {
        let ours = |p: &Part| p.head == head && p.key == key;
        let of_head = self
            .by_name
            .iter()
            .filter(|((n, _), p)| n == ns && ours(p))
            .map(|((_, name), p)| (name.as_str(), p));
        let mut slots: Vec<Option<(&str, &Part)>> = vec![None; manifest.parts];
        let mut others: BTreeMap<usize, Vec<(&str, &str)>> = BTreeMap::new();
        for (name, p) in of_head {
            if p.digest != manifest.sha256 {
                others.entry(p.index).or_default().push((name, &p.digest));
                continue;
            }
            let Some(slot) = slots.get_mut(p.index) else {
                return Err(Incomplete::Bad(format!(
                    "part {name} has index {}, but the manifest of {head}/{key} names {} parts",
                    p.index, manifest.parts
                )));
            };
            if let Some((first, _)) = slot {
                return Err(Incomplete::Bad(format!(
                    "parts {first} and {name} both have index {} of version {}",
                    p.index,
                    short(&manifest.sha256)
                )));
            }
            *slot = Some((name, p));
        }
        let missing: Vec<String> = slots
            .iter()
            .enumerate()
            .filter(|(_, s)| s.is_none())
            .map(|(i, _)| match others.get(&i).map(Vec::as_slice) {
                Some([(name, digest), ..]) => {
                    format!("part {i} ({name} holds version {})", short(digest))
                }
                _ => format!("part {i}"),
            })
            .collect();
        if !missing.is_empty() {
            return Err(Incomplete::Missing(format!(
                "{} of {} parts of version {} missing: {}",
                missing.len(),
                manifest.parts,
                short(&manifest.sha256),
                missing.join(", ")
            )));
        }
        let total: usize = slots.iter().flatten().map(|(_, p)| p.bytes.len()).sum();
        if total > MAX_PACKED_BYTES {
            return Err(Incomplete::Bad(format!(
                "the parts of version {} add up to {total} bytes, more than {} MiB",
                short(&manifest.sha256),
                MAX_PACKED_BYTES >> 20
            )));
        }
        let mut out = Vec::with_capacity(total);
        for (_, p) in slots.iter().flatten() {
            out.extend_from_slice(&p.bytes);
        }
        Ok(out)
    }
}

/// The first 12 hex digits of a digest, as in logs and Events.
fn short(digest: &str) -> &str {
    digest.get(..12).unwrap_or(digest)
}

/// Splits `packed` (the component as carried) into chunks of at most
/// `part_bytes`; an error if that makes more than [`MAX_PARTS`] or the
/// whole exceeds [`MAX_PACKED_BYTES`].
pub fn split(packed: &[u8], part_bytes: usize) -> Result<Vec<&[u8]>, String> {
    if packed.len() > MAX_PACKED_BYTES {
        return Err(format!(
            "{} bytes compressed: more than the {} MiB a policy in parts may have",
            packed.len(),
            MAX_PACKED_BYTES >> 20
        ));
    }
    let chunks: Vec<&[u8]> = packed.chunks(part_bytes.max(1)).collect();
    if chunks.len() > MAX_PARTS {
        return Err(format!(
            "{} bytes in parts of {part_bytes} bytes make {} parts; at most {MAX_PARTS} are allowed",
            packed.len(),
            chunks.len()
        ));
    }
    Ok(chunks)
}

#[cfg(test)]
mod tests {
    use k8s_openapi::ByteString;
    use kube::api::ObjectMeta;

    use super::*;

    const D1: &str = "1111111111111111111111111111111111111111111111111111111111111111";
    const D2: &str = "2222222222222222222222222222222222222222222222222222222222222222";

    fn part_cm(name: &str, head: &str, index: &str, digest: &str, bytes: &[u8]) -> ConfigMap {
        ConfigMap {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("ns".into()),
                labels: Some(BTreeMap::from([
                    ("wicket.dev/policy".into(), "true".into()),
                    (POLICY_PART_OF.into(), head.into()),
                ])),
                annotations: Some(BTreeMap::from([
                    (POLICY_PART.into(), index.into()),
                    (POLICY_DIGEST.into(), digest.into()),
                ])),
                ..ObjectMeta::default()
            },
            binary_data: Some(BTreeMap::from([(
                "p.wasm".into(),
                ByteString(bytes.to_vec()),
            )])),
            ..ConfigMap::default()
        }
    }

    fn put(parts: &mut Parts, cm: &ConfigMap) {
        let p = Part::read(cm).expect("a part").expect("valid");
        parts.insert("ns", &cm.name_any(), p).expect("buffered");
    }

    fn manifest(n: usize, d: &str) -> Manifest {
        Manifest {
            parts: n,
            sha256: d.into(),
        }
    }

    #[test]
    fn parts_in_any_order_assemble_in_index_order() {
        let mut parts = Parts::default();
        for (name, i, b) in [("h-2", "2", "cc"), ("h-0", "0", "aa"), ("h-1", "1", "bb")] {
            put(&mut parts, &part_cm(name, "h", i, D1, b.as_bytes()));
        }
        assert_eq!(
            parts.assemble("ns", "h", "p.wasm", &manifest(3, D1)),
            Ok(b"aabbcc".to_vec())
        );
        // Not another namespace's, head's or key's.
        assert!(matches!(
            parts.assemble("other", "h", "p.wasm", &manifest(3, D1)),
            Err(Incomplete::Missing(_))
        ));
        assert!(matches!(
            parts.assemble("ns", "h", "q.wasm", &manifest(3, D1)),
            Err(Incomplete::Missing(_))
        ));
    }

    #[test]
    fn a_missing_part_names_it_and_what_holds_its_place() {
        let mut parts = Parts::default();
        // Version 1 complete; version 2 half applied over it (part 1 still
        // holds version 1).
        for (i, d) in [("0", D2), ("1", D1), ("2", D2)] {
            put(
                &mut parts,
                &part_cm(&format!("h-part-{i}"), "h", i, d, b"x"),
            );
        }
        let Err(Incomplete::Missing(why)) = parts.assemble("ns", "h", "p.wasm", &manifest(3, D2))
        else {
            panic!("assembled a half-applied version")
        };
        assert!(
            why.contains("1 of 3 parts of version 222222222222 missing: part 1 (h-part-1 holds version 111111111111)"),
            "{why}"
        );
        // Completing it assembles it.
        put(&mut parts, &part_cm("h-part-1", "h", "1", D2, b"y"));
        assert_eq!(
            parts.assemble("ns", "h", "p.wasm", &manifest(3, D2)),
            Ok(b"xyx".to_vec())
        );
        // A part deleted: missing again.
        assert_eq!(parts.remove("ns", "h-part-2").as_deref(), Some("h"));
        let Err(Incomplete::Missing(why)) = parts.assemble("ns", "h", "p.wasm", &manifest(3, D2))
        else {
            panic!("assembled without part 2")
        };
        assert!(why.ends_with("missing: part 2"), "{why}");
    }

    #[test]
    fn an_extra_part_of_another_version_is_ignored() {
        let mut parts = Parts::default();
        put(&mut parts, &part_cm("h-part-0", "h", "0", D2, b"a"));
        // A stale part of a longer old version, beyond the new count.
        put(&mut parts, &part_cm("h-part-1", "h", "1", D1, b"old"));
        assert_eq!(
            parts.assemble("ns", "h", "p.wasm", &manifest(1, D2)),
            Ok(b"a".to_vec())
        );
    }

    #[test]
    fn contradicting_parts_are_bad() {
        let mut parts = Parts::default();
        put(&mut parts, &part_cm("a", "h", "0", D1, b"a"));
        put(&mut parts, &part_cm("b", "h", "0", D1, b"b"));
        let Err(Incomplete::Bad(why)) = parts.assemble("ns", "h", "p.wasm", &manifest(1, D1))
        else {
            panic!("two parts with one index")
        };
        assert!(why.contains("parts a and b both have index 0"), "{why}");
        parts.remove("ns", "b");
        put(&mut parts, &part_cm("c", "h", "5", D1, b"c"));
        let Err(Incomplete::Bad(why)) = parts.assemble("ns", "h", "p.wasm", &manifest(1, D1))
        else {
            panic!("an index beyond the count")
        };
        assert!(why.contains("part c has index 5"), "{why}");
    }

    #[test]
    fn malformed_parts_and_manifests_are_refused() {
        let bad = |cm: ConfigMap| Part::read(&cm).expect("a part").expect_err("malformed");
        assert!(bad(part_cm("a", "h", "x", D1, b"a")).contains(POLICY_PART));
        assert!(bad(part_cm("a", "h", "32", D1, b"a")).contains(POLICY_PART));
        assert!(bad(part_cm("a", "h", "0", "abc", b"a")).contains(POLICY_DIGEST));
        let mut two = part_cm("a", "h", "0", D1, b"a");
        two.binary_data
            .as_mut()
            .expect("data")
            .insert("q".into(), ByteString(vec![1]));
        assert!(bad(two).contains("exactly one binaryData key"));
        let mut plain = part_cm("a", "h", "0", D1, b"a");
        plain.metadata.labels = None;
        assert!(Part::read(&plain).is_none(), "not a part");

        assert_eq!(Manifest::read(b"\0asm\x0d\0\x01\0"), None, "a component");
        assert_eq!(Manifest::read(&[0x1f, 0x8b, 8]), None, "gzip");
        let m = manifest(7, D1);
        assert_eq!(Manifest::read(&m.to_bytes()), Some(Ok(m)));
        for (text, why) in [
            (r#"{"parts": 33, "sha256": "x"}"#, "1 to 32"),
            (r#"{"parts": 0, "sha256": "x"}"#, "1 to 32"),
            (r#"{"parts": 2, "sha256": "ABC"}"#, "64 lowercase hex"),
            (r#"{"parts": 2}"#, "does not parse"),
            (
                r#"{"parts": 2, "sha256": "x", "more": 1}"#,
                "does not parse",
            ),
        ] {
            let got = Manifest::read(text.as_bytes()).expect("a manifest");
            assert!(got.expect_err(text).contains(why), "{text}");
        }
    }

    #[test]
    fn sizes_are_bounded() {
        assert_eq!(split(b"abcde", 2).expect("fits"), [&b"ab"[..], b"cd", b"e"]);
        let many = vec![0u8; MAX_PARTS + 1];
        assert!(
            split(&many, 1)
                .expect_err("too many")
                .contains("at most 32")
        );
        assert!(split(&many, 2).is_ok());
        let huge = vec![0u8; MAX_PACKED_BYTES + 1];
        assert!(
            split(&huge, MAX_PART_BYTES)
                .expect_err("too big")
                .contains("32 MiB")
        );

        // Parts that add up to more than the cap are not assembled.
        let mut parts = Parts::default();
        let chunk = vec![0u8; MAX_PACKED_BYTES / 2 + 1];
        put(&mut parts, &part_cm("a", "h", "0", D1, &chunk));
        put(&mut parts, &part_cm("b", "h", "1", D1, &chunk));
        let Err(Incomplete::Bad(why)) = parts.assemble("ns", "h", "p.wasm", &manifest(2, D1))
        else {
            panic!("assembled past the cap")
        };
        assert!(why.contains("more than 32 MiB"), "{why}");
        // And the buffer of one head is bounded too.
        put(&mut parts, &part_cm("c", "h", "2", D2, &chunk));
        let p = Part::read(&part_cm("d", "h", "3", D2, &chunk))
            .expect("part")
            .expect("valid");
        assert!(
            parts
                .insert("ns", "d", p)
                .expect_err("over")
                .contains("64 MiB")
        );
    }
}
