//! What the tests share: every test file imports its helpers from here, never from another
//! test file.

pub(crate) mod browser;
pub(crate) mod documents;
pub(crate) mod flows;
pub(crate) mod idp;
pub(crate) mod pages;
pub(crate) mod storage;
pub(crate) mod websocket;
