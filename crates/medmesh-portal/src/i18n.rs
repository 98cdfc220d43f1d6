//! Translations: every string a page shows comes from a Fluent message catalog
//! (`locales/{lang}/portal.ftl`, embedded in the binary). English and French ship; the
//! language is the user's setting (the `medmesh_lang` cookie) or else the best match of the
//! browser's `Accept-Language`, else English.
//!
//! A message missing from a catalog falls back to English, and a message missing there too
//! shows its id, so a page never fails for want of a string (and the catalog test catches
//! it first).

use std::sync::OnceLock;

use fluent_bundle::concurrent::FluentBundle;
use fluent_bundle::{FluentArgs, FluentResource, FluentValue};
use unic_langid::LanguageIdentifier;

/// The languages the portal ships, the first being the fallback.
pub const LANGUAGES: [(&str, &str); 2] = [
    ("en", include_str!("../locales/en/portal.ftl")),
    ("fr", include_str!("../locales/fr/portal.ftl")),
];

/// The loaded catalogs.
struct Catalogs {
    bundles: Vec<(LanguageIdentifier, FluentBundle<FluentResource>)>,
}

fn catalogs() -> &'static Catalogs {
    static CATALOGS: OnceLock<Catalogs> = OnceLock::new();
    CATALOGS.get_or_init(|| Catalogs {
        bundles: LANGUAGES
            .iter()
            .filter_map(|(tag, text)| {
                let lang: LanguageIdentifier = tag.parse().ok()?;
                // A catalog that does not parse is a build mistake the catalog test
                // catches; at run time its good messages still load.
                let resource = FluentResource::try_new((*text).to_string())
                    .unwrap_or_else(|(partial, _)| partial);
                let mut bundle = FluentBundle::new_concurrent(vec![lang.clone()]);
                // Unicode isolation marks around arguments would reach the HTML as
                // invisible characters; the page's own direction is enough here.
                bundle.set_use_isolating(false);
                bundle.add_resource(resource).ok()?;
                Some((lang, bundle))
            })
            .collect(),
    })
}

/// A language the portal speaks, chosen for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lang(usize);

impl Lang {
    /// English, the fallback.
    pub const EN: Lang = Lang(0);

    /// The language tag (`en`, `fr`), for `<html lang>`.
    pub fn tag(self) -> &'static str {
        LANGUAGES.get(self.0).map_or("en", |(t, _)| t)
    }

    /// The language named `tag`, if the portal ships it.
    pub fn from_tag(tag: &str) -> Option<Lang> {
        LANGUAGES
            .iter()
            .position(|(t, _)| t.eq_ignore_ascii_case(tag.trim()))
            .map(Lang)
    }

    /// The best of the shipped languages for an `Accept-Language` header.
    pub fn negotiate(accept_language: Option<&str>) -> Lang {
        let Some(header) = accept_language else {
            return Lang::EN;
        };
        let requested = fluent_langneg::accepted_languages::parse(header);
        let available: Vec<LanguageIdentifier> = LANGUAGES
            .iter()
            .filter_map(|(t, _)| t.parse().ok())
            .collect();
        let default: LanguageIdentifier = "en".parse().unwrap_or_default();
        let chosen = fluent_langneg::negotiate_languages(
            &requested,
            &available,
            Some(&default),
            fluent_langneg::NegotiationStrategy::Lookup,
        );
        chosen
            .first()
            .and_then(|l| Lang::from_tag(l.language.as_str()))
            .unwrap_or(Lang::EN)
    }

    /// The message `id`, without arguments.
    pub fn t(self, id: &str) -> String {
        self.format(id, None)
    }

    /// The message `id` if a catalog has it (this language's, else English's): for ids made
    /// from data (a status code, an audited action), whose fallback is the caller's.
    pub fn lookup(self, id: &str) -> Option<String> {
        let bundles = &catalogs().bundles;
        let known = [bundles.get(self.0), bundles.first()]
            .into_iter()
            .flatten()
            .any(|(_, b)| b.has_message(id));
        known.then(|| self.format(id, None))
    }

    /// The message `id` for a script to fill in: each named argument is written as
    /// `{name}`, which the page's script replaces with its value.
    pub fn t_for_script(self, id: &str, names: &[&str]) -> String {
        let args: Vec<(&str, Arg)> = names
            .iter()
            .map(|name| (*name, Arg::Text(format!("{{{name}}}"))))
            .collect();
        self.t_with(id, &args)
    }

    /// The message `id` with arguments.
    pub fn t_with(self, id: &str, args: &[(&str, Arg)]) -> String {
        let mut fluent = FluentArgs::new();
        for (name, value) in args {
            match value {
                Arg::Text(s) => fluent.set(*name, FluentValue::from(s.clone())),
                Arg::Number(n) => fluent.set(*name, FluentValue::from(*n)),
            }
        }
        self.format(id, Some(&fluent))
    }

    fn format(self, id: &str, args: Option<&FluentArgs>) -> String {
        let bundles = &catalogs().bundles;
        for bundle in [bundles.get(self.0), bundles.first()].into_iter().flatten() {
            let bundle = &bundle.1;
            if let Some(pattern) = bundle.get_message(id).and_then(|m| m.value()) {
                let mut errors = Vec::new();
                return bundle
                    .format_pattern(pattern, args, &mut errors)
                    .into_owned();
            }
        }
        id.to_string()
    }
}

