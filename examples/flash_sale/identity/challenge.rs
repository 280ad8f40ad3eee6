//! The challenge hook: a test a buyer passes before a purchase is taken
//! (a captcha, a proof-of-work puzzle), and [`ProofOfWork`], which needs no
//! outside service.
//!
//! The hook is a trait so a captcha provider plugs in the same way: the app
//! hands out [`Challenge::issue`]'s puzzle at `GET /api/v1/challenge` and
//! passes the purchase's `challenge` field to [`Challenge::verify`].

use std::time::{Duration, SystemTime};

use hmac::{Hmac, Mac};
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::token::unix;

/// Why a challenge answer was refused (403 with `"status": "challenge_failed"`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChallengeError {
    /// The request carries no answer: fetch a puzzle first.
    #[error(
        "this sale requires a solved challenge: GET /api/v1/challenge?sku_id=…, then send its answer as `challenge`"
    )]
    Missing,
    /// The answer is not shaped as the puzzle asks.
    #[error("malformed challenge answer: {0}")]
    Malformed(&'static str),
    /// The puzzle was not issued by this sale to this buyer for this SKU.
    #[error("the challenge was issued to another buyer or SKU, or not by this service")]
    Forged,
    /// The puzzle's time is up.
    #[error("the challenge has expired: fetch a new one")]
    Expired,
    /// The answer does not solve the puzzle.
    #[error("the answer does not solve the challenge")]
    Wrong,
}

/// A test a buyer passes before a purchase: issued for one user and SKU,
/// answered in the purchase request. Implementations must be cheap to
/// verify (the check runs on the buy path) and must bind the puzzle to the
/// user and SKU, so one answer cannot be shared by a crowd of accounts.
pub trait Challenge: Send + Sync {
    /// A new puzzle for `user_id` buying `sku_id`, as the JSON the client gets.
    fn issue(&self, user_id: u64, sku_id: u64) -> Value;

    /// Whether `answer` (the purchase's `challenge` field) solves a puzzle
    /// issued to `user_id` for `sku_id`.
    ///
    /// # Errors
    ///
    /// No answer, a malformed, forged, expired or wrong one.
    fn verify(
        &self,
        user_id: u64,
        sku_id: u64,
        answer: Option<&Value>,
    ) -> Result<(), ChallengeError>;
}

/// The key of [`ProofOfWork`] puzzles for a service whose token secret is
/// `secret`: an HMAC of a fixed label under it, so every instance sharing
/// the secret issues and checks the same puzzles, and the puzzle key is
/// never the token key itself.
///
/// # Errors
///
/// Never in practice: HMAC takes a key of any length.
pub fn key_from_secret(secret: &[u8]) -> Result<[u8; 32], hmac::digest::InvalidLength> {
    let mut derive = <Hmac<Sha256> as Mac>::new_from_slice(secret)?;
    derive.update(b"seckill challenge key");
    Ok(derive.finalize().into_bytes().into())
}

/// Fewest leading zero bits a proof-of-work puzzle asks for.
pub const BITS_MIN: u32 = 1;
/// Most leading zero bits (2^24 hashes on average: seconds in a browser).
pub const BITS_MAX: u32 = 24;

/// A proof-of-work puzzle, stateless on the server: the puzzle is
/// `expiry.salt.mac`, where `mac` is an HMAC of the user, SKU, expiry and
/// salt under a per-service key. The client finds a `nonce` such that
/// SHA-256(`puzzle` ":" `nonce`) starts with `bits` zero bits, and sends
/// `{"puzzle": …, "nonce": …}`. Verifying costs one HMAC and one SHA-256.
///
/// An answer may be reused by its own user for the same SKU until the
/// puzzle expires: a purchase is still held to the per-user limit and the
/// per-user rate, so a reuse buys nothing the first answer did not.
pub struct ProofOfWork {
    keyed: Hmac<Sha256>,
    bits: u32,
    ttl: Duration,
}

/// Proof-of-work settings out of range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("challenge bits must be {BITS_MIN} to {BITS_MAX}, got {0}")]
pub struct BitsError(pub u32);

/// The purchase's `challenge` field for a proof-of-work puzzle.
#[derive(Debug, Deserialize)]
struct PowAnswer {
    puzzle: String,
    nonce: String,
}

