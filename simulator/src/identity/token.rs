//! The simulator's token endpoint: authorization codes, refresh tokens and client
//! credentials, one resource per request, with the id_tokens Microsoft signs
//! (docs/microsoft-identity.md §2, §4, §5, §9).

use super::*;

pub(super) fn client_authenticated(
    inner: &Inner,
    form: &Params,
    headers: &HeaderMap,
) -> Result<(), Response> {
    let config = read(&inner.config);
    let basic = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|pair| {
            pair.split_once(':')
                .map(|(id, secret)| (id.to_owned(), secret.to_owned()))
        });
    let (client_id, secret) = match (form.get("client_id"), form.get("client_secret"), basic) {
        (Some(id), Some(secret), _) => (id.clone(), secret.clone()),
        (_, _, Some((id, secret))) => (id, secret),
        (Some(id), None, None) => (id.clone(), String::new()),
        _ => {
            return Err(oauth_error(
                inner,
                StatusCode::BAD_REQUEST,
                "invalid_request",
                900144,
                "The request body must contain the following parameter: 'client_id'.",
            ));
        }
    };
    if client_id != config.client_id {
        return Err(oauth_error(
            inner,
            StatusCode::BAD_REQUEST,
            "unauthorized_client",
            700016,
            &format!("Application with identifier '{client_id}' was not found in the directory."),
        ));
    }
    if secret != config.client_secret {
        return Err(oauth_error(
            inner,
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            7000215,
            &format!(
                "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '{client_id}'."
            ),
        ));
    }
    Ok(())
}

pub(crate) async fn token(
    State(inner): State<Shared>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
    Form(form): Form<Params>,
) -> Response {
    let index = record(
        &inner,
        "POST",
        &format!("/{tenant}/oauth2/v2.0/token"),
        &Params::new(),
        &form,
    );
    // Faults belong to the tenant in the path, or (for organizations) the grant's tenant.
    let path_tenant = find_tenant(&inner, &tenant);
    let grant_tenant = form
        .get("code")
        .and_then(|c| lock(&inner.codes).get(c).map(|g| g.tenant_id))
        .or_else(|| {
            form.get("refresh_token")
                .and_then(|r| lock(&inner.refresh_tokens).get(r).map(|g| g.tenant_id))
        });
    let faults = path_tenant
        .clone()
        .or_else(|| grant_tenant.and_then(|id| find_tenant(&inner, &id.to_string())))
        .map(|t| t.faults)
        .unwrap_or_default();
    if faults.token_delay_ms > 0 {
        tokio::time::sleep(std::time::Duration::from_millis(faults.token_delay_ms)).await;
    }
    if let Some(status) = faults.token_failure_status {
        note(&inner, index, format!("outcome=fault-{status}"));
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
        let error = if status == StatusCode::SERVICE_UNAVAILABLE {
            "temporarily_unavailable"
        } else {
            "server_error"
        };
        return oauth_error(
            &inner,
            status,
            error,
            90033,
            "A transient error has occurred. Please try again.",
        );
    }
    if let Some(fault) = faults.token_response {
        note(&inner, index, format!("outcome=fault-{fault:?}"));
        return faulty(fault);
    }
    if let Err(refusal) = client_authenticated(&inner, &form, &headers) {
        note(&inner, index, "outcome=client-refused");
        return refusal;
    }
    match form.get("grant_type").map(String::as_str) {
        Some("authorization_code") => redeem_code(&inner, index, &form),
        Some("refresh_token") => redeem_refresh_token(&inner, index, &form, &faults),
        Some("client_credentials") => {
            client_credentials(&inner, index, &tenant, path_tenant, &form)
        }
        _ => oauth_error(
            &inner,
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            70003,
            "The app requested an unsupported grant type.",
        ),
    }
}

/// The one resource a token request's scopes name (reference §2: one per request).
pub(super) fn single_resource(
    inner: &Inner,
    scope: &str,
    fallback: &[String],
) -> Result<String, Response> {
    let mut resources: Vec<String> = scope
        .split_whitespace()
        .filter_map(|s| resource_of(inner, s))
        .collect();
    resources.dedup();
    if resources.is_empty() {
        resources = fallback
            .iter()
            .filter_map(|s| resource_of(inner, s))
            .take(1)
            .collect();
    }
    match resources.as_slice() {
        [one] => Ok(one.clone()),
        [] => Ok(graph_resource(inner)),
        _ => Err(oauth_error(
            inner,
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            28000,
            &format!(
                "Provided value for the input parameter scope is not valid because it contains more than one resource. Scope {scope} is not valid."
            ),
        )),
    }
}

