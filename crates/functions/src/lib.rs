//! orderflow as an Azure Functions custom handler (DESIGN §7): one executable
//! that the Functions host starts and talks to over HTTP on
//! `127.0.0.1:$FUNCTIONS_CUSTOMHANDLER_PORT`. The functions themselves are
//! declared in `functions/*/function.json`; this crate decodes the host's
//! payload encodings and runs the same pipeline steps as `orderflow serve`.

pub mod documents;
pub mod handler;
pub mod invocation;
pub mod kafka_data;
pub mod starting;

pub use handler::{router, Steps};
pub use starting::starting;
