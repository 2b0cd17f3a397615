//! The OpenAPI document, generated from the handlers' annotations and
//! served at `/api/openapi.json`. A test compares it with the committed
//! `docs/openapi.json`, so API changes are always deliberate and reviewed.

use std::sync::OnceLock;

use axum::http::header;
use axum::response::IntoResponse;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::{admin, error, validate};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "tessera",
        description = "Second-factor authentication server: validate logins and administer users, tokens and policy.",
        license(name = "Apache-2.0"),
    ),
    paths(
        validate::validate,
        super::healthz,
        super::readyz,
        super::metrics,
        admin::list_users,
        admin::add_user,
        admin::show_user,
        admin::delete_user,
        admin::unlock_user,
        admin::reset_user,
        admin::disable_user,
        admin::enable_user,
        admin::set_password,
        admin::list_user_tokens,
        admin::add_token,
        admin::confirm_token,
        admin::backup_codes,
        admin::show_token,
        admin::delete_token,
        admin::resync_token,
        admin::show_policy,
        admin::patch_policy,
        admin::audit_log,
    ),
    components(schemas(error::ErrorBody)),
    modifiers(&ApiKeyScheme),
    tags(
        (name = "validate", description = "Authentication decisions"),
        (name = "users", description = "User administration (API key)"),
        (name = "tokens", description = "Token administration (API key)"),
        (name = "policy", description = "Authentication policy (API key)"),
        (name = "audit", description = "Audit log (API key)"),
        (name = "operations", description = "Health, readiness and metrics"),
    )
)]
pub struct ApiDoc;

struct ApiKeyScheme;

impl Modify for ApiKeyScheme {
    fn modify(&self, api: &mut utoipa::openapi::OpenApi) {
        let components = api.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("An API key from `tessera api-key create NAME`"))
                    .build(),
            ),
        );
    }
}

/// The document as pretty JSON with a trailing newline (the committed form).
pub fn document() -> String {
    let mut doc = ApiDoc::openapi();
    doc.info.version = env!("CARGO_PKG_VERSION").to_string();
    let mut s = doc.to_pretty_json().unwrap_or_else(|_| "{}".into());
    s.push('\n');
    s
}

pub async fn serve() -> impl IntoResponse {
    static DOC: OnceLock<String> = OnceLock::new();
    ([(header::CONTENT_TYPE, "application/json")], DOC.get_or_init(document).as_str())
}

#[cfg(test)]
mod tests {
    /// The committed document must match the code, so API changes show up
    /// in review. Regenerate with `UPDATE_OPENAPI=1 cargo test -p tessera-server openapi`.
    #[test]
    fn committed_openapi_document_is_current() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/openapi.json");
        let current = super::document();
        if std::env::var_os("UPDATE_OPENAPI").is_some() {
            std::fs::write(path, &current).unwrap();
        }
        let committed = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            committed == current,
            "docs/openapi.json is stale: run `UPDATE_OPENAPI=1 cargo test -p tessera-server openapi` and commit it"
        );
    }
}
