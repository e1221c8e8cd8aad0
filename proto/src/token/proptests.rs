//! Property tests of join-token parsing: tokens are pasted by hand and arrive from joining
//! nodes, so any string at all must give a token or a sentence, never a panic.

use proptest::prelude::*;

use super::*;

fn tokens() -> impl Strategy<Value = JoinToken> {
    ("[0-9a-f]{64}", "[0-9a-z]{25}").prop_map(|(ca_digest, secret)| JoinToken { ca_digest, secret })
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 256,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn a_token_reads_back_as_itself(token in tokens(), pad in "[ \t\n]{0,3}") {
        prop_assert_eq!(format!("{pad}{token}{pad}").parse::<JoinToken>(), Ok(token.clone()));
        // The debug form never shows the secret.
        let shown = format!("{token:?}");
        prop_assert!(!shown.contains(&token.secret));
    }

    #[test]
    fn any_string_is_a_token_or_a_sentence_saying_what_to_do(s in any::<String>()) {
        match s.parse::<JoinToken>() {
            Ok(token) => prop_assert_eq!(token.to_string(), s.trim()),
            Err(e) => prop_assert!(e.to_string().contains("token")),
        }
    }

    #[test]
    fn a_damaged_token_is_refused_or_still_well_formed(
        token in tokens(),
        at in any::<prop::sample::Index>(),
        c in any::<char>(),
    ) {
        let mut chars: Vec<char> = token.to_string().chars().collect();
        let at = at.index(chars.len());
        chars[at] = c;
        let damaged: String = chars.into_iter().collect();
        if let Ok(parsed) = damaged.parse::<JoinToken>() {
            // Only a change within the alphabets keeps it a token.
            prop_assert_eq!(parsed.to_string(), damaged.trim());
            prop_assert_eq!(parsed.ca_digest.len(), 64);
            prop_assert_eq!(parsed.secret.len(), SECRET_LEN);
        }
    }
}
