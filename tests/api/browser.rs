//! The Client Dashboard in a real browser (headless Chromium over WebDriver), clicked through
//! as a technician would, with the Microsoft simulator's pages in their own tabs: Authorise to
//! a green tile, a declined consent's remediation, a missing service principal repaired,
//! delegated consents granted and revoked, a viewer without write buttons, and a server
//! restart the open dashboard rides out. axe-core checks the pages on the way. Each step's
//! screenshot is kept under `target/screenshots/<test>/`.

use std::time::Duration;

use consentry_tests::{
    Backend, ServerProcess, TestApp, TestDatabase, both_backends, eventually, free_port, spawn_app,
    start_simulator,
};
use entity::client;
use fantoccini::wd::WindowHandle;
use sea_orm::{ActiveModelTrait, ActiveValue::Set, EntityTrait, IntoActiveModel};
use serde_json::json;
use simulator::SimTenant;

use crate::support::{
    browser::{Browser, STEP},
    flows::{
        World, admin_consent, authorise, authorised, callback, consent_as, consents_of, healthy,
        new_client, numbered_clients, start_link, tile, with_client, world,
    },
};

const FOUR: [&str; 4] = [
    "MAIL_SEND",
    "AZURE_USER_IMPERSONATION",
    "USER_AUTHENTICATION_METHOD_READ_WRITE_ALL",
    "DIRECTORY_ACCESS_AS_USER_ALL",
];

/// The colour of an authorised tile's badge (`--ok` in dashboard.css): green.
const GREEN: &str = "rgba(11, 106, 11, 1)";

/// The client's row in the list.
fn row(client: &str) -> String {
    format!("//li[contains(@class,'client')][.//h3[@id='client-{client}']]")
}

/// The client's Graph API tile.
fn tile_of(client: &str) -> String {
    format!("{}//section[contains(@class,'tile')]", row(client))
}

fn badge(client: &str) -> String {
    format!("{}//span[contains(@class,'badge')]", tile_of(client))
}

fn button(within: &str, words: &str) -> String {
    format!("{within}//button[normalize-space()='{words}']")
}

/// The "Open Microsoft's page" link of a link to hand on, within `within`.
fn open_link(within: &str) -> String {
    format!("{within}//a[normalize-space()=\"Open Microsoft's page\"]")
}

/// Opens the dashboard and signs in with `token` through its form, until the list is shown.
/// Marks the page, so that [`assert_not_reloaded`] can tell it was never loaded again.
async fn sign_in(browser: &Browser, app: &TestApp, token: &str) {
    browser.client.goto(&app.url("/dashboard")).await.unwrap();
    let field = browser.shown("//textarea[@id='token']").await;
    field.send_keys(token).await.unwrap();
    browser
        .click("//form[@id='sign-in-form']//button[@type='submit']")
        .await;
    browser.text_with("//p[@id='page-status']", " of ").await;
    browser
        .run("window.consentryTestPage = 'loaded once'", vec![])
        .await;
}

async fn assert_not_reloaded(browser: &Browser) {
    assert_eq!(
        browser
            .run("return window.consentryTestPage || null", vec![])
            .await,
        json!("loaded once"),
        "the dashboard was loaded again: it should have changed in place"
    );
}

/// Waits until the client's badge shows `status` (its class) and says `words`.
async fn badge_says(browser: &Browser, client: &str, status: &str, words: &str) -> String {
    let xpath = badge(client);
    browser
        .until(&format!("the tile to say {words}"), || async {
            let element = browser
                .client
                .find(fantoccini::Locator::XPath(&xpath))
                .await
                .ok()?;
            let class = element.attr("class").await.ok()??;
            let text = element.text().await.ok()?;
            (class.contains(&format!("status-{status}")) && text.contains(words)).then_some(text)
        })
        .await
}

