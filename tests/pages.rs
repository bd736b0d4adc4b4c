//! The pages over plain HTTP (what a phone without JavaScript does): the
//! report page and what its form files, QR codes and the printable sheet,
//! sign-up, a report's status page. The browser tests drive the same pages
//! in Chromium.

use app::photos::samples::{self, SampleGps};
use reqwest::StatusCode;
use serde_json::json;
use uuid::Uuid;

use crate::app::{Fixture, Options, TestApp};

impl TestApp {
    /// The id of the fixture's site `code`.
    pub async fn site_id(&self, fixture: &Fixture, code: &str) -> Uuid {
        let data = self
            .ok(
                Some(&fixture.admin),
                "query($c: UUID!) { community(communityId: $c) { sites { id code } } }",
                json!({"c": fixture.community}),
            )
            .await;
        let sites = data["community"]["sites"].as_array().unwrap();
        let site = sites.iter().find(|s| s["code"] == code).unwrap();
        site["id"].as_str().unwrap().parse().unwrap()
    }

    /// Retires the fixture's site `code`.
    pub async fn retire(&self, fixture: &Fixture, code: &str) {
        let site = self.site_id(fixture, code).await;
        self.ok(
            Some(&fixture.admin),
            "mutation($c: UUID!, $s: UUID!) { retireSite(communityId: $c, siteId: $s) { position } }",
            json!({"c": fixture.community, "s": site}),
        )
        .await;
    }

    /// How many reports the community has.
    pub async fn report_count(&self, fixture: &Fixture) -> usize {
        let head = self.head(fixture.community).await;
        let data = self
            .ok(
                Some(&fixture.admin),
                "query($c: UUID!, $p: Int) { reports(communityId: $c, first: 100, atLeast: $p) { edges { node { id } } } }",
                json!({"c": fixture.community, "p": head}),
            )
            .await;
        data["reports"]["edges"].as_array().unwrap().len()
    }
}

/// A multipart form body: its text fields, then its files.
pub fn multipart(fields: &[(&str, &str)], files: &[Vec<u8>]) -> (String, Vec<u8>) {
    let boundary = "civicledgerform7";
    let mut body = Vec::new();
    for (name, value) in fields {
        body.extend_from_slice(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n")
                .as_bytes(),
        );
    }
    for (index, file) in files.iter().enumerate() {
        body.extend_from_slice(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"photo\"; filename=\"IMG_{index}.jpg\"\r\nContent-Type: image/jpeg\r\n\r\n")
                .as_bytes(),
        );
        body.extend_from_slice(file);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

/// Posts one sign-up step's form; the answer.
async fn signup_step(app: &TestApp, community: Uuid, form: &[(&str, &str)]) -> reqwest::Response {
    app.http
        .post(format!("{}/r/{community}/signup", app.base_url()))
        .form(form)
        .send()
        .await
        .unwrap()
}

/// The URL a site's printed QR code holds, read back from its PNG.
pub async fn url_in_qr_code(app: &TestApp, community: Uuid, code: &str) -> String {
    let png = app
        .fetch(&format!("/r/{community}/{code}/qr.png"), None)
        .await;
    assert_eq!(png.status(), 200);
    assert_eq!(png.headers()["content-type"], "image/png");
    let image = image::load_from_memory(&png.bytes().await.unwrap())
        .unwrap()
        .to_luma8();
    let mut prepared = rqrr::PreparedImage::prepare(image);
    let grids = prepared.detect_grids();
    assert_eq!(grids.len(), 1, "one code");
    grids[0].decode().unwrap().1
}

/// The report a tracking link (`/r/{community}/reports/{id}?…`) names.
pub fn report_of(track: &str) -> Uuid {
    let path = track.split('?').next().unwrap();
    path.rsplit('/').next().unwrap().parse().unwrap()
}

/// The text between `start` and the next `end` in `html`.
pub fn between<'a>(html: &'a str, start: &str, end: &str) -> Option<&'a str> {
    let from = html.find(start)? + start.len();
    let to = from + html[from..].find(end)?;
    Some(&html[from..to])
}

