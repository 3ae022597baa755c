//! The Server-Sent Events transport: frame encoding, the per-connection outbox and the response
//! body that drains it.

pub mod frame;
pub(crate) mod outbox;
mod stream;

pub use stream::{EventStream, StreamAborted};
