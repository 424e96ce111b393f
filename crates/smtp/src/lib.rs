//! The SMTP protocol room: a sans-IO server session (bytes in, replies and events out),
//! the tokio shell that drives it, and the reply type shared with the delivery client.
//! It knows nothing of policy or storage: decisions come back from its caller.

pub mod auth;
pub mod data;
pub mod reply;
pub mod server;
pub mod session;

pub use reply::Reply;
pub use session::{Event, Limits, MailFrom, RcptTo, Ret, Session, SessionConfig};
