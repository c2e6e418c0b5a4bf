//! Pods: the [`Pod`] struct and the zero-copy [`Pods`] iterator that decodes
//! them from the host's packed bytes.
//!
//! The contract sends the pods as one block of little-endian `u32` words,
//! `pod-words` per pod (7 in 0.2.0: id, capacity, tickets, phase, autoscaled,
//! idle seconds, age seconds). [`Pods`] reads each pod in place from that
//! block with the stride the host sent, so a later host that appends words
//! still works, and nothing is copied or allocated to walk the pods.

use std::iter::FusedIterator;

/// Words per pod that this SDK knows (0.2.0). The host may send more.
pub const KNOWN_POD_WORDS: u32 = 7;

/// Bytes of the words this SDK reads per pod.
const KNOWN_POD_BYTES: usize = KNOWN_POD_WORDS as usize * 4;

/// Where a pod is in its life, as the host sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Phase {
    /// Being created or booting: incoming capacity, no tickets, never deleted.
    Starting,
    /// Running and ready: may receive tickets up to its capacity.
    Ready,
    /// Leaving: no new tickets; the host removes it once it is empty.
    Draining,
}

impl Phase {
    /// The phase a packed word stands for. Unknown values read as
    /// [`Phase::Draining`], the phase that allows nothing (the contract's rule).
    #[inline]
    pub const fn from_word(word: u32) -> Self {
        match word {
            0 => Self::Starting,
            1 => Self::Ready,
            _ => Self::Draining,
        }
    }

    /// The packed word for this phase.
    pub const fn to_word(self) -> u32 {
        match self {
            Self::Starting => 0,
            Self::Ready => 1,
            Self::Draining => 2,
        }
    }
}

/// One pod of the app.
///
/// Decisions name pods by [`Pod::id`], never by position. In tests, build
/// pods with [`Pod::ready`], [`Pod::starting`] or [`Pod::draining`] and the
/// chained setters:
///
/// ```
/// use wicket_policy_sdk::{Phase, Pod};
///
/// let pod = Pod::ready(7).capacity(2).tickets(1);
/// assert_eq!((pod.id, pod.phase, pod.free_slots()), (7, Phase::Ready, 1));
/// assert!(Pod::ready(8).replica().idle(300).autoscaled == false);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Pod {
    /// Stable id, unique within the app for the life of the host.
    pub id: u32,
    /// Tickets this pod can hold (the app's `tickets.max`).
    pub capacity: u32,
    /// Tickets currently held by users on this pod.
    pub tickets: u32,
    /// Starting, ready or draining.
    pub phase: Phase,
    /// Created by wicket, so a policy may delete it; `false` for the
    /// Deployment's own replicas, which a policy may never delete.
    pub autoscaled: bool,
    /// Whole seconds since the pod last held a ticket (0 while it holds one;
    /// since it became ready if it never held one; 0 while starting).
    pub idle_seconds: u32,
    /// Whole seconds since the host first saw the pod (or asked for it).
    pub age_seconds: u32,
}

impl Pod {
    /// A pod in `phase` with one slot, no tickets, autoscaled, idle and age 0.
    pub const fn new(id: u32, phase: Phase) -> Self {
        Self {
            id,
            capacity: 1,
            tickets: 0,
            phase,
            autoscaled: true,
            idle_seconds: 0,
            age_seconds: 0,
        }
    }

    /// A ready, autoscaled pod with one slot and no tickets.
    pub const fn ready(id: u32) -> Self {
        Self::new(id, Phase::Ready)
    }

    /// A starting, autoscaled pod with one slot.
    pub const fn starting(id: u32) -> Self {
        Self::new(id, Phase::Starting)
    }

    /// A draining, autoscaled pod with one slot and no tickets.
    pub const fn draining(id: u32) -> Self {
        Self::new(id, Phase::Draining)
    }