#[tokio::test]
async fn a_form_sent_twice_files_one_report_with_its_photo() {
    let app = TestApp::spawn_quiet().await;
    let fixture = app.fixture().await;
    let page_url = format!("{}/r/{}/RB-01", app.base_url(), fixture.community);
    let page = app.http.get(&page_url).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .contains("default-src 'none'"));
    let html = page.text().await.unwrap();
    assert!(html.contains("lang=\"zh-CN\""), "Chinese by default");
    assert!(html.contains("capture=\"environment\""));
    assert!(
        html.contains("value=\"FLOATING-GARBAGE\""),
        "the community's categories"
    );
    assert!(
        !html.contains("id=\"suggestion\""),
        "no suggestion box on a river bank"
    );
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "nothing from elsewhere"
    );
    let key = between(&html, "name=\"key\" value=\"", "\"")
        .unwrap()
        .to_string();
    let photo = samples::phone_photo(
        1600,
        1200,
        SampleGps {
            latitude: 30.87,
            longitude: 104.25,
        },
    );
    let fields = [
        ("key", key.as_str()),
        ("lang", "zh"),
        ("kind", "report"),
        ("category", "FLOATING-GARBAGE"),
        ("text", "桥下有一堆塑料瓶"),
    ];
    let before = app.report_count(&fixture).await;
    // Sent twice at once (a double tap without JavaScript), then again.
    let send = || {
        let (content_type, body) = multipart(&fields, std::slice::from_ref(&photo));
        app.http
            .post(&page_url)
            .header("content-type", content_type)
            .body(body)
            .send()
    };
    let (first, second) = tokio::join!(send(), send());
    let third = send().await.unwrap();
    let mut tracks = Vec::new();
    for answer in [first.unwrap(), second.unwrap(), third] {
        assert_eq!(answer.status(), 200);
        let html = answer.text().await.unwrap();
        let secret = between(&html, "id=\"claim-secret\">", "<").expect("a claim secret");
        assert!(secret.len() >= 16, "{secret}");
        tracks.push(
            between(&html, "id=\"track\" href=\"", "\"")
                .unwrap()
                .to_string(),
        );
    }
    let report = report_of;
    assert_eq!(report(&tracks[0]), report(&tracks[1]));
    assert_eq!(report(&tracks[0]), report(&tracks[2]));
    assert_eq!(app.report_count(&fixture).await, before + 1, "one report");

    let status = app.fetch(&tracks[0], None).await;
    assert_eq!(status.status(), 200);
    let html = status.text().await.unwrap();
    assert!(html.contains("桥下有一堆塑料瓶"));
    assert!(html.contains("id=\"state\">已提交"), "{html}");
    let thumbnail = between(&html, "<img src=\"", "\"").expect("the photo's thumbnail");
    let served = app.fetch(thumbnail, None).await;
    assert_eq!(served.status(), 200, "{thumbnail}");
}

