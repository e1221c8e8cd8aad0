//! The container runtime interface the worker agent drives, and its backends.
