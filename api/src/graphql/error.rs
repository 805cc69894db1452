//! Domain errors as GraphQL errors: a clear message and a stable `extensions.code`.

use async_graphql::{Error as GqlError, ErrorExtensions};

use crate::domain::Error;

/// The GraphQL error for a domain error. Internal errors are logged with a reference the
/// caller can quote; their details never reach the response.
pub(crate) fn gql_error(error: Error) -> GqlError {
    let code = error.code().as_str();
    match &error {
        Error::Internal(source) => {
            let reference = uuid::Uuid::new_v4();
            tracing::error!(%reference, error = ?source, "internal error");
            GqlError::new(format!(
                "internal error; quote reference {reference} to your Consentry operator"
            ))
            .extend_with(|_, e| {
                e.set("code", code);
                e.set("reference", reference.to_string());
            })
        }
        Error::BadUserInput { field, .. } | Error::Conflict { field, .. } => {
            let field = field.clone();
            GqlError::new(error.to_string()).extend_with(|_, e| {
                e.set("code", code);
                e.set("field", field.clone());
            })
        }
        _ => GqlError::new(error.to_string()).extend_with(|_, e| e.set("code", code)),
    }
}

impl From<Error> for GqlError {
    fn from(error: Error) -> Self {
        gql_error(error)
    }
}
