//! Photos over HTTP: uploaded by a phone (anonymous or signed in), named
//! by reports and resolutions, served only to those who may see their
//! report, stripped of every metadata byte, and gone once redacted.

use app::photos::samples::{self, SampleGps};
use reqwest::StatusCode;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::app::{act, report_mutation, Fixture, TestApp, SUBMIT};

const GPS: SampleGps = SampleGps {
    latitude: 30.878_123,
    longitude: 104.250_456,
};

impl TestApp {
    pub fn base_url(&self) -> &str {
        self.url.trim_end_matches("/graphql")
    }

    /// Posts `bytes` as a photo of `community` (`content_type` as sent);
    /// returns the status and the JSON body.
    pub async fn upload(
        &self,
        community: Uuid,
        token: Option<&str>,
        bytes: Vec<u8>,
        content_type: &str,
    ) -> (StatusCode, Value) {
        let mut request = self
            .http
            .post(format!(
                "{}/communities/{community}/photos",
                self.base_url()
            ))
            .header("content-type", content_type)
            .body(bytes);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.expect("the server answers");
        let status = response.status();
        (status, response.json().await.expect("a JSON body"))
    }

    /// Uploads a phone's photo that must be taken; returns its id.
    pub async fn uploaded(&self, community: Uuid, token: Option<&str>) -> Uuid {
        let (status, body) = self
            .upload(
                community,
                token,
                samples::phone_photo(1200, 900, GPS),
                "image/jpeg",
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body["photo"]["id"].as_str().unwrap().parse().unwrap()
    }

    /// GETs `path` (`/photos/...`) as `token`.
    pub async fn fetch(&self, path: &str, token: Option<&str>) -> reqwest::Response {
        let mut request = self.http.get(format!("{}{path}", self.base_url()));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send().await.expect("the server answers")
    }
}

async fn file(app: &TestApp, fixture: &Fixture, token: Option<&str>, photos: Value) -> Value {
    let report = json!({"siteCode": "RB-01", "category": "FLOATING-GARBAGE",
        "text": "河边有人倒垃圾", "photos": photos});
    app.gql(token, SUBMIT, json!({"c": fixture.community, "r": report}))
        .await
}

/// Waits until the reports read model has folded the community's log.
async fn settle(app: &TestApp, fixture: &Fixture, report: Uuid) {
    let head = app.head(fixture.community).await;
    app.ok(
        Some(&fixture.admin),
        "query($c: UUID!, $r: UUID!, $p: Int) { report(communityId: $c, reportId: $r, atLeast: $p) { id } }",
        json!({"c": fixture.community, "r": report, "p": head}),
    )
    .await;
}

fn report_id(filed: &Value) -> Uuid {
    filed["data"]["submitReport"]["reportId"]
        .as_str()
        .unwrap_or_else(|| panic!("filed: {filed}"))
        .parse()
        .unwrap()
}

/// Every JPEG marker before the scan.
pub fn markers(jpeg: &[u8]) -> Vec<u8> {
    let mut found = Vec::new();
    let mut at = 2;
    while at + 4 <= jpeg.len() && jpeg[at] == 0xFF {
        found.push(jpeg[at + 1]);
        if jpeg[at + 1] == 0xDA {
            break;
        }
        at += 2 + usize::from(u16::from_be_bytes([jpeg[at + 2], jpeg[at + 3]]));
    }
    found
}

#[tokio::test]
async fn a_phones_photo_is_filed_upright_small_and_without_metadata() {
    let app = TestApp::spawn_quiet().await;
    let fixture = app.fixture().await;
    let upload = samples::phone_photo(4000, 3000, GPS);
    assert!(markers(&upload).contains(&0xE1), "the phone's EXIF block");
    let (status, body) = app
        .upload(fixture.community, None, upload, "application/octet-stream")
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let photo = &body["photo"];
    assert_eq!(
        (photo["width"].as_u64(), photo["height"].as_u64()),
        (Some(1536), Some(2048))
    );
    assert_eq!(photo["received"], "jpeg");
    assert_eq!(
        body["suggestedLocation"],
        json!({"latitudeE6": 30_878_123, "longitudeE6": 104_250_456}),
        "the GPS position goes back to the uploader"
    );
    let id: Uuid = photo["id"].as_str().unwrap().parse().unwrap();
    // Not a report's yet: nobody is served it.
    assert_eq!(
        app.fetch(&format!("/photos/{id}"), Some(&fixture.admin))
            .await
            .status(),
        404
    );

    let filed = file(
        &app,
        &fixture,
        None,
        json!([id, "https://img.example/far.jpg"]),
    )
    .await;
    let report = report_id(&filed);
    settle(&app, &fixture, report).await;
    let served = app.fetch(&format!("/photos/{id}"), None).await;
    assert_eq!(served.status(), 200);
    assert_eq!(served.headers()["content-type"], "image/jpeg");
    assert!(served.headers()["cache-control"]
        .to_str()
        .unwrap()
        .starts_with("public"));
    let etag = served.headers()["etag"].to_str().unwrap().to_string();
    let bytes = served.bytes().await.unwrap();
    assert!(
        !markers(&bytes)
            .iter()
            .any(|m| matches!(m, 0xE1..=0xEF | 0xFE)),
        "no EXIF, XMP, ICC or comment segment: {:x?}",
        markers(&bytes)
    );
    assert!(!bytes.windows(10).any(|w| w == b"CivicPhone"), "no maker");
    let image = image::load_from_memory(&bytes).unwrap().to_rgb8();
    assert_eq!(image.dimensions(), (1536, 2048));
    assert!(
        image.get_pixel(1536 / 8, 2048 / 8).0[1] > 150,
        "green top left: upright"
    );
    assert!(
        image.get_pixel(1536 * 3 / 4, 2048 / 8).0[0] > 150,
        "red top right"
    );
    assert!(image.get_pixel(768, 2048 * 7 / 8).0[2] > 150, "blue bottom");
    let stored_sha = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bytes));
    assert_eq!(
        etag,
        format!("\"{stored_sha}\""),
        "the tag is the bytes' SHA-256"
    );

    let thumbnail = app.fetch(&format!("/photos/{id}/thumbnail"), None).await;
    assert_eq!(thumbnail.status(), 200);
    let thumbnail = image::load_from_memory(&thumbnail.bytes().await.unwrap()).unwrap();
    assert_eq!((thumbnail.width(), thumbnail.height()), (240, 320));

    let revalidated = app
        .http
        .get(format!("{}/photos/{id}", app.base_url()))
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(revalidated.status(), 304);

    let listed = app
        .ok(
            Some(&fixture.admin),
            "query($c: UUID!, $r: UUID!) { report(communityId: $c, reportId: $r) { photos photoCount } }",
            json!({"c": fixture.community, "r": report}),
        )
        .await;
    assert_eq!(
        listed["report"],
        json!({"photos": ["https://img.example/far.jpg", format!("/photos/{id}")], "photoCount": 2})
    );
}

