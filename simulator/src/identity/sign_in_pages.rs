//! The simulator's sign-in and consent pages: `adminconsent` and `authorize`, each a page and
//! the form it posts, redirecting back as Microsoft does (docs/microsoft-identity.md §1, §2).

use super::*;

pub(crate) async fn admin_consent_page(
    State(inner): State<Shared>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
    Query(params): Query<Params>,
) -> Response {
    record(
        &inner,
        "GET",
        &format!("/{tenant}/v2.0/adminconsent"),
        &params,
        &Params::new(),
    );
    let tenants = match check_app(&inner, &tenant, &params) {
        Ok(tenants) => tenants,
        Err(page) => return page,
    };
    let permissions: Vec<String> = read(&inner.config)
        .required_roles
        .iter()
        .map(|r| format!("{r} (application permission)"))
        .collect();
    Html(pages::consent(
        &format!("/{tenant}/v2.0/adminconsent"),
        "Permissions requested — Accept for your organization",
        "Consentry",
        &permissions,
        &tenants,
        signed_in(&headers),
        &params,
    ))
    .into_response()
}

pub(crate) async fn admin_consent_decision(
    State(inner): State<Shared>,
    Path(tenant): Path<String>,
    Form(params): Form<Params>,
) -> Response {
    let index = record(
        &inner,
        "POST",
        &format!("/{tenant}/v2.0/adminconsent"),
        &Params::new(),
        &params,
    );
    let tenants = match check_app(&inner, &tenant, &params) {
        Ok(tenants) => tenants,
        Err(page) => return page,
    };
    let Some((home, user)) = chosen_user(&all_tenants(&inner), &params) else {
        return (
            StatusCode::BAD_REQUEST,
            Html(pages::error(
                50034,
                "The user account does not exist in this directory.",
            )),
        )
            .into_response();
    };
    if !tenants.iter().any(|t| t.id == home.id) {
        note(&inner, index, "outcome=50020");
        return redirect_error(
            &inner,
            &params,
            50020,
            "access_denied",
            &format!(
                "User account '{}' from identity provider 'https://sts.windows.net/{}/' does not exist in tenant '{}' and cannot access the application.",
                user.user_principal_name, home.id, tenant
            ),
            true,
        );
    }
    let declined = params.get("decision").map(String::as_str) != Some("accept")
        || home.faults.consent_declined;
    let outcome = if home.faults.mfa_required {
        Some((50076, "interaction_required", "Due to a configuration change made by your administrator, or because you moved to a new location, you must use multi-factor authentication to access 'Consentry'.".to_owned()))
    } else if home.faults.conditional_access_blocked {
        Some((53003, "access_denied", "Access has been blocked by Conditional Access policies. The access policy does not allow token issuance.".to_owned()))
    } else if declined {
        Some((
            65004,
            "access_denied",
            "User declined to consent to access the app.".to_owned(),
        ))
    } else if !user.is_admin {
        Some((
            90094,
            "access_denied",
            "The grant requires admin permission.".to_owned(),
        ))
    } else if let Some(app_id) = missing_principal(&inner, home.id) {
        Some((
            650052,
            "invalid_client",
            format!(
                "The app is trying to access a service '{app_id}'({}) that your organization '{}' lacks a service principal for. Contact your IT Admin to review the configuration of your service subscriptions or consent to the application in order to create the required service principal.",
                app_display_name(&app_id),
                home.id
            ),
        ))
    } else {
        None
    };
    if let Some((code, error, message)) = outcome {
        note(&inner, index, format!("outcome={code}"));
        return redirect_error(&inner, &params, code, error, &message, true);
    }
    let required = read(&inner.config).required_roles.clone();
    if let Some(state) = write(&inner.tenants)
        .iter_mut()
        .find(|t| t.spec.id == home.id)
    {
        state.granted_roles = Some(state.spec.faults.granted_roles.clone().unwrap_or(required));
    }
    note(&inner, index, "outcome=consented");
    let mut out = vec![
        ("admin_consent", "True".to_owned()),
        ("tenant", home.id.to_string()),
        ("scope", params.get("scope").cloned().unwrap_or_default()),
    ];
    if let Some(state) = params.get("state") {
        out.push(("state", state.clone()));
    }
    redirect(
        params
            .get("redirect_uri")
            .map(String::as_str)
            .unwrap_or_default(),
        &out,
    )
}

