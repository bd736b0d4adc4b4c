//! The resident's phone, in a real browser: headless Chromium driven over
//! WebDriver (chromedriver), at a phone's width, against the real server.
//! From the printed QR code to the resolved report. `.ci/run` installs
//! Debian's `chromium` and `chromium-driver`; `CHROMIUM` and
//! `CHROMEDRIVER` name others. With `CIVIC_LEDGER_WRITE_SCREENSHOTS=1`
//! the tests write the screenshots in `docs/screenshots/`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use app::photos::samples::{self, SampleGps};
use bench::browser::{PhoneBrowser, PHONE_WIDTH};
use fantoccini::Locator;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::app::{act, Fixture, TestApp};
use crate::pages::{report_of, url_in_qr_code};
use crate::photos::markers;

const WAIT: Duration = Duration::from_secs(30);

/// The shared phone browser, with what the tests ask of a page.
struct Browser(PhoneBrowser);

impl std::ops::Deref for Browser {
    type Target = PhoneBrowser;
    fn deref(&self) -> &PhoneBrowser {
        &self.0
    }
}

impl Browser {
    async fn start() -> Browser {
        Browser(PhoneBrowser::start().await.expect("a headless Chromium"))
    }

    async fn by_id(&self, id: &str) -> fantoccini::elements::Element {
        self.client
            .wait()
            .at_most(WAIT)
            .for_element(Locator::Id(id))
            .await
            .unwrap_or_else(|e| panic!("#{id}: {e}"))
    }

    async fn text_of(&self, id: &str) -> String {
        self.by_id(id).await.text().await.unwrap()
    }

    async fn script(&self, script: &str) -> Value {
        self.client.execute(script, Vec::new()).await.unwrap()
    }

    /// Saves a screenshot into `docs/screenshots/` when asked to.
    async fn keep_screenshot(&self, name: &str) {
        let png = self.client.screenshot().await.unwrap();
        assert_eq!(&png[1..4], b"PNG");
        if std::env::var_os("CIVIC_LEDGER_WRITE_SCREENSHOTS").is_some() {
            std::fs::write(docs().join("screenshots").join(name), png).unwrap();
        }
    }

    async fn stop(self) {
        self.0.stop().await;
    }
}

fn docs() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs")
}

async fn photos_of(app: &TestApp, fixture: &Fixture, report: Uuid) -> Vec<String> {
    let head = app.head(fixture.community).await;
    let data = app
        .ok(
            Some(&fixture.admin),
            "query($c: UUID!, $r: UUID!, $p: Int) { report(communityId: $c, reportId: $r, atLeast: $p) { photos } }",
            json!({"c": fixture.community, "r": report, "p": head}),
        )
        .await;
    serde_json::from_value(data["report"]["photos"].clone()).unwrap()
}

