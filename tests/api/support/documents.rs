//! The GraphQL documents the dashboard sends, as its `queries.js` holds them, and their check
//! against the running server's schema.
//!
//! `queries.js` exports only constants that are template literals, whose only interpolations
//! are other constants of the file (`${TILE_FIELDS}`); [`documents`] resolves them as the
//! browser does and keeps the operations (fragments are part of the operations that use them).

use std::collections::BTreeMap;

use consentry_tests::Caller;
use serde_json::{Map, Value, json};

/// Where the server serves the module.
pub(crate) const QUERIES_JS: &str = "/dashboard/queries.js";

/// The operation type a document starts with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Query,
    Mutation,
    Subscription,
}

/// One operation of `queries.js`, its interpolations resolved.
#[derive(Debug)]
pub(crate) struct Document {
    /// The constant that holds it (`CLIENTS_PAGE`).
    pub(crate) constant: String,
    pub(crate) kind: Kind,
    pub(crate) text: String,
}

/// The exported constants of `script`, each with its template literal's raw text; an error
/// for anything `queries.js` must not hold (an export that is not a template literal).
pub(crate) fn constants(script: &str) -> Result<BTreeMap<String, String>, String> {
    let mut constants = BTreeMap::new();
    for (at, _) in script.match_indices("export ") {
        if at > 0 && !script[..at].ends_with('\n') {
            continue;
        }
        let rest = &script[at..];
        let line = rest.lines().next().unwrap_or_default();
        let declared = rest
            .strip_prefix("export const ")
            .and_then(|rest| rest.split_once(" = `"))
            .filter(|(name, _)| is_name(name));
        let Some((name, body)) = declared else {
            return Err(format!("not a constant holding a template literal: {line}"));
        };
        let Some(end) = body.find('`') else {
            return Err(format!("{name}: the template literal does not end"));
        };
        if !body[end + 1..].starts_with(';') {
            return Err(format!("{name}: more than one template literal"));
        }
        if constants
            .insert(name.to_owned(), body[..end].to_owned())
            .is_some()
        {
            return Err(format!("{name} is exported twice"));
        }
    }
    Ok(constants)
}

fn is_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$')
}

/// `name`'s text with every `${CONSTANT}` replaced by that constant's (resolved) text.
fn resolve(
    constants: &BTreeMap<String, String>,
    name: &str,
    depth: usize,
) -> Result<String, String> {
    if depth > 8 {
        return Err(format!("{name}: interpolations nest too deep (a cycle?)"));
    }
    let mut text = constants
        .get(name)
        .ok_or_else(|| format!("no constant {name}"))?
        .clone();
    while let Some(start) = text.find("${") {
        let end = text[start..]
            .find('}')
            .ok_or_else(|| format!("{name}: an interpolation does not end"))?;
        let inner = text[start + 2..start + end].trim().to_owned();
        if !is_name(&inner) || !constants.contains_key(&inner) {
            return Err(format!(
                "{name} interpolates `{inner}`, which is not a constant of queries.js"
            ));
        }
        let value = resolve(constants, &inner, depth + 1)?;
        text.replace_range(start..start + end + 1, &value);
    }
    Ok(text)
}

/// Every operation of `script` (fragments only inside the operations that use them).
pub(crate) fn documents(script: &str) -> Result<Vec<Document>, String> {
    let constants = constants(script)?;
    let mut documents = Vec::new();
    for name in constants.keys() {
        let text = resolve(&constants, name, 0)?;
        let first = text.split_whitespace().next().unwrap_or_default();
        let kind = match first {
            "query" => Kind::Query,
            "mutation" => Kind::Mutation,
            "subscription" => Kind::Subscription,
            "fragment" => continue,
            _ => return Err(format!("{name} is neither an operation nor a fragment")),
        };
        documents.push(Document {
            constant: name.clone(),
            kind,
            text,
        });
    }
    Ok(documents)
}

/// The variables a document declares: `($a: ID!, $b: String)` as `[("a", "ID!"), …]`.
pub(crate) fn variables(document: &str) -> Vec<(String, String)> {
    let head = &document[..document.find('{').unwrap_or(document.len())];
    let Some(open) = head.find('(') else {
        return Vec::new();
    };
    let close = head.rfind(')').unwrap_or(head.len());
    head[open + 1..close]
        .split(',')
        .filter_map(|definition| {
            let (name, ty) = definition.split_once(':')?;
            let ty = ty.split('=').next().unwrap_or_default();
            Some((
                name.trim().trim_start_matches('$').to_owned(),
                ty.trim().to_owned(),
            ))
        })
        .collect()
}

/// A value of type `ty` as the dashboard would send it (`client` stands for every `ID!`);
/// `None` leaves a nullable variable out.
fn sample(ty: &str, client: &str) -> Result<Option<Value>, String> {
    if !ty.ends_with('!') {
        return Ok(None);
    }
    Ok(Some(match ty {
        "ID!" => json!(client),
        // The largest page the dashboard asks for (its cost counts against the limits).
        "Int!" => json!(25),
        "String!" => json!("dashboard"),
        "Boolean!" => json!(false),
        "[DelegatedPermission!]!" => json!(["MAIL_SEND"]),
        _ => {
            return Err(format!(
                "no sample value for a variable of type {ty}: add one to support/documents.rs"
            ));
        }
    }))
}

/// Sends `document` to the server as `caller` (with sample variables, about the client
/// `client`) and answers whether the server found it valid. Queries and mutations run:
/// every error they get must belong to a field (the document itself was fine). A subscription
/// over HTTP is refused once validated, so the only error it may get is that refusal.
pub(crate) async fn check(
    caller: &Caller<'_>,
    document: &Document,
    client: &str,
) -> Result<(), String> {
    let mut values = Map::new();
    for (name, ty) in variables(&document.text) {
        if let Some(value) = sample(&ty, client)? {
            values.insert(name, value);
        }
    }
    let response = caller.run(&document.text, Value::Object(values)).await;
    let errors = response.errors();
    let describe = |e: &Value| {
        format!(
            "{}: {} ({})",
            document.constant,
            e["message"].as_str().unwrap_or_default(),
            e["extensions"]["code"].as_str().unwrap_or("no code")
        )
    };
    let refused: Vec<String> = errors
        .iter()
        .filter(|e| {
            let in_a_field = e["path"].as_array().is_some_and(|p| !p.is_empty());
            let transport_refusal = document.kind == Kind::Subscription
                && e["extensions"]["code"] == json!("BAD_REQUEST")
                && e["message"]
                    .as_str()
                    .is_some_and(|m| m.contains(SUBSCRIPTION_OVER_HTTP));
            !in_a_field && !transport_refusal
        })
        .map(describe)
        .collect();
    if !refused.is_empty() {
        return Err(refused.join("\n"));
    }
    if document.kind == Kind::Subscription && errors.is_empty() {
        return Err(format!(
            "{}: a subscription over HTTP was not refused: {}",
            document.constant, response.body
        ));
    }
    Ok(())
}

/// What Consentry's refusal of a valid subscription over HTTP points to (they are served
/// over `/graphql/ws` only); the document is validated first, so an invalid one gets
/// `GRAPHQL_VALIDATION_FAILED` instead.
pub(crate) const SUBSCRIPTION_OVER_HTTP: &str = "/graphql/ws";
