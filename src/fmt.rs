//! Canonical formatting of `.policy` files. Pure: text in, text out.
