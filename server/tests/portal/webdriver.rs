//! A small W3C WebDriver client over HTTP, and the chromedriver process it talks to.
//!
//! Only what the portal tests use: sessions, navigation, elements by CSS selector, keys and
//! clicks, scripts, window size, screenshots. Waiting is bounded polling (`WAIT_FOR_PAGE`), never
//! a fixed sleep: a page that never shows what a test waits for fails the test after the bound.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{Value, json};

/// How long a test waits for the page to show something.
pub const WAIT_FOR_PAGE: Duration = Duration::from_secs(10);

/// How long chromedriver may take to start listening.
const DRIVER_START: Duration = Duration::from_secs(20);

/// How long one WebDriver command may take (a new session starts Chromium: the slowest).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// The key under which W3C WebDriver names an element.
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

/// Installs Chromium, chromedriver and zbarimg with `scripts/browser-deps` when one is missing,
/// once per test process. Panics with the script's output when that fails.
pub fn ensure_browser_installed() {
    static INSTALLED: OnceLock<Result<(), String>> = OnceLock::new();
    let result = INSTALLED.get_or_init(|| {
        let present = Path::new(CHROMIUM).exists()
            && Path::new(CHROMEDRIVER).exists()
            && Command::new("sh")
                .args(["-c", "command -v zbarimg"])
                .stdout(Stdio::null())
                .status()
                .is_ok_and(|status| status.success());
        if present {
            return Ok(());
        }
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/browser-deps");
        eprintln!("installing the browser with {}", script.display());
        let output = Command::new(&script)
            .output()
            .map_err(|error| format!("cannot run {}: {error}", script.display()))?;
        if output.status.success() {
            Ok(())
        } else {
            Err(format!(
                "{} failed ({}):\n{}\n{}",
                script.display(),
                output.status,
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ))
        }
    });
    if let Err(error) = result {
        panic!("the browser tests need Chromium and chromedriver: {error}");
    }
}

/// A chromedriver child process, killed (with the browsers it started) on drop.
#[derive(Debug)]
pub struct ChromeDriver {
    child: Child,
    pub port: u16,
}

impl ChromeDriver {
    pub async fn start() -> ChromeDriver {
        ensure_browser_installed();
        let port = free_port();
        let mut command = Command::new(CHROMEDRIVER);
        command
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // A process group of its own, so that dropping the driver also ends the browsers it
        // started, even when a failed test never deleted its session.
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        let child = command.spawn().expect("chromedriver starts");
        let driver = ChromeDriver { child, port };
        let http = reqwest::Client::new();
        let deadline = Instant::now() + DRIVER_START;
        loop {
            let ready = http
                .get(format!("{}/status", driver.url()))
                .timeout(Duration::from_secs(2))
                .send()
                .await;
            if let Ok(response) = ready
                && let Ok(status) = response.json::<Value>().await
                && status["value"]["ready"] == json!(true)
            {
                return driver;
            }
            assert!(
                Instant::now() < deadline,
                "chromedriver did not become ready on port {port}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for ChromeDriver {
    fn drop(&mut self) {
        // The group id is the driver's pid (process_group(0) above).
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.child.id())])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port nobody listens on now (the driver binds it a moment later).
fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a free port");
    listener.local_addr().expect("an address").port()
}

/// A WebDriver error answer.
#[derive(Debug)]
pub struct WebDriverError {
    pub error: String,
    pub message: String,
}

impl std::fmt::Display for WebDriverError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.error, self.message)
    }
}

/// A headless Chromium session driven through its own chromedriver.
#[derive(Debug)]
pub struct Browser {
    http: reqwest::Client,
    session_url: String,
    deleted: bool,
    _profile: tempfile::TempDir,
    // Dropped last: the session is deleted before the driver is killed.
    driver: ChromeDriver,
}

/// An element found on the page, with the selector that found it (none from `find_all`).
#[derive(Debug, Clone)]
pub struct Element(String, Option<String>);

