//! The report page a site's QR code opens (`/r/{community}/{code}`), what
//! filing from it answers, and a report's public status page
//! (`/r/{community}/reports/{report}`).

use std::time::Duration;

use actix_web::{web, HttpRequest, HttpResponse};
use app::error::AppError;
use app::idempotency::{ClientKey, Idempotency};
use app::reports::ReportSubmission;
use app::services::Request;
use app::sites::{PublicReport, SiteView};
use store::CommunityId;
use uuid::Uuid;

use super::form::{self, Form};
use super::{escape, page, page_viewer, refusal_page, Lang};
use crate::server::{caller_scope, request_meta, AppState};

/// The page's script: uploads photos with progress and retries, then
/// sends the form with the page's one key, again on a dropped connection.
const SCRIPT: &str = include_str!("report.js");

pub fn routes(config: &mut web::ServiceConfig) {
    config
        .route("/r/{community}/reports/{report}", web::get().to(status))
        .route("/r/{community}/{code}", web::get().to(site_page))
        .route("/r/{community}/{code}", web::post().to(file));
}

fn community_of(text: &str) -> Result<Uuid, AppError> {
    Uuid::try_parse(text).map_err(|_| AppError::not_found("no such community"))
}

/// The site's page: its report form, or that it is retired.
async fn site_page(
    state: web::Data<AppState>,
    request: HttpRequest,
    path: web::Path<(String, String)>,
) -> HttpResponse {
    let lang = Lang::of(&request);
    let (community, code) = path.into_inner();
    let site = match community_of(&community) {
        Ok(community) => state.app.services.site_view(community, &code).await,
        Err(error) => Err(error),
    };
    let site = match site {
        Ok(site) => site,
        Err(error) => return refusal_page(lang, &error),
    };
    if !site.active {
        return retired(lang, &site);
    }
    let signed_in = page_viewer(&state, &request)
        .await
        .claims_in(site.community_id)
        .is_some();
    page(
        lang,
        &format!("{} · {}", lang.text().report_title, site.name),
        &site_body(lang, &site, signed_in),
        Some(SCRIPT),
    )
}

fn header(lang: Lang, site: &SiteView) -> String {
    let t = lang.text();
    format!(
        "<a class=\"lang\" href=\"/r/{community}/{code}{other}\">{switch}</a>\
         <h1>{title}</h1><p class=\"site\">{name} · {grid_word} {grid} · {community_name}</p>",
        community = site.community_id,
        code = escape(&site.code),
        other = lang.other().query(),
        switch = t.switch_to,
        title = t.report_title,
        name = escape(&site.name),
        grid_word = t.grid,
        grid = escape(&site.grid_name),
        community_name = escape(&site.community_name),
    )
}

fn retired(lang: Lang, site: &SiteView) -> HttpResponse {
    let t = lang.text();
    let body = format!(
        "{}<div class=\"note warn\" id=\"retired\"><strong>{}</strong><p>{}</p></div>",
        header(lang, site),
        t.retired,
        t.retired_detail
    );
    let mut response = page(lang, t.retired, &body, None);
    *response.status_mut() = actix_web::http::StatusCode::GONE;
    response
}

fn site_body(lang: Lang, site: &SiteView, signed_in: bool) -> String {
    let t = lang.text();
    let action = format!(
        "/r/{}/{}{}",
        site.community_id,
        escape(&site.code),
        lang.query()
    );
    let options: String = site
        .categories
        .iter()
        .map(|(code, name)| {
            format!(
                "<option value=\"{}\">{}</option>",
                escape(code),
                escape(name)
            )
        })
        .collect();
    let who = if signed_in {
        t.signed_in_note
    } else {
        t.anonymous_note
    };
    let hidden = |kind: &str| {
        format!(
            "<input type=\"hidden\" name=\"key\" value=\"{key}\">\
             <input type=\"hidden\" name=\"lang\" value=\"{lang}\">\
             <input type=\"hidden\" name=\"kind\" value=\"{kind}\">",
            key = Uuid::new_v4(),
            lang = lang.field(),
        )
    };
    let mut body = header(lang, site);
    body.push_str(&format!(
        "<form id=\"report\" method=\"post\" action=\"{action}\" enctype=\"multipart/form-data\">{hidden}\
         <input type=\"hidden\" name=\"photo_ids\" value=\"\">\
         <label for=\"category\">{category}</label><select id=\"category\" name=\"category\" required>{options}</select>\
         <label for=\"text\">{describe}</label><textarea id=\"text\" name=\"text\" required maxlength=\"2000\" placeholder=\"{hint}\"></textarea>\
         <label for=\"photo\">{photo}</label><input id=\"photo\" name=\"photo\" type=\"file\" accept=\"image/*\" capture=\"environment\" multiple>\
         <small>{photo_hint}</small><progress id=\"progress\" max=\"100\" value=\"0\" hidden></progress>\
         <p id=\"status\" role=\"status\" aria-live=\"polite\"></p>\
         <button id=\"send\" type=\"submit\">{submit}</button><p><small>{who}</small></p></form>",
        hidden = hidden("report"),
        category = t.category,
        describe = t.describe,
        hint = t.describe_hint,
        photo = t.photo,
        photo_hint = t.photo_hint,
        submit = t.submit,
    ));
    if site.has_suggestion_box {
        body.push_str(&format!(
            "<form id=\"suggestion\" method=\"post\" action=\"{action}\" enctype=\"multipart/form-data\">\
             <fieldset><legend>{title}</legend>{hidden}\
             <label for=\"suggestion-text\">{label}</label>\
             <textarea id=\"suggestion-text\" name=\"text\" required maxlength=\"2000\"></textarea>\
             <button type=\"submit\">{submit}</button></fieldset></form>",
            title = t.suggestion_title,
            hidden = hidden("suggestion"),
            label = t.suggestion_label,
            submit = t.suggestion_submit,
        ));
    }
    body.push_str(&format!(
        "<script type=\"application/json\" id=\"words\">{}</script>",
        serde_json::json!({
            "uploading": t.uploading, "retrying": t.retrying,
            "sending": t.sending, "uploadFailed": t.upload_failed,
            "locationFound": t.location_found,
            "uploadUrl": format!("/communities/{}/photos", site.community_id),
        })
        .to_string()
        .replace('<', "\\u003c")
    ));
    body
}

