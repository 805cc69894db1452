//! A real browser for the tests: Debian's Chromium, headless, driven over WebDriver by a
//! `chromedriver` that the harness starts on a free loopback port, one per test. Helpers wait
//! by polling with a deadline (never a bare sleep), keep a screenshot of every step under
//! `target/screenshots/<test>/`, and run axe-core's accessibility checks on a page.
//!
//! Without Chromium or chromedriver a test says how to install them and passes, unless
//! `CONSENTRY_TEST_REQUIRE_BROWSER=1` (CI), when it fails. The browser only reaches loopback:
//! every other address goes to a proxy that does not exist.

use std::{
    cell::Cell,
    future::Future,
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

use consentry_tests::free_port;
use fantoccini::{Client, ClientBuilder, Locator, elements::Element, wd::TimeoutConfiguration};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{Value, json};

/// Set to `1` (CI does) to fail, instead of skip, when the browser or axe-core is missing.
pub(crate) const REQUIRE: &str = "CONSENTRY_TEST_REQUIRE_BROWSER";

/// How long a step may take on a slow, busy 2-core machine before the test gives up.
pub(crate) const STEP: Duration = Duration::from_secs(90);

const HOW_TO_INSTALL: &str = "install them with `apt-get install chromium chromium-driver` \
    (Debian) to run the browser tests";

/// The window every test uses (and so every screenshot's size).
const WINDOW: (u32, u32) = (1280, 800);

fn required() -> bool {
    std::env::var(REQUIRE).as_deref() == Ok("1")
}

/// Skips (one clear message) or, under `CONSENTRY_TEST_REQUIRE_BROWSER=1`, fails.
fn unavailable(reason: &str) {
    assert!(!required(), "{REQUIRE}=1 but {reason}");
    eprintln!("skipped: {reason}; {HOW_TO_INSTALL}");
}

/// The first of `names` found on `PATH`.
fn program(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|dir| names.iter().map(move |name| dir.join(name)))
        .find(|candidate| candidate.is_file())
}

/// The workspace's `target/screenshots/<test>/`, where `test` is the running test's name
/// (`contoso_is_authorised::sqlite` → `contoso_is_authorised/sqlite`).
fn screenshot_directory() -> PathBuf {
    let thread = std::thread::current();
    let name = thread
        .name()
        .unwrap_or("unnamed")
        .trim_start_matches("browser::")
        .replace("::", "/");
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../target/screenshots")
        .join(name)
}

/// chromedriver, leading a process group of its own (Chromium's processes join it): the
/// whole group ends with the value, also when a test fails before [`Browser::close`].
struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.0.id())])
            .stderr(Stdio::null())
            .status();
        let _ = self.0.wait();
    }
}

/// One headless Chromium and the chromedriver driving it; both end with the value.
pub(crate) struct Browser {
    pub(crate) client: Client,
    screenshots: PathBuf,
    step: Cell<u32>,
    _driver: Driver,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts chromedriver and a browser session; `None` (after saying why) when Chromium or
    /// chromedriver is not installed and the browser is not required.
    pub(crate) async fn open() -> Option<Self> {
        let Some(chromium) = program(&["chromium", "chromium-browser"]) else {
            unavailable("Chromium is not installed (no `chromium` on PATH)");
            return None;
        };
        let Some(chromedriver) = program(&["chromedriver"]) else {
            unavailable("chromedriver is not installed (no `chromedriver` on PATH)");
            return None;
        };
        let profile = tempfile::tempdir().unwrap();
        let port = free_port();
        let log = std::fs::File::create(profile.path().join("chromedriver.log")).unwrap();
        let driver = Driver(
            Command::new(chromedriver)
                .arg(format!("--port={port}"))
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .process_group(0)
                .spawn()
                .unwrap(),
        );
        let client = Self::connect(
            &format!("http://127.0.0.1:{port}"),
            &chromium,
            profile.path(),
        )
        .await;
        client
            .update_timeouts(TimeoutConfiguration::new(
                Some(Duration::from_secs(120)),
                Some(Duration::from_secs(120)),
                Some(Duration::ZERO),
            ))
            .await
            .unwrap();
        // The window's size includes its frame: grow it until the page itself (and so every
        // screenshot) is WINDOW.
        client.set_window_size(WINDOW.0, WINDOW.1).await.unwrap();
        let inner = client
            .execute("return [window.innerWidth, window.innerHeight]", vec![])
            .await
            .unwrap();
        let inner: (u32, u32) = serde_json::from_value(inner).unwrap();
        client
            .set_window_size(2 * WINDOW.0 - inner.0, 2 * WINDOW.1 - inner.1)
            .await
            .unwrap();
        let screenshots = screenshot_directory();
        let _ = std::fs::remove_dir_all(&screenshots);
        std::fs::create_dir_all(&screenshots).unwrap();
        Some(Self {
            client,
            screenshots,
            step: Cell::new(0),
            _driver: driver,
            _profile: profile,
        })
    }

