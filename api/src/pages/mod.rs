//! The pages a resident's phone opens (docs/PAGES.md): the report page a
//! site's QR code points to, the report's public status page and sign-up,
//! and for admins each site's QR code and a printable sheet of them. Plain
//! HTML made here, in Chinese by default (`?lang=en` for English), light
//! enough for a cheap phone on a bad connection: no external script, style
//! or font, and everything basic works without JavaScript. Every rule
//! behind them is the application's; these handlers only draw and parse.

mod form;
mod qr;
mod report;
mod signup;
mod text;

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use app::caller::Viewer;
use app::directory::vouched;

use crate::server::AppState;
pub use text::Lang;

/// The cookie a resident signed in on a page carries their token in
/// (HttpOnly, SameSite=Lax: other sites' forms do not send it).
pub const TOKEN_COOKIE: &str = "civic_ledger_token";

pub fn routes(config: &mut web::ServiceConfig) {
    // Before the report page's `/r/{community}/{code}`, which would take
    // `signup` for a site code.
    signup::routes(config);
    qr::routes(config);
    report::routes(config);
}

/// The caller of a page: the `Authorization` header when sent, else the
/// sign-in cookie.
pub(crate) async fn page_viewer(state: &AppState, request: &HttpRequest) -> Viewer {
    let header = request
        .headers()
        .get(header::AUTHORIZATION)
        .map(|value| value.to_str().unwrap_or("?").to_string());
    let cookie = request
        .cookie(TOKEN_COOKIE)
        .map(|cookie| format!("Bearer {}", cookie.value()));
    let authorization = header.or(cookie);
    let viewer =
        crate::auth::viewer_from_authorization(&state.app.tokens, authorization.as_deref());
    vouched(&state.app.directory, &state.app.commands, viewer).await
}

/// Text made safe inside HTML (elements and quoted attributes).
pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The style every page shares: small, readable at 360 px, large targets.
const STYLE: &str = "*{box-sizing:border-box}body{margin:0;font:16px/1.5 system-ui,-apple-system,\"PingFang SC\",\"Microsoft YaHei\",sans-serif;color:#1b2a33;background:#f3f6f4}\
main{max-width:34rem;margin:0 auto;padding:1rem}h1{font-size:1.35rem;margin:.2rem 0}\
.site{color:#4b5d66;font-size:.95rem;margin:0 0 1rem}label{display:block;font-weight:600;margin:.9rem 0 .3rem}\
select,textarea,input{width:100%;font:inherit;padding:.6rem;border:1px solid #9fb1ba;border-radius:.4rem;background:#fff}\
textarea{min-height:7rem}button,.button{display:block;width:100%;margin-top:1.2rem;padding:.8rem;font:inherit;font-weight:700;\
color:#fff;background:#1d6b4f;border:0;border-radius:.4rem;text-align:center;text-decoration:none}\
.note{background:#fff;border-left:4px solid #1d6b4f;padding:.8rem;margin:1rem 0}.warn{border-color:#b5462a}\
.secret{font:700 1.4rem/1.3 ui-monospace,monospace;letter-spacing:.08em;word-break:break-all;background:#fff8d6;padding:.6rem}\
.lang{float:right;font-size:.9rem}progress{width:100%}ol{padding-left:1.2rem}small{color:#4b5d66}\
.demo{background:#ffe9e2;border:2px dashed #b5462a;padding:.5rem}img{max-width:100%;height:auto}\
fieldset{border:1px solid #c9d5da;border-radius:.4rem;margin:1rem 0}";

/// A whole page: its title, its body, and the script that makes it
/// better where JavaScript runs (none where it is not needed).
pub(crate) fn page(lang: Lang, title: &str, body: &str, script: Option<&str>) -> HttpResponse {
    let script = script
        .map(|script| format!("<script>{script}</script>"))
        .unwrap_or_default();
    let html = format!(
        "<!doctype html><html lang=\"{code}\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <title>{title}</title><style>{STYLE}</style></head>\
         <body><main>{body}</main>{script}</body></html>",
        code = lang.code(),
        title = escape(title),
    );
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header(("Content-Security-Policy", CONTENT_SECURITY_POLICY))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::REFERRER_POLICY, "no-referrer"))
        .body(html)
}

/// Nothing from elsewhere: the page's own inline style and script, its
/// own origin's photos and forms.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; style-src 'unsafe-inline'; \
     script-src 'unsafe-inline'; img-src 'self' data: blob:; connect-src 'self'; \
     form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

/// A page that refuses politely, with the status it travels with.
pub(crate) fn refusal_page(lang: Lang, error: &app::error::AppError) -> HttpResponse {
    let t = lang.text();
    let status = crate::photos::status_of(error.code());
    let (title, detail) = match error.code() {
        "NOT_FOUND" => (t.not_found, t.not_found_detail),
        "RATE_LIMITED" => (t.rate_limited, t.rate_limited_detail),
        "VALIDATION" | "UNSUPPORTED_MEDIA" | "PAYLOAD_TOO_LARGE" | "CONFLICT" | "GONE" => {
            (t.refused, "")
        }
        _ => (t.failed, t.failed_detail),
    };
    let body = format!(
        "<h1>{title}</h1><p class=\"note warn\">{detail} <small>({code}: {message})</small></p>",
        code = error.code(),
        message = escape(&error.to_string()),
    );
    let mut response = page(lang, title, &body, None);
    *response.status_mut() = status;
    response
}
