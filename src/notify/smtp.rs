//! Sending an email target's alerts through its SMTP server, one session per delivery round.
//!
//! The session is driven step by step (connect, STARTTLS, login, sender, each recipient, the
//! message) rather than through lettre's one-call transport, because what a refusal means
//! depends on when it comes. Before the message is sent, it is about the server or the config (a
//! sender the login may not use, a relay refused, a quota, a bad login) and would be the same
//! for every email: the target is down, and rests. After the message, a permanent refusal is
//! about this email (its size, a filter), and the others may pass, as a webhook's 400 is. A
//! recipient refused alone does not hold back the others: the email goes to those accepted, and
//! the refusal is logged and recorded with the delivery (`feedhound alerts` shows it).
//!
//! A round's emails share one session: after an outage or a busy poll, dozens of alerts would
//! otherwise cost dozens of connections and logins, which mail providers limit and read as abuse.
//! A kept session that fails before an email's message is sent (closed by the server meanwhile,
//! at a cap of its own, or dropped by a firewall, which costs a 5-second wait) is replaced by a
//! new one, and the target is not counted down for it.

use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;

use lettre::address::Address;
use lettre::message::{Mailbox, SinglePart, header};
use lettre::transport::smtp::Error as SmtpError;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{AsyncSmtpConnection, TlsParameters};
use lettre::transport::smtp::commands::{Data, Mail, Rcpt};
use lettre::transport::smtp::extension::ClientId;

use super::{DeliveryFailure, Sending, Taken, refused_list};
use crate::config::{EmailConfig, NotifyConfig, SmtpTls};
use crate::fetch::refused_certificate;
use crate::store::RefusedRecipient;

/// Deadline for connecting, for the greeting, and for each command's answer.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);
/// Deadline for each answer of a kept session before its message: a connection a firewall
/// dropped while it sat idle never answers, and a new session costs less than the full wait.
const KEPT_SESSION_TIMEOUT: Duration = Duration::from_secs(5);
/// Deadline for the answer to QUIT, which changes nothing.
const QUIT_TIMEOUT: Duration = Duration::from_secs(5);
/// Deadline for the answer to the message itself: RFC 5321 (4.5.3.2.6) asks a client to wait
/// 10 minutes, as a server may check the message before it answers, and giving up sooner makes
/// a duplicate of an email the server then delivers.
const MESSAGE_TIMEOUT: Duration = Duration::from_secs(600);
/// Longest server reply kept in an error, in characters.
const REPLY_CHARS: usize = 200;
/// Emails sent in one session before a new one is started. A server may cap the emails of a
/// session and say so only by refusing the next; a new session every 50 stays under such caps
/// and still spares 49 logins of 50.
const EMAILS_PER_SESSION: usize = 50;

/// An email target's server, and how to reach it.
pub struct Mailer {
    host: String,
    port: u16,
    /// For TLS from the first byte (`smtps://`) or after STARTTLS; None without encryption.
    tls: Option<TlsParameters>,
    starttls: bool,
    login: Option<(String, String)>,
    hello: ClientId,
    /// The session of the round under way, between its emails (see [`Mailer::end_session`]).
    kept: Mutex<Option<Session>>,
}

/// A connection past its greeting, STARTTLS and login.
struct Session {
    connection: AsyncSmtpConnection,
    emails_sent: usize,
}

impl Session {
    async fn quit(mut self) {
        let _ = tokio::time::timeout(QUIT_TIMEOUT, self.connection.quit()).await;
    }
}

/// Why an email was not taken: a step failed, or the server refused every recipient.
enum SendFailure {
    Step(&'static str, Failure),
    EveryRecipientRefused(Vec<RefusedRecipient>),
}

impl Mailer {
    pub fn new(email: &EmailConfig) -> Result<Mailer, SmtpError> {
        let tls = match email.tls {
            SmtpTls::Plain => None,
            SmtpTls::Implicit | SmtpTls::StartTls => Some(TlsParameters::new(email.host.clone())?),
        };
        Ok(Mailer {
            host: email.host.clone(),
            port: email.port,
            tls,
            starttls: email.tls == SmtpTls::StartTls,
            login: email.login.clone(),
            hello: ClientId::default(),
            kept: Mutex::new(None),
        })
    }

    /// Ends the session kept since the last email, if any: the round is over, and a server
    /// would only hold the connection open until its own timeout.
    pub async fn end_session(&self) {
        let kept = self.kept.lock().expect("kept session lock").take();
        if let Some(session) = kept {
            session.quit().await;
        }
    }

