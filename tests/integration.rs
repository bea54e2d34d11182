
mod project;