#[tokio::test]
async fn uploads_that_are_not_whole_photos_are_refused_by_their_bytes() {
    let app = TestApp::spawn_quiet().await;
    let fixture = app.fixture().await;
    let jpeg = samples::jpeg(&samples::picture(64, 48), None);
    let mut multipart = b"--XyZ\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\nhi\r\n--XyZ\r\nContent-Disposition: form-data; name=\"photo\"; filename=\"a.jpg\"\r\nContent-Type: image/jpeg\r\n\r\n".to_vec();
    multipart.extend_from_slice(&jpeg);
    multipart.extend_from_slice(b"\r\n--XyZ--\r\n");
    let mut many_parts = Vec::new();
    for n in 0..40 {
        many_parts.extend_from_slice(
            format!("--XyZ\r\nContent-Disposition: form-data; name=\"f{n}\"\r\n\r\nx\r\n")
                .as_bytes(),
        );
    }
    many_parts.extend_from_slice(b"--XyZ--\r\n");
    let cases: Vec<(&str, Vec<u8>, &str, StatusCode, &str)> = vec![
        (
            "a form of forty fields",
            many_parts,
            "multipart/form-data; boundary=XyZ",
            StatusCode::BAD_REQUEST,
            "VALIDATION",
        ),
        (
            "a photo as a form",
            multipart,
            "multipart/form-data; boundary=XyZ",
            StatusCode::CREATED,
            "",
        ),
        (
            "a PNG said to be a JPEG",
            samples::png(&samples::picture(64, 48)),
            "image/jpeg",
            StatusCode::CREATED,
            "",
        ),
        (
            "empty",
            Vec::new(),
            "image/jpeg",
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UNSUPPORTED_MEDIA",
        ),
        (
            "text said to be a JPEG",
            b"<html>not a photo</html>".to_vec(),
            "image/jpeg",
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UNSUPPORTED_MEDIA",
        ),
        (
            "a cut-off JPEG",
            jpeg[..jpeg.len() / 2].to_vec(),
            "image/jpeg",
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UNSUPPORTED_MEDIA",
        ),
        (
            "a decompression bomb",
            samples::png_bomb(16_000, 16_000),
            "image/png",
            StatusCode::PAYLOAD_TOO_LARGE,
            "PAYLOAD_TOO_LARGE",
        ),
        (
            "13 MB",
            vec![0xFF; 13 * 1024 * 1024],
            "image/jpeg",
            StatusCode::PAYLOAD_TOO_LARGE,
            "PAYLOAD_TOO_LARGE",
        ),
        (
            "a form with no file",
            b"--XyZ\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\nhi\r\n--XyZ--\r\n"
                .to_vec(),
            "multipart/form-data; boundary=XyZ",
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UNSUPPORTED_MEDIA",
        ),
    ];
    for (name, bytes, content_type, status, code) in cases {
        let (got, body) = app
            .upload(fixture.community, None, bytes, content_type)
            .await;
        assert_eq!(got, status, "{name}: {body}");
        if !code.is_empty() {
            assert_eq!(
                body["errors"][0]["extensions"]["code"], code,
                "{name}: {body}"
            );
        }
    }
    // Who may upload where.
    let jpeg = || samples::jpeg(&samples::picture(32, 32), None);
    let callers: [(&str, Uuid, Option<&str>, StatusCode); 5] = [
        (
            "a resident",
            fixture.community,
            Some(&fixture.resident),
            StatusCode::CREATED,
        ),
        (
            "an auditor",
            fixture.community,
            Some(&fixture.auditor),
            StatusCode::FORBIDDEN,
        ),
        (
            "another community's admin",
            fixture.community,
            Some(&fixture.foreign_admin),
            StatusCode::FORBIDDEN,
        ),
        (
            "a bad token",
            fixture.community,
            Some("not.a.token"),
            StatusCode::UNAUTHORIZED,
        ),
        (
            "anyone, to no community",
            Uuid::new_v4(),
            None,
            StatusCode::NOT_FOUND,
        ),
    ];
    for (name, community, token, status) in callers {
        let (got, body) = app.upload(community, token, jpeg(), "image/jpeg").await;
        assert_eq!(got, status, "{name}: {body}");
    }
    let bad = app.fetch("/photos/not-a-uuid", None).await;
    assert_eq!(bad.status(), 400);
}