/// On Microsoft's (simulated) page in this tab: waits until the address has `path`, picks
/// nobody (the first user, an admin, is chosen) and presses `decision`.
async fn on_microsoft_page(browser: &Browser, path: &str, decision: &str, step: &str) {
    browser
        .until(&format!("Microsoft's {path} page"), || async {
            let url = browser.client.current_url().await.ok()?;
            url.path().contains(path).then_some(())
        })
        .await;
    browser
        .shown(&format!("//button[@value='{decision}']"))
        .await;
    browser.screenshot(step).await;
    browser
        .click(&format!("//button[@value='{decision}']"))
        .await;
}

/// Waits for Consentry's result page in this tab and returns its text.
async fn result_page(browser: &Browser, title: &str, step: &str) -> String {
    browser.text_with("//h1", title).await;
    browser.screenshot(step).await;
    browser.page_text().await
}

/// Admin consent in the tab the consent link opened: sign in, accept the permissions.
async fn admin_consents(browser: &Browser, decision: &str) {
    on_microsoft_page(browser, "/authorize", "accept", "microsoft-sign-in").await;
    on_microsoft_page(browser, "/adminconsent", decision, "microsoft-consent").await;
}

/// Authorise on the tile, then the admin's side in the consent link's new tab. Returns the
/// dashboard's tab (the result page's tab is the current one).
async fn authorise_through_the_tile(browser: &Browser, client: &str) -> WindowHandle {
    browser.click(&button(&tile_of(client), "Authorise")).await;
    browser.shown(&open_link(&tile_of(client))).await;
    browser.screenshot("consent-link").await;
    let dashboard = browser
        .follow_into_new_tab(&open_link(&tile_of(client)))
        .await;
    admin_consents(browser, "accept").await;
    dashboard
}

/// Item 4a: Authorise on Contoso's tile, the admin accepts on Microsoft's page in a new tab,
/// the result page says done, and back in the dashboard's tab the tile is green and says
/// Authorised without a reload. axe-core finds nothing on the dashboard or the result page.
#[both_backends]
async fn authorise_on_the_tile_turns_it_green_without_a_reload(backend: Backend) {
    let contoso = healthy("contoso.onmicrosoft.com");
    let Some((world, client)) = with_client(backend, &contoso, "Contoso", |_| {}).await else {
        return;
    };
    let Some(browser) = Browser::open().await else {
        return;
    };
    let token = world.app.token("msp-a", &["admin"]);
    sign_in(&browser, &world.app, &token).await;
    badge_says(&browser, &client, "not-authorised", "Not authorised").await;
    browser.screenshot("dashboard").await;
    browser.assert_accessible("the dashboard").await;

    let dashboard = authorise_through_the_tile(&browser, &client).await;
    let page = result_page(&browser, "Done", "result").await;
    assert!(page.contains("Contoso"), "{page}");
    browser.assert_accessible("the result page").await;
    browser.back_to(dashboard).await;

    let words = badge_says(&browser, &client, "authorised", "Authorised").await;
    assert!(!words.contains("Not"), "{words}");
    let colour = browser
        .client
        .find(fantoccini::Locator::XPath(&badge(&client)))
        .await
        .unwrap()
        .css_value("color")
        .await
        .unwrap();
    assert_eq!(colour, GREEN, "an authorised tile is green");
    // The counts follow (they are re-read a moment after a tile's event).
    browser
        .text_with("//div[@id='counts']", "1 Authorised")
        .await;
    browser.screenshot("authorised").await;
    assert_not_reloaded(&browser).await;
    browser
        .assert_accessible("the dashboard with an authorised tile")
        .await;
    let caller = world.app.caller("msp-a", &["admin"]).await;
    assert_eq!(tile(&caller, &client).await["status"], "AUTHORISED");
    browser.close().await;
}

