//! `medmesh notifications ...`: recipients' choices, and what the hub could not deliver,
//! from the operator's shell.

use anyhow::{Context, bail};
use medmesh_fhir::datetime::format_instant;
use medmesh_notifications::{Category, Channel, Recipient};

use crate::cli::NotificationsCommand;
use crate::config::Config;
use crate::wiring::{notification_hub, open_store, record_service};

pub(crate) async fn run(cfg: &Config, command: NotificationsCommand) -> anyhow::Result<bool> {
    let stores = open_store(cfg).await?;
    let records = record_service(&stores, cfg).await?;
    let hub = notification_hub(cfg, &stores, &records, "")?;
    match command {
        NotificationsCommand::Settings {
            user,
            patient,
            email,
            choices,
            webhook,
        } => {
            let who = match (user, patient) {
                (_, Some(p)) => Recipient::Patient(p),
                (Some(name), None) => {
                    let account = stores
                        .identity
                        .user_by_username(&name)
                        .await?
                        .with_context(|| format!("no account {name}"))?;
                    Recipient::of_account(&account.id, account.patient_id.as_deref())
                }
                (None, None) => bail!("say whose: --user NAME or --patient ID"),
            };
            let mut settings = hub.settings(&who).await?;
            let changing = email.is_some() || !choices.is_empty();
            if let Some(e) = email {
                settings.email = Some(e).filter(|e| !e.trim().is_empty());
            }
            for choice in &choices {
                let (category, channels) = choice
                    .split_once('=')
                    .with_context(|| format!("'{choice}' is not CATEGORY=CHANNEL,..."))?;
                let category = Category::parse(category)
                    .with_context(|| format!("'{category}' is not a category"))?;
                let channels = channels
                    .split(',')
                    .filter(|c| !c.trim().is_empty())
                    .map(|c| Channel::parse(c).with_context(|| format!("'{c}' is not a channel")))
                    .collect::<anyhow::Result<Vec<_>>>()?;
                settings.choices.0.insert(category, channels);
            }
            if changing {
                hub.set_settings(&who, &settings).await?;
            }
            match webhook.as_deref().map(str::trim) {
                None => {}
                Some("") => {
                    hub.remove_webhook(&who).await?;
                    settings.webhook = None;
                }
                Some(url) => {
                    let secret = hub.set_webhook(&who, url).await?;
                    outln!("webhook secret (shown once; verify signatures with it)\t{secret}");
                    settings = hub.settings(&who).await?;
                }
            }
            outln!("recipient\t{}", who.key());
            outln!("email\t{}", settings.email.as_deref().unwrap_or("-"));
            outln!(
                "webhook\t{}",
                settings.webhook.as_ref().map_or("-", |w| w.url.as_str())
            );
            for c in Category::ALL {
                let channels: Vec<&str> = settings
                    .choices
                    .channels(c)
                    .iter()
                    .map(|ch| ch.as_str())
                    .collect();
                outln!("{}\t{}", c.as_str(), channels.join(","));
            }
            Ok(true)
        }
        NotificationsCommand::Failed { limit } => {
            outln!("id\tqueued\trecipient\tcategory\tchannel\tattempts\tlast error");
            for r in hub.failed(limit).await? {
                outln!(
                    "{}\t{}\t{}\t{}\t{}\t{}\t{}",
                    r.id,
                    format_instant(r.created_micros),
                    r.account,
                    r.category,
                    r.channel,
                    r.attempts,
                    r.last_error.as_deref().unwrap_or("-")
                );
            }
            Ok(true)
        }
        NotificationsCommand::Retry { id } => {
            hub.retry(&id).await?;
            outln!("queued {id} again");
            Ok(true)
        }
        NotificationsCommand::Counts => {
            outln!("channel\tstatus\tnotifications");
            for (channel, status, n) in hub.counts().await? {
                outln!("{channel}\t{status}\t{n}");
            }
            Ok(true)
        }
    }
}
