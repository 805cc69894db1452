//! The data each scenario needs, written through Consentry's own domain code where there is
//! one (clients, tiles) and as rows where only a Microsoft flow would create them (delegated
//! consents, tile states).

use api::{CallerClaims, NewClient, OneOrMany, Role, Viewer, create_client};
use entity::{
    StringList, delegated_consent,
    enums::{DelegatedConsentStatus, GraphApiProblemCode, GraphApiStatus},
    graph_api_tile,
};
use sea_orm::{ActiveModelTrait, ActiveValue::Set, DatabaseConnection, EntityTrait};
use secrecy::SecretString;
use uuid::Uuid;

/// The MSP every scenario's clients belong to.
pub(crate) const MSP: &str = "bench";

/// Registers the MSP and returns an admin of it.
pub(crate) async fn admin(db: &DatabaseConnection) -> anyhow::Result<Viewer> {
    admin_of(db, MSP).await
}

/// Registers MSP `msp` and returns an admin of it.
pub(crate) async fn admin_of(db: &DatabaseConnection, msp: &str) -> anyhow::Result<Viewer> {
    let (msp, _) = api::ensure_msp(db, msp, Some("Benchmark MSP"))
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(Viewer {
        subject: "consentry-bench".to_owned(),
        msp,
        roles: vec![Role::Admin],
        expires_at: chrono::Utc::now() + chrono::Duration::days(1),
    })
}

/// A caller token for the MSP's admin, valid for a day.
pub(crate) fn token(secret: &str) -> anyhow::Result<String> {
    token_of(secret, MSP)
}

/// A caller token for MSP `msp`'s admin, valid for a day.
pub(crate) fn token_of(secret: &str, msp: &str) -> anyhow::Result<String> {
    let now = chrono::Utc::now().timestamp();
    api::mint_hs256(
        &SecretString::from(secret.to_owned()),
        &CallerClaims {
            sub: "consentry-bench".to_owned(),
            msp: Some(msp.to_owned()),
            roles: OneOrMany::Many(vec!["admin".to_owned()]),
            iss: api::DEFAULT_HS256_ISSUER.to_owned(),
            aud: OneOrMany::One(api::DEFAULT_HS256_AUDIENCE.to_owned()),
            exp: now + 86_400,
            iat: Some(now),
            nbf: None,
        },
    )
}

/// Creates a client the way `createClient` does.
pub(crate) async fn client(
    db: &DatabaseConnection,
    viewer: &Viewer,
    name: String,
    domain: Option<String>,
) -> anyhow::Result<Uuid> {
    let view = create_client(
        db,
        viewer,
        NewClient {
            name,
            domain,
            azure_tenant_id: None,
        },
    )
    .await
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(view.client.id)
}

/// `clients` clients, each with `consents` delegated consents; their tiles cycle through
/// not authorised, authorised, failed (missing service principal) and awaiting consent, so
/// the dashboard shows every shape of tile.
pub(crate) async fn dashboard(
    db: &DatabaseConnection,
    viewer: &Viewer,
    clients: usize,
    consents: usize,
) -> anyhow::Result<Vec<Uuid>> {
    let mut ids = Vec::with_capacity(clients);
    for i in 0..clients {
        let id = client(
            db,
            viewer,
            format!("Client {i:03}"),
            Some(format!("client{i:03}.example.com")),
        )
        .await?;
        shape_tile(db, id, i % 4).await?;
        for user in 0..consents {
            consent(db, id, i, user).await?;
        }
        ids.push(id);
    }
    Ok(ids)
}