    async fn connect(webdriver: &str, chromium: &Path, profile: &Path) -> Client {
        let args = vec![
            "--headless=new".to_owned(),
            "--no-sandbox".to_owned(),
            "--disable-gpu".to_owned(),
            "--disable-dev-shm-usage".to_owned(),
            format!("--user-data-dir={}", profile.join("chromium").display()),
            format!("--window-size={},{}", WINDOW.0, WINDOW.1),
            "--force-device-scale-factor=1".to_owned(),
            "--lang=en-GB".to_owned(),
            "--no-first-run".to_owned(),
            "--no-default-browser-check".to_owned(),
            "--disable-extensions".to_owned(),
            "--disable-sync".to_owned(),
            "--disable-background-networking".to_owned(),
            "--disable-component-update".to_owned(),
            "--disable-default-apps".to_owned(),
            // The dashboard waits in a background tab while the admin is on Microsoft's page:
            // its timers (reconnecting) must run as in a tab in front.
            "--disable-background-timer-throttling".to_owned(),
            "--disable-backgrounding-occluded-windows".to_owned(),
            "--disable-renderer-backgrounding".to_owned(),
            // Loopback goes direct (Chromium never proxies it); anything else would go to a
            // proxy that is not there: the tests never reach the internet.
            "--proxy-server=http://127.0.0.1:9".to_owned(),
        ];
        let capabilities = json!({
            "browserName": "chrome",
            // Confirmation dialogs (Revoke) stay open for the test to answer.
            "unhandledPromptBehavior": "ignore",
            "goog:chromeOptions": { "binary": chromium, "args": args },
        });
        let serde_json::Value::Object(capabilities) = capabilities else {
            unreachable!()
        };
        let deadline = tokio::time::Instant::now() + STEP;
        loop {
            let attempt = ClientBuilder::new(HttpConnector::new())
                .capabilities(capabilities.clone())
                .connect(webdriver)
                .await;
            match attempt {
                Ok(client) => return client,
                Err(error) => {
                    assert!(
                        tokio::time::Instant::now() < deadline,
                        "chromedriver did not start a browser within {STEP:?}: {error}\n{}",
                        std::fs::read_to_string(profile.join("chromedriver.log"))
                            .unwrap_or_default()
                    );
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    }

    /// Ends the session (Chromium quits) and chromedriver.
    pub(crate) async fn close(self) {
        let _ = self.client.clone().close().await;
    }

    /// Saves what the window shows as `target/screenshots/<test>/<nn>-<step>.png`.
    pub(crate) async fn screenshot(&self, step: &str) {
        let number = self.step.get() + 1;
        self.step.set(number);
        let png = self.client.screenshot().await.unwrap();
        let file = self.screenshots.join(format!("{number:02}-{step}.png"));
        std::fs::write(&file, png).unwrap();
    }

    /// Polls `check` until it answers `Some`, failing after `STEP` with `what`, a screenshot
    /// and the page's text.
    pub(crate) async fn until<T, F, Fut>(&self, what: &str, mut check: F) -> T
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Option<T>>,
    {
        let deadline = tokio::time::Instant::now() + STEP;
        loop {
            if let Some(value) = check().await {
                return value;
            }
            if tokio::time::Instant::now() >= deadline {
                let _ = self
                    .client
                    .screenshot()
                    .await
                    .map(|png| std::fs::write(self.screenshots.join("timed-out.png"), png));
                let url = self.client.current_url().await.map(|u| u.to_string());
                panic!(
                    "timed out after {STEP:?} waiting for {what} (at {url:?}); the page says:\n{}",
                    self.page_text().await
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Runs `script` (a function body; `arguments` are `args`) in the page.
    pub(crate) async fn run(&self, script: &str, args: Vec<Value>) -> Value {
        self.client.execute(script, args).await.unwrap()
    }

    /// The whole page's visible text ("" while there is none).
    pub(crate) async fn page_text(&self) -> String {
        self.client
            .execute(
                "return document.body ? document.body.innerText : ''",
                vec![],
            )
            .await
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default()
    }

    /// The element at `xpath`, once it is there and shown.
    pub(crate) async fn shown(&self, xpath: &str) -> Element {
        self.until(&format!("{xpath} to be shown"), || async {
            let element = self.client.find(Locator::XPath(xpath)).await.ok()?;
            element
                .is_displayed()
                .await
                .unwrap_or(false)
                .then_some(element)
        })
        .await
    }

    /// Whether an element at `xpath` is shown now (no waiting).
    pub(crate) async fn is_shown(&self, xpath: &str) -> bool {
        match self.client.find_all(Locator::XPath(xpath)).await {
            Ok(elements) => {
                for element in elements {
                    if element.is_displayed().await.unwrap_or(false) {
                        return true;
                    }
                }
                false
            }
            Err(_) => false,
        }
    }

    /// The text of the element at `xpath` once it contains `words`.
    pub(crate) async fn text_with(&self, xpath: &str, words: &str) -> String {
        self.until(&format!("{xpath} to say {words:?}"), || async {
            let text = self
                .client
                .find(Locator::XPath(xpath))
                .await
                .ok()?
                .text()
                .await
                .ok()?;
            text.contains(words).then_some(text)
        })
        .await
    }

    /// Clicks the element at `xpath` once it is shown and enabled (again, when the page
    /// re-rendered it between finding and clicking).
    pub(crate) async fn click(&self, xpath: &str) {
        self.until(&format!("{xpath} to be clicked"), || async {
            let element = self.client.find(Locator::XPath(xpath)).await.ok()?;
            if !element.is_displayed().await.ok()? || !element.is_enabled().await.ok()? {
                return None;
            }
            element.click().await.ok()
        })
        .await;
    }

    /// Clicks a link that opens in a new tab (`target="_blank"`), switches to that tab and
    /// returns the tab it came from.
    pub(crate) async fn follow_into_new_tab(&self, xpath: &str) -> fantoccini::wd::WindowHandle {
        let from = self.client.window().await.unwrap();
        let before = self.client.windows().await.unwrap();
        self.click(xpath).await;
        let opened = self
            .until("the link's new tab", || async {
                let now = self.client.windows().await.ok()?;
                now.into_iter().find(|w| !before.contains(w))
            })
            .await;
        self.client.switch_to_window(opened).await.unwrap();
        from
    }

    /// Closes the current tab and goes back to `tab`.
    pub(crate) async fn back_to(&self, tab: fantoccini::wd::WindowHandle) {
        self.client.close_window().await.unwrap();
        self.client.switch_to_window(tab).await.unwrap();
    }

    /// axe-core's automated checks on the page as it is now; fails the test on any violation.
    /// Skipped (with a message) when `tests/browser/node_modules` is not installed, unless
    /// the browser is required.
    pub(crate) async fn assert_accessible(&self, page: &str) {
        let Some(axe) = axe_source() else { return };
        self.run(&axe, vec![]).await;
        let violations = self
            .client
            .execute_async(
                "const done = arguments[arguments.length - 1];
                 axe.run(document, { resultTypes: ['violations'] })
                   .then((r) => done(r.violations.map((v) => ({
                     id: v.id, impact: v.impact, help: v.help,
                     nodes: v.nodes.map((n) => n.target.join(' ') + ' — ' + n.failureSummary) }))))
                   .catch((e) => done([{ id: 'axe-error', help: String(e), nodes: [] }]));",
                vec![],
            )
            .await
            .unwrap();
        assert!(
            violations.as_array().is_some_and(Vec::is_empty),
            "axe-core found accessibility violations on {page}:\n{}",
            serde_json::to_string_pretty(&violations).unwrap()
        );
    }
}

/// axe-core's script from `tests/browser/node_modules` (`npm ci` in `tests/browser`).
fn axe_source() -> Option<String> {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("browser/node_modules/axe-core/axe.min.js");
    match std::fs::read_to_string(&path) {
        Ok(source) => Some(source),
        Err(_) => {
            assert!(
                !required(),
                "{REQUIRE}=1 but axe-core is not installed ({}): run `npm ci` in tests/browser",
                path.display()
            );
            static SAID: std::sync::Once = std::sync::Once::new();
            SAID.call_once(|| {
                eprintln!(
                    "skipped the accessibility checks: axe-core is not installed; run `npm ci` in tests/browser"
                );
            });
            None
        }
    }
}
