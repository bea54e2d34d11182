//! Stage 2: syntax trees + schema → typed IR, with every language and version
//! error of the whole set. Pure: no I/O.
