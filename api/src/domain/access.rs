//! Who may see and change what: MSP isolation and roles, decided in one place.

use crate::auth::Viewer;

use super::error::{Error, Result};

/// How the viewer sees an object of some MSP.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Sight {
    /// The viewer's own MSP.
    Own,
    /// Another MSP's object, visible to support staff; the read must be audited.
    Support,
}

/// Whether the viewer may see an object of `msp_id` (`None`: as if it did not exist).
pub(crate) fn sight(viewer: &Viewer, msp_id: &str) -> Option<Sight> {
    if viewer.msp_id() == msp_id {
        Some(Sight::Own)
    } else if viewer.reads_all_msps() {
        Some(Sight::Support)
    } else {
        None
    }
}

/// Refuses read-only callers before anything is looked up (so the refusal says nothing about
/// whether an id exists).
pub(crate) fn require_writer(viewer: &Viewer) -> Result<()> {
    if viewer.can_write() {
        Ok(())
    } else {
        Err(Error::Forbidden(format!(
            "your roles ({}) are read-only: changes need the admin or technician role",
            viewer.role_names().join(", ")
        )))
    }
}

/// Changes are only ever made within the viewer's own MSP: another MSP's object is reported
/// as missing, or, to support staff who can see it, as read-only.
pub(crate) fn require_writable(
    viewer: &Viewer,
    msp_id: &str,
    what: &'static str,
    id: &str,
) -> Result<()> {
    match sight(viewer, msp_id) {
        Some(Sight::Own) => Ok(()),
        Some(Sight::Support) => Err(Error::Forbidden(
            "support access to another MSP is read-only".to_owned(),
        )),
        None => Err(Error::not_found(what, id)),
    }
}

/// Support staff follow events only of what they name — an MSP or a client — so that each
/// such look is audited when it begins (checklist 100); a subscription to everything would
/// stream every MSP's changes unaudited.
pub(crate) fn require_named_scope(
    viewer: &Viewer,
    names_msp: bool,
    names_client: bool,
) -> Result<()> {
    if viewer.reads_all_msps() && !names_msp && !names_client {
        return Err(Error::bad_input(
            "mspId",
            "support staff subscribe to one MSP (mspId) or one client (clientId): name which",
        ));
    }
    Ok(())
}
