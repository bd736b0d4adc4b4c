//! A headless Chromium at a phone's screen, driven over WebDriver by a
//! ChromeDriver of its own: for `bench pages` and the browser tests alike.
//! `CHROMIUM` and `CHROMEDRIVER` name the programs; Debian's paths
//! otherwise.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context};
use fantoccini::wd::WebDriverCompatibleCommand;
use fantoccini::{Client, ClientBuilder};
use serde_json::{json, Value};

/// A phone's screen, in CSS pixels.
pub const PHONE_WIDTH: u32 = 360;
pub const PHONE_HEIGHT: u32 = 780;

/// The browser, and the ChromeDriver behind it (stopped when dropped).
pub struct PhoneBrowser {
    pub client: Client,
    driver: Child,
}

fn program(variable: &str, default: &str) -> String {
    std::env::var(variable).unwrap_or_else(|_| default.to_string())
}

/// ChromeDriver listens on plain HTTP on this machine: no TLS stack is
/// needed (nor one of the several the workspace's crates bring, which
/// rustls then refuses to choose between).
fn plain_http() -> hyper_util::client::legacy::connect::HttpConnector {
    hyper_util::client::legacy::connect::HttpConnector::new()
}

/// A Chrome DevTools command through ChromeDriver.
#[derive(Debug)]
struct DevTools {
    command: &'static str,
    params: Value,
}

impl WebDriverCompatibleCommand for DevTools {
    fn endpoint(
        &self,
        base_url: &url::Url,
        session_id: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base_url.join(&format!(
            "session/{}/goog/cdp/execute",
            session_id.unwrap_or_default()
        ))
    }

    fn method_and_body(&self, _: &url::Url) -> (http::Method, Option<String>) {
        let body = json!({"cmd": self.command, "params": self.params});
        (http::Method::POST, Some(body.to_string()))
    }
}

impl PhoneBrowser {
    /// A ChromeDriver on a free port and a headless Chromium behind it,
    /// 360 CSS pixels wide at two device pixels each (a window cannot be
    /// made that narrow), in Chinese.
    pub async fn start() -> anyhow::Result<PhoneBrowser> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let chromedriver = program("CHROMEDRIVER", "/usr/bin/chromedriver");
        let driver = Command::new(&chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("{chromedriver} (install chromium and chromium-driver)"))?;
        let Value::Object(capabilities) = json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": program("CHROMIUM", "/usr/bin/chromium"),
                "mobileEmulation": {"deviceMetrics": {
                    "width": PHONE_WIDTH, "height": PHONE_HEIGHT, "pixelRatio": 2.0}},
                "args": ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                    "--disable-gpu", "--hide-scrollbars", "--lang=zh-CN",
                    format!("--window-size={PHONE_WIDTH},{PHONE_HEIGHT}")],
            }
        }) else {
            unreachable!("a JSON object")
        };
        Ok(PhoneBrowser {
            client: connect(port, capabilities).await?,
            driver,
        })
    }

    /// Runs a Chrome DevTools command.
    pub async fn devtools(&self, command: &'static str, params: Value) -> anyhow::Result<()> {
        self.client
            .issue_cmd(DevTools { command, params })
            .await
            .with_context(|| format!("DevTools {command}"))?;
        Ok(())
    }

    /// Ends the session; the driver stops when dropped.
    pub async fn stop(self) {
        let _ = self.client.clone().close().await;
    }
}

impl Drop for PhoneBrowser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// A session once ChromeDriver answers (it takes a moment to listen).
async fn connect(
    port: u16,
    capabilities: serde_json::Map<String, Value>,
) -> anyhow::Result<Client> {
    let url = format!("http://127.0.0.1:{port}");
    let mut last = None;
    for _ in 0..100 {
        match ClientBuilder::new(plain_http())
            .capabilities(capabilities.clone())
            .connect(&url)
            .await
        {
            Ok(client) => return Ok(client),
            Err(error) => last = Some(error),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("chromedriver did not start: {last:?}")
}