    /// The same pod with `capacity` slots.
    #[must_use]
    pub const fn capacity(self, capacity: u32) -> Self {
        Self { capacity, ..self }
    }

    /// The same pod holding `tickets` tickets.
    #[must_use]
    pub const fn tickets(self, tickets: u32) -> Self {
        Self { tickets, ..self }
    }

    /// The same pod as one of the Deployment's replicas (not autoscaled).
    #[must_use]
    pub const fn replica(self) -> Self {
        Self {
            autoscaled: false,
            ..self
        }
    }

    /// The same pod, idle for `seconds`.
    #[must_use]
    pub const fn idle(self, seconds: u32) -> Self {
        Self {
            idle_seconds: seconds,
            ..self
        }
    }

    /// The same pod, `seconds` old.
    #[must_use]
    pub const fn age(self, seconds: u32) -> Self {
        Self {
            age_seconds: seconds,
            ..self
        }
    }

    /// Ready to receive tickets (if it has a free slot).
    #[inline]
    pub const fn is_ready(&self) -> bool {
        matches!(self.phase, Phase::Ready)
    }

    /// Still booting.
    #[inline]
    pub const fn is_starting(&self) -> bool {
        matches!(self.phase, Phase::Starting)
    }

    /// Leaving.
    #[inline]
    pub const fn is_draining(&self) -> bool {
        matches!(self.phase, Phase::Draining)
    }

    /// Holds no tickets.
    #[inline]
    pub const fn is_empty(&self) -> bool {
        self.tickets == 0
    }

    /// Tickets this pod can still take now: `capacity - tickets` if ready,
    /// else 0. A pod holding more tickets than its capacity counts as full.
    #[inline]
    pub const fn free_slots(&self) -> u32 {
        if self.is_ready() {
            self.capacity.saturating_sub(self.tickets)
        } else {
            0
        }
    }

    /// The host would accept a ticket for this pod: ready with a free slot.
    #[inline]
    pub const fn can_take_ticket(&self) -> bool {
        self.is_ready() && self.tickets < self.capacity
    }

    /// The host would accept deleting this pod: autoscaled, not starting and
    /// holding no tickets.
    #[inline]
    pub const fn is_deletable(&self) -> bool {
        self.autoscaled && !self.is_starting() && self.tickets == 0
    }

    /// Decodes one pod from the first [`KNOWN_POD_WORDS`] little-endian words
    /// of `bytes`; missing words read as 0 (a host never sends fewer, but a
    /// short block must not panic), extra words are ignored.
    #[inline]
    pub fn from_le_bytes(bytes: &[u8]) -> Self {
        match bytes.first_chunk::<KNOWN_POD_BYTES>() {
            Some(known) => Self::from_known(known),
            None => Self::from_short(bytes),
        }
    }

    /// Fewer bytes than a pod: out of line, as no host sends them.
    #[cold]
    #[inline(never)]
    fn from_short(bytes: &[u8]) -> Self {
        let mut known = [0_u8; KNOWN_POD_BYTES];
        let len = bytes.len().min(KNOWN_POD_BYTES);
        known[..len].copy_from_slice(&bytes[..len]);
        Self::from_known(&known)
    }

    /// The fast path: exactly the known words, so no bounds checks remain.
    #[inline]
    fn from_known(bytes: &[u8; KNOWN_POD_BYTES]) -> Self {
        let (words, []) = bytes.as_chunks::<4>() else {
            unreachable!("KNOWN_POD_BYTES is a multiple of 4")
        };
        let word = |i: usize| u32::from_le_bytes(words[i]);
        Self {
            id: word(0),
            capacity: word(1),
            tickets: word(2),
            phase: Phase::from_word(word(3)),
            autoscaled: word(4) != 0,
            idle_seconds: word(5),
            age_seconds: word(6),
        }
    }

    /// The pod's words as the contract packs them.
    pub const fn to_words(&self) -> [u32; KNOWN_POD_WORDS as usize] {
        [
            self.id,
            self.capacity,
            self.tickets,
            self.phase.to_word(),
            self.autoscaled as u32,
            self.idle_seconds,
            self.age_seconds,
        ]
    }
}

