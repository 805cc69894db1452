//! How the server ends a connection: the close codes it sends, and the goodbyes it says with
//! them.

// The codes.
pub(super) const BAD_REQUEST: u16 = 4400;
pub(super) const UNAUTHORIZED: u16 = 4401;
pub(super) const FORBIDDEN: u16 = 4403;
pub(super) const INIT_TIMEOUT: u16 = 4408;
/// A `subscribe` whose id is already in use (checklist 70).
pub(super) const ID_IN_USE: u16 = 4409;
/// RFC 6455 "going away": the server is shutting down.
pub(super) const GOING_AWAY: u16 = 1001;
/// RFC 6455 "policy violation": more subscriptions than a connection may hold.
pub(super) const POLICY_VIOLATION: u16 = 1008;
/// RFC 6455 "message too big": a message over `MAX_MESSAGE_BYTES`.
pub(super) const MESSAGE_TOO_BIG: u16 = 1009;
/// RFC 6455 "try again later": the caller's connections or message rate are over their
/// limit for now (clients such as graphql-ws reconnect after a backoff).
pub(super) const TRY_AGAIN_LATER: u16 = 1013;

/// Why the server closes a connection: a close code and its reason.
pub(super) type Goodbye = (u16, &'static str);

pub(super) const MSP_DISABLED: Goodbye = (FORBIDDEN, "Forbidden: your MSP tenant is disabled");
pub(super) const TOKEN_EXPIRED: Goodbye = (
    FORBIDDEN,
    "Forbidden: the token expired; reconnect with a new one",
);
pub(super) const SHUTTING_DOWN: Goodbye = (GOING_AWAY, "Consentry is shutting down; reconnect");
