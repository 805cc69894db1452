//! Delegated consents: the catalog, the consent link, the callback (one code redemption, the
//! refresh token redeemed again for Azure management, id_token attacks refused), encrypted
//! storage with key rotation, keep-alive, verify, revoke, and service-principal repair with a
//! stored consent — on SQLite and PostgreSQL.

use std::{collections::BTreeMap, time::Duration};

use crate::support::flows::{
    START, TEAMS, World, admin_consent, audit_actions, authorise, callback, consent_as,
    consents_of, healthy, new_client, rows, start_link, tile, with_client, world,
};
use consentry_tests::{Backend, both_backends, eventually, start};
use entity::{delegated_consent, enums::DelegatedConsentStatus};
use sea_orm::EntityTrait;
use serde_json::json;
use simulator::{Faults, IdTokenAttack, SimTenant};
use url::Url;

const ALL: [&str; 4] = [
    "MAIL_SEND",
    "AZURE_USER_IMPERSONATION",
    "USER_AUTHENTICATION_METHOD_READ_WRITE_ALL",
    "DIRECTORY_ACCESS_AS_USER_ALL",
];

async fn sim_world(backend: Backend, tenant: &SimTenant) -> Option<World> {
    world(backend, vec![tenant.clone()], |s| {
        s.sweep_interval = Duration::from_millis(100);
    })
    .await
}

