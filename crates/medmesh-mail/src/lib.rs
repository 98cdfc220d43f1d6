//! E-mail over SMTP for the notification hub ([`medmesh_notifications::Mailer`]), with
//! lettre. The server is given as a URL: `smtp://host:25` (in clear, for a relay on the
//! same host), `smtp://user:password@host:587?tls=required` (STARTTLS, refusing a server
//! without it), `smtps://host:465` (TLS from the start). TLS uses the node's one rustls
//! provider (ring, which lettre is built with and passes itself) and the web's root
//! certificates. Connections are pooled (lettre's pool: up to ten, closed after a minute
//! idle), so a burst of reminders does not open a connection per message.

use lettre::message::header::ContentType;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use medmesh_notifications::{Mailer, SendError};

/// Why the mailer could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum MailError {
    /// The URL is not an SMTP server's (its text is not repeated: it may hold a password).
    #[error("smtp_url is not an smtp:// or smtps:// URL lettre accepts")]
    BadUrl,
    /// The sender address is not one.
    #[error("smtp_from is not an e-mail address")]
    BadFrom,
}

/// Sends through one SMTP server, from one address.
pub struct SmtpMailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: lettre::message::Mailbox,
}

impl std::fmt::Debug for SmtpMailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The transport holds the credentials.
        f.debug_struct("SmtpMailer")
            .field("from", &self.from.to_string())
            .finish_non_exhaustive()
    }
}

impl SmtpMailer {
    /// A mailer for the server at `url`, sending as `from` (`Node <node@example.org>`).
    ///
    /// # Errors
    /// [`MailError`] naming the setting.
    pub fn new(url: &str, from: &str) -> Result<Self, MailError> {
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
            .map_err(|_| MailError::BadUrl)?
            .timeout(Some(std::time::Duration::from_secs(30)))
            .build();
        let from = from.parse().map_err(|_| MailError::BadFrom)?;
        Ok(Self { transport, from })
    }
}

#[async_trait::async_trait]
impl Mailer for SmtpMailer {
    async fn send(
        &self,
        to: &str,
        subject: &str,
        body: &str,
        message_id: &str,
    ) -> Result<(), SendError> {
        let to = to
            .parse()
            .map_err(|_| SendError::Permanent("the address is not one".into()))?;
        let message = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(subject)
            .message_id(Some(message_id.to_string()))
            .header(ContentType::TEXT_PLAIN)
            .body(body.to_string())
            .map_err(|_| SendError::Permanent("the message could not be built".into()))?;
        match self.transport.send(message).await {
            Ok(_) => Ok(()),
            // The server's code says which (5xx for good, 4xx for now); no text of its is
            // kept, since it may quote the address.
            Err(e) if e.is_permanent() => Err(SendError::Permanent(format!(
                "the mail server refused it ({})",
                e.status()
                    .map_or_else(|| "no code".to_string(), |c| c.to_string())
            ))),
            Err(e) => Err(SendError::Transient(
                if e.is_transient() {
                    "the mail server asked to try later"
                } else {
                    "the mail server could not be reached"
                }
                .into(),
            )),
        }
    }
}
