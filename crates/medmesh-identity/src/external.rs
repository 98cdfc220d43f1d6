//! Sign-in through an external OpenID Connect provider (Keycloak, say), and the mapping of
//! its claims to a medmesh account and role. The HTTP exchange with the provider is the
//! server adapter's job; this module decides what verified claims mean.

use std::collections::BTreeMap;

use medmesh_auth::{Role, Scope, narrow, parse_scopes};
use medmesh_store::{StoreError, UserRecord};
use serde_json::Value;

use crate::{IdentityError, IdentityService};

/// A configured provider.
#[derive(Clone)]
pub struct ExternalProvider {
    /// Short id, used in URLs (`/login/external/{id}`).
    pub id: String,
    /// Shown on the login page: "Sign in with {name}".
    pub name: String,
    /// Issuer URL (discovery is at `{issuer}/.well-known/openid-configuration`).
    pub issuer: String,
    /// Our client id at the provider.
    pub client_id: String,
    /// Our client secret at the provider.
    pub client_secret: String,
    /// Dotted path of the claim holding role names, e.g. `realm_access.roles` (Keycloak).
    pub role_claim: String,
    /// Provider role name to medmesh role. The first of the user's roles (in claim order)
    /// that maps wins; a user with no mapped role cannot sign in.
    pub role_map: BTreeMap<String, Role>,
    /// Claim for the user name. Default `preferred_username`.
    pub username_claim: String,
    /// Claim linking the user to a FHIR resource (`Patient/x`, `Practitioner/y`), if any.
    pub fhir_user_claim: Option<String>,
    /// When set, access tokens from this provider whose `aud` holds this value are accepted
    /// on the FHIR API.
    pub api_audience: Option<String>,
    /// The most an API token from this provider may grant (clinical scopes). Default
    /// `user/*.cruds patient/*.cruds`.
    pub api_scope_ceiling: String,
}

impl std::fmt::Debug for ExternalProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExternalProvider")
            .field("id", &self.id)
            .field("issuer", &self.issuer)
            .field("client_id", &self.client_id)
            .field("client_secret", &"[redacted]")
            .finish_non_exhaustive()
    }
}

/// The value at a dotted claim path.
pub fn claim_at<'a>(claims: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(claims, |v, k| v.get(k))
}

impl ExternalProvider {
    /// The medmesh role the claims map to.
    pub fn role_of(&self, claims: &Value) -> Option<Role> {
        let v = claim_at(claims, &self.role_claim)?;
        let names: Vec<&str> = match v {
            Value::String(s) => s.split_whitespace().collect(),
            Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        names.iter().find_map(|n| self.role_map.get(*n).copied())
    }

    fn fhir_user(&self, claims: &Value) -> Option<String> {
        claim_at(claims, self.fhir_user_claim.as_deref()?)?
            .as_str()
            .map(str::to_string)
    }
}

/// What an API token from an external provider amounts to.
#[derive(Debug, Clone)]
pub struct ExternalActor {
    /// The local account id when the person has one, else `issuer|sub`.
    pub subject: String,
    /// Role, when the token names a user with a mapped role.
    pub role: Option<Role>,
    /// Clinical scopes, cut to the role and the provider's ceiling.
    pub scope: String,
    /// Patient context (a patient's own record).
    pub patient: Option<String>,
}

impl IdentityService {
    /// Signs in (creating the account at first sign-in) from an id token's verified claims.
    /// The provider is the source of truth for the role: it is updated at every sign-in.
    /// Returns a complete session's cookie value.
    ///
    /// # Errors
    /// [`IdentityError::Forbidden`] when no role maps.
    pub async fn external_login(
        &self,
        provider: &ExternalProvider,
        claims: &Value,
        ip: &str,
        user_agent: &str,
    ) -> Result<String, IdentityError> {
        let sub = claims
            .get("sub")
            .and_then(Value::as_str)
            .ok_or(IdentityError::Forbidden)?;
        let role = provider.role_of(claims).ok_or(IdentityError::Forbidden)?;
        let external = format!("{}|{sub}", provider.issuer);
        let fhir_user = provider.fhir_user(claims);
        let link = |prefix: &str| {
            fhir_user
                .as_deref()
                .and_then(|f| f.strip_prefix(prefix))
                .map(str::to_string)
        };
        let user = match self.store.user_by_external(&external).await? {
            Some(mut u) => {
                u.role = role.code().into();
                u.patient_id = link("Patient/").or(u.patient_id);
                u.practitioner_id = link("Practitioner/").or(u.practitioner_id);
                self.store.update_user(&u).await?;
                u
            }
            None => {
                let wanted = claim_at(claims, &provider.username_claim)
                    .and_then(Value::as_str)
                    .unwrap_or(sub);
                let mut u = UserRecord {
                    id: self.new_id(),
                    username: format!("{wanted}@{}", provider.id),
                    role: role.code().into(),
                    password_hash: None,
                    totp_secret: None,
                    totp_confirmed: false,
                    totp_last_step: None,
                    patient_id: link("Patient/"),
                    practitioner_id: link("Practitioner/"),
                    practitioner_role_id: None,
                    verification: medmesh_auth::Verification::Unverified.code().into(),
                    specialty: None,
                    organization: None,
                    external_subject: Some(external.clone()),
                    disabled: false,
                    created: self.clock.now_micros(),
                };
                if let Err(StoreError::Conflict) = self.store.insert_user(&u).await {
                    // The name is taken by a local account: keep the external one distinct.
                    u.username = format!("{}@{}", u.id, provider.id);
                    self.store.insert_user(&u).await?;
                }
                u
            }
        };
        if user.disabled {
            return Err(IdentityError::Forbidden);
        }
        tracing::info!(user_id = %user.id, provider = %provider.id, "external sign-in");
        // Second factors are the provider's business (Keycloak enforces its own).
        self.open_session(&user, ip, user_agent, true).await
    }