#[tokio::test]
async fn a_photo_is_seen_with_its_report_belongs_to_it_and_goes_with_it() {
    let app = TestApp::spawn_quiet().await;
    let fixture = app.fixture().await;
    let other = app.fixture().await;
    let photo = app
        .uploaded(fixture.community, Some(&fixture.resident))
        .await;
    let elsewhere = app.uploaded(other.community, None).await;

    // Naming: an unknown id, another community's, twice in one list.
    for (name, photos, code) in [
        ("unknown", json!([Uuid::new_v4()]), "VALIDATION"),
        ("another community's", json!([elsewhere]), "VALIDATION"),
        ("named twice", json!([photo, photo]), "VALIDATION"),
    ] {
        let refused = file(&app, &fixture, Some(&fixture.resident), photos).await;
        assert_eq!(crate::app::code_of(&refused), code, "{name}: {refused}");
    }
    // A retry with the same key files once; another report may not take it.
    let report = json!({"siteCode": "RB-01", "category": "FLOATING-GARBAGE",
        "text": "排口有污水", "photos": [photo]});
    let variables = json!({"c": fixture.community, "r": report});
    let first = app
        .gql_with(
            Some(&fixture.resident),
            SUBMIT,
            variables.clone(),
            Some("tap-1"),
        )
        .await;
    let again = app
        .gql_with(Some(&fixture.resident), SUBMIT, variables, Some("tap-1"))
        .await;
    assert_eq!(report_id(&first), report_id(&again), "{again}");
    let report = report_id(&first);
    let taken = file(
        &app,
        &fixture,
        Some(&fixture.other_resident),
        json!([photo]),
    )
    .await;
    assert_eq!(crate::app::code_of(&taken), "CONFLICT", "{taken}");

    // Hidden: staff and the reporter see it; the public and other residents do not.
    let hide = report_mutation("hideReport(reason: \"personal data\")", "position");
    app.ok(
        Some(&fixture.admin),
        &hide,
        json!({"c": fixture.community, "r": report}),
    )
    .await;
    settle(&app, &fixture, report).await;
    let path = format!("/photos/{photo}");
    let thumbnail = format!("/photos/{photo}/thumbnail");
    let viewers: [(&str, Option<&str>, u16); 6] = [
        ("anonymous", None, 404),
        ("another resident", Some(&fixture.other_resident), 404),
        ("another community's admin", Some(&other.admin), 404),
        ("the reporter", Some(&fixture.resident), 200),
        ("a grid worker", Some(&fixture.worker), 200),
        ("the admin", Some(&fixture.admin), 200),
    ];
    for (name, token, status) in viewers {
        for path in [&path, &thumbnail] {
            let got = app.fetch(path, token).await;
            assert_eq!(got.status().as_u16(), status, "{name} {path}");
            if status == 200 {
                assert!(got.headers()["cache-control"]
                    .to_str()
                    .unwrap()
                    .starts_with("private"));
            }
        }
    }
    // A resolution names an uploaded photo too.
    let after = app.uploaded(fixture.community, Some(&fixture.worker)).await;
    let assign = format!("assignReport(workerId: \"{}\")", fixture.worker_id);
    for (token, step) in [
        (&fixture.admin, "acceptReport"),
        (&fixture.admin, assign.as_str()),
        (&fixture.worker, "startWork"),
    ] {
        let done = act(&app, &fixture, token, step, report).await;
        assert_eq!(crate::app::code_of(&done), "OK", "{step}: {done}");
    }
    let resolve = report_mutation(
        &format!("resolveReport(notes: \"已清理\", photos: [\"{after}\"])"),
        "position",
    );
    app.ok(
        Some(&fixture.worker),
        &resolve,
        json!({"c": fixture.community, "r": report}),
    )
    .await;
    settle(&app, &fixture, report).await;
    assert_eq!(
        app.fetch(&format!("/photos/{after}"), Some(&fixture.admin))
            .await
            .status(),
        200
    );

    // Redacted: every photo of the report and its thumbnails are gone.
    let redact = report_mutation("redactReportPhotos", "position");
    app.ok(
        Some(&fixture.admin),
        &redact,
        json!({"c": fixture.community, "r": report}),
    )
    .await;
    for gone in [photo, after] {
        for path in [
            format!("/photos/{gone}"),
            format!("/photos/{gone}/thumbnail"),
        ] {
            let got = app.fetch(&path, Some(&fixture.admin)).await;
            assert_eq!(got.status(), 410, "{path}");
            let body: Value = got.json().await.unwrap();
            assert_eq!(body["errors"][0]["extensions"]["code"], "GONE");
        }
    }
    // And no report may name them again.
    let reused = file(&app, &fixture, Some(&fixture.resident), json!([after])).await;
    assert_eq!(crate::app::code_of(&reused), "GONE", "{reused}");
}

