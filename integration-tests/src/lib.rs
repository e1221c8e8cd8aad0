//! Test harness: real `skiffd` processes on loopback addresses.
