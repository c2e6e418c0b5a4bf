//! Claim binding: a ticket delivered on the ticket WebSocket can be turned
//! into its HttpOnly cookie (`.wicket/claim`) only by the browser it was
//! delivered to.
//!
//! The waiting page gives each browser a random `wicket-bind` cookie
//! (HttpOnly). The ticket socket reads it from its handshake and, with the
//! ticket, sends `clm#<proof>`, where the proof is a keyed hash of the
//! token and that browser's binding. The claim accepts a token only with
//! the proof that matches the claiming browser's own binding cookie, so a
//! claim link made by someone else (their token, their proof) fails in
//! any other browser. Stateless: nothing is stored per ticket.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::state::Token;

/// The process's secret for claim proofs (random at start: a restart only
/// invalidates claims in flight, which the page then retries from the
/// waiting room).
#[derive(Clone, Copy)]
pub struct ClaimKey([u8; 32]);

impl std::fmt::Debug for ClaimKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClaimKey(..)")
    }
}

/// Bytes of a proof (hex doubles them).
const PROOF_BYTES: usize = 16;

impl ClaimKey {
    /// A fresh random key.
    pub fn generate() -> Self {
        Self(rand::random())
    }

    /// The proof that `token` was delivered to the browser bound to `bind`.
    /// The hashed message has a fixed length (two tokens), so the keyed
    /// hash needs no HMAC construction against length extension.
    fn proof_bytes(&self, token: &Token, bind: &Token) -> [u8; PROOF_BYTES] {
        let mut h = Sha256::new();
        h.update(self.0);
        h.update(b"wicket-claim");
        h.update(token.to_string().as_bytes());
        h.update(bind.to_string().as_bytes());
        let digest = h.finalize();
        let mut out = [0u8; PROOF_BYTES];
        out.copy_from_slice(&digest[..PROOF_BYTES]);
        out
    }

    /// The proof, in hex (for the `clm#` message and the claim's `c`).
    pub fn proof(&self, token: &Token, bind: &Token) -> String {
        hex::encode(self.proof_bytes(token, bind))
    }

    /// Does `proof` (hex) show that `token` went to the browser bound to
    /// `bind`? Compared in constant time.
    pub fn verify(&self, token: &Token, bind: &Token, proof: &str) -> bool {
        let mut given = [0u8; PROOF_BYTES];
        if hex::decode_to_slice(proof, &mut given).is_err() {
            return false;
        }
        bool::from(self.proof_bytes(token, bind).ct_eq(&given))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_proof_holds_only_for_its_token_binding_and_key() {
        let key = ClaimKey::generate();
        let (t, b) = (Token::generate(), Token::generate());
        let p = key.proof(&t, &b);
        assert_eq!(p.len(), 2 * PROOF_BYTES);
        assert!(key.verify(&t, &b, &p));
        assert!(!key.verify(&t, &Token::generate(), &p), "another browser");
        assert!(!key.verify(&Token::generate(), &b, &p), "another ticket");
        assert!(!ClaimKey::generate().verify(&t, &b, &p), "another key");
        assert!(!key.verify(&t, &b, "zz"));
        assert!(!key.verify(&t, &b, ""));
    }
}
