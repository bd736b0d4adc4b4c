//! Signing up from a page (`/r/{community}/signup`): a phone number and a
//! display name, then the code sent to the phone; the right code signs the
//! resident in (a cookie) and, when the page was opened with a report's
//! claim secret, claims that report. A demo server shows the code on the
//! page, marked as a demo, instead of sending an SMS.

use actix_web::cookie::{Cookie, SameSite};
use actix_web::{web, HttpRequest, HttpResponse};
use app::error::AppError;
use app::reports::ReportAction;
use app::services::Request;
use store::CommunityId;
use uuid::Uuid;

use super::form::{self, Form};
use super::{escape, page, page_viewer, refusal_page, Lang, TOKEN_COOKIE};
use crate::server::{request_meta, AppState};

pub fn routes(config: &mut web::ServiceConfig) {
    config
        .route("/r/{community}/signup", web::get().to(start))
        .route("/r/{community}/signup", web::post().to(step));
}

/// What the form carries from step to step.
#[derive(Default)]
struct Carried {
    report: String,
    secret: String,
    phone: String,
}

impl Carried {
    fn of(form: &Form) -> Carried {
        let field = |name| form.get(name).unwrap_or_default().trim().to_string();
        Carried {
            report: field("report"),
            secret: field("secret"),
            phone: field("phone"),
        }
    }

    fn hidden(&self, lang: Lang, step: &str) -> String {
        format!(
            "<input type=\"hidden\" name=\"lang\" value=\"{}\"><input type=\"hidden\" name=\"step\" value=\"{step}\">\
             <input type=\"hidden\" name=\"report\" value=\"{}\">",
            lang.field(),
            escape(&self.report),
        )
    }
}

async fn start(request: HttpRequest, path: web::Path<String>) -> HttpResponse {
    let lang = Lang::of(&request);
    phone_form(lang, &path, &Carried::default())
}

fn phone_form(lang: Lang, community: &str, carried: &Carried) -> HttpResponse {
    let t = lang.text();
    let body = format!(
        "<h1>{title}</h1><form id=\"signup\" method=\"post\" action=\"/r/{community}/signup\">{hidden}\
         <label for=\"phone\">{phone}</label><input id=\"phone\" name=\"phone\" type=\"tel\" autocomplete=\"tel\" required value=\"{phone_value}\">\
         <label for=\"name\">{name}</label><input id=\"name\" name=\"display_name\" required maxlength=\"40\">\
         <label for=\"secret\">{secret}</label><input id=\"secret\" name=\"secret\" autocomplete=\"off\" value=\"{secret_value}\">\
         <button id=\"send-code\" type=\"submit\">{send}</button></form>",
        title = t.signup_title,
        community = escape(community),
        hidden = carried.hidden(lang, "send"),
        phone = t.phone,
        phone_value = escape(&carried.phone),
        name = t.display_name,
        secret = t.claim_secret,
        secret_value = escape(&carried.secret),
        send = t.send_code,
    );
    page(lang, t.signup_title, &body, None)
}

fn code_form(
    lang: Lang,
    community: Uuid,
    carried: &Carried,
    demo_code: Option<String>,
) -> HttpResponse {
    let t = lang.text();
    let demo = demo_code
        .map(|code| {
            format!(
                "<p class=\"demo\" id=\"demo-code\">{} <strong>{}</strong></p>",
                t.demo_code,
                escape(&code)
            )
        })
        .unwrap_or_default();
    let body = format!(
        "<h1>{title}</h1><p class=\"note\">{sent}</p>{demo}\
         <form id=\"verify\" method=\"post\" action=\"/r/{community}/signup\">{hidden}\
         <input type=\"hidden\" name=\"phone\" value=\"{phone}\"><input type=\"hidden\" name=\"secret\" value=\"{secret}\">\
         <label for=\"code\">{code}</label><input id=\"code\" name=\"code\" inputmode=\"numeric\" autocomplete=\"one-time-code\" required>\
         <button id=\"confirm\" type=\"submit\">{verify}</button></form>",
        title = t.signup_title,
        sent = t.code_sent,
        hidden = carried.hidden(lang, "verify"),
        phone = escape(&carried.phone),
        secret = escape(&carried.secret),
        code = t.code,
        verify = t.verify,
    );
    page(lang, t.signup_title, &body, None)
}

async fn step(
    state: web::Data<AppState>,
    request: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
) -> HttpResponse {
    let mut lang = Lang::of(&request);
    let answered = async {
        let community =
            Uuid::try_parse(&path).map_err(|_| AppError::not_found("no such community"))?;
        let form = form::read(&request, payload).await?;
        lang = Lang::from_field(form.get("lang"));
        let carried = Carried::of(&form);
        let meta = request_meta(&state, &request)
            .map_err(|error| AppError::validation("request", error.message))?;
        let caller = Request::new(page_viewer(&state, &request).await, meta);
        match form.get("step") {
            Some("send") => {
                state
                    .app
                    .services
                    .request_signup_code(
                        &caller,
                        CommunityId::new(community),
                        &carried.phone,
                        form.required("display_name")?,
                    )
                    .await?;
                let demo = state
                    .app
                    .demo_codes
                    .as_ref()
                    .and_then(|codes| codes.last_for(&carried.phone));
                Ok(code_form(lang, community, &carried, demo))
            }
            Some("verify") => {
                verify(
                    &state,
                    caller,
                    community,
                    &carried,
                    form.required("code")?,
                    lang,
                )
                .await
            }
            _ => Ok(phone_form(lang, &path, &carried)),
        }
    }
    .await;
    answered.unwrap_or_else(|error| refusal_page(lang, &error))
}

/// The right code signs the resident in; with a report and its secret,
/// the report becomes theirs.
async fn verify(
    state: &AppState,
    caller: Request,
    community: Uuid,
    carried: &Carried,
    code: &str,
    lang: Lang,
) -> Result<HttpResponse, AppError> {
    let t = lang.text();
    let services = &state.app.services;
    let resident = services
        .verify_signup_code(&caller, CommunityId::new(community), &carried.phone, code)
        .await?;
    let token = crate::auth::resident_token(&state.app.tokens, community, resident.person_id)?;
    let mut body = format!("<h1 id=\"signed-up\">{}</h1>", t.signed_up);
    if let (Ok(report), false) = (Uuid::try_parse(&carried.report), carried.secret.is_empty()) {
        let viewer = crate::auth::viewer_from_authorization(
            &state.app.tokens,
            Some(&format!("Bearer {token}")),
        );
        let claimant = Request::new(viewer, caller.meta.clone());
        services
            .act_on_report(
                &claimant,
                community,
                report,
                ReportAction::Claim {
                    secret: carried.secret.clone(),
                },
            )
            .await?;
        body.push_str(&format!(
            "<p class=\"note\" id=\"claimed\">{claimed}</p>\
             <a class=\"button\" href=\"/r/{community}/reports/{report}{query}\">{track}</a>",
            claimed = t.claimed,
            query = lang.query(),
            track = t.track,
        ));
    }
    let cookie = Cookie::build(TOKEN_COOKIE, token)
        .path("/")
        .http_only(true)
        .same_site(SameSite::Lax)
        .max_age(actix_web::cookie::time::Duration::seconds(
            crate::auth::RESIDENT_TOKEN_LIFETIME.as_secs() as i64,
        ))
        .finish();
    let mut response = page(lang, t.signed_up, &body, None);
    response.add_cookie(&cookie).map_err(AppError::internal)?;
    Ok(response)
}