    /// One email to `target`'s recipients, in the round's session if one is kept.
    pub async fn send(
        &self,
        target: &NotifyConfig,
        email: &EmailConfig,
        sending: &Sending,
    ) -> Result<Taken, DeliveryFailure> {
        let message = message(target, email, sending).map_err(|err| DeliveryFailure {
            target_down: false,
            retry_after: None,
            message: format!("cannot write the email: {err}"),
        })?;
        let shown = target.shown_url();
        let down = |error: SendFailure| DeliveryFailure {
            target_down: true,
            retry_after: None,
            message: self.describe(&shown, error),
        };
        let kept = self.kept.lock().expect("kept session lock").take();
        let mut reused = None;
        match kept {
            Some(session) if session.emails_sent >= EMAILS_PER_SESSION => session.quit().await,
            Some(mut session) => {
                // Nothing of this email is sent before the server has its envelope, so a kept
                // session that fails before then (closed by the server meanwhile, at a cap of
                // its own, dropped by a firewall) is replaced, not counted against the target.
                let envelope = self
                    .envelope(&mut session.connection, email, KEPT_SESSION_TIMEOUT)
                    .await;
                match envelope {
                    Ok(refused) => reused = Some((session, refused)),
                    Err(error) => {
                        let reason = self.describe(&shown, error);
                        tracing::debug!(target = %target.name, %reason, "kept SMTP session failed; starting a new one");
                    }
                }
            }
            None => {}
        }
        let (mut session, refused) = match reused {
            Some(reused) => reused,
            None => {
                let mut session = self
                    .open()
                    .await
                    .map_err(|(what, failure)| down(SendFailure::Step(what, failure)))?;
                let refused = self
                    .envelope(&mut session.connection, email, COMMAND_TIMEOUT)
                    .await
                    .map_err(down)?;
                (session, refused)
            }
        };
        match within(MESSAGE_TIMEOUT, session.connection.message(&message)).await {
            Ok(_) => {}
            Err(Failure::Refused(err)) if err.is_permanent() => {
                // The reply ends the transaction (RFC 5321, 4.1.1.4): the session is good for
                // the next email.
                self.keep(session);
                return Err(DeliveryFailure {
                    target_down: false,
                    retry_after: None,
                    message: self.describe(
                        &shown,
                        SendFailure::Step("the email", Failure::Refused(err)),
                    ),
                });
            }
            Err(failure) => return Err(down(SendFailure::Step("the email", failure))),
        }
        self.keep(session);
        if !refused.is_empty() {
            let refused = refused_list(&refused);
            tracing::warn!(target = %target.name, %refused, "email sent, but not to these recipients; check the target's `to`");
        }
        Ok(Taken {
            not_delivered_to: refused,
        })
    }

    /// Keeps `session`, which has had an email's answer, for the round's next email.
    fn keep(&self, mut session: Session) {
        session.emails_sent += 1;
        *self.kept.lock().expect("kept session lock") = Some(session);
    }

    /// A new session: connected, encrypted as the target asks, logged in. On failure, the
    /// step that failed.
    async fn open(&self) -> Result<Session, (&'static str, Failure)> {
        let wrapper = self.tls.clone().filter(|_| !self.starttls);
        let mut connection = within(
            COMMAND_TIMEOUT,
            AsyncSmtpConnection::connect_tokio1(
                (self.host.as_str(), self.port),
                Some(COMMAND_TIMEOUT),
                &self.hello,
                wrapper,
                None,
            ),
        )
        .await
        .map_err(|failure| ("the connection", failure))?;
        if let (true, Some(tls)) = (self.starttls, &self.tls) {
            within(
                COMMAND_TIMEOUT,
                connection.starttls(tls.clone(), &self.hello),
            )
            .await
            .map_err(|failure| ("STARTTLS", failure))?;
        }
        if let Some((user, password)) = &self.login {
            let credentials = Credentials::new(user.clone(), password.clone());
            within(
                COMMAND_TIMEOUT,
                connection.auth(&[Mechanism::Plain, Mechanism::Login], &credentials),
            )
            .await
            .map_err(|failure| ("the login", failure))?;
        }
        Ok(Session {
            connection,
            emails_sent: 0,
        })
    }