pub(super) fn redeem_code(inner: &Inner, index: usize, form: &Params) -> Response {
    let code = form.get("code").cloned().unwrap_or_default();
    let mut codes = lock(&inner.codes);
    let Some(grant) = codes.get_mut(&code) else {
        note(inner, index, "code=unknown");
        return oauth_error(
            inner,
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            9002313,
            "Invalid request. Request is malformed or invalid.",
        );
    };
    if grant.redeemed {
        note(inner, index, "code=already-redeemed");
        return oauth_error(
            inner,
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            54005,
            "OAuth2 Authorization code was already redeemed, please retry with a new valid code or use an existing refresh token.",
        );
    }
    if (Utc::now() - grant.issued_at).num_minutes() >= 10 {
        note(inner, index, "code=expired");
        return oauth_error(
            inner,
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            70008,
            "The provided authorization code or refresh token has expired due to inactivity. Send a new interactive authorization request for this user and resource.",
        );
    }
    if form.get("client_id") != Some(&grant.client_id) {
        return oauth_error(
            inner,
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            70002,
            "The client does not match the one the code was issued to.",
        );
    }
    if form.get("redirect_uri") != Some(&grant.redirect_uri) {
        note(inner, index, "redirect_uri=mismatch");
        return oauth_error(
            inner,
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            50148,
            "The redirect_uri does not match the one used in the authorization request.",
        );
    }
    if let Some((challenge, method)) = &grant.challenge {
        let verifier = form.get("code_verifier").cloned().unwrap_or_default();
        let computed = if method.eq_ignore_ascii_case("S256") {
            URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
        } else {
            verifier
        };
        if computed != *challenge {
            note(inner, index, "pkce=mismatch");
            return oauth_error(
                inner,
                StatusCode::BAD_REQUEST,
                "invalid_grant",
                501481,
                "The Code_Verifier does not match the code_challenge supplied in the authorization request.",
            );
        }
        note(inner, index, format!("pkce=ok ({method})"));
    } else {
        note(inner, index, "pkce=absent");
    }
    let scope = form.get("scope").cloned().unwrap_or_default();
    let resource = match single_resource(inner, &scope, &grant.scopes) {
        Ok(resource) => resource,
        Err(refusal) => return refusal,
    };
    grant.redeemed = true;
    note(inner, index, "code=redeemed");
    let (tenant_id, user_id, scopes, nonce) = (
        grant.tenant_id,
        grant.user_id,
        grant.scopes.clone(),
        grant.nonce.clone(),
    );
    drop(codes);
    issue_user_tokens(
        inner,
        tenant_id,
        user_id,
        &scopes,
        &resource,
        nonce.as_deref(),
    )
}

pub(super) fn redeem_refresh_token(
    inner: &Inner,
    index: usize,
    form: &Params,
    faults: &crate::Faults,
) -> Response {
    let token = form.get("refresh_token").cloned().unwrap_or_default();
    let Some(grant) = lock(&inner.refresh_tokens).get(&token).cloned() else {
        note(inner, index, "refresh=unknown");
        return oauth_error(
            inner,
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            9002313,
            "Invalid request. Request is malformed or invalid.",
        );
    };
    if faults.refresh_token_expired {
        note(inner, index, "refresh=expired");
        let issued = (Utc::now() - chrono::Duration::days(91)).format("%Y-%m-%dT%H:%M:%S.0000000Z");
        return oauth_error(
            inner,
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            700082,
            &format!(
                "The refresh token has expired due to inactivity. The token was issued on {issued} and was inactive for 90.00:00:00."
            ),
        );
    }
    let scope = form.get("scope").cloned().unwrap_or_default();
    // A refresh spanning resources gets a token for the first (reference §2).
    let resource = scope
        .split_whitespace()
        .find_map(|s| resource_of(inner, s))
        .unwrap_or_else(|| graph_resource(inner));
    note(inner, index, "refresh=ok");
    issue_user_tokens(
        inner,
        grant.tenant_id,
        grant.user_id,
        &grant.scopes,
        &resource,
        None,
    )
}