impl Browser {
    /// Starts chromedriver and a new headless Chromium session with a fresh profile.
    pub async fn start() -> Browser {
        let driver = ChromeDriver::start().await;
        let profile = tempfile::tempdir().expect("a profile directory");
        let http = reqwest::Client::builder()
            .timeout(COMMAND_TIMEOUT)
            .build()
            .expect("an HTTP client");
        let capabilities = json!({
            "capabilities": {
                "alwaysMatch": {
                    "browserName": "chrome",
                    "goog:chromeOptions": {
                        "binary": CHROMIUM,
                        "args": [
                            "--headless=new",
                            "--no-sandbox",
                            "--disable-gpu",
                            "--disable-dev-shm-usage",
                            "--disable-quic",
                            "--no-first-run",
                            "--disable-background-networking",
                            "--disable-component-update",
                            "--disable-sync",
                            "--window-size=1280,900",
                            format!("--user-data-dir={}", profile.path().display()),
                        ],
                    },
                },
            },
        });
        let response = http
            .post(format!("{}/session", driver.url()))
            .json(&capabilities)
            .send()
            .await
            .expect("chromedriver answers");
        let body: Value = response.json().await.expect("a JSON answer");
        let session = body["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no WebDriver session: {body}"))
            .to_string();
        Browser {
            http,
            session_url: format!("{}/session/{session}", driver.url()),
            deleted: false,
            _profile: profile,
            driver,
        }
    }

    /// One command: `Ok(value)` or the WebDriver error.
    async fn command(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, WebDriverError> {
        let mut request = self
            .http
            .request(method.clone(), format!("{}{path}", self.session_url));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request
            .send()
            .await
            .unwrap_or_else(|error| panic!("chromedriver did not answer {method} {path}: {error}"));
        let ok = response.status().is_success();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        let value = body["value"].clone();
        if ok {
            Ok(value)
        } else {
            Err(WebDriverError {
                error: value["error"].as_str().unwrap_or("unknown").to_string(),
                message: value["message"].as_str().unwrap_or_default().to_string(),
            })
        }
    }

    async fn expect(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        self.command(method.clone(), path, body)
            .await
            .unwrap_or_else(|error| panic!("WebDriver {method} {path}: {error}"))
    }

    pub async fn navigate(&self, url: &str) {
        self.expect(reqwest::Method::POST, "/url", Some(json!({ "url": url })))
            .await;
    }

    pub async fn current_url(&self) -> String {
        let value = self.expect(reqwest::Method::GET, "/url", None).await;
        value.as_str().unwrap_or_default().to_string()
    }

    /// The first element matching `css`, if any, now.
    pub async fn find(&self, css: &str) -> Option<Element> {
        let found = self
            .command(
                reqwest::Method::POST,
                "/element",
                Some(json!({ "using": "css selector", "value": css })),
            )
            .await;
        match found {
            Ok(value) => value[ELEMENT_KEY]
                .as_str()
                .map(|id| Element(id.to_string(), Some(css.to_string()))),
            Err(error) if error.error == "no such element" => None,
            Err(error) => panic!("WebDriver find {css:?}: {error}"),
        }
    }

    /// Every element matching `css`, now.
    pub async fn find_all(&self, css: &str) -> Vec<Element> {
        let value = self
            .expect(
                reqwest::Method::POST,
                "/elements",
                Some(json!({ "using": "css selector", "value": css })),
            )
            .await;
        value
            .as_array()
            .map(|items| {
                items
                    .iter()
                    .filter_map(|item| item[ELEMENT_KEY].as_str())
                    .map(|id| Element(id.to_string(), None))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Whether the element is displayed; `None` when it has left the page meanwhile.
    async fn displayed(&self, element: &Element) -> Option<bool> {
        match self
            .command(
                reqwest::Method::GET,
                &format!("/element/{}/displayed", element.0),
                None,
            )
            .await
        {
            Ok(value) => value.as_bool(),
            Err(error) if error.error == "stale element reference" => None,
            Err(error) => panic!("WebDriver displayed: {error}"),
        }
    }

    /// Waits (bounded by [`WAIT_FOR_PAGE`]) until an element matching `css` is displayed.
    pub async fn wait_visible(&self, css: &str) -> Element {
        let deadline = Instant::now() + WAIT_FOR_PAGE;
        loop {
            if let Some(element) = self.find(css).await
                && self.displayed(&element).await == Some(true)
            {
                return element;
            }
            if Instant::now() >= deadline {
                let url = self.current_url().await;
                let html = self
                    .execute("return document.documentElement.outerHTML;", vec![])
                    .await;
                let html = html.as_str().unwrap_or_default();
                panic!(
                    "{css:?} was not displayed within {WAIT_FOR_PAGE:?} on {url}; page:\n{html}"
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits (bounded) until the text of the element matching `css` contains `expected`;
    /// returns the whole text.
    pub async fn wait_text(&self, css: &str, expected: &str) -> String {
        let deadline = Instant::now() + WAIT_FOR_PAGE;
        let mut last = String::new();
        loop {
            if let Some(element) = self.find(css).await
                && let Some(text) = self.try_text(&element).await
            {
                if text.contains(expected) {
                    return text;
                }
                last = text;
            }
            assert!(
                Instant::now() < deadline,
                "{css:?} did not show {expected:?} within {WAIT_FOR_PAGE:?}; last text: {last:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn try_text(&self, element: &Element) -> Option<String> {
        match self
            .command(
                reqwest::Method::GET,
                &format!("/element/{}/text", element.0),
                None,
            )
            .await
        {
            Ok(value) => value.as_str().map(str::to_string),
            Err(error) if error.error == "stale element reference" => None,
            Err(error) => panic!("WebDriver text: {error}"),
        }
    }

    /// The rendered text of an element. The pages re-render rows live, so an element found by
    /// a selector may be replaced between finding it and reading it: then the element now
    /// matching the same selector is read (bounded).
    pub async fn text(&self, element: &Element) -> String {
        if let Some(text) = self.try_text(element).await {
            return text;
        }
        let css = element
            .1
            .as_deref()
            .expect("the element is still on the page");
        let deadline = Instant::now() + WAIT_FOR_PAGE;
        loop {
            if let Some(again) = self.find(css).await
                && let Some(text) = self.try_text(&again).await
            {
                return text;
            }
            assert!(
                Instant::now() < deadline,
                "{css:?} left the page and did not come back within {WAIT_FOR_PAGE:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The rendered text of the whole page.
    pub async fn page_text(&self) -> String {
        match self.find("body").await {
            Some(body) => self.try_text(&body).await.unwrap_or_default(),
            None => String::new(),
        }
    }

    pub async fn attribute(&self, element: &Element, name: &str) -> Option<String> {
        let value = self
            .expect(
                reqwest::Method::GET,
                &format!("/element/{}/attribute/{name}", element.0),
                None,
            )
            .await;
        value.as_str().map(str::to_string)
    }

    pub async fn send_keys(&self, element: &Element, text: &str) {
        self.expect(
            reqwest::Method::POST,
            &format!("/element/{}/value", element.0),
            Some(json!({ "text": text })),
        )
        .await;
    }

    /// Clicks the element `css` finds, finding it again when the page replaced it between the
    /// finding and the click (a live update re-renders rows): a few times, then it fails.
    pub async fn click_css(&self, css: &str) {
        for _ in 0..5 {
            let element = self.wait_visible(css).await;
            let clicked = self
                .command(
                    reqwest::Method::POST,
                    &format!("/element/{}/click", element.0),
                    Some(json!({})),
                )
                .await;
            match clicked {
                Ok(_) => return,
                Err(error) if error.error == "stale element reference" => continue,
                Err(error) => panic!("WebDriver click on {css}: {error}"),
            }
        }
        panic!("{css} was replaced before every click");
    }

    /// Clicks the link `css` finds until the address's hash ends with `hash_suffix`: a click
    /// that reaches a link the page replaced meanwhile (a live update re-renders) goes nowhere.
    pub async fn follow_link(&self, css: &str, hash_suffix: &str) {
        for _ in 0..5 {
            self.click_css(css).await;
            for _ in 0..20 {
                if self.current_url().await.ends_with(hash_suffix) {
                    return;
                }
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
        panic!("following {css} never reached …{hash_suffix}");
    }

    pub async fn click(&self, element: &Element) {
        self.expect(
            reqwest::Method::POST,
            &format!("/element/{}/click", element.0),
            Some(json!({})),
        )
        .await;
    }

    /// Runs `script` (a function body; `arguments` holds `args`) and returns its result.
    pub async fn execute(&self, script: &str, args: Vec<Value>) -> Value {
        self.expect(
            reqwest::Method::POST,
            "/execute/sync",
            Some(json!({ "script": script, "args": args })),
        )
        .await
    }

    pub async fn set_window_size(&self, width: u32, height: u32) {
        self.expect(
            reqwest::Method::POST,
            "/window/rect",
            Some(json!({ "width": width, "height": height })),
        )
        .await;
    }

    /// A PNG of the viewport.
    pub async fn screenshot(&self) -> Vec<u8> {
        let value = self.expect(reqwest::Method::GET, "/screenshot", None).await;
        base64::engine::general_purpose::STANDARD
            .decode(value.as_str().expect("base64 PNG"))
            .expect("valid base64")
    }

    /// Ends the session (Chromium quits) and stops chromedriver.
    pub async fn quit(mut self) {
        self.expect(reqwest::Method::DELETE, "", None).await;
        self.deleted = true;
    }

    /// Waits (bounded) for a `window.confirm` or `alert` dialog, accepts it and returns its
    /// text.
    pub async fn accept_alert(&self) -> String {
        let deadline = Instant::now() + WAIT_FOR_PAGE;
        loop {
            match self
                .command(reqwest::Method::GET, "/alert/text", None)
                .await
            {
                Ok(text) => {
                    self.expect(reqwest::Method::POST, "/alert/accept", Some(json!({})))
                        .await;
                    return text.as_str().unwrap_or_default().to_string();
                }
                Err(error) if error.error == "no such alert" => {}
                Err(error) => panic!("WebDriver alert text: {error}"),
            }
            assert!(
                Instant::now() < deadline,
                "no dialog opened within {WAIT_FOR_PAGE:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits (bounded) for a `window.confirm` dialog, dismisses it (Cancel) and returns its text.
    pub async fn dismiss_alert(&self) -> String {
        let deadline = Instant::now() + WAIT_FOR_PAGE;
        loop {
            match self
                .command(reqwest::Method::GET, "/alert/text", None)
                .await
            {
                Ok(text) => {
                    self.expect(reqwest::Method::POST, "/alert/dismiss", Some(json!({})))
                        .await;
                    return text.as_str().unwrap_or_default().to_string();
                }
                Err(error) if error.error == "no such alert" => {}
                Err(error) => panic!("WebDriver alert text: {error}"),
            }
            assert!(
                Instant::now() < deadline,
                "no dialog opened within {WAIT_FOR_PAGE:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Presses keys on whatever has the focus, as a user at the keyboard does (W3C key actions:
    /// each character is pressed and released; WebDriver's private-use characters are the
    /// special keys, see [`keys`]).
    pub async fn press(&self, text: &str) {
        let mut actions = Vec::new();
        for key in text.chars() {
            actions.push(json!({ "type": "keyDown", "value": key.to_string() }));
            actions.push(json!({ "type": "keyUp", "value": key.to_string() }));
        }
        self.expect(
            reqwest::Method::POST,
            "/actions",
            Some(json!({ "actions": [{ "type": "key", "id": "keyboard", "actions": actions }] })),
        )
        .await;
    }

    /// A CSS-like description of the focused element (`button[data-action=assign]` style
    /// attributes as JSON), for tests that move the focus with the keyboard.
    pub async fn focused(&self) -> Value {
        self.execute(
            "const e = document.activeElement; return e ? { tag: e.tagName.toLowerCase(), \
             id: e.id, action: e.dataset.action ?? null, text: e.textContent.trim().slice(0, 80), \
             license: e.closest('tr[data-license-id]')?.dataset.licenseId ?? null } : null;",
            vec![],
        )
        .await
    }

    /// Empties a text or number field.
    pub async fn clear(&self, element: &Element) {
        self.expect(
            reqwest::Method::POST,
            &format!("/element/{}/clear", element.0),
            Some(json!({})),
        )
        .await;
    }
}

impl Drop for Browser {
    /// A test that failed before `quit` still ends its session: a plain blocking HTTP request,
    /// because no async runtime can be relied on in a drop.
    fn drop(&mut self) {
        if self.deleted {
            return;
        }
        let path = self
            .session_url
            .split_once(&format!(":{}", self.driver.port))
            .map_or("/", |(_, path)| path)
            .to_string();
        if let Ok(mut stream) = TcpStream::connect(("127.0.0.1", self.driver.port)) {
            let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
            let _ = stream.set_write_timeout(Some(Duration::from_secs(2)));
            let request = format!(
                "DELETE {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
            if stream.write_all(request.as_bytes()).is_ok() {
                let mut answer = Vec::new();
                let _ = stream.read_to_end(&mut answer);
            }
        }
    }
}

/// WebDriver's codes for special keys.
pub mod keys {
    pub const TAB: &str = "\u{E004}";
    pub const ENTER: &str = "\u{E007}";
    pub const ESCAPE: &str = "\u{E00C}";
    pub const ARROW_DOWN: &str = "\u{E015}";
}
