//! Every `extensions.code` a caller can be given, with the HTTP status it answers and the line
//! the README's table of codes shows for it (a test keeps the two the same).

use axum::http::StatusCode;

/// One error code of Consentry's API.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorCode {
    Unauthenticated,
    Forbidden,
    NotFound,
    BadUserInput,
    Conflict,
    Unavailable,
    NotConfigured,
    MicrosoftUnavailable,
    RateLimited,
    Timeout,
    ResponseTooLarge,
    Internal,
    GraphqlParseFailed,
    GraphqlValidationFailed,
    BadRequest,
    PayloadTooLarge,
    UnsupportedMediaType,
    NotAcceptable,
    MethodNotAllowed,
}

/// What one code is: its text, its HTTP status, and what it means.
struct Spec {
    code: &'static str,
    status: StatusCode,
    doc: &'static str,
}

impl ErrorCode {
    /// Every code, in the README's order.
    pub const ALL: [ErrorCode; 19] = [
        Self::Unauthenticated,
        Self::Forbidden,
        Self::NotFound,
        Self::BadUserInput,
        Self::Conflict,
        Self::Unavailable,
        Self::NotConfigured,
        Self::MicrosoftUnavailable,
        Self::RateLimited,
        Self::Timeout,
        Self::ResponseTooLarge,
        Self::Internal,
        Self::GraphqlParseFailed,
        Self::GraphqlValidationFailed,
        Self::BadRequest,
        Self::PayloadTooLarge,
        Self::UnsupportedMediaType,
        Self::NotAcceptable,
        Self::MethodNotAllowed,
    ];

    fn spec(self) -> Spec {
        use StatusCode as S;
        let (code, status, doc) = match self {
            Self::Unauthenticated => (
                "UNAUTHENTICATED",
                S::UNAUTHORIZED,
                "no valid caller token came with the request (`WWW-Authenticate: Bearer`); introspection without one is refused as a GraphQL error",
            ),
            Self::Forbidden => (
                "FORBIDDEN",
                S::FORBIDDEN,
                "the caller may not do this: its roles, its MSP tenant disabled, or a browser `Origin` not allowed",
            ),
            Self::NotFound => (
                "NOT_FOUND",
                S::OK,
                "nothing with that id is visible to the caller: another MSP's objects are reported exactly like objects that do not exist",
            ),
            Self::BadUserInput => (
                "BAD_USER_INPUT",
                S::OK,
                "an argument is invalid: `extensions.field` names it and the message says what to do",
            ),
            Self::Conflict => (
                "CONFLICT",
                S::OK,
                "the change collides with existing data: `extensions.field` names it",
            ),
            Self::Unavailable => (
                "UNAVAILABLE",
                S::SERVICE_UNAVAILABLE,
                "the database is down: nothing was changed, retry shortly",
            ),
            Self::NotConfigured => (
                "NOT_CONFIGURED",
                S::OK,
                "the server lacks a setting, named in the message (e.g. no Microsoft app registration)",
            ),
            Self::MicrosoftUnavailable => (
                "MICROSOFT_UNAVAILABLE",
                S::OK,
                "Microsoft could not be asked, or refused Consentry's own credentials: nothing was changed",
            ),
            Self::RateLimited => (
                "RATE_LIMITED",
                S::TOO_MANY_REQUESTS,
                "the MSP ran too many mutations or queries: `Retry-After` and `extensions.retryAfter` say how many seconds to wait",
            ),
            Self::Timeout => (
                "TIMEOUT",
                S::GATEWAY_TIMEOUT,
                "a query ran longer than `CONSENTRY_QUERY_TIMEOUT`",
            ),
            Self::ResponseTooLarge => (
                "RESPONSE_TOO_LARGE",
                S::BAD_REQUEST,
                "the answer would be larger than `CONSENTRY_MAX_RESPONSE_BYTES`: nothing of it is sent",
            ),
            Self::Internal => (
                "INTERNAL",
                S::INTERNAL_SERVER_ERROR,
                "anything unexpected: details are only in the server log; quote `extensions.reference` to the operator",
            ),
            Self::GraphqlParseFailed => (
                "GRAPHQL_PARSE_FAILED",
                S::BAD_REQUEST,
                "the document does not parse",
            ),
            Self::GraphqlValidationFailed => (
                "GRAPHQL_VALIDATION_FAILED",
                S::BAD_REQUEST,
                "the document is not valid for the schema, or breaks one of the limits below",
            ),
            Self::BadRequest => (
                "BAD_REQUEST",
                S::BAD_REQUEST,
                "the HTTP request is not one GraphQL operation: a body that is not JSON, a batch, no `query`; or a valid subscription sent with POST (it runs over `/graphql/ws`; 200 under `Accept: application/json`, like the two above)",
            ),
            Self::PayloadTooLarge => (
                "PAYLOAD_TOO_LARGE",
                S::PAYLOAD_TOO_LARGE,
                "the request body is over 100 KiB",
            ),
            Self::UnsupportedMediaType => (
                "UNSUPPORTED_MEDIA_TYPE",
                S::UNSUPPORTED_MEDIA_TYPE,
                "a POST body without `Content-Type: application/json`",
            ),
            Self::NotAcceptable => (
                "NOT_ACCEPTABLE",
                S::NOT_ACCEPTABLE,
                "the `Accept` header allows neither `application/graphql-response+json` nor `application/json`",
            ),
            Self::MethodNotAllowed => (
                "METHOD_NOT_ALLOWED",
                S::METHOD_NOT_ALLOWED,
                "a mutation or subscription sent with GET (`Allow: POST`)",
            ),
        };
        Spec { code, status, doc }
    }