#[tokio::test]
async fn a_resident_files_from_the_qr_code_signs_up_claims_and_sees_it_resolved() {
    let app = TestApp::spawn_quiet().await;
    let fixture = app.fixture().await;
    let browser = Browser::start().await;
    let page_url = url_in_qr_code(&app, fixture.community, "RB-01").await;
    assert_eq!(
        page_url,
        format!("{}/r/{}/RB-01", app.base_url(), fixture.community)
    );
    browser.client.goto(&page_url).await.unwrap();
    browser.by_id("report").await;
    assert_eq!(
        browser.script("return document.documentElement.lang").await,
        "zh-CN"
    );
    assert_eq!(
        browser.script("return window.innerWidth").await,
        json!(PHONE_WIDTH)
    );
    let overflow = browser
        .script("return document.documentElement.scrollWidth - window.innerWidth")
        .await;
    assert_eq!(
        overflow,
        json!(0),
        "readable at 360 px: nothing wider than the screen"
    );
    browser.keep_screenshot("report-page.png").await;

    // A phone's JPEG: sideways sensor pixels, an orientation tag, a GPS
    // position, a maker's name.
    let directory = tempfile::tempdir().unwrap();
    let photo_path = directory.path().join("IMG_20261207_0931.jpg");
    let gps = SampleGps {
        latitude: 30.878_9,
        longitude: 104.250_1,
    };
    std::fs::write(&photo_path, samples::phone_photo(3000, 2000, gps)).unwrap();
    browser
        .by_id("category")
        .await
        .select_by_value("FLOATING-GARBAGE")
        .await
        .unwrap();
    browser
        .by_id("text")
        .await
        .send_keys("河边堆了很多塑料袋，有异味")
        .await
        .unwrap();
    browser
        .by_id("photo")
        .await
        .send_keys(photo_path.to_str().unwrap())
        .await
        .unwrap();
    // A double tap.
    browser
        .script(
            "var send = document.getElementById('send'); send.click(); send.click(); return true",
        )
        .await;
    let secret = browser.text_of("claim-secret").await;
    assert!(secret.len() >= 16, "a claim secret to keep: {secret}");
    assert_eq!(
        app.report_count(&fixture).await,
        1,
        "the double tap filed once"
    );
    let track = browser
        .by_id("track")
        .await
        .attr("href")
        .await
        .unwrap()
        .unwrap();
    let report = report_of(&track);

    // What was stored and is served: no EXIF, upright, at most 2048 px.
    let photos = photos_of(&app, &fixture, report).await;
    assert_eq!(photos.len(), 1, "{photos:?}");
    let served = app.fetch(&photos[0], None).await.bytes().await.unwrap();
    assert!(!markers(&served)
        .iter()
        .any(|m| matches!(m, 0xE1..=0xEF | 0xFE)));
    assert!(!served.windows(10).any(|w| w == b"CivicPhone"));
    let image = image::load_from_memory(&served).unwrap().to_rgb8();
    assert_eq!(
        image.dimensions(),
        (1365, 2048),
        "upright (portrait) and scaled"
    );
    assert!(
        image.get_pixel(1365 / 8, 2048 / 8).0[1] > 150,
        "green at the top left"
    );
    assert!(
        image.get_pixel(680, 2048 * 7 / 8).0[2] > 150,
        "blue at the bottom"
    );

    // Sign up on the page, and the report becomes the resident's.
    browser.by_id("signup").await.click().await.unwrap();
    let phone = "13912345678";
    browser.by_id("phone").await.send_keys(phone).await.unwrap();
    browser
        .by_id("name")
        .await
        .send_keys("张大爷")
        .await
        .unwrap();
    assert_eq!(
        browser
            .by_id("secret")
            .await
            .prop("value")
            .await
            .unwrap()
            .as_deref(),
        Some(secret.as_str()),
        "the claim secret came along"
    );
    browser.by_id("send-code").await.click().await.unwrap();
    browser
        .by_id("code")
        .await
        .send_keys(&app.codes.last_for(phone))
        .await
        .unwrap();
    browser.by_id("confirm").await.click().await.unwrap();
    browser.by_id("claimed").await;
    // Signed in from now on (the page's cookie): the next report is theirs.
    browser.client.goto(&page_url).await.unwrap();
    let note = browser.text_of("report").await;
    assert!(note.contains("已登录"), "{note}");

    // Staff resolve it with a photo; the status page shows the resolution.
    let after = app.uploaded(fixture.community, Some(&fixture.worker)).await;
    let assign = format!("assignReport(workerId: \"{}\")", fixture.worker_id);
    let resolve = format!("resolveReport(notes: \"已清理干净\", photos: [\"{after}\"])");
    for (token, step) in [
        (&fixture.admin, "acceptReport"),
        (&fixture.admin, assign.as_str()),
        (&fixture.worker, "startWork"),
        (&fixture.worker, resolve.as_str()),
    ] {
        let done = act(&app, &fixture, token, step, report).await;
        assert_eq!(crate::app::code_of(&done), "OK", "{step}: {done}");
    }
    browser
        .client
        .goto(&format!(
            "{}/r/{}/reports/{report}?after={}",
            app.base_url(),
            fixture.community,
            app.head(fixture.community).await
        ))
        .await
        .unwrap();
    let resolution = browser.text_of("resolution").await;
    assert!(resolution.contains("已清理干净"), "{resolution}");
    assert!(browser.text_of("state").await.contains("已处理"));
    let shown = browser
        .script("return Array.from(document.querySelectorAll('#resolution img')).map(i => i.naturalWidth)")
        .await;
    assert_eq!(
        shown,
        json!([240]),
        "the staff's portrait photo (900 × 1200): its thumbnail, 240 × 320, loaded"
    );
    browser.stop().await;
}