/// Item 4b: the admin cancels on Microsoft's consent page; the tile shows what went wrong
/// and what to do about it (the API's remediation), without a reload.
#[both_backends]
async fn a_declined_consent_shows_its_remediation_on_the_tile(backend: Backend) {
    let contoso = healthy("contoso.onmicrosoft.com");
    let Some((world, client)) = with_client(backend, &contoso, "Contoso", |_| {}).await else {
        return;
    };
    let Some(browser) = Browser::open().await else {
        return;
    };
    let token = world.app.token("msp-a", &["admin"]);
    sign_in(&browser, &world.app, &token).await;

    browser.click(&button(&tile_of(&client), "Authorise")).await;
    let dashboard = browser
        .follow_into_new_tab(&open_link(&tile_of(&client)))
        .await;
    admin_consents(&browser, "cancel").await;
    result_page(&browser, "Not authorised", "result").await;
    browser.back_to(dashboard).await;

    let caller = world.app.caller("msp-a", &["admin"]).await;
    let problem = eventually(STEP, "the tile to have a problem", || async {
        let problem = tile(&caller, &client).await["problem"].clone();
        (!problem.is_null()).then_some(problem)
    })
    .await;
    let remediation = problem["remediation"].as_str().unwrap();
    assert!(!remediation.is_empty(), "{problem}");
    let shown = browser.text_with(&tile_of(&client), remediation).await;
    assert!(shown.contains("What to do:"), "{shown}");
    browser.screenshot("declined").await;
    assert_not_reloaded(&browser).await;
    browser.close().await;
}

/// Item 4c: Fabrikam lacks the Teams admin API's service principal. The tile shows it; Create
/// service principal gives a sign-in link; the admin signs in on Microsoft's page; the repair
/// reaches Ready on its own; Authorise then goes through and the tile turns green.
#[both_backends]
async fn a_missing_service_principal_is_repaired_then_authorised(backend: Backend) {
    let fabrikam = SimTenant::missing_teams("fabrikam.onmicrosoft.com", "Fabrikam");
    let Some(world) = world(backend, vec![fabrikam.clone()], |s| {
        s.sweep_interval = Duration::from_millis(100);
    })
    .await
    else {
        return;
    };
    let caller = world.app.caller("msp-a", &["admin"]).await;
    let client = new_client(&caller, "Fabrikam", Some(&fabrikam.domain), None).await;
    let Some(browser) = Browser::open().await else {
        return;
    };
    sign_in(&browser, &world.app, &world.app.token("msp-a", &["admin"])).await;

    let dashboard = authorise_through_the_tile(&browser, &client).await;
    result_page(&browser, "Not authorised", "result-missing").await;
    browser.back_to(dashboard).await;
    let shown = browser
        .text_with(&tile_of(&client), "Missing service principal")
        .await;
    assert!(
        shown.contains("Skype and Teams Tenant Admin API") && shown.contains("What to do:"),
        "{shown}"
    );
    assert_eq!(
        tile(&caller, &client).await["problem"]["code"],
        "MISSING_SERVICE_PRINCIPAL"
    );
    browser.screenshot("missing-service-principal").await;
    browser
        .click(&button(&tile_of(&client), "Create service principal"))
        .await;
    let repair = format!("{}//div[contains(@class,'repair')]", tile_of(&client));
    browser.text_with(&repair, "Pending sign in").await;
    browser.screenshot("sign-in-link").await;
    let dashboard = browser.follow_into_new_tab(&open_link(&repair)).await;
    on_microsoft_page(&browser, "/authorize", "accept", "microsoft-sign-in").await;
    browser
        .until("the sign-in's result page", || async {
            let url = browser.client.current_url().await.ok()?;
            url.path().starts_with("/oauth/result/").then_some(())
        })
        .await;
    browser.screenshot("sign-in-result").await;
    browser.back_to(dashboard).await;

    browser
        .text_with(&format!("{repair}//span[@class='repair-status']"), "Ready")
        .await;
    browser.screenshot("ready").await;
    let dashboard = authorise_through_the_tile(&browser, &client).await;
    result_page(&browser, "Done", "result").await;
    browser.back_to(dashboard).await;
    badge_says(&browser, &client, "authorised", "Authorised").await;
    browser.screenshot("authorised").await;
    assert_not_reloaded(&browser).await;
    browser.close().await;
}

