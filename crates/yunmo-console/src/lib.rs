//! Yunmo's web console: plain HTML, CSS and JavaScript modules (no build step) and the vendored uPlot
//! charting library, embedded in the binary and served under `/ui/`.
//!
//! The files hold no data and need no key: the console signs in with an API key kept in the browser's
//! `sessionStorage` and reads everything through the public, documented routes (`/api/v1/...`), so a key
//! sees in the console exactly what it sees through the API. This crate knows nothing of the server's
//! state; `yunmo-api` routes [`PREFIX`] to [`serve`] and serves it without a key.

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// Where the console lives.
pub const PREFIX: &str = "/ui/";

/// One embedded file.
struct Asset {
    path: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

macro_rules! assets {
    ($($path:literal => $content_type:expr),* $(,)?) => {
        &[$(Asset { path: $path, content_type: $content_type, body: include_bytes!(concat!("../assets/", $path)) }),*]
    };
}

const JS: &str = "text/javascript; charset=utf-8";

/// Every file under `assets/` (a test checks that none is missing).
static ASSETS: &[Asset] = assets! {
    "index.html" => "text/html; charset=utf-8",
    "app.css" => "text/css; charset=utf-8",
    "app.js" => JS,
    "api.js" => JS,
    "ui.js" => JS,
    "charts.js" => JS,
    "pages/signin.js" => JS,
    "pages/overview.js" => JS,
    "pages/models.js" => JS,
    "pages/model.js" => JS,
    "pages/drift.js" => JS,
    "pages/alerts.js" => JS,
    "pages/forecast.js" => JS,
    "pages/usage.js" => JS,
    "pages/keys.js" => JS,
    "pages/tenants.js" => JS,
    "pages/audit.js" => JS,
    "pages/apidoc.js" => JS,
    "vendor/uPlot.iife.min.js" => JS,
    "vendor/uPlot.min.css" => "text/css; charset=utf-8",
    "vendor/uPlot.LICENSE" => "text/plain; charset=utf-8",
};

/// The page's own scripts only: no inline script, no other origin.
const SECURITY_POLICY: &str = "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; \
     connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

/// The console's file at `path` (relative to [`PREFIX`]; empty for the page itself), with its type, a
/// validator and the security headers; `None` when there is no such file (the caller answers 404 in its
/// own error shape). A request whose `If-None-Match` names the current file gets 304.
pub fn serve(path: &str, headers: &HeaderMap) -> Option<Response> {
    let asset = find(if path.is_empty() { "index.html" } else { path })?;
    let tag = etag(asset.body);
    let fresh = headers.get(header::IF_NONE_MATCH).and_then(|value| value.to_str().ok()).is_some_and(|value| value == tag);
    let mut response = if fresh { StatusCode::NOT_MODIFIED.into_response() } else { asset.body.into_response() };
    let out = response.headers_mut();
    out.insert(header::CONTENT_TYPE, HeaderValue::from_static(asset.content_type));
    out.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    out.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(SECURITY_POLICY));
    out.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    out.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    if let Ok(value) = HeaderValue::from_str(&tag) {
        out.insert(header::ETAG, value);
    }
    Some(response)
}

fn find(path: &str) -> Option<&'static Asset> {
    ASSETS.iter().find(|asset| asset.path == path)
}

/// A weak validator of the file's bytes (FNV-1a), so a browser revalidates cheaply after an upgrade.
fn etag(body: &[u8]) -> String {
    let hash = body.iter().fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3));
    format!("\"{hash:016x}\"")
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    fn files_under(root: &std::path::Path, folder: &std::path::Path, found: &mut Vec<String>) {
        for entry in std::fs::read_dir(folder).expect("assets folder") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                files_under(root, &path, found);
            } else {
                found.push(path.strip_prefix(root).expect("under root").to_string_lossy().replace('\\', "/"));
            }
        }
    }

    #[test]
    fn every_file_under_assets_is_embedded_and_nothing_else() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("assets");
        let mut on_disk = Vec::new();
        files_under(&root, &root, &mut on_disk);
        on_disk.sort();
        let mut embedded: Vec<String> = ASSETS.iter().map(|asset| asset.path.to_string()).collect();
        embedded.sort();
        assert_eq!(on_disk, embedded);
    }

    #[test]
    fn scripts_are_served_as_javascript() {
        for asset in ASSETS.iter().filter(|asset| asset.path.ends_with(".js")) {
            assert_eq!(asset.content_type, JS, "{}", asset.path);
        }
    }

    async fn get(path: &str, if_none_match: Option<&str>) -> Option<(StatusCode, HeaderMap, Vec<u8>)> {
        let mut headers = HeaderMap::new();
        if let Some(tag) = if_none_match {
            headers.insert(header::IF_NONE_MATCH, HeaderValue::from_str(tag).expect("tag"));
        }
        let response = serve(path, &headers)?;
        let (parts, body) = response.into_parts();
        Some((parts.status, parts.headers, body.collect().await.expect("body").to_bytes().to_vec()))
    }

    #[tokio::test]
    async fn the_page_its_files_and_a_miss() {
        let (status, headers, body) = get("", None).await.expect("the page");
        assert_eq!(status, StatusCode::OK);
        assert_eq!(headers[header::CONTENT_TYPE], "text/html; charset=utf-8");
        assert!(headers[header::CONTENT_SECURITY_POLICY].to_str().expect("ascii").contains("script-src 'self'"));
        assert_eq!(body, find("index.html").expect("index").body);
        let tag = headers[header::ETAG].to_str().expect("ascii").to_string();
        assert_eq!(get("", Some(&tag)).await.expect("the page").0, StatusCode::NOT_MODIFIED);
        assert_eq!(get("index.html", Some("\"other\"")).await.expect("the page").0, StatusCode::OK);
        assert_eq!(get("vendor/uPlot.iife.min.js", None).await.expect("uPlot").1[header::CONTENT_TYPE], JS);
        assert!(get("../Cargo.toml", None).await.is_none());
        assert!(get("nothing.js", None).await.is_none());
    }
}