    /// Maps a verified provider access token to an actor: scopes are cut to the mapped
    /// role (for user tokens) and to the provider's ceiling.
    ///
    /// # Errors
    /// When the store fails.
    pub async fn external_actor(
        &self,
        provider: &ExternalProvider,
        claims: &Value,
    ) -> Result<ExternalActor, IdentityError> {
        let sub = claims
            .get("sub")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let external = format!("{}|{sub}", provider.issuer);
        let account = self.store.user_by_external(&external).await?;
        let role = provider
            .role_of(claims)
            .or_else(|| account.as_ref().and_then(|u| u.role.parse().ok()));
        let requested = parse_scopes(
            claims
                .get("scope")
                .and_then(Value::as_str)
                .unwrap_or_default(),
        );
        let ceiling: Vec<Scope> = parse_scopes(&provider.api_scope_ceiling);
        let mut scopes = narrow(&requested, &ceiling);
        if let Some(r) = role {
            let verification = account
                .as_ref()
                .and_then(|u| u.verification.parse().ok())
                .unwrap_or_default();
            scopes = narrow(&scopes, &r.ceiling(verification));
        }
        let patient = match role {
            Some(Role::Patient) => {
                account
                    .as_ref()
                    .and_then(|u| u.patient_id.clone())
                    .or_else(|| {
                        provider
                            .fhir_user(claims)
                            .and_then(|f| f.strip_prefix("Patient/").map(str::to_string))
                    })
            }
            _ => None,
        };
        Ok(ExternalActor {
            subject: account.map_or(external, |u| u.id),
            role,
            scope: scopes
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(" "),
            patient,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn provider() -> ExternalProvider {
        ExternalProvider {
            id: "kc".into(),
            name: "Hospital".into(),
            issuer: "https://kc/realms/h".into(),
            client_id: "medmesh".into(),
            client_secret: "s3cret".into(),
            role_claim: "realm_access.roles".into(),
            role_map: BTreeMap::from([
                ("clinician".into(), Role::Practitioner),
                ("admin".into(), Role::OrgAdmin),
            ]),
            username_claim: "preferred_username".into(),
            fhir_user_claim: None,
            api_audience: None,
            api_scope_ceiling: "user/*.cruds".into(),
        }
    }

    #[test]
    fn roles_map_from_nested_claims() {
        let p = provider();
        assert_eq!(
            p.role_of(&json!({"realm_access": {"roles": ["offline", "clinician"]}})),
            Some(Role::Practitioner)
        );
        assert_eq!(
            p.role_of(&json!({"realm_access": {"roles": ["offline"]}})),
            None
        );
        assert_eq!(p.role_of(&json!({})), None);
        assert!(!format!("{p:?}").contains("s3cret"));
    }
}
