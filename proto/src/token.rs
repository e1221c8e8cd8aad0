//! Join tokens: `SKTKN-1-<hex SHA-256 of the root CA certificate>-<secret>`.
//!
//! The digest lets a joining node verify the root CA it is handed before trusting it; the
//! secret decides the role (the worker and manager tokens differ only in it).

use std::fmt;
use std::str::FromStr;

use rand::Rng;

const PREFIX: &str = "SKTKN";
const VERSION: &str = "1";
const DIGEST_LEN: usize = 64;
/// Length of a token's secret part.
pub const SECRET_LEN: usize = 25;
const SECRET_ALPHABET: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";

/// A parsed join token.
#[derive(Clone, PartialEq, Eq)]
pub struct JoinToken {
    /// Lowercase hex SHA-256 of the root CA certificate (DER).
    pub ca_digest: String,
    /// The secret that grants a role.
    pub secret: String,
}

/// Why a string is not a join token.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    /// The overall shape is wrong.
    #[error("malformed join token: expected SKTKN-1-<64 hex digits>-<25 characters>; copy it again from `skiff swarm join-token` on a manager")]
    Malformed,
    /// A version this build does not know.
    #[error(
        "join token version {0} is not supported by this skiff; upgrade skiff or get a new token"
    )]
    UnsupportedVersion(String),
}

impl JoinToken {
    /// A new token for the given root CA digest with a fresh random secret.
    pub fn generate(ca_digest: &str) -> Self {
        let mut rng = rand::thread_rng();
        let secret = (0..SECRET_LEN)
            .map(|_| SECRET_ALPHABET[rng.gen_range(0..SECRET_ALPHABET.len())] as char)
            .collect();
        Self {
            ca_digest: ca_digest.to_owned(),
            secret,
        }
    }
}

impl FromStr for JoinToken {
    type Err = TokenError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let parts: Vec<&str> = s.trim().split('-').collect();
        if parts.len() != 4 || parts[0] != PREFIX {
            return Err(TokenError::Malformed);
        }
        if parts[1] != VERSION {
            return Err(TokenError::UnsupportedVersion(parts[1].to_owned()));
        }
        let (digest, secret) = (parts[2], parts[3]);
        let hex_ok = digest.len() == DIGEST_LEN
            && digest
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        let secret_ok =
            secret.len() == SECRET_LEN && secret.bytes().all(|b| SECRET_ALPHABET.contains(&b));
        if !hex_ok || !secret_ok {
            return Err(TokenError::Malformed);
        }
        Ok(Self {
            ca_digest: digest.to_owned(),
            secret: secret.to_owned(),
        })
    }
}

impl fmt::Display for JoinToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{PREFIX}-{VERSION}-{}-{}", self.ca_digest, self.secret)
    }
}

impl fmt::Debug for JoinToken {
    /// Never prints the secret: tokens end up in logs otherwise.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{PREFIX}-{VERSION}-{}-<redacted>", self.ca_digest)
    }
}

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests {
    use super::*;

    const DIGEST: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn round_trips() {
        let t = JoinToken::generate(DIGEST);
        let parsed: JoinToken = t.to_string().parse().unwrap();
        assert_eq!(parsed, t);
        assert!(!format!("{t:?}").contains(&t.secret));
    }

    #[test]
    fn rejects_malformed_tokens() {
        let good = JoinToken::generate(DIGEST).to_string();
        let secret = good.rsplit('-').next().unwrap();
        let cases = [
            "".to_owned(),
            "SKTKN".to_owned(),
            "SWMTKN-1-abc-def".to_owned(),
            format!("SKTKN-1-{}-{secret}", &DIGEST[1..]),
            format!("SKTKN-1-{}-{secret}", DIGEST.to_uppercase()),
            format!("SKTKN-1-{DIGEST}-{}", &secret[1..]),
            format!("SKTKN-1-{DIGEST}-{secret}-extra"),
        ];
        for c in cases {
            assert_eq!(c.parse::<JoinToken>(), Err(TokenError::Malformed), "{c}");
        }
        assert_eq!(
            format!("SKTKN-2-{DIGEST}-{secret}").parse::<JoinToken>(),
            Err(TokenError::UnsupportedVersion("2".into()))
        );
    }
}