/// An argument to a message.
#[derive(Debug, Clone)]
pub enum Arg {
    /// Text.
    Text(String),
    /// A number (plural rules apply).
    Number(f64),
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every catalog parses, and every language has every English message.
    #[test]
    fn every_catalog_parses_and_is_complete() {
        let ids = |text: &str| -> Vec<String> {
            let resource = FluentResource::try_new(text.to_string())
                .unwrap_or_else(|(_, errors)| panic!("a catalog does not parse: {errors:?}"));
            resource
                .entries()
                .filter_map(|e| match e {
                    fluent_syntax::ast::Entry::Message(m) => Some(m.id.name.to_string()),
                    _ => None,
                })
                .collect()
        };
        let english = ids(LANGUAGES[0].1);
        assert!(english.len() > 20);
        for (tag, text) in &LANGUAGES[1..] {
            let theirs = ids(text);
            let missing: Vec<_> = english.iter().filter(|id| !theirs.contains(id)).collect();
            assert!(missing.is_empty(), "{tag} lacks {missing:?}");
        }
    }

    /// Every notice the node's own pages can give has its title and text in the catalogs.
    #[test]
    fn the_node_notices_are_all_said() {
        for id in medmesh_server::web::NOTICES {
            for message in [format!("notice-{id}-title"), format!("notice-{id}")] {
                assert!(Lang::EN.lookup(&message).is_some(), "no {message}");
            }
        }
        assert_eq!(
            Lang(1).t_with(
                "notice-identity-throttled",
                &[("seconds", Arg::Text("30".into()))]
            ),
            "Trop de tentatives échouées ; réessayez dans 30 secondes."
        );
    }

    #[test]
    fn the_browser_language_picks_the_catalog() {
        assert_eq!(Lang::negotiate(Some("fr-CA,fr;q=0.9,en;q=0.8")), Lang(1));
        assert_eq!(Lang::negotiate(Some("de-DE,de;q=0.9")), Lang::EN);
        assert_eq!(Lang::negotiate(None), Lang::EN);
        assert_eq!(Lang(1).t("nav-record"), "Mon dossier");
        assert_eq!(Lang::EN.t("no-such-message"), "no-such-message");
        assert_eq!(Lang::EN.lookup("no-such-message"), None);
        assert_eq!(Lang(1).lookup("status-active").as_deref(), Some("Actif"));
        assert_eq!(
            Lang::EN.t_with("record-results-count", &[("count", Arg::Number(1.0))]),
            "1 result"
        );
    }
}