/// Every way content is erased takes the uploaded photos it lists with it:
/// a moderator's redaction of a report's photos, and a resident's erasure
/// on their request (of what they filed, and of a report they claimed).
#[tokio::test]
async fn every_erasure_of_a_photo_list_takes_its_photos() {
    let app = TestApp::spawn_quiet().await;
    let fixture = app.fixture().await;
    let redact = report_mutation("redactReportPhotos", "position");
    let erase = "mutation($c: UUID!, $p: UUID!) { eraseResident(communityId: $c, residentId: $p, reason: \"本人申请删除\") { profileErased } }";
    for way in ["redacted", "the reporter erased", "the claimant erased"] {
        let anonymous = way == "the claimant erased";
        let token = (!anonymous).then_some(fixture.resident.as_str());
        let photo = app.uploaded(fixture.community, token).await;
        let filed = file(&app, &fixture, token, json!([photo])).await;
        let report = report_id(&filed);
        if anonymous {
            let secret = filed["data"]["submitReport"]["claimSecret"]
                .as_str()
                .unwrap();
            let claim = report_mutation(
                &format!("claimReport(claimSecret: \"{secret}\")"),
                "position",
            );
            app.ok(
                Some(&fixture.resident),
                &claim,
                json!({"c": fixture.community, "r": report}),
            )
            .await;
        }
        settle(&app, &fixture, report).await;
        let path = format!("/photos/{photo}");
        assert_eq!(
            app.fetch(&path, Some(&fixture.admin)).await.status(),
            200,
            "{way}"
        );
        match way {
            "redacted" => {
                app.ok(
                    Some(&fixture.admin),
                    &redact,
                    json!({"c": fixture.community, "r": report}),
                )
                .await;
            }
            _ => {
                app.ok(
                    Some(&fixture.admin),
                    erase,
                    json!({"c": fixture.community, "p": fixture.resident_id}),
                )
                .await;
            }
        }
        for path in [path.clone(), format!("{path}/thumbnail")] {
            assert_eq!(
                app.fetch(&path, Some(&fixture.admin)).await.status(),
                410,
                "{way}: {path}"
            );
        }
    }
}