impl ProofOfWork {
    /// Puzzles of `bits` leading zero bits, valid for `ttl`, signed with `key`.
    ///
    /// # Errors
    ///
    /// `bits` is not [`BITS_MIN`] to [`BITS_MAX`].
    pub fn new(key: [u8; 32], bits: u32, ttl: Duration) -> Result<Self, BitsError> {
        if !(BITS_MIN..=BITS_MAX).contains(&bits) {
            return Err(BitsError(bits));
        }
        // HMAC takes a key of any length: this never fails.
        let keyed = <Hmac<Sha256> as Mac>::new_from_slice(&key).map_err(|_| BitsError(bits))?;
        Ok(Self { keyed, bits, ttl })
    }

    /// The puzzle's MAC for this user, SKU, expiry and salt.
    fn mac(&self, user_id: u64, sku_id: u64, expires: u64, salt: &str) -> Hmac<Sha256> {
        let mut mac = self.keyed.clone();
        mac.update(format!("pow|{user_id}|{sku_id}|{expires}|{salt}").as_bytes());
        mac
    }

    /// Solves `puzzle` (what a client does; the tests use it).
    #[cfg(test)]
    pub fn solve(puzzle: &str, bits: u32) -> u64 {
        (0..u64::MAX)
            .find(|nonce| leading_zero_bits(&digest(puzzle, &nonce.to_string())) >= bits)
            .unwrap_or(0)
    }
}

impl Challenge for ProofOfWork {
    fn issue(&self, user_id: u64, sku_id: u64) -> Value {
        let expires = unix(SystemTime::now() + self.ttl);
        let salt = hex::encode(rand::random::<[u8; 8]>());
        let mac = hex::encode(
            self.mac(user_id, sku_id, expires, &salt)
                .finalize()
                .into_bytes(),
        );
        json!({
            "kind": "proof_of_work",
            "puzzle": format!("{expires}.{salt}.{mac}"),
            "bits": self.bits,
            "expires_at": expires,
            "how": "find a decimal nonce such that SHA-256(puzzle + \":\" + nonce) starts with `bits` zero bits; send {\"puzzle\": …, \"nonce\": …} as the purchase's `challenge`",
        })
    }

    fn verify(
        &self,
        user_id: u64,
        sku_id: u64,
        answer: Option<&Value>,
    ) -> Result<(), ChallengeError> {
        let answer = answer.ok_or(ChallengeError::Missing)?;
        let answer = PowAnswer::deserialize(answer)
            .map_err(|_| ChallengeError::Malformed("expected {\"puzzle\": …, \"nonce\": …}"))?;
        if answer.puzzle.len() > 128 || answer.nonce.len() > 20 {
            return Err(ChallengeError::Malformed("too long"));
        }
        if answer.nonce.parse::<u64>().is_err() {
            return Err(ChallengeError::Malformed(
                "the nonce must be a decimal number",
            ));
        }
        let mut parts = answer.puzzle.splitn(3, '.');
        let (Some(expires), Some(salt), Some(mac)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(ChallengeError::Malformed("not a puzzle of this service"));
        };
        let expires: u64 = expires
            .parse()
            .map_err(|_| ChallengeError::Malformed("not a puzzle of this service"))?;
        let mac = hex::decode(mac).map_err(|_| ChallengeError::Forged)?;
        self.mac(user_id, sku_id, expires, salt)
            .verify_slice(&mac)
            .map_err(|_| ChallengeError::Forged)?;
        if unix(SystemTime::now()) > expires {
            return Err(ChallengeError::Expired);
        }
        if leading_zero_bits(&digest(&answer.puzzle, &answer.nonce)) < self.bits {
            return Err(ChallengeError::Wrong);
        }
        Ok(())
    }
}

fn digest(puzzle: &str, nonce: &str) -> [u8; 32] {
    let mut hash = Sha256::new();
    hash.update(puzzle.as_bytes());
    hash.update(b":");
    hash.update(nonce.as_bytes());
    hash.finalize().into()
}