/// Item 4d: on an authorised tile, Delegated consent… opens the New consent form with the four
/// permissions switched on; its link takes the admin to Microsoft's page; the consent then
/// shows in the list with who granted it, and Revoke (confirmed) shows it revoked.
#[both_backends]
async fn a_delegated_consent_is_granted_listed_and_revoked(backend: Backend) {
    let contoso = healthy("contoso.onmicrosoft.com");
    let Some(world) = world(backend, vec![contoso.clone()], |s| {
        s.sweep_interval = Duration::from_millis(100);
    })
    .await
    else {
        return;
    };
    let caller = world.app.caller("msp-a", &["admin"]).await;
    let client = authorised(&world, &caller, &contoso, "Contoso").await;
    let Some(browser) = Browser::open().await else {
        return;
    };
    sign_in(&browser, &world.app, &world.app.token("msp-a", &["admin"])).await;

    browser
        .click(&button(&tile_of(&client), "Delegated consent…"))
        .await;
    let form = format!("{}//fieldset[contains(@class,'new-consent')]", row(&client));
    let switches = format!("{form}//input[@role='switch']");
    let switched = browser
        .until("the four permission switches", || async {
            let found = browser
                .client
                .find_all(fantoccini::Locator::XPath(&switches))
                .await
                .ok()?;
            let mut on = Vec::new();
            for element in &found {
                on.push(element.is_selected().await.ok()?);
            }
            (on.len() == 4).then_some(on)
        })
        .await;
    assert_eq!(switched, [true; 4], "all four are on by default");
    browser.screenshot("new-consent").await;
    browser.assert_accessible("the New consent form").await;
    browser.click(&button(&form, "Create consent link")).await;
    let dashboard = browser.follow_into_new_tab(&open_link(&form)).await;
    let admin = contoso.admin().unwrap();
    browser
        .click(&format!("//input[@type='radio'][@value='{}']", admin.id))
        .await;
    on_microsoft_page(&browser, "/authorize", "accept", "microsoft-consent").await;
    result_page(&browser, "Done", "result").await;
    browser.back_to(dashboard).await;

    let consents = format!("{}//div[contains(@class,'consent-list')]", row(&client));
    let listed = browser
        .text_with(&consents, &admin.user_principal_name)
        .await;
    assert!(listed.contains("Active"), "{listed}");
    browser.screenshot("granted").await;
    browser
        .assert_accessible("the list of delegated consents")
        .await;
    assert_eq!(consents_of(&caller, &client).await[0]["status"], "ACTIVE");

    browser.click(&button(&consents, "Revoke")).await;
    browser
        .until("the confirmation", || async {
            browser.client.get_alert_text().await.ok()
        })
        .await;
    browser.client.accept_alert().await.unwrap();
    let revoked = browser.text_with(&consents, "Revoked").await;
    assert!(
        !browser.is_shown(&button(&consents, "Revoke")).await,
        "a revoked consent offers no Revoke: {revoked}"
    );
    browser.screenshot("revoked").await;
    assert_eq!(consents_of(&caller, &client).await[0]["status"], "REVOKED");
    assert_not_reloaded(&browser).await;
    browser.close().await;
}

/// The buttons a person sees now, by their words.
async fn visible_buttons(browser: &Browser) -> Vec<String> {
    let found = browser
        .run(
            "return [...document.querySelectorAll('button, input[type=checkbox]')]
               .filter((b) => b.checkVisibility())
               .map((b) => b.tagName === 'BUTTON' ? b.textContent.trim() : 'checkbox ' + (b.id || b.getAttribute('role')))",
            vec![],
        )
        .await;
    serde_json::from_value(found).unwrap()
}

const WRITES: [&str; 7] = [
    "Authorise",
    "Verify now",
    "Create service principal",
    "Delegated consent…",
    "Create consent link",
    "Revoke",
    "Verify",
];