/// Files what the page's form sent: its photos first, then the report (or
/// the suggestion) under the form's one key, so that the same form sent
/// twice (a double tap, a retry on a dropped connection) files once.
async fn file(
    state: web::Data<AppState>,
    request: HttpRequest,
    path: web::Path<(String, String)>,
    payload: web::Payload,
) -> HttpResponse {
    let (community, code) = path.into_inner();
    let mut lang = Lang::of(&request);
    let filed = async {
        let community = community_of(&community)?;
        let form = form::read(&request, payload).await?;
        lang = Lang::from_field(form.get("lang"));
        let caller = caller(&state, &request, &form, &code).await?;
        let answer = submit(&state, &caller, community, &code, &form).await?;
        Ok::<_, AppError>((community, answer))
    }
    .await;
    match filed {
        Ok((community, answer)) => filed_page(lang, community, &answer),
        Err(error) => refusal_page(lang, &error),
    }
}

/// The caller, with the form's key scoped to them and to what the form
/// asks (its kind, site, category and text: not its photos, which a
/// resent form uploads anew).
async fn caller(
    state: &AppState,
    request: &HttpRequest,
    form: &Form,
    code: &str,
) -> Result<Request, AppError> {
    let mut meta = request_meta(state, request)
        .map_err(|error| AppError::validation("idempotency key", error.message))?;
    let viewer = page_viewer(state, request).await;
    let key = ClientKey::parse(form.required("key")?.as_bytes())?;
    let mut arguments = String::new();
    for field in ["kind", "category", "text"] {
        arguments.push_str(
            &serde_json::to_string(form.get(field).unwrap_or_default()).expect("a string"),
        );
        arguments.push(';');
    }
    arguments.push_str(&serde_json::to_string(code).expect("a string"));
    meta.idempotency = Some(Idempotency::client(
        &caller_scope(&viewer, &meta),
        &key,
        "page:file",
        arguments.as_bytes(),
    ));
    meta.client_key = Some(key);
    Ok(Request::new(viewer, meta))
}

/// What filing gave, for the page that answers it.
enum Answer {
    Report(app::reports::ReportFiled),
    Suggestion(app::suggestions::SuggestionWritten),
}

async fn submit(
    state: &AppState,
    caller: &Request,
    community: Uuid,
    code: &str,
    form: &Form,
) -> Result<Answer, AppError> {
    let services = &state.app.services;
    let text = form.required("text")?;
    if form.get("kind") == Some("suggestion") {
        let written = services
            .submit_suggestion(caller, community, code, text, None)
            .await?;
        return Ok(Answer::Suggestion(written));
    }
    let mut photos: Vec<String> = form
        .get("photo_ids")
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|id| !id.is_empty())
        .map(str::to_string)
        .collect();
    for file in &form.files {
        let uploaded = services
            .upload_photo(caller, community, file.clone())
            .await?;
        photos.push(uploaded.photo_id.to_string());
    }
    let filed = services
        .submit_report(
            caller,
            community,
            &ReportSubmission {
                site_code: Some(code.to_string()),
                latitude_e6: None,
                longitude_e6: None,
                category: form.required("category")?.to_string(),
                text: text.to_string(),
                photos,
                client_fingerprint: None,
            },
        )
        .await?;
    Ok(Answer::Report(filed))
}

