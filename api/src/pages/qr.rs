//! Each active site's QR code, pointing at its report page under the
//! server's public base URL (`server.public_base_url`), as SVG and PNG;
//! and for admins a sheet of every active site's code, laid out to print
//! on A4.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use app::error::AppError;
use app::sites::SiteView;
use qrcode::{EcLevel, QrCode};
use uuid::Uuid;

use super::{escape, page_viewer, refusal_page, Lang};
use crate::server::{request_meta, AppState};

pub fn routes(config: &mut web::ServiceConfig) {
    config
        .route("/r/{community}/{code}/qr.svg", web::get().to(svg))
        .route("/r/{community}/{code}/qr.png", web::get().to(png))
        .route("/communities/{community}/qr-sheet", web::get().to(sheet));
}

/// The URL a site's code encodes.
pub fn report_url(base: &str, site: &SiteView) -> String {
    format!("{base}/r/{}/{}", site.community_id, site.code)
}

/// Medium error correction: a code still reads with a sixth of it
/// smudged or faded by the weather.
fn code_of(url: &str) -> Result<QrCode, AppError> {
    QrCode::with_error_correction_level(url.as_bytes(), EcLevel::M).map_err(AppError::internal)
}

fn svg_of(url: &str, side: u32) -> Result<String, AppError> {
    Ok(code_of(url)?
        .render::<qrcode::render::svg::Color>()
        .min_dimensions(side, side)
        .quiet_zone(true)
        .build())
}

async fn active_site(state: &AppState, community: &str, code: &str) -> Result<SiteView, AppError> {
    let community =
        Uuid::try_parse(community).map_err(|_| AppError::not_found("no such community"))?;
    let site = state.app.services.site_view(community, code).await?;
    if !site.active {
        return Err(AppError::Gone(format!("site {code} is retired")));
    }
    Ok(site)
}

/// Codes of active sites are public: they are printed on the river bank.
/// A day's caching: a code changes only with the base URL.
fn image(content_type: &str, body: Vec<u8>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(content_type)
        .insert_header((header::CACHE_CONTROL, "public, max-age=86400"))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .body(body)
}

/// The two forms a code is drawn in.
#[derive(Clone, Copy)]
enum Drawing {
    Svg,
    Png,
}

impl Drawing {
    fn draw(self, url: &str) -> Result<(&'static str, Vec<u8>), AppError> {
        match self {
            Drawing::Svg => Ok(("image/svg+xml", svg_of(url, 320)?.into_bytes())),
            Drawing::Png => {
                let pixels = code_of(url)?
                    .render::<image::Luma<u8>>()
                    .min_dimensions(600, 600)
                    .quiet_zone(true)
                    .build();
                let mut out = Vec::new();
                image::DynamicImage::ImageLuma8(pixels)
                    .write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png)
                    .map_err(AppError::internal)?;
                Ok(("image/png", out))
            }
        }
    }
}

async fn svg(
    state: web::Data<AppState>,
    request: HttpRequest,
    path: web::Path<(String, String)>,
) -> HttpResponse {
    qr_code(&state, &request, path.into_inner(), Drawing::Svg).await
}

async fn png(
    state: web::Data<AppState>,
    request: HttpRequest,
    path: web::Path<(String, String)>,
) -> HttpResponse {
    qr_code(&state, &request, path.into_inner(), Drawing::Png).await
}

async fn qr_code(
    state: &AppState,
    request: &HttpRequest,
    (community, code): (String, String),
    drawing: Drawing,
) -> HttpResponse {
    let drawn = async {
        let site = active_site(state, &community, &code).await?;
        drawing.draw(&report_url(&state.public_base_url, &site))
    }
    .await;
    match drawn {
        Ok((content_type, body)) => image(content_type, body),
        Err(error) => refusal_page(Lang::of(request), &error),
    }
}

/// A4 portrait, 3 × 4 cards a sheet, each a site's name, code, QR code
/// and the address it opens, so a code can be checked by eye.
const SHEET_STYLE: &str = "@page{size:A4;margin:10mm}*{box-sizing:border-box}\
body{margin:0;font:11pt/1.35 system-ui,\"PingFang SC\",\"Microsoft YaHei\",sans-serif;color:#000}\
h1{font-size:14pt;margin:0 0 4mm}.sheet{display:grid;grid-template-columns:repeat(3,1fr);gap:4mm}\
.card{border:0.4mm dashed #777;padding:3mm;text-align:center;break-inside:avoid;height:66mm}\
.card svg{width:40mm;height:40mm}.name{font-weight:700}.code{font:10pt ui-monospace,monospace}\
.url{font-size:6pt;word-break:break-all;color:#333}@media screen{body{padding:10mm;max-width:210mm}}";

async fn sheet(
    state: web::Data<AppState>,
    request: HttpRequest,
    path: web::Path<String>,
) -> HttpResponse {
    let lang = Lang::of(&request);
    let drawn = async {
        let community =
            Uuid::try_parse(&path).map_err(|_| AppError::not_found("no such community"))?;
        let viewer = page_viewer(&state, &request).await;
        let meta = request_meta(&state, &request).unwrap_or_default();
        let sites = state
            .app
            .services
            .active_sites(&app::services::Request::new(viewer, meta), community)
            .await?;
        let mut cards = String::new();
        for site in &sites {
            let url = report_url(&state.public_base_url, site);
            cards.push_str(&format!(
                "<div class=\"card\"><div class=\"name\">{name}</div>{svg}\
                 <div class=\"code\">{code}</div><div>{hint}</div><div class=\"url\">{url}</div></div>",
                name = escape(&site.name),
                svg = svg_of(&url, 160)?,
                code = escape(&site.code),
                hint = lang.text().sheet_hint,
                url = escape(&url),
            ));
        }
        let title = sites
            .first()
            .map(|site| format!("{} · {}", lang.text().sheet_title, site.community_name))
            .unwrap_or_else(|| lang.text().sheet_title.to_string());
        Ok::<_, AppError>(format!(
            "<!doctype html><html lang=\"{code}\"><head><meta charset=\"utf-8\"><title>{title}</title>\
             <style>{SHEET_STYLE}</style></head><body><h1>{title}</h1><div class=\"sheet\">{cards}</div></body></html>",
            code = lang.code(),
            title = escape(&title),
        ))
    }
    .await;
    match drawn {
        Ok(html) => HttpResponse::Ok()
            .content_type("text/html; charset=utf-8")
            .insert_header((header::CACHE_CONTROL, "private, no-store"))
            .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
            .body(html),
        Err(error) => refusal_page(lang, &error),
    }
}
