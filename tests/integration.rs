
mod artifact;
mod eval;