#[tokio::test]
async fn pages_refuse_politely_what_they_cannot_take() {
    let app = TestApp::spawn_quiet().await;
    let fixture = app.fixture().await;
    app.retire(&fixture, "RB-02").await;
    let base = app.base_url().to_string();
    let c = fixture.community;
    let cases: [(String, StatusCode, &str); 6] = [
        (
            format!("{base}/r/{c}/RB-02"),
            StatusCode::GONE,
            "此点位已停用",
        ),
        (
            format!("{base}/r/{c}/RB-02?lang=en"),
            StatusCode::GONE,
            "This site is retired",
        ),
        (
            format!("{base}/r/{c}/NOPE-9"),
            StatusCode::NOT_FOUND,
            "找不到这个点位",
        ),
        (
            format!("{base}/r/{}/RB-01", Uuid::new_v4()),
            StatusCode::NOT_FOUND,
            "找不到",
        ),
        (
            format!("{base}/r/not-a-community/RB-01"),
            StatusCode::NOT_FOUND,
            "找不到",
        ),
        (
            format!("{base}/r/{c}/RB-02/qr.svg"),
            StatusCode::GONE,
            "没有提交成功",
        ),
    ];
    for (url, status, words) in cases {
        let answer = app.http.get(&url).send().await.unwrap();
        assert_eq!(answer.status(), status, "{url}");
        let html = answer.text().await.unwrap();
        assert!(html.contains(words), "{url}: {html}");
        assert!(!html.contains("<form id=\"report\""), "{url}");
    }
    // A form for a retired site, a form without its key, a form that is
    // not a form: refused, and nothing filed.
    let before = app.report_count(&fixture).await;
    type Fields<'a> = Vec<(&'a str, &'a str)>;
    let posts: [(String, Fields, StatusCode); 3] = [
        (
            format!("{base}/r/{c}/RB-02"),
            vec![
                ("key", "k-1"),
                ("kind", "report"),
                ("category", "FLOATING-GARBAGE"),
                ("text", "x"),
            ],
            StatusCode::NOT_FOUND,
        ),
        (
            format!("{base}/r/{c}/RB-01"),
            vec![
                ("kind", "report"),
                ("category", "FLOATING-GARBAGE"),
                ("text", "x"),
            ],
            StatusCode::BAD_REQUEST,
        ),
        (
            format!("{base}/r/{c}/RB-01"),
            vec![
                ("key", "a key with spaces"),
                ("kind", "report"),
                ("category", "FLOATING-GARBAGE"),
                ("text", "x"),
            ],
            StatusCode::BAD_REQUEST,
        ),
    ];
    for (url, fields, status) in posts {
        let (content_type, body) = multipart(&fields, &[]);
        let answer = app
            .http
            .post(&url)
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), status, "{url} {fields:?}");
    }
    let json = app
        .http
        .post(format!("{base}/r/{c}/RB-01"))
        .json(&json!({"text": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(json.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(app.report_count(&fixture).await, before);
}

#[tokio::test]
async fn each_active_sites_qr_code_opens_its_page_and_admins_print_them_all() {
    let app = TestApp::spawn_quiet().await;
    let fixture = app.fixture().await;
    app.retire(&fixture, "RB-02").await;
    let base = app.base_url().to_string();
    let c = fixture.community;
    let content = url_in_qr_code(&app, c, "RB-01").await;
    assert_eq!(
        content,
        format!("{base}/r/{c}/RB-01"),
        "the page's public URL"
    );
    let svg = app.fetch(&format!("/r/{c}/MS-01/qr.svg"), None).await;
    assert_eq!(svg.status(), 200);
    assert_eq!(svg.headers()["content-type"], "image/svg+xml");
    assert!(svg.text().await.unwrap().starts_with("<?xml"));

    let sheet_path = format!("/communities/{c}/qr-sheet");
    let sheet_url = format!("{base}{sheet_path}");
    for (token, status) in [
        (None, StatusCode::UNAUTHORIZED),
        (Some(&fixture.resident), StatusCode::FORBIDDEN),
        (Some(&fixture.foreign_admin), StatusCode::FORBIDDEN),
    ] {
        let answer = app.fetch(&sheet_path, token.map(String::as_str)).await;
        assert_eq!(answer.status(), status, "{token:?}");
    }
    let sheet = app.fetch(&sheet_path, Some(&fixture.admin)).await;
    assert_eq!(sheet.status(), 200);
    let html = sheet.text().await.unwrap();
    assert!(html.contains("size:A4"));
    assert_eq!(
        html.matches("class=\"card\"").count(),
        2,
        "the two active sites"
    );
    assert!(html.contains("RB-01") && html.contains("MS-01") && !html.contains("RB-02"));
    // The sheet by the page's sign-in cookie, as a browser opens it.
    let by_cookie = app
        .http
        .get(&sheet_url)
        .header("cookie", format!("civic_ledger_token={}", fixture.admin))
        .send()
        .await
        .unwrap();
    assert_eq!(by_cookie.status(), 200);
}

#[tokio::test]
async fn signing_up_on_a_demo_page_shows_the_code_and_claims_the_report() {
    let app = TestApp::spawn_with(Options {
        demo: true,
        run_earning: false,
        ..Options::default()
    })
    .await;
    let fixture = app.fixture().await;
    let base = app.base_url().to_string();
    let c = fixture.community;
    let page = app
        .fetch(&format!("/r/{c}/MS-01?lang=en"), None)
        .await
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("id=\"suggestion\""),
        "a suggestion box at a micro-space"
    );
    let key = between(&page, "name=\"key\" value=\"", "\"")
        .unwrap()
        .to_string();
    let (content_type, body) = multipart(
        &[
            ("key", &key),
            ("lang", "en"),
            ("kind", "report"),
            ("category", "SEWAGE-OUTFALL"),
            ("text", "Grey water from the drain"),
        ],
        &[],
    );
    let filed = app
        .http
        .post(format!("{base}/r/{c}/MS-01"))
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let secret = between(&filed, "id=\"claim-secret\">", "<")
        .unwrap()
        .to_string();
    let report = between(&filed, "name=\"report\" value=\"", "\"")
        .unwrap()
        .to_string();

    let phone = "13800138000";
    let form = [
        ("lang", "en"),
        ("step", "send"),
        ("report", report.as_str()),
        ("secret", secret.as_str()),
        ("phone", phone),
        ("display_name", "李阿姨"),
    ];
    let sent = signup_step(&app, c, &form).await.text().await.unwrap();
    let code = between(&sent, "id=\"demo-code\">", "</p>")
        .unwrap_or_else(|| panic!("the demo shows the code: {sent}"));
    let code = between(code, "<strong>", "</strong>").unwrap().to_string();
    assert_eq!(code.len(), 6, "{code}");
    let wrong = [
        ("lang", "en"),
        ("step", "verify"),
        ("report", report.as_str()),
        ("secret", secret.as_str()),
        ("phone", phone),
        ("code", "000000"),
    ];
    let refused = signup_step(&app, c, &wrong).await;
    assert_eq!(refused.status(), 400);
    let right = [
        ("lang", "en"),
        ("step", "verify"),
        ("report", report.as_str()),
        ("secret", secret.as_str()),
        ("phone", phone),
        ("code", code.as_str()),
    ];
    let verified = signup_step(&app, c, &right).await;
    assert_eq!(verified.status(), 200);
    let cookie = verified.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"),
        "{cookie}"
    );
    let html = verified.text().await.unwrap();
    assert!(html.contains("id=\"claimed\""), "{html}");
    let token = between(&cookie, "civic_ledger_token=", ";")
        .unwrap()
        .to_string();
    let head = app.head(c).await;
    let mine = app
        .ok(
            Some(&token),
            "query($c: UUID!, $r: UUID!, $p: Int) { report(communityId: $c, reportId: $r, atLeast: $p) { reporterId } }",
            json!({"c": c, "r": report, "p": head}),
        )
        .await;
    assert!(
        mine["report"]["reporterId"].is_string(),
        "claimed by the new resident: {mine}"
    );

    // Not a demo: the page never shows a code.
    let quiet = TestApp::spawn_quiet().await;
    let other = quiet.fixture().await;
    let form = [
        ("step", "send"),
        ("phone", phone),
        ("display_name", "王师傅"),
    ];
    let sent = signup_step(&quiet, other.community, &form)
        .await
        .text()
        .await
        .unwrap();
    assert!(!sent.contains("demo-code"), "{sent}");
    assert!(
        quiet.codes.last_for(phone).len() == 6,
        "the code went to the sender"
    );
}