/// The catalogue of delegated permissions names the four the page offers, and which of them
/// only an admin may grant.
#[both_backends]
async fn the_catalogue_names_the_four_permissions_and_which_need_an_admin(backend: Backend) {
    let Some((world, _, _)) = contoso(backend).await else {
        return;
    };
    let caller = world.app.caller("msp-a", &["technician"]).await;
    let catalog = caller
        .run("{ delegatedPermissions { permission scope resource adminConsentRequired recommended } }", json!({}))
        .await;
    let catalog = catalog.data()["delegatedPermissions"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(catalog.len(), 4);
    let admin_only: Vec<&str> = catalog
        .iter()
        .filter(|p| p["adminConsentRequired"] == true)
        .map(|p| p["permission"].as_str().unwrap())
        .collect();
    assert_eq!(
        admin_only,
        [
            "USER_AUTHENTICATION_METHOD_READ_WRITE_ALL",
            "DIRECTORY_ACCESS_AS_USER_ALL"
        ]
    );
}

/// A delegated consent's link asks for the permissions chosen, OpenID and a refresh token,
/// with PKCE and Microsoft's consent prompt.
#[both_backends]
async fn a_delegated_link_asks_for_the_permissions_a_refresh_token_and_pkce(backend: Backend) {
    let Some((world, _, client)) = contoso(backend).await else {
        return;
    };
    let caller = world.app.caller("msp-a", &["technician"]).await;
    let url = start_link(&caller, &client, &ALL).await;
    let query: BTreeMap<_, _> = Url::parse(&url)
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect();
    assert_eq!(query["prompt"], "consent");
    assert_eq!(query["code_challenge_method"], "S256");
    assert_eq!(query["response_type"], "code");
    let scope = &query["scope"];
    for wanted in [
        "openid",
        "profile",
        "offline_access",
        "Mail.Send",
        "UserAuthenticationMethod.ReadWrite.All",
        "Directory.AccessAsUser.All",
        "//user_impersonation",
    ] {
        assert!(scope.contains(wanted), "{wanted} in {scope}");
    }
}

/// The admin grants all four: one consent, active, naming them, found by one code redemption
/// (for Graph) and one refresh (for Azure management), and audited.
#[both_backends]
async fn an_admin_grants_all_four_in_one_consent(backend: Backend) {
    let Some((world, tenant, client)) = contoso(backend).await else {
        return;
    };
    let caller = world.app.caller("msp-a", &["technician"]).await;
    let url = start_link(&caller, &client, &ALL).await;
    let admin = tenant.admin().unwrap();
    let page = consent_as(&world.app, &url, admin.id).await;
    assert!(page.contains("granted Consentry"), "{page}");
    let consents = consents_of(&caller, &client).await;
    assert_eq!(consents.len(), 1);
    let consent = &consents[0];
    assert_eq!(consent["status"], "ACTIVE");
    assert_eq!(consent["permissions"], json!(ALL));
    assert_eq!(consent["missingPermissions"], json!([]));
    assert_eq!(consent["userPrincipalName"], admin.user_principal_name);
    assert_eq!(consent["userObjectId"], admin.id.to_string());
    assert!(consent["grantedAt"].is_string() && consent["lastRefreshedAt"].is_string());

    let requests = world.sim.requests();
    let grants: Vec<&str> = requests
        .iter()
        .filter(|r| r.path.ends_with("/oauth2/v2.0/token"))
        .filter_map(|r| r.param("grant_type"))
        .collect();
    assert_eq!(grants, ["authorization_code", "refresh_token"]);
    let redeemed = requests
        .iter()
        .find(|r| r.param("grant_type") == Some("authorization_code"))
        .unwrap();
    assert!(
        !redeemed
            .param("scope")
            .unwrap()
            .contains("user_impersonation"),
        "one resource per request"
    );
    assert!(
        audit_actions(&caller, &client)
            .await
            .contains(&"DELEGATED_CONSENT_GRANTED".to_owned())
    );
}

/// Checklist 74, 80: a granted refresh token is kept only as ciphertext under a named key,
/// and the API has no field that could show it.
#[both_backends]
async fn checklist_74_80_a_granted_token_is_kept_sealed_and_never_shown(backend: Backend) {
    let Some((world, tenant, client)) = contoso(backend).await else {
        return;
    };
    let caller = world.app.caller("msp-a", &["technician"]).await;
    let url = start_link(&caller, &client, &ALL).await;
    consent_as(&world.app, &url, tenant.admin().unwrap().id).await;

    let stored = rows(&world.app).await.remove(0);
    let sealed = stored.refresh_token.clone().unwrap();
    assert_eq!(stored.refresh_token_key_id.as_deref(), Some("k1"));
    for secret in world.sim.issued_secrets() {
        assert!(
            !sealed
                .windows(secret.len().min(16))
                .any(|w| w == &secret.as_bytes()[..secret.len().min(16)])
        );
    }
    assert!(!String::from_utf8_lossy(&sealed).contains("sim-refresh"));
    let schema = caller
        .run(
            "{ __type(name: \"DelegatedConsent\") { fields { name } } }",
            json!({}),
        )
        .await;
    let fields = schema.data()["__type"]["fields"].to_string().to_lowercase();
    assert!(
        !fields.contains("token") && !fields.contains("secret"),
        "{fields}"
    );
}

/// Contoso behind a server of its own, with a client of MSP A for it.
async fn contoso(backend: Backend) -> Option<(World, SimTenant, String)> {
    let tenant = healthy("contoso.onmicrosoft.com");
    let (world, client) = with_client(backend, &tenant, "Contoso", |s| {
        s.sweep_interval = Duration::from_millis(100);
    })
    .await?;
    Some((world, tenant, client))
}

/// A plain user cannot grant admin-only scopes: their consent says exactly what was granted
/// and what is missing.
#[both_backends]
async fn a_partial_grant_records_what_is_missing(backend: Backend) {
    let Some((world, tenant, client)) = contoso(backend).await else {
        return;
    };
    let caller = world.app.caller("msp-a", &["admin"]).await;
    let user = tenant.user("user").unwrap();
    let url = start_link(
        &caller,
        &client,
        &["MAIL_SEND", "DIRECTORY_ACCESS_AS_USER_ALL"],
    )
    .await;
    let page = consent_as(&world.app, &url, user.id).await;
    assert!(
        page.contains("Not granted: Directory.AccessAsUser.All"),
        "{page}"
    );
    let consents = consents_of(&caller, &client).await;
    assert_eq!(consents[0]["permissions"], json!(["MAIL_SEND"]));
    assert_eq!(
        consents[0]["missingPermissions"],
        json!(["DIRECTORY_ACCESS_AS_USER_ALL"])
    );
}

/// A user consents to a subset, then again with more: still one consent for them, the same
/// one, now with every permission.
#[both_backends]
async fn consenting_again_updates_the_users_one_consent(backend: Backend) {
    let Some((world, tenant, client)) = contoso(backend).await else {
        return;
    };
    let caller = world.app.caller("msp-a", &["admin"]).await;
    let admin = tenant.admin().unwrap();
    consent_as(
        &world.app,
        &start_link(&caller, &client, &["AZURE_USER_IMPERSONATION"]).await,
        admin.id,
    )
    .await;
    let first = consents_of(&caller, &client).await.remove(0);
    assert_eq!(first["permissions"], json!(["AZURE_USER_IMPERSONATION"]));

    consent_as(
        &world.app,
        &start_link(&caller, &client, &["MAIL_SEND", "AZURE_USER_IMPERSONATION"]).await,
        admin.id,
    )
    .await;
    let consents = consents_of(&caller, &client).await;
    assert_eq!(consents.len(), 1, "one consent per user");
    assert_eq!(
        consents[0]["id"], first["id"],
        "consenting again updates the consent"
    );
    assert_eq!(
        consents[0]["permissions"],
        json!(["MAIL_SEND", "AZURE_USER_IMPERSONATION"])
    );
}

/// A delegated consent's link needs at least one permission, each once, and a writer.
#[both_backends]
async fn a_delegated_link_needs_permissions_once_each_and_a_writer(backend: Backend) {
    let Some((world, _, client)) = contoso(backend).await else {
        return;
    };
    let caller = world.app.caller("msp-a", &["admin"]).await;
    for (permissions, says) in [
        (json!([]), "at least one"),
        (json!(["MAIL_SEND", "MAIL_SEND"]), "twice"),
    ] {
        let refused = caller
            .run(START, json!({ "id": client, "permissions": permissions }))
            .await;
        assert_eq!(refused.error_code(), "BAD_USER_INPUT");
        assert!(
            refused.error_message().contains(says),
            "{}",
            refused.error_message()
        );
    }
    let viewer = world.app.caller("msp-a", &["viewer"]).await;
    assert_eq!(
        viewer
            .run(START, json!({ "id": client, "permissions": ["MAIL_SEND"] }))
            .await
            .error_code(),
        "FORBIDDEN"
    );
}

/// Checklist §B/§C through the real callback: every forged id_token is refused before any
/// token is used or kept; a key rotated in just before signing is fetched and accepted.
#[both_backends]
async fn forged_id_tokens_store_nothing(backend: Backend) {
    let tenant = healthy("contoso.onmicrosoft.com");
    let Some(world) = world(backend, vec![tenant.clone()], |s| {
        // Every unknown key id may refetch the keys (normally at most once per 30 s).
        s.ms_key_refetch_seconds = 0;
    })
    .await
    else {
        return;
    };
    let caller = world.app.caller("msp-a", &["admin"]).await;
    let by_domain = new_client(&caller, "Contoso", Some(&tenant.domain), None).await;
    let by_id = new_client(&caller, "Contoso by id", None, Some(tenant.id)).await;
    let admin = tenant.admin().unwrap().id;
    for attack in [
        IdTokenAttack::BadSignature,
        IdTokenAttack::AlgNone,
        IdTokenAttack::Hs256WithPublicKey,
        IdTokenAttack::WrongIssuer,
        IdTokenAttack::WrongAudience,
        IdTokenAttack::OtherTenant,
        IdTokenAttack::WrongNonce,
        IdTokenAttack::Expired,
    ] {
        world.sim.set_faults(
            tenant.id,
            Faults {
                id_token_attack: Some(attack),
                ..Faults::default()
            },
        );
        for client in [&by_domain, &by_id] {
            let page = consent_as(
                &world.app,
                &start_link(&caller, client, &["MAIL_SEND"]).await,
                admin,
            )
            .await;
            assert!(
                page.contains("could not trust")
                    || page.contains("different tenants")
                    || page.contains("not to the client's tenant")
                    || page.contains("not to the client&#x27;s tenant"),
                "{attack:?}: {page}"
            );
        }
        assert!(
            rows(&world.app).await.is_empty(),
            "{attack:?}: nothing stored"
        );
    }
    world.sim.set_faults(
        tenant.id,
        Faults {
            id_token_attack: Some(IdTokenAttack::RotatedKey),
            ..Faults::default()
        },
    );
    consent_as(
        &world.app,
        &start_link(&caller, &by_id, &["MAIL_SEND"]).await,
        admin,
    )
    .await;
    assert_eq!(
        rows(&world.app).await.len(),
        1,
        "a rotated key is fetched and accepted"
    );
}

const VERIFY: &str = "mutation($id: ID!) { verifyDelegatedConsent(id: $id) { status statusReason lastRefreshedAt userPrincipalName } }";
const REVOKE: &str =
    "mutation($id: ID!) { revokeDelegatedConsent(id: $id) { status statusReason } }";

/// Contoso behind a server of its own, a client of MSP A for it, and its admin's consent to
/// `MAIL_SEND`: the consent's id.
async fn consented(backend: Backend) -> Option<(World, SimTenant, String, String)> {
    let (world, tenant, client) = contoso(backend).await?;
    let caller = world.app.caller("msp-a", &["admin"]).await;
    consent_as(
        &world.app,
        &start_link(&caller, &client, &["MAIL_SEND"]).await,
        tenant.admin().unwrap().id,
    )
    .await;
    let consent = consents_of(&caller, &client).await.remove(0);
    let id = consent["id"].as_str().unwrap().to_owned();
    drop(caller);
    Some((world, tenant, client, id))
}

/// Checklist 79, 93: verifications at once never refresh in parallel: each refresh redeems
/// the token the previous one stored, so no refresh token is ever sent twice, and the
/// rotated token replaces the old one.
#[both_backends]
async fn checklist_79_93_verifications_refresh_one_at_a_time_and_keep_the_rotated_token(
    backend: Backend,
) {
    let Some((world, _, client, id)) = consented(backend).await else {
        return;
    };
    let caller = world.app.caller("msp-a", &["admin"]).await;
    let before = rows(&world.app).await.remove(0).refresh_token;
    let refreshes = || {
        world
            .sim
            .requests()
            .iter()
            .filter(|r| r.param("grant_type") == Some("refresh_token"))
            .count()
    };

    let verifications = (0..5).map(|_| caller.run(VERIFY, json!({ "id": id })));
    for answer in futures_util::future::join_all(verifications).await {
        assert_eq!(answer.data()["verifyDelegatedConsent"]["status"], "ACTIVE");
    }
    let sent: Vec<String> = world
        .sim
        .requests()
        .iter()
        .filter(|r| r.param("grant_type") == Some("refresh_token"))
        .map(|r| r.param("refresh_token").unwrap().to_owned())
        .collect();
    assert!(!sent.is_empty() && refreshes() == sent.len());
    let mut distinct = sent.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(
        distinct.len(),
        sent.len(),
        "a refresh token was used twice: refreshes overlapped"
    );
    let after = rows(&world.app).await.remove(0).refresh_token;
    assert_ne!(
        before, after,
        "checklist 79: the rotated token replaced the old one"
    );
    assert!(world.sim.requests().iter().any(|r| r.path == "/v1.0/me"));
    assert!(
        audit_actions(&caller, &client)
            .await
            .contains(&"DELEGATED_CONSENT_VERIFIED".to_owned())
    );
}

/// A refresh token Microsoft says has expired (AADSTS700082) expires the consent, with the
/// reason, and erases the stored token.
#[both_backends]
async fn an_expired_refresh_token_expires_the_consent_and_erases_it(backend: Backend) {
    let Some((world, tenant, _, id)) = consented(backend).await else {
        return;
    };
    let caller = world.app.caller("msp-a", &["admin"]).await;
    world.sim.set_faults(
        tenant.id,
        Faults {
            refresh_token_expired: true,
            ..Faults::default()
        },
    );
    let expired = caller.run(VERIFY, json!({ "id": id })).await;
    let expired = &expired.data()["verifyDelegatedConsent"];
    assert_eq!(expired["status"], "EXPIRED");
    assert!(
        expired["statusReason"].as_str().unwrap().contains("700082"),
        "{expired}"
    );
    let row = rows(&world.app).await.remove(0);
    assert_eq!(row.status, DelegatedConsentStatus::Expired);
    assert!(row.refresh_token.is_none());
}

/// Checklist 82: revoking a working consent erases its stored token, is audited, and is its
/// MSP's alone: another MSP's admin is told the consent does not exist.
#[both_backends]
async fn checklist_82_revoking_a_consent_erases_it_for_its_msp_only(backend: Backend) {
    let Some((world, _, client, id)) = consented(backend).await else {
        return;
    };
    let other = world.app.caller("msp-b", &["admin"]).await;
    assert_eq!(
        other.run(REVOKE, json!({ "id": id })).await.error_code(),
        "NOT_FOUND"
    );
    assert!(rows(&world.app).await.remove(0).refresh_token.is_some());

    let caller = world.app.caller("msp-a", &["admin"]).await;
    let revoked = caller.run(REVOKE, json!({ "id": id })).await;
    assert_eq!(
        revoked.data()["revokeDelegatedConsent"]["status"],
        "REVOKED"
    );
    let row = rows(&world.app).await.remove(0);
    assert_eq!(row.status, DelegatedConsentStatus::Revoked);
    assert!(row.refresh_token.is_none(), "the stored token is erased");
    assert!(
        audit_actions(&caller, &client)
            .await
            .contains(&"DELEGATED_CONSENT_REVOKED".to_owned())
    );
}

#[both_backends]
async fn keep_alive_rotates_tokens_and_old_keys_still_decrypt(backend: Backend) {
    let tenant = healthy("contoso.onmicrosoft.com");
    let Some(World { sim, app }) = sim_world(backend, &tenant).await else {
        return;
    };
    let caller = app.caller("msp-a", &["admin"]).await;
    let client = new_client(&caller, "Contoso", Some(&tenant.domain), None).await;
    consent_as(
        &app,
        &start_link(&caller, &client, &["MAIL_SEND"]).await,
        tenant.admin().unwrap().id,
    )
    .await;
    drop(caller);
    let database = app.stop().await;
    // Due now (it was granted a keep-alive interval of 7 days); set once that server is gone.
    let db = sea_orm::Database::connect(&database.url).await.unwrap();
    delegated_consent::Entity::update_many()
        .col_expr(
            delegated_consent::Column::NextRefreshAt,
            sea_orm::sea_query::Expr::value(chrono::Utc::now() - chrono::Duration::seconds(1)),
        )
        .exec(&db)
        .await
        .unwrap();
    let old_keys = database.token_keys.clone();

    // A new key first, the old one still listed: old rows decrypt, new writes use k2.
    let new_key = {
        use secrecy::ExposeSecret;
        api::TokenKeys::generate_setting("k2")
            .expose_secret()
            .to_owned()
    };
    let app = start(database, |s| {
        s.use_simulator(&sim);
        s.token_keys = Some(format!("{new_key},{old_keys}").into());
        s.sweep_interval = Duration::from_millis(100);
        s.keepalive_interval = Duration::from_secs(1);
    })
    .await;
    let refreshed = eventually(
        Duration::from_secs(15),
        "the keep-alive to renew the token",
        || async {
            let row = rows(&app).await.remove(0);
            (row.refresh_token_key_id.as_deref() == Some("k2")).then_some(row)
        },
    )
    .await;
    assert_eq!(refreshed.status, DelegatedConsentStatus::Active);
    assert!(refreshed.last_refreshed_at > Some(refreshed.granted_at));
    assert_eq!(rows(&app).await.len(), 1);
}

/// Service principal repair with a stored consent holding Directory.AccessAsUser.All: no
/// sign-in, the repair acts at once (issue 5's other path).
#[both_backends]
async fn a_stored_admin_consent_repairs_a_service_principal_without_a_sign_in(backend: Backend) {
    let tenant = SimTenant::missing_teams("fabrikam.onmicrosoft.com", "Fabrikam");
    let Some(world) = sim_world(backend, &tenant).await else {
        return;
    };
    let caller = world.app.caller("msp-a", &["admin"]).await;
    let client = new_client(&caller, "Fabrikam", Some(&tenant.domain), None).await;
    let admin = tenant.admin().unwrap().id;
    let link = authorise(&caller, &client).await;
    let back = admin_consent(link["url"].as_str().unwrap(), admin, "accept").await;
    callback(&world.app, &back).await;
    assert_eq!(
        tile(&caller, &client).await["problem"]["code"],
        "MISSING_SERVICE_PRINCIPAL"
    );
    consent_as(
        &world.app,
        &start_link(&caller, &client, &["DIRECTORY_ACCESS_AS_USER_ALL"]).await,
        admin,
    )
    .await;

    let created = caller
        .run(
            "mutation($id: ID!) { createServicePrincipal(clientId: $id) { id status signInUrl } }",
            json!({ "id": client }),
        )
        .await;
    let request = &created.data()["createServicePrincipal"];
    assert!(request["signInUrl"].is_null(), "no sign-in needed");
    assert_ne!(request["status"], "PENDING_SIGN_IN");
    let done = eventually(Duration::from_secs(15), "the repair", || async {
        let response = caller
            .run(
                "query($id: ID!) { client(id: $id) { servicePrincipalRequests { status } } }",
                json!({ "id": client }),
            )
            .await;
        let status = response.data()["client"]["servicePrincipalRequests"][0]["status"].clone();
        (status == "READY" || status == "FAILED").then_some(status)
    })
    .await;
    assert_eq!(done, "READY");
    assert!(world.sim.has_service_principal(tenant.id, TEAMS));
    let repaired = tile(&caller, &client).await;
    assert_eq!(repaired["status"], "NOT_AUTHORISED", "{repaired}");
    assert!(
        repaired["headline"]
            .as_str()
            .unwrap()
            .contains("authorise again"),
        "{repaired}"
    );
    let link = authorise(&caller, &client).await;
    let back = admin_consent(link["url"].as_str().unwrap(), admin, "accept").await;
    callback(&world.app, &back).await;
    assert_eq!(tile(&caller, &client).await["status"], "AUTHORISED");
    assert!(
        !world
            .sim
            .requests()
            .iter()
            .any(|r| r.path.ends_with("/oauth2/v2.0/authorize")
                && r.param("scope")
                    .is_some_and(|s| s.contains("Application.ReadWrite.All"))),
        "no admin sign-in was asked for"
    );
}

/// Checklist 77: `consentry rotate-keys` re-encrypts every row under the first key, after
/// which the old key can be removed.
#[both_backends]
async fn rotate_keys_reencrypts_under_the_first_key(backend: Backend) {
    let tenant = healthy("contoso.onmicrosoft.com");
    let Some(World { sim, app }) = sim_world(backend, &tenant).await else {
        return;
    };
    let caller = app.caller("msp-a", &["admin"]).await;
    let client = new_client(&caller, "Contoso", Some(&tenant.domain), None).await;
    consent_as(
        &app,
        &start_link(&caller, &client, &["MAIL_SEND"]).await,
        tenant.admin().unwrap().id,
    )
    .await;
    let id = consents_of(&caller, &client).await[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    drop(caller);
    let database = app.stop().await;
    let new_key = {
        use secrecy::ExposeSecret;
        api::TokenKeys::generate_setting("k2")
            .expose_secret()
            .to_owned()
    };
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_consentry-under-test"))
        .arg("rotate-keys")
        .env("DATABASE_URL", &database.url)
        .env(
            "CONSENTRY_TOKEN_KEYS",
            format!("{new_key},{}", database.token_keys),
        )
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("re-encrypted 1 refresh token"), "{stderr}");
    assert!(
        !stderr.contains(&new_key[3..]),
        "no key material is printed"
    );

    let app = start(database, |s| {
        s.use_simulator(&sim);
        s.token_keys = Some(new_key.clone().into());
    })
    .await;
    let row = rows(&app).await.remove(0);
    assert_eq!(row.refresh_token_key_id.as_deref(), Some("k2"));
    let caller = app.caller("msp-a", &["admin"]).await;
    let verified = caller.run(VERIFY, json!({ "id": id })).await;
    assert_eq!(
        verified.data()["verifyDelegatedConsent"]["status"],
        "ACTIVE",
        "readable with k2 alone"
    );
}