/// `clients` clients of MSP `msp`, each with two delegated consents, written in bulk (a
/// transaction per 500 clients, which keeps each statement under SQLite's 32,766 bound
/// parameters): the rows `dashboard` writes, without its audit trail.
pub(crate) async fn many(db: &DatabaseConnection, msp: &str, clients: usize) -> anyhow::Result<()> {
    use sea_orm::TransactionTrait;
    let now = chrono::Utc::now();
    for chunk in (0..clients).collect::<Vec<_>>().chunks(500) {
        let txn = db.begin().await?;
        let mut rows = Vec::new();
        let mut tiles = Vec::new();
        let mut consents = Vec::new();
        for &i in chunk {
            let id = Uuid::now_v7();
            let name = format!("Client {i:05}");
            rows.push(entity::client::ActiveModel {
                id: Set(id),
                msp_id: Set(msp.to_owned()),
                name_key: Set(api::name_key(&name)),
                name: Set(name),
                domain: Set(Some(format!("client{i:05}.example.com"))),
                azure_tenant_id: Set(None),
                created_by: Set("consentry-bench".to_owned()),
                created_at: Set(now),
                updated_at: Set(now),
            });
            tiles.push(api::initial_tile(id, now));
            for user in 0..2 {
                let mut consent = consent_row(id, i, user);
                consent.msp_id = Set(msp.to_owned());
                consents.push(consent);
            }
        }
        entity::client::Entity::insert_many(rows)
            .exec_without_returning(&txn)
            .await?;
        graph_api_tile::Entity::insert_many(tiles)
            .exec_without_returning(&txn)
            .await?;
        delegated_consent::Entity::insert_many(consents)
            .exec_without_returning(&txn)
            .await?;
        txn.commit().await?;
    }
    Ok(())
}

async fn shape_tile(db: &DatabaseConnection, client_id: Uuid, shape: usize) -> anyhow::Result<()> {
    let Some(tile) = graph_api_tile::Entity::find_by_id(client_id)
        .one(db)
        .await?
    else {
        anyhow::bail!("client {client_id} has no tile");
    };
    let now = chrono::Utc::now();
    let mut active: graph_api_tile::ActiveModel = tile.into();
    match shape {
        1 => {
            active.status = Set(GraphApiStatus::Authorised);
            active.granted_permissions = Set(StringList(
                simulator::DEFAULT_REQUIRED_ROLES
                    .iter()
                    .map(|r| (*r).to_owned())
                    .collect(),
            ));
            active.authorised_at = Set(Some(now));
            active.last_verified_at = Set(Some(now));
            active.next_verification_at = Set(Some(now + chrono::Duration::days(1)));
        }
        2 => {
            active.status = Set(GraphApiStatus::Failed);
            active.problem_code = Set(Some(GraphApiProblemCode::MissingServicePrincipal));
            active.problem_aadsts_code = Set(Some(650_052));
            active.problem_message = Set(Some(
                "AADSTS650052: The app needs access to a service that your organization has not subscribed to or enabled.".to_owned(),
            ));
            active.problem_remediation = Set(Some("Create the service principal.".to_owned()));
            active.problem_app_id = Set(Some(api::TEAMS_ADMIN_API_APP_ID.to_owned()));
        }
        3 => active.status = Set(GraphApiStatus::AwaitingConsent),
        _ => return Ok(()),
    }
    active.status_changed_at = Set(now);
    active.update(db).await?;
    Ok(())
}

async fn consent(
    db: &DatabaseConnection,
    client_id: Uuid,
    client: usize,
    user: usize,
) -> anyhow::Result<()> {
    consent_row(client_id, client, user).insert(db).await?;
    Ok(())
}

fn consent_row(client_id: Uuid, client: usize, user: usize) -> delegated_consent::ActiveModel {
    let now = chrono::Utc::now();
    delegated_consent::ActiveModel {
        id: Set(Uuid::now_v7()),
        msp_id: Set(MSP.to_owned()),
        client_id: Set(client_id),
        tenant_id: Set(Uuid::new_v4().to_string()),
        user_object_id: Set(Uuid::new_v4().to_string()),
        user_principal_name: Set(format!("user{user}@client{client:03}.example.com")),
        display_name: Set(Some(format!("User {user}"))),
        permissions: Set(StringList(vec![
            "MAIL_SEND".to_owned(),
            "USER_AUTHENTICATION_METHOD_READ_WRITE_ALL".to_owned(),
        ])),
        missing_permissions: Set(StringList::default()),
        status: Set(if user.is_multiple_of(2) {
            DelegatedConsentStatus::Active
        } else {
            DelegatedConsentStatus::Expired
        }),
        status_reason: Set(None),
        refresh_token: Set(None),
        refresh_token_key_id: Set(None),
        granted_at: Set(now - chrono::Duration::minutes(user as i64)),
        last_refreshed_at: Set(None),
        next_refresh_at: Set(None),
        granted_by: Set("consentry-bench".to_owned()),
        created_at: Set(now),
        updated_at: Set(now),
        id_token_issuer: Set(None),
        id_token_subject: Set(None),
        refreshing_until: Set(None),
    }
}