/// The app's pods in the host's order (sorted by name, pods being created
/// last: earlier pods win ties), decoded one at a time from the packed bytes.
///
/// An iterator that is also a cheap, copyable view: [`Pods::len`] and
/// [`Pods::get`] need no walk. Bytes after the last whole pod are ignored.
#[derive(Clone, Debug)]
pub struct Pods<'a> {
    /// The pods not yet iterated over (and maybe a partial pod at the end).
    bytes: &'a [u8],
    /// Bytes per pod; at least 1.
    stride: usize,
}

impl<'a> Pods<'a> {
    /// A view of `bytes` holding pods of `pod_words` words each. A stride of
    /// 0 (or one too large to address) reads as no pods.
    #[inline]
    pub fn new(bytes: &'a [u8], pod_words: u32) -> Self {
        let stride = usize::try_from(pod_words)
            .ok()
            .and_then(|words| words.checked_mul(4))
            .filter(|&stride| stride > 0);
        match stride {
            Some(stride) => Self { bytes, stride },
            None => Self {
                bytes: &[],
                stride: 1,
            },
        }
    }

    /// The pod at `position` among those not yet iterated over (in a fresh
    /// view: in the host's order).
    #[inline]
    pub fn get(&self, position: usize) -> Option<Pod> {
        let start = position.checked_mul(self.stride)?;
        let end = start.checked_add(self.stride)?;
        self.bytes.get(start..end).map(Pod::from_le_bytes)
    }
}

impl Iterator for Pods<'_> {
    type Item = Pod;

    #[inline]
    fn next(&mut self) -> Option<Pod> {
        let (pod, rest) = self.bytes.split_at_checked(self.stride)?;
        self.bytes = rest;
        Some(Pod::from_le_bytes(pod))
    }

    #[inline]
    fn size_hint(&self) -> (usize, Option<usize>) {
        let len = self.bytes.len() / self.stride;
        (len, Some(len))
    }

    #[inline]
    fn nth(&mut self, n: usize) -> Option<Pod> {
        let skip = n.saturating_mul(self.stride);
        self.bytes = self.bytes.get(skip..).unwrap_or_default();
        self.next()
    }
}

impl DoubleEndedIterator for Pods<'_> {
    #[inline]
    fn next_back(&mut self) -> Option<Pod> {
        let whole = self.bytes.len() - self.bytes.len() % self.stride;
        let start = whole.checked_sub(self.stride)?;
        let pod = Pod::from_le_bytes(&self.bytes[start..whole]);
        self.bytes = &self.bytes[..start];
        Some(pod)
    }
}

impl ExactSizeIterator for Pods<'_> {}

impl FusedIterator for Pods<'_> {}