/// Signs in and opens the consents of `client`; returns the buttons shown, once every tile and
/// the consents list have loaded.
async fn buttons_seen_by(
    browser: &Browser,
    app: &TestApp,
    token: &str,
    clients: &[&str],
    with_consents: &str,
) -> Vec<String> {
    sign_in(browser, app, token).await;
    for client in clients {
        browser.shown(&badge(client)).await;
    }
    browser
        .click(&button(&row(with_consents), "Delegated consents"))
        .await;
    browser
        .text_with(
            &format!(
                "{}//div[contains(@class,'consent-list')]",
                row(with_consents)
            ),
            "Active",
        )
        .await;
    visible_buttons(browser).await
}

/// Item 4e: a viewer's token shows the same clients, tiles and consents, and no button that
/// writes. (The same page signed in as an admin shows each of them: the check can fail.)
#[both_backends]
async fn a_viewer_sees_no_write_buttons(backend: Backend) {
    let contoso = healthy("contoso.onmicrosoft.com");
    let fabrikam = SimTenant::missing_teams("fabrikam.onmicrosoft.com", "Fabrikam");
    let Some(world) = world(backend, vec![contoso.clone(), fabrikam.clone()], |s| {
        s.sweep_interval = Duration::from_millis(100);
    })
    .await
    else {
        return;
    };
    let World { app, .. } = &world;
    let caller = app.caller("msp-a", &["admin"]).await;
    let authorised = authorised(&world, &caller, &contoso, "Contoso").await;
    let url = start_link(&caller, &authorised, &FOUR).await;
    consent_as(app, &url, contoso.admin().unwrap().id).await;
    let missing = new_client(&caller, "Fabrikam", Some(&fabrikam.domain), None).await;
    let link = authorise(&caller, &missing).await;
    let back = admin_consent(
        link["url"].as_str().unwrap(),
        fabrikam.admin().unwrap().id,
        "accept",
    )
    .await;
    callback(app, &back).await;
    let fresh = new_client(&caller, "Northwind", None, None).await;
    let clients = [authorised.as_str(), missing.as_str(), fresh.as_str()];
    let Some(browser) = Browser::open().await else {
        return;
    };

    let admin = buttons_seen_by(
        &browser,
        app,
        &app.token("msp-a", &["admin"]),
        &clients,
        &authorised,
    )
    .await;
    for write in WRITES {
        assert!(
            admin.iter().any(|b| b == write),
            "an admin sees {write}: {admin:?}"
        );
    }
    browser.screenshot("admin").await;
    browser.click("//button[@id='sign-out']").await;
    browser.shown("//textarea[@id='token']").await;
    browser.assert_accessible("the sign-in form").await;

    let viewer = buttons_seen_by(
        &browser,
        app,
        &app.token("msp-a", &["viewer"]),
        &clients,
        &authorised,
    )
    .await;
    browser.screenshot("viewer").await;
    for write in WRITES {
        assert!(
            !viewer.iter().any(|b| b == write),
            "a viewer sees no {write}: {viewer:?}"
        );
    }
    assert!(
        !viewer
            .iter()
            .any(|b| b.starts_with("Authorise selected") || b.starts_with("checkbox")),
        "no bulk Authorise and nothing to select: {viewer:?}"
    );
    assert!(
        viewer.iter().any(|b| b == "Audit trail") && viewer.iter().any(|b| b == "Refresh"),
        "a viewer still reads: {viewer:?}"
    );
    let who = browser.text_with("//span[@id='who']", "read-only").await;
    assert!(who.contains("viewer"), "{who}");
    browser.close().await;
}

