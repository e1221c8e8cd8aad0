//! Object IDs: 25 random lowercase base-36 characters, as Docker's, so they read alike and
//! a 12-character prefix is unique in practice.

use rand::Rng;

/// Length of every object ID.
pub const ID_LEN: usize = 25;
const ALPHABET: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";

/// A fresh random ID.
pub fn new_id() -> String {
    let mut rng = rand::thread_rng();
    (0..ID_LEN)
        .map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char)
        .collect()
}

/// Whether `s` has the shape of an object ID.
pub fn is_id(s: &str) -> bool {
    s.len() == ID_LEN && s.bytes().all(|b| ALPHABET.contains(&b))
}

/// The short form shown in tables.
pub fn short(id: &str) -> &str {
    &id[..id.len().min(12)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_well_formed_and_distinct() {
        let a = new_id();
        let b = new_id();
        assert!(is_id(&a) && is_id(&b));
        assert_ne!(a, b);
        assert_eq!(short(&a).len(), 12);
        assert!(!is_id("UPPERCASE0000000000000000X"));
        assert!(!is_id("short"));
    }
}
