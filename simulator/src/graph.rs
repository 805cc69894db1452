//! The simulator's Microsoft Graph: `/organization`, `/me`, and listing and creating
//! service principals, with Graph's error shape, throttling and replication lag (reference §6).

use std::collections::BTreeMap;

use axum::{
    Json,
    body::Bytes,
    extract::{Query, State},
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde_json::{Value, json};
use uuid::Uuid;

use super::{
    AccessGrant, Inner, Shared, find_tenant, identity::faulty, lock, note, record,
    scenario::app_display_name, write,
};

type Params = BTreeMap<String, String>;

fn graph_error(status: StatusCode, code: &str, message: &str) -> Response {
    let body = json!({
        "error": {
            "code": code,
            "message": message,
            "innerError": {
                "date": chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S").to_string(),
                "request-id": Uuid::new_v4(),
                "client-request-id": Uuid::new_v4(),
            }
        }
    });
    (status, Json(body)).into_response()
}

/// The caller's grant, after the tenant's throttling and response faults.
fn authorise(inner: &Inner, index: usize, headers: &HeaderMap) -> Result<AccessGrant, Response> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    if token.is_empty() {
        return Err(graph_error(
            StatusCode::UNAUTHORIZED,
            "InvalidAuthenticationToken",
            "Access token is empty.",
        ));
    }
    let Some(grant) = lock(&inner.access_tokens).get(token).cloned() else {
        note(inner, index, "token=unknown");
        return Err(graph_error(
            StatusCode::UNAUTHORIZED,
            "InvalidAuthenticationToken",
            "Access token validation failure. Invalid audience.",
        ));
    };
    let mut tenants = write(&inner.tenants);
    if let Some(state) = tenants.iter_mut().find(|t| t.spec.id == grant.tenant_id) {
        state.graph_calls += 1;
        if let Some(throttle) = state.spec.faults.graph_throttle
            && state.graph_calls <= throttle.count
        {
            note(inner, index, "outcome=throttled");
            let mut response = graph_error(
                StatusCode::TOO_MANY_REQUESTS,
                "TooManyRequests",
                "Too many requests. Please retry after the time in the Retry-After header.",
            );
            if let Ok(value) = throttle.retry_after_seconds.to_string().parse() {
                response.headers_mut().insert(header::RETRY_AFTER, value);
            }
            return Err(response);
        }
        if let Some(fault) = state.spec.faults.graph_response {
            note(inner, index, format!("outcome=fault-{fault:?}"));
            return Err(faulty(fault));
        }
    }
    Ok(grant)
}

fn has_any(have: &[String], wanted: &[&str]) -> bool {
    have.iter()
        .any(|h| wanted.iter().any(|w| h.eq_ignore_ascii_case(w)))
}

pub(super) async fn organization(State(inner): State<Shared>, headers: HeaderMap) -> Response {
    let index = record(
        &inner,
        "GET",
        "/v1.0/organization",
        &Params::new(),
        &Params::new(),
    );
    let grant = match authorise(&inner, index, &headers) {
        Ok(grant) => grant,
        Err(refusal) => return refusal,
    };
    let app_only = grant.user_id.is_none();
    if app_only
        && !has_any(
            &grant.roles,
            &[
                "Organization.Read.All",
                "Organization.ReadWrite.All",
                "Directory.Read.All",
                "Directory.ReadWrite.All",
            ],
        )
    {
        return graph_error(
            StatusCode::FORBIDDEN,
            "Authorization_RequestDenied",
            "Insufficient privileges to complete the operation.",
        );
    }
    let Some(tenant) = find_tenant(&inner, &grant.tenant_id.to_string()) else {
        return graph_error(
            StatusCode::NOT_FOUND,
            "Request_ResourceNotFound",
            "Resource not found.",
        );
    };
    Json(json!({
        "@odata.context": format!("{}v1.0/$metadata#organization", inner.base_url),
        "value": [{
            "id": tenant.id,
            "displayName": tenant.display_name,
            "tenantType": "AAD",
            "verifiedDomains": [{
                "capabilities": "Email, OfficeCommunicationsOnline",
                "isDefault": true,
                "isInitial": true,
                "name": tenant.domain,
                "type": "Managed",
            }],
        }]
    }))
    .into_response()
}

pub(super) async fn me(State(inner): State<Shared>, headers: HeaderMap) -> Response {
    let index = record(&inner, "GET", "/v1.0/me", &Params::new(), &Params::new());
    let grant = match authorise(&inner, index, &headers) {
        Ok(grant) => grant,
        Err(refusal) => return refusal,
    };
    let Some(user_id) = grant.user_id else {
        return graph_error(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "/me request is only valid with delegated authentication flow.",
        );
    };
    let user = find_tenant(&inner, &grant.tenant_id.to_string())
        .and_then(|t| t.users.into_iter().find(|u| u.id == user_id));
    let Some(user) = user else {
        return graph_error(
            StatusCode::NOT_FOUND,
            "Request_ResourceNotFound",
            "Resource not found.",
        );
    };
    Json(json!({
        "@odata.context": format!("{}v1.0/$metadata#users/$entity", inner.base_url),
        "businessPhones": [],
        "displayName": user.display_name,
        "givenName": user.display_name,
        "id": user.id,
        "jobTitle": null,
        "mail": user.user_principal_name,
        "mobilePhone": null,
        "officeLocation": null,
        "preferredLanguage": "en-GB",
        "surname": null,
        "userPrincipalName": user.user_principal_name,
    }))
    .into_response()
}

