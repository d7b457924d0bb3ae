//! Integration tests: the real proxy in-process against a real PostgreSQL
//! started by the harness. One binary (STYLE 7); modules by capability.

mod corpus;
mod harness;
mod relay;
mod policy;
mod robustness;
