//! Integration tests: the real proxy in-process against a real PostgreSQL
//! started by the harness. One binary (STYLE 7); modules by capability.

mod corpus;
mod harness;
mod relay;
mod policy;
mod robustness;
mod upstream_auth;
mod audit;
mod audit_chain;
mod audit_common;
mod audit_crash;
mod audit_pg;
mod audit_render;
mod audit_tools;
mod approval;
mod demo;
mod fake_slack;
