//! SMART on FHIR scopes, v1 (`patient/*.read`) and v2 (`patient/Observation.rs?category=...`).

use std::fmt;

/// Whose data a scope speaks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ScopeContext {
    /// One patient: the token's patient context.
    Patient,
    /// Whatever the user may see.
    User,
    /// A backend service, no user.
    System,
}

/// The interactions a scope permits (SMART v2 `cruds`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Permissions {
    /// c: create.
    pub create: bool,
    /// r: read (and vread, history).
    pub read: bool,
    /// u: update (and patch).
    pub update: bool,
    /// d: delete.
    pub delete: bool,
    /// s: search.
    pub search: bool,
}

impl Permissions {
    /// All five.
    pub const ALL: Self = Self {
        create: true,
        read: true,
        update: true,
        delete: true,
        search: true,
    };
}

/// One parsed clinical scope.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Scope {
    /// patient, user or system.
    pub context: ScopeContext,
    /// The resource type; `None` for `*`.
    pub resource_type: Option<String>,
    /// What is permitted.
    pub permissions: Permissions,
    /// A v2 granular restriction such as `category=laboratory`.
    pub restriction: Option<(String, String)>,
}

/// A scope string that is not a clinical scope.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("'{0}' is not a SMART clinical scope")]
pub struct ScopeError(pub String);

impl Scope {
    /// Parses one scope token.
    ///
    /// # Errors
    /// When the token is not `context/Type.permissions[?param=value]`.
    pub fn parse(s: &str) -> Result<Self, ScopeError> {
        let err = || ScopeError(s.to_string());
        let (ctx, rest) = s.split_once('/').ok_or_else(err)?;
        let context = match ctx {
            "patient" => ScopeContext::Patient,
            "user" => ScopeContext::User,
            "system" => ScopeContext::System,
            _ => return Err(err()),
        };
        let (body, restriction) = match rest.split_once('?') {
            Some((b, q)) => {
                let (k, v) = q.split_once('=').ok_or_else(err)?;
                (b, Some((k.to_string(), v.to_string())))
            }
            None => (rest, None),
        };
        let (rt, perms) = body.split_once('.').ok_or_else(err)?;
        if rt.is_empty() || !(rt == "*" || rt.chars().all(|c| c.is_ascii_alphabetic())) {
            return Err(err());
        }
        let permissions = match perms {
            "read" => Permissions {
                read: true,
                search: true,
                ..Permissions::default()
            },
            "write" => Permissions {
                create: true,
                update: true,
                delete: true,
                ..Permissions::default()
            },
            "*" => Permissions::ALL,
            v2 => {
                // v2: a non-empty subsequence of "cruds", in that order.
                let mut p = Permissions::default();
                let mut last = 0;
                for c in v2.chars() {
                    let pos = "cruds".find(c).ok_or_else(err)? + 1;
                    if pos <= last {
                        return Err(err());
                    }
                    last = pos;
                    match c {
                        'c' => p.create = true,
                        'r' => p.read = true,
                        'u' => p.update = true,
                        'd' => p.delete = true,
                        _ => p.search = true,
                    }
                }
                if last == 0 {
                    return Err(err());
                }
                p
            }
        };
        Ok(Self {
            context,
            resource_type: (rt != "*").then(|| rt.to_string()),
            permissions,
            restriction,
        })
    }

    /// The scope that permits exactly what both `self` and `other` permit, if anything.
    pub fn intersect(&self, other: &Scope) -> Option<Scope> {
        if self.context != other.context {
            return None;
        }
        let resource_type = match (&self.resource_type, &other.resource_type) {
            (Some(a), Some(b)) if a != b => return None,
            (Some(a), _) | (None, Some(a)) => Some(a.clone()),
            (None, None) => None,
        };
        let restriction = match (&self.restriction, &other.restriction) {
            // Two different restrictions cannot be expressed as one scope: permit nothing.
            (Some(a), Some(b)) if a != b => return None,
            (Some(a), _) | (None, Some(a)) => Some(a.clone()),
            (None, None) => None,
        };
        let (a, b) = (self.permissions, other.permissions);
        let permissions = Permissions {
            create: a.create && b.create,
            read: a.read && b.read,
            update: a.update && b.update,
            delete: a.delete && b.delete,
            search: a.search && b.search,
        };
        (permissions != Permissions::default()).then_some(Scope {
            context: self.context,
            resource_type,
            permissions,
            restriction,
        })
    }

    /// Whether this scope covers `resource_type`.
    pub fn covers_type(&self, resource_type: &str) -> bool {
        self.resource_type
            .as_deref()
            .is_none_or(|t| t == resource_type)
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ctx = match self.context {
            ScopeContext::Patient => "patient",
            ScopeContext::User => "user",
            ScopeContext::System => "system",
        };
        let p = self.permissions;
        let perms: String = [
            (p.create, 'c'),
            (p.read, 'r'),
            (p.update, 'u'),
            (p.delete, 'd'),
            (p.search, 's'),
        ]
        .iter()
        .filter(|(on, _)| *on)
        .map(|(_, c)| *c)
        .collect();
        write!(
            f,
            "{ctx}/{}.{perms}",
            self.resource_type.as_deref().unwrap_or("*")
        )?;
        if let Some((k, v)) = &self.restriction {
            write!(f, "?{k}={v}")?;
        }
        Ok(())
    }
}

/// Parses a space-separated scope string, keeping clinical scopes and skipping others
/// (`openid`, `launch/patient`, `offline_access`...).
pub fn parse_scopes(s: &str) -> Vec<Scope> {
    s.split_whitespace()
        .filter_map(|t| Scope::parse(t).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_v1_and_v2() {
        let s = Scope::parse("patient/*.read").unwrap();
        assert_eq!(s.context, ScopeContext::Patient);
        assert!(s.permissions.read && s.permissions.search && !s.permissions.create);
        let s = Scope::parse("user/Observation.rs?category=laboratory").unwrap();
        assert_eq!(s.resource_type.as_deref(), Some("Observation"));
        assert_eq!(
            s.restriction,
            Some(("category".into(), "laboratory".into()))
        );
        assert_eq!(
            Scope::parse("system/*.*").unwrap().permissions,
            Permissions::ALL
        );
        for bad in [
            "patient/*.rr",
            "patient/*.sr",
            "patient/*.",
            "admin/*.read",
            "patient/Obs-1.read",
            "openid",
        ] {
            assert!(Scope::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_scopes("openid fhirUser system/Patient.rs").len(), 1);
    }

    proptest! {
        #[test]
        fn v2_scopes_round_trip(ctx in 0..3usize, t in "(\\*|Patient|Observation)", mask in 1u8..32) {
            let perms: String = "cruds".chars().enumerate().filter(|(i, _)| mask & (1 << i) != 0).map(|(_, c)| c).collect();
            let s = format!("{}/{t}.{perms}", ["patient", "user", "system"][ctx]);
            let parsed = Scope::parse(&s).unwrap();
            prop_assert_eq!(parsed.to_string(), s);
        }
    }
}