fn principal_json(inner: &Inner, tenant_id: Uuid, app_id: &str, object_id: Uuid) -> Value {
    json!({
        "@odata.context": format!("{}v1.0/$metadata#servicePrincipals/$entity", inner.base_url),
        "id": object_id,
        "appId": app_id,
        "appDisplayName": app_display_name(app_id),
        "appOwnerOrganizationId": Uuid::nil(),
        "accountEnabled": true,
        "servicePrincipalNames": [app_id],
        "servicePrincipalType": "Application",
        "appRoles": [],
        "oauth2PermissionScopes": [],
        "tenantId": tenant_id,
    })
}

/// `appId eq '…'` from a `$filter`.
fn filtered_app_id(filter: &str) -> Option<String> {
    let rest = filter.trim().strip_prefix("appId eq '")?;
    rest.strip_suffix('\'').map(str::to_owned)
}

pub(super) async fn list_service_principals(
    State(inner): State<Shared>,
    headers: HeaderMap,
    Query(query): Query<Params>,
) -> Response {
    let index = record(
        &inner,
        "GET",
        "/v1.0/servicePrincipals",
        &query,
        &Params::new(),
    );
    let grant = match authorise(&inner, index, &headers) {
        Ok(grant) => grant,
        Err(refusal) => return refusal,
    };
    let Some(app_id) = query.get("$filter").and_then(|f| filtered_app_id(f)) else {
        return graph_error(
            StatusCode::BAD_REQUEST,
            "Request_UnsupportedQuery",
            "The simulator supports only $filter=appId eq '{appId}'.",
        );
    };
    let mut tenants = write(&inner.tenants);
    let Some(state) = tenants.iter_mut().find(|t| t.spec.id == grant.tenant_id) else {
        return graph_error(
            StatusCode::NOT_FOUND,
            "Request_ResourceNotFound",
            "Resource not found.",
        );
    };
    let missing = state.spec.missing_service_principals.contains(&app_id);
    let found = match state.created.get_mut(&app_id) {
        // Replication lag: a new principal is invisible for a few lookups.
        Some((_, invisible)) if *invisible > 0 => {
            *invisible -= 1;
            note(&inner, index, "outcome=not-yet-replicated");
            None
        }
        Some((object_id, _)) => Some(*object_id),
        None if missing => None,
        None => Some(super::stable_id(&format!("sp:{app_id}:{}", state.spec.id))),
    };
    let value: Vec<Value> = found
        .map(|id| principal_json(&inner, grant.tenant_id, &app_id, id))
        .into_iter()
        .collect();
    Json(json!({
        "@odata.context": format!("{}v1.0/$metadata#servicePrincipals", inner.base_url),
        "value": value,
    }))
    .into_response()
}

pub(super) async fn create_service_principal(
    State(inner): State<Shared>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let parsed: Option<Value> = serde_json::from_slice(&body).ok();
    let app_id = parsed
        .as_ref()
        .and_then(|b| b.get("appId"))
        .and_then(|a| a.as_str())
        .map(str::to_owned);
    let mut form = Params::new();
    if let Some(Value::Object(fields)) = &parsed {
        for (key, value) in fields {
            form.insert(key.clone(), value.to_string().trim_matches('"').to_owned());
        }
    }
    let index = record(
        &inner,
        "POST",
        "/v1.0/servicePrincipals",
        &Params::new(),
        &form,
    );
    let grant = match authorise(&inner, index, &headers) {
        Ok(grant) => grant,
        Err(refusal) => return refusal,
    };
    let Some(app_id) = app_id.filter(|a| Uuid::try_parse(a).is_ok()) else {
        return graph_error(
            StatusCode::BAD_REQUEST,
            "Request_BadRequest",
            "Invalid value specified for property 'appId' of resource 'ServicePrincipal'.",
        );
    };
    let allowed = match grant.user_id {
        Some(user_id) => {
            let is_admin = find_tenant(&inner, &grant.tenant_id.to_string())
                .and_then(|t| t.users.into_iter().find(|u| u.id == user_id))
                .is_some_and(|u| u.is_admin);
            is_admin
                && has_any(
                    &grant.scopes,
                    &[
                        "Application.ReadWrite.All",
                        "Directory.AccessAsUser.All",
                        "Directory.ReadWrite.All",
                    ],
                )
        }
        None => has_any(
            &grant.roles,
            &[
                "Application.ReadWrite.All",
                "Application.ReadWrite.OwnedBy",
                "Directory.ReadWrite.All",
            ],
        ),
    };
    let lacks_role = find_tenant(&inner, &grant.tenant_id.to_string())
        .is_some_and(|t| t.faults.insufficient_privileges);
    if !allowed || lacks_role {
        note(&inner, index, "outcome=403");
        return graph_error(
            StatusCode::FORBIDDEN,
            "Authorization_RequestDenied",
            "Insufficient privileges to complete the operation.",
        );
    }
    let mut tenants = write(&inner.tenants);
    let Some(state) = tenants.iter_mut().find(|t| t.spec.id == grant.tenant_id) else {
        return graph_error(
            StatusCode::NOT_FOUND,
            "Request_ResourceNotFound",
            "Resource not found.",
        );
    };
    let missing = state.spec.missing_service_principals.contains(&app_id);
    if !missing || state.created.contains_key(&app_id) {
        note(&inner, index, "outcome=409");
        return graph_error(
            StatusCode::CONFLICT,
            "Request_MultipleObjectsWithSameKeyValue",
            &format!(
                "The service principal cannot be created, updated, or restored because the service principal name {app_id} is already in use."
            ),
        );
    }
    let object_id = Uuid::new_v4();
    state.created.insert(
        app_id.clone(),
        (object_id, state.spec.faults.propagation_lookups),
    );
    let tenant_id = state.spec.id;
    drop(tenants);
    note(&inner, index, "outcome=created");
    (
        StatusCode::CREATED,
        Json(principal_json(&inner, tenant_id, &app_id, object_id)),
    )
        .into_response()
}