/// Access, refresh and id tokens for a user, for one resource.
pub(super) fn issue_user_tokens(
    inner: &Inner,
    tenant_id: Uuid,
    user_id: Uuid,
    scopes: &[String],
    resource: &str,
    nonce: Option<&str>,
) -> Response {
    let Some(tenant) = find_tenant(inner, &tenant_id.to_string()) else {
        return oauth_error(
            inner,
            StatusCode::BAD_REQUEST,
            "invalid_tenant",
            90002,
            "Tenant not found.",
        );
    };
    let Some(user) = tenant.users.iter().find(|u| u.id == user_id).cloned() else {
        return oauth_error(
            inner,
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            50034,
            "The user account does not exist in this directory.",
        );
    };
    let client_id = read(&inner.config).client_id.clone();
    let granted = scopes_for(inner, scopes, resource);
    let resource_scopes: Vec<String> = granted
        .iter()
        .filter(|s| !OIDC_SCOPES.contains(&s.to_ascii_lowercase().as_str()))
        .cloned()
        .collect();
    let issuer = format!("{}{}/v2.0", inner.base_url, tenant_id);
    let issued = now();
    let access_claims = json!({
        "aud": resource, "iss": issuer, "iat": issued, "nbf": issued, "exp": issued + 3600,
        "tid": tenant_id, "oid": user.id, "sub": user.id, "scp": resource_scopes.join(" "),
        "azp": client_id, "name": user.display_name, "upn": user.user_principal_name, "ver": "2.0",
    });
    let Ok(access_token) = read(&inner.keys).active().sign(&access_claims) else {
        return (StatusCode::INTERNAL_SERVER_ERROR, "signing failed").into_response();
    };
    lock(&inner.access_tokens).insert(
        access_token.clone(),
        AccessGrant {
            tenant_id,
            user_id: Some(user.id),
            roles: Vec::new(),
            scopes: resource_scopes.clone(),
        },
    );
    let lower: Vec<String> = scopes.iter().map(|s| s.to_ascii_lowercase()).collect();
    let mut body = json!({
        "token_type": "Bearer",
        "scope": granted.join(" "),
        "expires_in": 3599,
        "ext_expires_in": 3599,
        "access_token": access_token,
    });
    if lower.iter().any(|s| s == "offline_access") {
        let refresh = random_token("sim-refresh");
        lock(&inner.refresh_tokens).insert(
            refresh.clone(),
            RefreshGrant {
                tenant_id,
                user_id,
                scopes: scopes.to_vec(),
            },
        );
        body["refresh_token"] = Value::String(refresh);
    }
    if lower.iter().any(|s| s == "openid") {
        // Pairwise subject: stable per user and app.
        let sub = URL_SAFE_NO_PAD.encode(Sha256::digest(
            format!("{}:{client_id}", user.id).as_bytes(),
        ));
        let mut id_claims = json!({
            "aud": client_id, "iss": issuer, "iat": issued, "nbf": issued, "exp": issued + 3600,
            "tid": tenant_id, "oid": user.id, "sub": sub, "ver": "2.0",
            "preferred_username": user.user_principal_name, "name": user.display_name,
        });
        if read(&inner.config).directory_roles_in_id_tokens {
            let mut wids = vec![crate::roles::USER];
            if user.is_admin {
                wids.push(crate::roles::GLOBAL_ADMINISTRATOR);
            }
            id_claims["wids"] = json!(wids);
        }
        if let Some(nonce) = nonce {
            id_claims["nonce"] = Value::String(nonce.to_owned());
        }
        let Ok(id_token) = forge_id_token(inner, tenant.faults.id_token_attack, id_claims) else {
            return (StatusCode::INTERNAL_SERVER_ERROR, "signing failed").into_response();
        };
        body["id_token"] = Value::String(id_token);
    }
    Json(body).into_response()
}