    /// The code as callers see it in `extensions.code`.
    pub fn as_str(self) -> &'static str {
        self.spec().code
    }

    /// The HTTP status of a request this code refuses before GraphQL runs it. A GraphQL
    /// answer follows GraphQL over HTTP instead: 200 with `application/json`, and with
    /// `application/graphql-response+json` 400 when it has no `data` (`RATE_LIMITED` and
    /// `TIMEOUT` keep theirs whatever the media type); a field's error is answered 200 with
    /// the rest of the data.
    pub fn http_status(self) -> StatusCode {
        self.spec().status
    }

    /// What the code means, as the README's table of codes says.
    pub fn doc(self) -> &'static str {
        self.spec().doc
    }

    /// The code of this text, if it is one.
    pub fn parse(code: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == code)
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The README's row for `code`.
    fn readme_row(code: ErrorCode) -> String {
        let status = code.http_status().as_u16();
        format!("| `{}` | {status} | {} |", code.as_str(), code.doc())
    }

    #[test]
    fn every_code_is_listed_once_and_reads_back() {
        for (i, code) in ErrorCode::ALL.into_iter().enumerate() {
            assert_eq!(ErrorCode::parse(code.as_str()), Some(code));
            assert!(
                ErrorCode::ALL[..i]
                    .iter()
                    .all(|c| c.as_str() != code.as_str())
            );
            assert!(!code.doc().contains('|'), "{code}: a table cell");
        }
        assert_eq!(ErrorCode::parse("SOMETHING_ELSE"), None);
    }

    /// The README's table of error codes is the enum's, row for row.
    #[test]
    fn the_readme_lists_exactly_these_codes() {
        let readme = include_str!("../../README.md");
        let start = readme
            .find("| code | HTTP status | meaning |")
            .expect("the README has a table of error codes");
        let listed: Vec<&str> = readme[start..]
            .lines()
            .skip(2)
            .take_while(|line| line.starts_with('|'))
            .collect();
        let expected: Vec<String> = ErrorCode::ALL.into_iter().map(readme_row).collect();
        assert_eq!(
            listed,
            expected,
            "the README's table of error codes differs from `ErrorCode`; it should read:\n{}",
            expected.join("\n")
        );
    }
}
