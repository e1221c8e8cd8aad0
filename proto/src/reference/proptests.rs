//! Property tests of image references: any string is a reference or a sentence, and a
//! normalised reference reads back as itself.

use proptest::prelude::*;

use super::*;

fn near_references() -> impl Strategy<Value = String> {
    prop_oneof![
        "(([a-zA-Z0-9.-]{1,8}(:[0-9]{1,5})?|localhost)/)?([a-z0-9._-]{1,6}/){0,2}[a-zA-Z0-9._-]{1,8}(:[a-zA-Z0-9._-]{0,6})?(@sha256:[0-9a-fA-F]{62,65})?",
        any::<String>(),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 256,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn a_normalised_reference_reads_back_as_itself(s in near_references()) {
        match ImageRef::parse(&s) {
            Ok(image) => {
                prop_assert!(image.tag.is_some() || image.digest.is_some());
                prop_assert_eq!(ImageRef::parse(&image.to_string()), Ok(image.clone()));
                let pinned = image.with_digest(&format!("sha256:{}", "a".repeat(64)));
                prop_assert_eq!(ImageRef::parse(&pinned.to_string()), Ok(pinned.clone()));
            }
            Err(e) => {
                let message = e.to_string();
                prop_assert!(message.starts_with("image reference '"), "{}", message);
            }
        }
    }
}