fn filed_page(lang: Lang, community: Uuid, answer: &Answer) -> HttpResponse {
    let t = lang.text();
    let (title, id, position, secret, duplicate) = match answer {
        Answer::Report(filed) => (
            t.filed_title,
            filed.report.0,
            filed.position,
            filed.claim_secret.as_deref(),
            filed.likely_duplicate_of.is_some(),
        ),
        Answer::Suggestion(written) => (
            t.suggestion_filed_title,
            written.suggestion.0,
            written.position,
            written.claim_secret.as_deref(),
            false,
        ),
    };
    let mut body = format!("<h1 id=\"filed\">{title}</h1>");
    if duplicate {
        body.push_str(&format!("<p class=\"note\">{}</p>", t.duplicate_note));
    }
    if let Some(secret) = secret {
        body.push_str(&format!(
            "<div class=\"note\"><p>{intro}</p><p class=\"secret\" id=\"claim-secret\">{secret}</p></div>",
            intro = t.claim_intro,
            secret = escape(secret),
        ));
    }
    if let Answer::Report(_) = answer {
        body.push_str(&format!(
            "<a class=\"button\" id=\"track\" href=\"/r/{community}/reports/{id}?after={position}{lang}\">{track}</a>",
            lang = if lang == Lang::En { "&lang=en" } else { "" },
            track = t.track,
        ));
    }
    if let Some(secret) = secret {
        body.push_str(&format!(
            "<form method=\"post\" action=\"/r/{community}/signup\">\
             <input type=\"hidden\" name=\"lang\" value=\"{lang}\">\
             <input type=\"hidden\" name=\"step\" value=\"start\">\
             <input type=\"hidden\" name=\"report\" value=\"{id}\">\
             <input type=\"hidden\" name=\"secret\" value=\"{secret}\">\
             <button id=\"signup\" type=\"submit\">{label}</button></form>",
            lang = lang.field(),
            secret = escape(secret),
            label = t.signup_and_claim,
        ));
    }
    page(lang, title, &body, None)
}

/// How long a status page waits for the read model to show a report just
/// filed (its tracking link names the position it was filed at).
const STATUS_WAIT: Duration = Duration::from_secs(3);

async fn status(
    state: web::Data<AppState>,
    request: HttpRequest,
    path: web::Path<(String, String)>,
) -> HttpResponse {
    let lang = Lang::of(&request);
    let (community, report) = path.into_inner();
    let shown = async {
        let community = community_of(&community)?;
        let report = Uuid::try_parse(&report).map_err(|_| AppError::not_found("no such report"))?;
        if let Some(after) = after_of(&request) {
            state
                .app
                .runner
                .progress()
                .wait_for(
                    state.store.pool(),
                    projections::reports::NAME,
                    CommunityId::new(community),
                    after,
                    STATUS_WAIT,
                )
                .await?;
        }
        let viewer = page_viewer(&state, &request).await;
        let meta = request_meta(&state, &request).unwrap_or_default();
        state
            .app
            .services
            .public_report(&Request::new(viewer, meta), community, report)
            .await
    }
    .await;
    match shown {
        Ok(report) => page(
            lang,
            lang.text().status_title,
            &status_body(lang, &report),
            None,
        ),
        Err(error) => refusal_page(lang, &error),
    }
}

fn after_of(request: &HttpRequest) -> Option<i64> {
    request
        .query_string()
        .split('&')
        .find_map(|pair| pair.strip_prefix("after="))
        .and_then(|value| value.parse().ok())
}

fn time_of(micros: i64) -> String {
    chrono::DateTime::from_timestamp_micros(micros)
        .map(|at| at.format("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or_default()
}

fn photos_html(photos: &[String]) -> String {
    photos
        .iter()
        .filter(|photo| photo.starts_with("/photos/"))
        .map(|photo| {
            format!(
                "<a href=\"{p}\"><img src=\"{p}/thumbnail\" alt=\"\" loading=\"lazy\"></a> ",
                p = escape(photo)
            )
        })
        .collect()
}

fn status_body(lang: Lang, report: &PublicReport) -> String {
    let t = lang.text();
    let steps: String = report
        .steps
        .iter()
        .filter_map(|(event, at)| {
            lang.step(event)
                .map(|step| format!("<li>{step} <small>{}</small></li>", time_of(*at)))
        })
        .collect();
    let text = report
        .text
        .as_deref()
        .map_or_else(|| t.text_redacted.to_string(), escape);
    let mut body = format!(
        "<h1>{title}</h1><p class=\"site\">{category}{site}</p>\
         <p><strong>{state_word}:</strong> <span id=\"state\">{state}</span></p>\
         <p>{text}</p><p>{photos}</p><p><small>{filed_word}: {filed}</small></p>\
         <h2>{steps_word}</h2><ol id=\"steps\">{steps}</ol>",
        title = t.status_title,
        category = escape(&report.category),
        site = report
            .site_name
            .as_deref()
            .map(|name| format!(" · {}", escape(name)))
            .unwrap_or_default(),
        state_word = t.state,
        state = lang.state(&report.state),
        photos = photos_html(&report.photos),
        filed_word = t.filed_at,
        filed = time_of(report.submitted_at_micros),
        steps_word = t.steps,
    );
    if let Some((notes, photos)) = &report.resolution {
        body.push_str(&format!(
            "<div class=\"note\" id=\"resolution\"><h2>{word}</h2><p>{notes}</p><p>{photos}</p></div>",
            word = t.resolution,
            notes = notes.as_deref().map(escape).unwrap_or_default(),
            photos = photos_html(photos),
        ));
    }
    body
}