    /// Everything before the message: the sender, each recipient, and DATA, each answer within
    /// `deadline`. The recipients the server refused, when it took at least one.
    async fn envelope(
        &self,
        connection: &mut AsyncSmtpConnection,
        email: &EmailConfig,
        deadline: Duration,
    ) -> Result<Vec<RefusedRecipient>, SendFailure> {
        let sender = Mail::new(Some(email.from.email.clone()), Vec::new());
        within(deadline, connection.command(sender))
            .await
            .map_err(|failure| SendFailure::Step("the sender", failure))?;
        let mut refused = Vec::new();
        for recipient in &email.to {
            let address: &Address = &recipient.email;
            match within(
                deadline,
                connection.command(Rcpt::new(address.clone(), Vec::new())),
            )
            .await
            {
                Ok(_) => {}
                Err(Failure::Refused(err)) if err.is_permanent() => {
                    // Each reply cut short on its own, so that every address is named.
                    refused.push(RefusedRecipient {
                        address: address.to_string(),
                        reply: self.without_login(&err.to_string()),
                    });
                }
                Err(failure) => return Err(SendFailure::Step("a recipient", failure)),
            }
        }
        if refused.len() == email.to.len() {
            return Err(SendFailure::EveryRecipientRefused(refused));
        }
        within(deadline, connection.command(Data))
            .await
            .map_err(|failure| SendFailure::Step("the message", failure))?;
        Ok(refused)
    }

    /// What went wrong, for the log and `feedhound alerts`: the server's or the library's words
    /// on one line, cut short and without the login ([`Mailer::without_login`]), then what to
    /// do about it if that is known.
    fn describe(&self, shown: &str, error: SendFailure) -> String {
        match error {
            SendFailure::Step(what, Failure::Refused(err)) => {
                format!(
                    "{shown} refused {what}: {}",
                    self.without_login(&err.to_string())
                )
            }
            SendFailure::Step(what, Failure::Lost(err)) => {
                let why = refused_certificate(&err).unwrap_or_else(|| {
                    // lettre wraps a TLS handshake's error as a connection error twice.
                    self.without_login(&err.to_string())
                        .replace("Connection error: Connection error: ", "Connection error: ")
                });
                format!("cannot send through {shown} ({what}): {why}")
            }
            SendFailure::Step(what, Failure::Silent(limit)) => {
                format!("{shown} did not answer {what} within {}s", limit.as_secs())
            }
            SendFailure::EveryRecipientRefused(refused) => {
                format!(
                    "{shown} refused every recipient: {}",
                    refused_list(&refused)
                )
            }
        }
    }

    /// `text` (a server's reply) on one line, at most [`REPLY_CHARS`] long, without the
    /// password or the forms a login is sent in, which a server may echo.
    fn without_login(&self, text: &str) -> String {
        use base64::Engine as _;
        let mut text = super::one_line(text, REPLY_CHARS * 4);
        if let Some((user, password)) = &self.login {
            let encode = |raw: &str| base64::engine::general_purpose::STANDARD.encode(raw);
            let plain = encode(&format!("\0{user}\0{password}"));
            for secret in [plain, encode(password), password.clone()] {
                if !secret.is_empty() {
                    text = text.replace(&secret, "…");
                }
            }
        }
        text.chars().take(REPLY_CHARS).collect()
    }
}

/// Why a step of the session failed.
enum Failure {
    /// The server answered with a refusal (4xx or 5xx).
    Refused(SmtpError),
    /// No answer that could be read: the connection, TLS, or the server's words.
    Lost(SmtpError),
    /// No answer within the deadline.
    Silent(Duration),
}

async fn within<T>(
    limit: Duration,
    step: impl Future<Output = Result<T, SmtpError>>,
) -> Result<T, Failure> {
    match tokio::time::timeout(limit, step).await {
        Ok(Ok(answer)) => Ok(answer),
        Ok(Err(err)) if err.is_permanent() || err.is_transient() => Err(Failure::Refused(err)),
        Ok(Err(err)) => Err(Failure::Lost(err)),
        Err(_) => Err(Failure::Silent(limit)),
    }
}

/// The email itself: headers and a plain-text body, encoded for any server (7-bit lines).
fn message(
    target: &NotifyConfig,
    email: &EmailConfig,
    sending: &Sending,
) -> Result<Vec<u8>, lettre::error::Error> {
    // The same on every attempt, so a mail reader that drops repeats by it (Gmail does) shows
    // an email the server took before a crash once.
    let message_id = format!(
        "<{}.feedhound@{}>",
        &blake3::hash(sending.idempotency_key.as_bytes()).to_hex()[..32],
        email.from.email.domain()
    );
    let mut builder = lettre::Message::builder()
        .from(email.from.clone())
        .subject(sending.subject.clone().unwrap_or_default())
        .message_id(Some(message_id))
        // RFC 3834: no vacation replies to an alert.
        .raw_header(header::HeaderValue::new(
            header::HeaderName::new_from_ascii_str("Auto-Submitted"),
            "auto-generated".to_owned(),
        ));
    for to in &email.to {
        builder = builder.to(Mailbox::clone(to));
    }
    let text = format!(
        "{}\n-- \nSent by feedhound for its notify target \"{}\".\n",
        String::from_utf8_lossy(&sending.body),
        target.name
    );
    Ok(builder.singlepart(SinglePart::plain(text))?.formatted())
}
