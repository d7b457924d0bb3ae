//! Integration tests: the real proxy in-process against a real PostgreSQL
//! started by the harness. One binary (STYLE 7); modules by capability.

mod approval;
mod audit;
mod audit_chain;
mod audit_common;
mod audit_crash;
mod audit_pg;
mod audit_render;
mod audit_tools;
mod corpus;
mod demo;
mod fake_slack;
mod harness;
mod policy;
mod relay;
mod robustness;
mod upstream_auth;
