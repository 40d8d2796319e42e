//! Deterministic client tokens.
//!
//! Step Functions deduplicates `RedriveExecution` calls per execution by `clientToken` (the last 10
//! successful tokens, for 15 minutes). Deriving the token from what every observer of the same
//! failure sees — the execution ARN and the `redriveCount` at the time of the failure — makes two
//! replicas, a restarted operator or a stale cache send the *same* token for the same failure, so
//! AWS performs one redrive. Once the redriven execution fails again its `redriveCount` has moved,
//! and the next attempt gets a new token.
//!
//! Format: `rd1-<redriveCount>-<48 hex chars of SHA-256(ARN "\n" redriveCount)>`. It is at most
//! 4 + 10 + 1 + 48 = 63 characters of printable ASCII, within the API's `[!-~]{1,64}`.
//! The `rd1` prefix versions the scheme; changing the scheme must change the prefix.

use sha2::{Digest, Sha256};

/// Version prefix of the token scheme.
pub const TOKEN_PREFIX: &str = "rd1";

/// The client token for redriving `execution_id` after observing `redrive_count` redrives.
pub fn client_token(execution_id: &str, redrive_count: u32) -> String {
    let digest = Sha256::new()
        .chain_update(execution_id.as_bytes())
        .chain_update(b"\n")
        .chain_update(redrive_count.to_string().as_bytes())
        .finalize();
    let hex: String = digest.iter().take(24).map(|b| format!("{b:02x}")).collect();
    format!("{TOKEN_PREFIX}-{redrive_count}-{hex}")
}

/// A stable number in `[0, 1)` for `(execution_id, attempt)`, used for backoff jitter so that every
/// replica computes the same wait for the same failure.
pub fn unit_hash(execution_id: &str, attempt: u32) -> f64 {
    let digest = Sha256::new()
        .chain_update(b"jitter\n")
        .chain_update(execution_id.as_bytes())
        .chain_update(b"\n")
        .chain_update(attempt.to_string().as_bytes())
        .finalize();
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&digest[..8]);
    // 53 bits give every representable f64 in [0, 1) the same chance.
    (u64::from_be_bytes(bytes) >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_is_stable_and_documented_shape() {
        let arn = "arn:aws:states:us-east-1:123456789012:execution:orders:abc";
        let t = client_token(arn, 0);
        assert_eq!(t, client_token(arn, 0));
        assert!(t.starts_with("rd1-0-"));
        assert_eq!(t.len(), 4 + 1 + 1 + 48);
        assert_ne!(t, client_token(arn, 1));
        assert_ne!(
            t,
            client_token(
                "arn:aws:states:us-east-1:123456789012:execution:orders:abd",
                0
            )
        );
        // The worst case stays within the API limit.
        assert!(client_token(arn, u32::MAX).len() <= 64);
    }
}

#[cfg(test)]
mod golden {
    use super::*;

    /// Tokens are part of the wire contract between operator versions: during a rolling upgrade
    /// old and new replicas must send byte-for-byte the same token for the same failure, or AWS
    /// performs two redrives. These values were produced by the 0.1 scheme (commit d0b22d0).
    #[test]
    fn tokens_are_byte_for_byte_those_of_earlier_releases() {
        let arn = "arn:aws:states:us-east-1:123456789012:execution:orders:abc";
        assert_eq!(client_token(arn, 0), GOLDEN_0);
        assert_eq!(client_token(arn, 3), GOLDEN_3);
    }

    const GOLDEN_0: &str = "rd1-0-070a399f094cddfc631133405eab54294a304c146ced41f6";
    const GOLDEN_3: &str = "rd1-3-50eea2b537560b0cd3cdbc2de5805e595611b174e2f9f65c";
}
