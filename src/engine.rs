//! The policy engine: request decoding and evaluation (pure), and later the
//! HTTP server around it.
