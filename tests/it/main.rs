//! Integration tests.

mod matcher_eval;