fn leading_zero_bits(hash: &[u8; 32]) -> u32 {
    let mut bits = 0;
    for byte in hash {
        bits += byte.leading_zeros();
        if *byte != 0 {
            break;
        }
    }
    bits
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pow(bits: u32, ttl: Duration) -> ProofOfWork {
        ProofOfWork::new([7; 32], bits, ttl).unwrap()
    }

    fn answer(puzzle: &Value, nonce: u64) -> Value {
        json!({ "puzzle": puzzle["puzzle"], "nonce": nonce.to_string() })
    }

    #[test]
    fn a_solved_puzzle_passes_for_its_buyer_and_sku_only() {
        let pow = pow(8, Duration::from_secs(60));
        let puzzle = pow.issue(1, 7);
        assert_eq!(puzzle["bits"], 8);
        let nonce = ProofOfWork::solve(puzzle["puzzle"].as_str().unwrap(), 8);
        let good = answer(&puzzle, nonce);
        assert_eq!(pow.verify(1, 7, Some(&good)), Ok(()));
        assert_eq!(pow.verify(2, 7, Some(&good)), Err(ChallengeError::Forged));
        assert_eq!(pow.verify(1, 8, Some(&good)), Err(ChallengeError::Forged));
        // Another service's key: forged.
        let other = ProofOfWork::new([8; 32], 8, Duration::from_secs(60)).unwrap();
        assert_eq!(other.verify(1, 7, Some(&good)), Err(ChallengeError::Forged));
        assert_eq!(pow.verify(1, 7, None), Err(ChallengeError::Missing));
    }

    #[test]
    fn wrong_malformed_and_expired_answers_are_refused() {
        let pow = pow(16, Duration::from_secs(60));
        let puzzle = pow.issue(1, 7);
        let p = puzzle["puzzle"].as_str().unwrap();
        // A nonce that does not solve it (the first one that fails).
        let wrong = (0..)
            .find(|n: &u64| leading_zero_bits(&digest(p, &n.to_string())) < 16)
            .unwrap();
        assert_eq!(
            pow.verify(1, 7, Some(&answer(&puzzle, wrong))),
            Err(ChallengeError::Wrong)
        );
        for bad in [
            json!("x"),
            json!({ "puzzle": p }),
            json!({ "puzzle": p, "nonce": "-1" }),
            json!({ "puzzle": "1.2", "nonce": "1" }),
            json!({ "puzzle": "x".repeat(200), "nonce": "1" }),
        ] {
            assert!(
                matches!(
                    pow.verify(1, 7, Some(&bad)),
                    Err(ChallengeError::Malformed(_))
                ),
                "{bad}"
            );
        }
        let expired = ProofOfWork::new([7; 32], 1, Duration::ZERO).unwrap();
        let old = expired.issue(1, 7);
        // Expiry is in whole seconds: wait for the second to pass.
        std::thread::sleep(Duration::from_millis(1_100));
        let nonce = ProofOfWork::solve(old["puzzle"].as_str().unwrap(), 1);
        assert_eq!(
            expired.verify(1, 7, Some(&answer(&old, nonce))),
            Err(ChallengeError::Expired)
        );
    }

    #[test]
    fn the_key_follows_the_secret() {
        let a = key_from_secret(b"secret a").unwrap();
        assert_eq!(a, key_from_secret(b"secret a").unwrap());
        assert_ne!(a, key_from_secret(b"secret b").unwrap());
        // Puzzles issued under one derived key check under the same key only.
        let pow = ProofOfWork::new(a, 4, Duration::from_secs(60)).unwrap();
        let puzzle = pow.issue(1, 7);
        let nonce = ProofOfWork::solve(puzzle["puzzle"].as_str().unwrap(), 4);
        let answer = answer(&puzzle, nonce);
        let same = ProofOfWork::new(
            key_from_secret(b"secret a").unwrap(),
            4,
            Duration::from_secs(60),
        );
        assert_eq!(same.unwrap().verify(1, 7, Some(&answer)), Ok(()));
        let other = ProofOfWork::new(
            key_from_secret(b"secret b").unwrap(),
            4,
            Duration::from_secs(60),
        );
        assert_eq!(
            other.unwrap().verify(1, 7, Some(&answer)),
            Err(ChallengeError::Forged)
        );
    }

    #[test]
    fn bits_have_a_range() {
        assert_eq!(
            ProofOfWork::new([0; 32], 0, Duration::ZERO).err(),
            Some(BitsError(0))
        );
        assert_eq!(
            ProofOfWork::new([0; 32], 25, Duration::ZERO).err(),
            Some(BitsError(25))
        );
        assert!(ProofOfWork::new([0; 32], 24, Duration::ZERO).is_ok());
    }

    #[test]
    fn bits_are_counted_from_the_first_byte() {
        let mut hash = [0u8; 32];
        assert_eq!(leading_zero_bits(&hash), 256);
        hash[0] = 0x01;
        assert_eq!(leading_zero_bits(&hash), 7);
        hash[0] = 0;
        hash[1] = 0x80;
        assert_eq!(leading_zero_bits(&hash), 8);
    }
}
