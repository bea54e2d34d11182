//! The commands. The only module (with `main`) that prints.