/// Signs an id_token, forged the way the tenant's fault says.
pub(super) fn forge_id_token(
    inner: &Inner,
    attack: Option<IdTokenAttack>,
    mut claims: Value,
) -> anyhow::Result<String> {
    let elsewhere = crate::stable_id("elsewhere.onmicrosoft.com");
    match attack {
        None
        | Some(
            IdTokenAttack::BadSignature
            | IdTokenAttack::AlgNone
            | IdTokenAttack::Hs256WithPublicKey
            | IdTokenAttack::RotatedKey,
        ) => {}
        Some(IdTokenAttack::WrongIssuer) => {
            claims["iss"] = json!(format!("{}{elsewhere}/v2.0", inner.base_url));
        }
        Some(IdTokenAttack::WrongAudience) => claims["aud"] = json!(Uuid::new_v4().to_string()),
        Some(IdTokenAttack::OtherTenant) => {
            claims["tid"] = json!(elsewhere);
            claims["iss"] = json!(format!("{}{elsewhere}/v2.0", inner.base_url));
        }
        Some(IdTokenAttack::WrongNonce) => claims["nonce"] = json!("not-this-flows-nonce"),
        Some(IdTokenAttack::Expired) => {
            let past = now() - 7200;
            claims["iat"] = json!(past);
            claims["nbf"] = json!(past);
            claims["exp"] = json!(past + 3600);
        }
    }
    let encode = |bytes: &[u8]| URL_SAFE_NO_PAD.encode(bytes);
    match attack {
        Some(IdTokenAttack::AlgNone) => Ok(format!(
            "{}.{}.",
            encode(br#"{"alg":"none","typ":"JWT"}"#),
            encode(claims.to_string().as_bytes())
        )),
        Some(IdTokenAttack::Hs256WithPublicKey) => {
            let keys = read(&inner.keys);
            let jwks = keys.jwks();
            let public = jwks
                .keys
                .last()
                .map(|k| serde_json::to_string(k).unwrap_or_default())
                .unwrap_or_default();
            let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
            header.kid = Some(keys.active().kid.clone());
            Ok(jsonwebtoken::encode(
                &header,
                &claims,
                &jsonwebtoken::EncodingKey::from_secret(public.as_bytes()),
            )?)
        }
        Some(IdTokenAttack::BadSignature) => {
            let token = read(&inner.keys).active().sign(&claims)?;
            let (head, signature) = token.rsplit_once('.').unwrap_or((&token, ""));
            let mut bytes = URL_SAFE_NO_PAD.decode(signature).unwrap_or_default();
            if let Some(last) = bytes.last_mut() {
                *last ^= 1;
            }
            Ok(format!("{head}.{}", encode(&bytes)))
        }
        Some(IdTokenAttack::RotatedKey) => {
            write(&inner.keys).rotate(false)?;
            read(&inner.keys).active().sign(&claims)
        }
        _ => read(&inner.keys).active().sign(&claims),
    }
}

pub(super) fn client_credentials(
    inner: &Inner,
    index: usize,
    segment: &str,
    tenant: Option<SimTenant>,
    form: &Params,
) -> Response {
    if matches!(
        segment.to_ascii_lowercase().as_str(),
        "common" | "organizations" | "consumers"
    ) {
        return oauth_error(
            inner,
            StatusCode::BAD_REQUEST,
            "invalid_request",
            9001023,
            "The grant type isn't supported over the /common or /consumers endpoints. Please use the /organizations or tenant-specific endpoint.",
        );
    }
    let Some(tenant) = tenant else {
        return oauth_error(
            inner,
            StatusCode::BAD_REQUEST,
            "invalid_request",
            90002,
            &format!(
                "Tenant '{segment}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud."
            ),
        );
    };
    let scope = form.get("scope").cloned().unwrap_or_default();
    let scopes: Vec<&str> = scope.split_whitespace().collect();
    let [single] = scopes.as_slice() else {
        return oauth_error(
            inner,
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            70011,
            &format!(
                "The provided value for the input parameter 'scope' is not valid. The scope {scope} is not valid."
            ),
        );
    };
    let Some(resource) = single
        .strip_suffix("/.default")
        .map(|r| normalise_resource(inner, r))
    else {
        return oauth_error(
            inner,
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            1002012,
            &format!(
                "The provided value for scope {single} is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI)."
            ),
        );
    };
    let client_id = read(&inner.config).client_id.clone();
    let granted = read(&inner.tenants)
        .iter()
        .find(|t| t.spec.id == tenant.id)
        .and_then(|t| t.granted_roles.clone());
    let (Some(roles), false) = (granted, tenant.faults.app_removed) else {
        note(inner, index, "outcome=700016");
        return oauth_error(
            inner,
            StatusCode::BAD_REQUEST,
            "unauthorized_client",
            700016,
            &format!(
                "Application with identifier '{client_id}' was not found in the directory '{}'. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You may have sent your authentication request to the wrong tenant.",
                tenant.id
            ),
        );
    };
    let issued = now();
    let mut claims = json!({
        "aud": resource, "iss": format!("{}{}/v2.0", inner.base_url, tenant.id), "iat": issued, "nbf": issued,
        "exp": issued + 3600, "tid": tenant.id, "oid": crate::stable_id(&format!("sp:{client_id}:{}", tenant.id)),
        "sub": crate::stable_id(&format!("sp:{client_id}:{}", tenant.id)), "azp": client_id, "idtyp": "app", "ver": "2.0",
    });
    if !roles.is_empty() {
        claims["roles"] = json!(roles);
    }
    let Ok(access_token) = read(&inner.keys).active().sign(&claims) else {
        return (StatusCode::INTERNAL_SERVER_ERROR, "signing failed").into_response();
    };
    lock(&inner.access_tokens).insert(
        access_token.clone(),
        AccessGrant {
            tenant_id: tenant.id,
            user_id: None,
            roles,
            scopes: Vec::new(),
        },
    );
    note(inner, index, "outcome=app-token");
    Json(json!({ "token_type": "Bearer", "expires_in": 3599, "ext_expires_in": 3599, "access_token": access_token })).into_response()
}