/// Appends `pod` to `bytes` as the contract packs it, followed by
/// `extra_words` zero words (a later contract's words this one ignores).
#[inline]
pub(crate) fn encode(bytes: &mut Vec<u8>, pod: &Pod, extra_words: u32) {
    let mut packed = [0_u8; KNOWN_POD_BYTES];
    for (chunk, word) in packed.as_chunks_mut::<4>().0.iter_mut().zip(pod.to_words()) {
        *chunk = word.to_le_bytes();
    }
    bytes.extend_from_slice(&packed);
    for _ in 0..extra_words {
        bytes.extend_from_slice(&[0; 4]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packed(words: &[u32]) -> Vec<u8> {
        words.iter().flat_map(|w| w.to_le_bytes()).collect()
    }

    #[test]
    fn pods_decode_as_the_contract_packs_them() {
        let bytes = packed(&[7, 2, 1, 1, 1, 30, 500, 9, 4, 0, 0, 0, 0, 3]);
        let pods: Vec<Pod> = Pods::new(&bytes, 7).collect();
        assert_eq!(
            pods,
            [
                Pod {
                    id: 7,
                    capacity: 2,
                    tickets: 1,
                    phase: Phase::Ready,
                    autoscaled: true,
                    idle_seconds: 30,
                    age_seconds: 500,
                },
                Pod {
                    id: 9,
                    capacity: 4,
                    tickets: 0,
                    phase: Phase::Starting,
                    autoscaled: false,
                    idle_seconds: 0,
                    age_seconds: 3,
                },
            ]
        );
    }

    #[test]
    fn unknown_phases_read_as_draining() {
        for (word, phase) in [
            (0, Phase::Starting),
            (1, Phase::Ready),
            (2, Phase::Draining),
            (3, Phase::Draining),
            (u32::MAX, Phase::Draining),
        ] {
            let bytes = packed(&[1, 1, 0, word, 1, 0, 0]);
            assert_eq!(Pods::new(&bytes, 7).next().map(|p| p.phase), Some(phase));
        }
    }

    #[test]
    fn a_longer_stride_skips_the_words_this_version_does_not_know() {
        let bytes = packed(&[1, 2, 0, 1, 1, 5, 6, 99, 99, 2, 2, 2, 1, 0, 0, 0, 99, 99]);
        let pods = Pods::new(&bytes, 9);
        assert_eq!(pods.len(), 2);
        assert_eq!(pods.clone().map(|p| p.id).collect::<Vec<_>>(), [1, 2]);
        assert_eq!(pods.get(1).map(|p| p.tickets), Some(2));
        assert_eq!(pods.get(2), None);
    }

    #[test]
    fn bad_strides_and_trailing_bytes_do_not_panic() {
        let bytes = packed(&[1, 2, 0, 1, 1, 5, 6]);
        assert_eq!(Pods::new(&bytes, 0).count(), 0);
        assert_eq!(Pods::new(&bytes, u32::MAX).count(), 0);
        // A stride shorter than this version's pod: missing words read as 0.
        let short: Vec<Pod> = Pods::new(&bytes[..8], 2).collect();
        assert_eq!(short, [Pod::starting(1).capacity(2).replica()]);
        // Bytes after the last whole pod are ignored.
        let mut ragged = bytes.clone();
        ragged.extend_from_slice(&[1, 2, 3]);
        assert_eq!(Pods::new(&ragged, 7).count(), 1);
    }

    #[test]
    fn iterating_from_both_ends_and_skipping_agree() {
        let pods: Vec<Pod> = (0..5).map(|id| Pod::ready(id).idle(id * 10)).collect();
        let mut bytes = Vec::new();
        for pod in &pods {
            encode(&mut bytes, pod, 1);
        }
        bytes.extend_from_slice(&[9; 5]); // a partial pod: ignored
        let view = Pods::new(&bytes, 8);
        assert_eq!(
            view.clone().rev().collect::<Vec<_>>(),
            pods.iter().rev().copied().collect::<Vec<_>>()
        );
        let mut it = view.clone();
        assert_eq!(it.nth(1), Some(pods[1]));
        assert_eq!(it.len(), 3);
        assert_eq!(it.get(0), Some(pods[2]));
        assert_eq!(it.next_back(), Some(pods[4]));
        assert_eq!(it.collect::<Vec<_>>(), [pods[2], pods[3]]);
        assert_eq!(view.clone().nth(usize::MAX), None);
        assert_eq!(view.get(usize::MAX), None);
        assert_eq!(view.get(5), None);
    }

    #[test]
    fn encoding_round_trips() {
        let pod = Pod::draining(u32::MAX)
            .capacity(3)
            .tickets(2)
            .replica()
            .idle(4)
            .age(5);
        let mut bytes = Vec::new();
        encode(&mut bytes, &pod, 2);
        assert_eq!(bytes.len(), 9 * 4);
        assert_eq!(Pods::new(&bytes, 9).collect::<Vec<_>>(), [pod]);
    }
}
