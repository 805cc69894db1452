//! Microsoft's identity platform and Graph, as Consentry uses them (reference
//! `docs/microsoft-identity.md`): consent and sign-in URLs, token requests, id_token validation,
//! the few Graph calls, and the one table that maps Microsoft's errors to problems. The
//! workspace's `simulator` crate is a faithful local stand-in for tests and `consentry demo`.

mod client;
pub(crate) mod clock;
pub(crate) mod errors;
pub(crate) mod graph;
pub(crate) mod id_token;
pub(crate) mod identity;
pub(crate) mod known;
pub(crate) mod text;

pub use client::{Microsoft, MicrosoftConfig, MicrosoftError};
pub(crate) use clock::timed;
pub use errors::Problem;
pub(crate) use identity::TenantHint;
pub(crate) use text::bounded;
