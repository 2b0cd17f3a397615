//! Realm settings → live LDAP and Entra ID clients.

use std::path::PathBuf;
use std::time::Duration;

use tessera_core::realm::{EntraSettings, LdapSettings, RealmSecrets, SourceSettings, secret_name};
use tessera_entra::{EntraConfig, EntraSource};
use tessera_ldap::{BindMode, GroupMode, LdapConfig, LdapSource};
use zeroize::Zeroizing;

#[derive(Debug)]
pub enum Source {
    Ldap(LdapSource),
    Entra(Box<EntraSource>),
    /// Could not be built (its error is logged); always unavailable.
    Broken(String),
}

/// One source's health, for `tessera realm test`.
#[derive(Debug, Clone)]
pub struct SourceCheck {
    pub source: String,
    pub ok: bool,
    pub lines: Vec<String>,
}

/// Builds the clients of a realm's chain. A source that cannot be built is
/// kept as `Broken` so the chain's order (and its fail-closed behaviour)
/// stays as configured.
pub fn build_sources(realm: &str, settings: &[SourceSettings], secrets: &RealmSecrets) -> Vec<(String, Source)> {
    settings
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let label = format!("{}#{}", s.kind(), i + 1);
            let built = match s {
                SourceSettings::Ldap(l) => ldap_config(l, secrets.get(&secret_name(i, "bind_password")))
                    .and_then(|c| LdapSource::new(c).map_err(|e| e.to_string()))
                    .map(Source::Ldap),
                SourceSettings::Entra(e) => entra_config(e, secrets.get(&secret_name(i, "client_secret")))
                    .and_then(|c| EntraSource::new(c).map_err(|e| e.to_string()))
                    .map(|e| Source::Entra(Box::new(e))),
            };
            let source = built.unwrap_or_else(|e| {
                tracing::error!(realm, source = %label, error = %e, "first-factor source cannot be used; its logins fail");
                Source::Broken(e)
            });
            (label, source)
        })
        .collect()
}

fn ldap_config(l: &LdapSettings, bind_password: Option<&Zeroizing<String>>) -> Result<LdapConfig, String> {
    let bind = match (&l.bind_template, &l.bind_dn) {
        (Some(t), None) => BindMode::Template { template: t.clone() },
        (None, Some(dn)) => BindMode::Search {
            bind_dn: dn.clone(),
            bind_password: bind_password.cloned().ok_or("the service account's bind_password is not set")?,
            base_dn: l.base_dn.clone().unwrap_or_default(),
            filter: l.filter.clone().unwrap_or_default(),
            scope_subtree: true,
        },
        _ => return Err("set bind_template, or bind_dn with base_dn and filter".into()),
    };
    let mut c = LdapConfig::new(l.urls.clone(), bind);
    c.starttls = l.starttls;
    c.ca_file = l.ca_file.as_ref().map(PathBuf::from);
    c.pinned_sha256 = l.pinned_sha256.clone();
    c.groups = match l.group_mode.as_str() {
        "memberof" => GroupMode::MemberOf { attribute: l.member_of_attribute.clone() },
        "search" => GroupMode::Search {
            base_dn: l.group_base_dn.clone().unwrap_or_default(),
            filter: l.group_filter.clone().unwrap_or_default(),
            name_attribute: l.group_name_attribute.clone(),
        },
        _ => GroupMode::None,
    };
    c.connect_timeout = Duration::from_millis(l.connect_timeout_ms);
    c.op_timeout = Duration::from_millis(l.timeout_ms);
    c.pool_size = l.pool_size;
    c.username_attribute = l.username_attribute.clone();
    Ok(c)
}

fn entra_config(e: &EntraSettings, client_secret: Option<&Zeroizing<String>>) -> Result<EntraConfig, String> {
    let mut c = EntraConfig::new(&e.tenant, &e.client_id);
    c.authority = tessera_entra::Url::parse(&e.authority).map_err(|err| format!("authority: {err}"))?;
    c.client_secret = client_secret.cloned();
    c.scope = e.scope.clone();
    c.upn_domain = e.upn_domain.clone();
    c.allow_no_mfa = e.allow_no_mfa;
    c.timeout = Duration::from_millis(e.timeout_ms);
    c.ca_file = e.ca_file.as_ref().map(PathBuf::from);
    Ok(c)
}