pub(crate) async fn authorize_page(
    State(inner): State<Shared>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
    Query(params): Query<Params>,
) -> Response {
    let index = record(
        &inner,
        "GET",
        &format!("/{tenant}/oauth2/v2.0/authorize"),
        &params,
        &Params::new(),
    );
    let tenants = match check_app(&inner, &tenant, &params) {
        Ok(tenants) => tenants,
        Err(page) => return page,
    };
    if params.get("response_type").map(String::as_str) != Some("code") {
        note(&inner, index, "outcome=unsupported_response_type");
        return redirect_error(
            &inner,
            &params,
            700054,
            "unsupported_response_type",
            "response_type 'code' is the only one enabled for this application.",
            false,
        );
    }
    let scopes: Vec<String> = params
        .get("scope")
        .map(|s| s.split_whitespace().map(str::to_owned).collect())
        .unwrap_or_default();
    // `prompt=select_account` asks the user to pick an account again.
    let session = signed_in(&headers)
        .filter(|_| params.get("prompt").map(String::as_str) != Some("select_account"));
    Html(pages::consent(
        &format!("/{tenant}/oauth2/v2.0/authorize"),
        "Permissions requested",
        "Consentry",
        &scopes,
        &hinted_first(&inner, tenants, &params),
        session,
        &params,
    ))
    .into_response()
}

pub(crate) async fn authorize_decision(
    State(inner): State<Shared>,
    Path(tenant): Path<String>,
    Form(params): Form<Params>,
) -> Response {
    let index = record(
        &inner,
        "POST",
        &format!("/{tenant}/oauth2/v2.0/authorize"),
        &Params::new(),
        &params,
    );
    let tenants = match check_app(&inner, &tenant, &params) {
        Ok(tenants) => tenants,
        Err(page) => return page,
    };
    let Some((home, user)) = chosen_user(&all_tenants(&inner), &params) else {
        return (
            StatusCode::BAD_REQUEST,
            Html(pages::error(
                50034,
                "The user account does not exist in this directory.",
            )),
        )
            .into_response();
    };
    if !tenants.iter().any(|t| t.id == home.id) {
        note(&inner, index, "outcome=50020");
        return redirect_error(
            &inner,
            &params,
            50020,
            "access_denied",
            "The user account does not exist in this tenant.",
            false,
        );
    }
    let requested: Vec<String> = params
        .get("scope")
        .map(|s| s.split_whitespace().map(str::to_owned).collect())
        .unwrap_or_default();
    let declined = params.get("decision").map(String::as_str) != Some("accept")
        || home.faults.consent_declined;
    let admin_only = |s: &String| {
        ADMIN_ONLY_SCOPES
            .iter()
            .any(|a| scope_name(s).eq_ignore_ascii_case(a))
    };
    let granted: Vec<String> = if user.is_admin {
        requested.clone()
    } else {
        requested
            .iter()
            .filter(|s| !admin_only(s))
            .cloned()
            .collect()
    };
    let grants_resource_scope = granted
        .iter()
        .any(|s| !OIDC_SCOPES.contains(&s.to_ascii_lowercase().as_str()));
    let outcome = if home.faults.mfa_required {
        Some((
            50076,
            "interaction_required",
            "Due to a configuration change made by your administrator, or because you moved to a new location, you must use multi-factor authentication to access 'Consentry'.",
        ))
    } else if home.faults.conditional_access_blocked {
        Some((
            53003,
            "access_denied",
            "Access has been blocked by Conditional Access policies. The access policy does not allow token issuance.",
        ))
    } else if declined {
        Some((
            65004,
            "access_denied",
            "User declined to consent to access the app.",
        ))
    } else if !grants_resource_scope && requested.iter().any(admin_only) {
        Some((
            90094,
            "access_denied",
            "The grant requires admin permission.",
        ))
    } else {
        None
    };
    if let Some((code, error, message)) = outcome {
        note(&inner, index, format!("outcome={code}"));
        return redirect_error(&inner, &params, code, error, message, false);
    }
    if granted.len() < requested.len() {
        note(&inner, index, "outcome=partial-grant");
    }
    let challenge = params.get("code_challenge").map(|c| {
        (
            c.clone(),
            params
                .get("code_challenge_method")
                .cloned()
                .unwrap_or_else(|| "plain".to_owned()),
        )
    });
    let code = random_token("sim-code");
    lock(&inner.codes).insert(
        code.clone(),
        CodeGrant {
            client_id: params.get("client_id").cloned().unwrap_or_default(),
            redirect_uri: params.get("redirect_uri").cloned().unwrap_or_default(),
            tenant_id: home.id,
            user_id: user.id,
            scopes: granted,
            nonce: params.get("nonce").cloned(),
            challenge,
            issued_at: Utc::now(),
            redeemed: false,
        },
    );
    note(&inner, index, "outcome=code");
    let mut out = vec![("code", code)];
    if let Some(state) = params.get("state") {
        out.push(("state", state.clone()));
    }
    let mut response = redirect(
        params
            .get("redirect_uri")
            .map(String::as_str)
            .unwrap_or_default(),
        &out,
    );
    if let Ok(cookie) = header::HeaderValue::from_str(&format!(
        "{SESSION_COOKIE}={}; Path=/; HttpOnly; SameSite=Lax",
        user.id
    )) {
        response.headers_mut().insert(header::SET_COOKIE, cookie);
    }
    response
}