/// Item 4f: the dashboard is open; the server stops; while it is down the client is renamed
/// in the database; the server comes back on the same port and database. The dashboard says
/// it lost its live updates, reconnects by itself and shows the new name, without a reload.
#[both_backends]
async fn the_dashboard_rides_out_a_server_restart(backend: Backend) {
    let Some(database) = TestDatabase::create(backend).await else {
        return;
    };
    let sim = start_simulator(vec![healthy("contoso.onmicrosoft.com")]).await;
    let binary = env!("CARGO_BIN_EXE_consentry-under-test");
    let secret = format!("browser-restart-{}", uuid::Uuid::new_v4());
    let port = free_port();
    let mut server = ServerProcess::start(binary, &database, &secret, &sim, port, &[]).await;
    let app = TestApp::attach(port, &secret, &database).await;
    let caller = app.caller("msp-a", &["admin"]).await;
    let client = new_client(&caller, "Contoso", Some("contoso.onmicrosoft.com"), None).await;
    let Some(browser) = Browser::open().await else {
        return;
    };
    sign_in(&browser, &app, &app.token("msp-a", &["admin"])).await;
    let heading = format!("{}//h3", row(&client));
    browser.text_with(&heading, "Contoso").await;
    browser.screenshot("before").await;

    server.terminate();
    server.exited(STEP).await;
    browser
        .text_with("//div[@id='live']", "Live updates lost")
        .await;
    browser.screenshot("server-down").await;
    let id = client_uuid(&app, "Contoso").await;
    let mut renamed = client::Entity::find_by_id(id)
        .one(&app.db)
        .await
        .unwrap()
        .unwrap()
        .into_active_model();
    renamed.name = Set("Contoso Renamed".to_owned());
    renamed.name_key = Set("contoso renamed".to_owned());
    renamed.update(&app.db).await.unwrap();

    let _server = ServerProcess::start(binary, &database, &secret, &sim, port, &[]).await;
    browser.text_with(&heading, "Contoso Renamed").await;
    browser
        .until("the live banner to go", || async {
            (!browser.is_shown("//div[@id='live']").await).then_some(())
        })
        .await;
    browser.screenshot("reconnected").await;
    assert_not_reloaded(&browser).await;
    browser.close().await;
}

async fn client_uuid(app: &TestApp, name: &str) -> uuid::Uuid {
    client::Entity::find()
        .all(&app.db)
        .await
        .unwrap()
        .into_iter()
        .find(|c| c.name == name)
        .map(|c| c.id)
        .unwrap()
}

/// Item 5: 1,000 clients stay usable. The dashboard shows them 25 at a time with the total,
/// pages on in name order, and a search finds one among them; the page passes axe with a full
/// page of rows.
#[both_backends]
async fn a_thousand_clients_are_shown_a_page_at_a_time_and_found_by_name(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    numbered_clients(&app, "msp-a", 1000).await;
    let Some(browser) = Browser::open().await else {
        return;
    };
    let rows = "return document.querySelectorAll('#client-list > li.client').length";

    sign_in(&browser, &app, &app.token("msp-a", &["admin"])).await;
    let status = browser
        .text_with("//p[@id='page-status']", "Clients 1–25 of ")
        .await;
    let total: String = status
        .rsplit(" of ")
        .next()
        .unwrap()
        .chars()
        .filter(char::is_ascii_digit)
        .collect();
    assert_eq!(total, "1000", "{status}");
    assert_eq!(browser.run(rows, vec![]).await, json!(25));
    browser.shown("//h3[normalize-space()='Client 0000']").await;
    browser.screenshot("first-page").await;
    browser
        .assert_accessible("a page of 25 of 1,000 clients")
        .await;

    browser.click("//button[@id='next']").await;
    browser
        .text_with("//p[@id='page-status']", "Clients 26–50 of ")
        .await;
    browser.shown("//h3[normalize-space()='Client 0025']").await;
    assert_eq!(browser.run(rows, vec![]).await, json!(25));

    let search = browser.shown("//input[@id='search']").await;
    search.send_keys("Client 0999").await.unwrap();
    browser
        .text_with("//p[@id='page-status']", "Clients 1–1 of 1")
        .await;
    browser.shown("//h3[normalize-space()='Client 0999']").await;
    assert_eq!(browser.run(rows, vec![]).await, json!(1));
    browser.screenshot("found").await;
    assert_not_reloaded(&browser).await;
    browser.close().await;
}
