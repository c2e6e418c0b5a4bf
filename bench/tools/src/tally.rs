//! Error counts by kind, with the first few messages of each, shared by the
//! tasks of a run.

use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError};

/// Examples kept per kind.
const EXAMPLES: usize = 5;

/// Errors by kind (a short label), with up to [`EXAMPLES`] messages each.
#[derive(Debug, Default)]
pub struct Errors(Mutex<BTreeMap<&'static str, (u64, Vec<String>)>>);

impl Errors {
    /// Counts one error of `kind`.
    pub fn add(&self, kind: &'static str, what: &dyn std::fmt::Display) {
        let mut m = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let e = m.entry(kind).or_default();
        e.0 += 1;
        if e.1.len() < EXAMPLES {
            e.1.push(what.to_string());
        }
    }

    /// All errors so far.
    pub fn total(&self) -> u64 {
        let m = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        m.values().map(|(n, _)| n).sum()
    }

    /// A copy of the counts and examples.
    pub fn snapshot(&self) -> BTreeMap<&'static str, (u64, Vec<String>)> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_keeps_a_few_examples() {
        let e = Errors::default();
        for i in 0..7 {
            e.add("a", &i);
        }
        e.add("b", &"x");
        assert_eq!(e.total(), 8);
        let s = e.snapshot();
        assert_eq!(s["a"].0, 7);
        assert_eq!(s["a"].1, ["0", "1", "2", "3", "4"]);
        assert_eq!(s["b"], (1, vec!["x".to_owned()]));
    }
}
