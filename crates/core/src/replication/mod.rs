//! Primary/replica replication on the embedded database: what nodes say to
//! each other (`wire`), how a node enrols (`join`), how far forwarded login
//! state may move a token (`window`) and which role a node may take after
//! talking to its peers (`fencing`), and which versions may run together
//! (`compat`). Sans-IO throughout: the store applies,
//! the server moves bytes.

pub mod compat;
pub mod fencing;
pub mod join;
pub mod window;
pub mod wire;

pub use wire::*;