#[tokio::test]
async fn a_retired_sites_page_refuses_politely_and_a_micro_space_takes_a_suggestion() {
    let app = TestApp::spawn_quiet().await;
    let fixture = app.fixture().await;
    let retired_url = url_in_qr_code(&app, fixture.community, "RB-02").await;
    app.retire(&fixture, "RB-02").await;
    let browser = Browser::start().await;
    browser.client.goto(&retired_url).await.unwrap();
    assert!(browser.text_of("retired").await.contains("此点位已停用"));
    let forms = browser.script("return document.forms.length").await;
    assert_eq!(forms, json!(0), "no form on a retired site's page");

    let micro_space = url_in_qr_code(&app, fixture.community, "MS-01").await;
    browser
        .client
        .goto(&format!("{micro_space}?lang=en"))
        .await
        .unwrap();
    browser
        .by_id("suggestion-text")
        .await
        .send_keys("Could the river bank get two more benches?")
        .await
        .unwrap();
    browser
        .client
        .find(Locator::Css("#suggestion button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    assert_eq!(browser.text_of("filed").await, "Suggestion received");
    browser.by_id("claim-secret").await;
    browser.stop().await;
}

#[tokio::test]
async fn the_printable_qr_sheet_fits_a4() {
    let app = TestApp::spawn_quiet().await;
    let fixture = app.fixture().await;
    let browser = Browser::start().await;
    // Signed in as the admin by the pages' cookie.
    // (A cookie is set for the page the browser is on: one of the server's.)
    browser
        .client
        .goto(&format!("{}/healthz", app.base_url()))
        .await
        .unwrap();
    browser
        .client
        .execute(
            "document.cookie = 'civic_ledger_token=' + arguments[0] + '; path=/'; return true",
            vec![json!(fixture.admin)],
        )
        .await
        .unwrap();
    browser.client.set_window_size(900, 1300).await.unwrap();
    browser
        .client
        .goto(&format!(
            "{}/communities/{}/qr-sheet",
            app.base_url(),
            fixture.community
        ))
        .await
        .unwrap();
    let cards = browser
        .script("return document.querySelectorAll('.card svg').length")
        .await;
    assert_eq!(cards, json!(3));
    browser.keep_screenshot("qr-sheet.png").await;
    let pdf = browser
        .client
        .print(fantoccini::wd::PrintConfiguration::default())
        .await
        .unwrap();
    assert!(pdf.starts_with(b"%PDF"));
    if std::env::var_os("CIVIC_LEDGER_WRITE_SCREENSHOTS").is_some() {
        std::fs::write(docs().join("screenshots").join("qr-sheet.pdf"), &pdf).unwrap();
    }
    let text = String::from_utf8_lossy(&pdf);
    let pages = text.matches("/Type /Page").count() - text.matches("/Type /Pages").count();
    assert_eq!(pages, 1, "three sites' codes on one sheet");
    assert!(
        text.contains("/MediaBox [0 0 595.9"),
        "A4: 595.92 × 841.92 points"
    );
    assert!(text.contains("841.9"));
    browser.stop().await;
}