/// A patrol finding's report names uploaded photos as a resident's does.
#[tokio::test]
async fn a_patrol_finding_files_its_uploaded_photo() {
    let app = TestApp::spawn_quiet().await;
    let fixture = app.fixture().await;
    let photo = app.uploaded(fixture.community, Some(&fixture.worker)).await;
    let started = app
        .ok(
            Some(&fixture.worker),
            "mutation($c: UUID!) { startPatrol(communityId: $c) { id } }",
            json!({"c": fixture.community}),
        )
        .await;
    let patrol = started["startPatrol"]["id"].as_str().unwrap().to_string();
    let finding = app
        .ok(
            Some(&fixture.worker),
            "mutation($c: UUID!, $p: UUID!, $photos: [String!]!) { recordPatrolFinding(communityId: $c, patrolId: $p, text: \"排口有黑水\", siteCode: \"RB-01\",
                openReport: {category: \"SEWAGE-OUTFALL\", photos: $photos}) { reportId } }",
            json!({"c": fixture.community, "p": patrol, "photos": [photo]}),
        )
        .await;
    let report: Uuid = finding["recordPatrolFinding"]["reportId"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    settle(&app, &fixture, report).await;
    let listed = app
        .ok(
            Some(&fixture.admin),
            "query($c: UUID!, $r: UUID!) { report(communityId: $c, reportId: $r) { photos } }",
            json!({"c": fixture.community, "r": report}),
        )
        .await;
    assert_eq!(
        listed["report"]["photos"],
        json!([format!("/photos/{photo}")])
    );
    let served = app.fetch(&format!("/photos/{photo}"), None).await;
    assert_eq!(served.status(), 200);
}
