//! People and credentials, kept in `system.redb`: users with argon2id
//! password hashes, invitations, sessions, TOTP second factors with
//! one-time recovery codes, teams, custom roles and role-scoped API keys.
//!
//! Secrets are never stored in clear. Session tokens (`crms_…`), API keys,
//! invitation tokens and recovery codes are random and long, so a SHA-256
//! of each is enough; passwords are chosen by people and get argon2id.
//! Every authentication failure reads the same to the caller.

use std::collections::HashMap;
use std::sync::Mutex;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use hmac::{Hmac, Mac};
use rand::Rng;
use redb::{ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::access::{Principal, Role};
use crate::audit::Actor;
use crate::clock::now_ms;
use crate::error::{Error, ErrorKind, Result};
use crate::ids::{RecordId, TenantId, truncate};
use crate::system::{ApiKeyInfo, SystemStore};

/// user id → user (JSON).
pub(crate) const USERS: TableDefinition<&str, &[u8]> = TableDefinition::new("users");
/// `tenant/email` → user id.
pub(crate) const USER_EMAILS: TableDefinition<&str, &str> = TableDefinition::new("user_emails");
/// SHA-256 of a session token → session (JSON).
pub(crate) const SESSIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("sessions");
/// `tenant/name` → custom role (JSON).
pub(crate) const ROLES: TableDefinition<&str, &[u8]> = TableDefinition::new("roles");
/// `tenant/id` → team (JSON).
pub(crate) const TEAMS: TableDefinition<&str, &[u8]> = TableDefinition::new("teams");

/// How long a session lasts after login.
pub const SESSION_TTL_MS: i64 = 12 * 60 * 60 * 1000;
/// How long an invitation can be accepted.
pub const INVITE_TTL_MS: i64 = 7 * 24 * 60 * 60 * 1000;
/// The shortest password accepted.
pub const MIN_PASSWORD: usize = 10;
/// Recovery codes handed out when two-factor sign-in is turned on.
pub const RECOVERY_CODES: usize = 10;

pub(crate) fn create_tables(txn: &WriteTransaction) -> Result<()> {
    txn.open_table(USERS)?;
    txn.open_table(USER_EMAILS)?;
    txn.open_table(SESSIONS)?;
    txn.open_table(ROLES)?;
    txn.open_table(TEAMS)?;
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UserStatus {
    /// Invited, no password yet.
    Invited,
    Active,
    /// Cannot sign in; their sessions and keys stop working.
    Disabled,
}

impl UserStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            UserStatus::Invited => "invited",
            UserStatus::Active => "active",
            UserStatus::Disabled => "disabled",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Totp {
    /// The shared secret, base32 as authenticator apps take it.
    pub secret: String,
    /// Set once a code from the app confirmed the enrolment.
    pub enabled: bool,
    /// The last time step accepted: a code is never accepted twice.
    #[serde(default)]
    pub last_step: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct User {
    pub id: RecordId,
    pub tenant: TenantId,
    pub email: String,
    pub name: String,
    pub role: String,
    pub team: Option<RecordId>,
    pub status: UserStatus,
    pub created_at: i64,
    #[serde(default)]
    pub password_hash: Option<String>,
    #[serde(default)]
    pub totp: Option<Totp>,
    /// SHA-256 of each unused recovery code.
    #[serde(default)]
    pub recovery_codes: Vec<String>,
    /// SHA-256 of the pending invitation token and when it expires.
    #[serde(default)]
    pub invite: Option<(String, i64)>,
}

impl User {
    pub fn two_factor_enabled(&self) -> bool {
        self.totp.as_ref().is_some_and(|totp| totp.enabled)
    }

    pub fn principal(&self) -> Principal {
        Principal { user: Some(self.id), team: self.team }
    }

    pub fn actor(&self) -> Actor {
        Actor(format!("user:{}", self.id))
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Team {
    pub id: RecordId,
    pub tenant: TenantId,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Session {
    pub user: RecordId,
    pub tenant: TenantId,
    pub created_at: i64,
    pub expires_at: i64,
    pub revoked_at: Option<i64>,
}

/// A new user as an admin describes them.
#[derive(Debug, Clone, Default)]
pub struct NewUser {
    pub email: String,
    pub name: String,
    pub role: String,
    pub team: Option<RecordId>,
    /// Set directly (command line); otherwise an invitation is made.
    pub password: Option<String>,
}

/// Who a bearer token stands for.
#[derive(Debug, Clone)]
pub struct Identity {
    pub tenant: TenantId,
    pub actor: Actor,
    pub role: String,
    pub principal: Principal,
    pub credential: Credential,
    /// When the credential ends by itself (an API key's expiry, a
    /// session's end); None: only when revoked.
    pub expires_at: Option<i64>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Credential {
    ApiKey { prefix: String },
    /// The SHA-256 of the session token.
    Session { hash: String, user: RecordId },
}

/// The record id under which the audit log files changes to something
/// named by text rather than stored as a record (a role, an API key, a
/// tenant): stable, so one thing's entries share an id.
pub fn named_id(kind: &str, name: &str) -> RecordId {
    let digest = Sha256::digest(format!("{kind}/{name}").as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    RecordId(u128::from_be_bytes(bytes))
}

pub(crate) fn sha256_hex(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

fn random_secret(len: usize) -> String {
    const ALPHABET: &[u8] = b"abcdefghijkmnopqrstuvwxyz23456789";
    let mut rng = rand::rng();
    (0..len).map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char).collect()
}

fn to_json<T: Serialize>(value: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(value).map_err(|e| Error::internal(e.to_string()))
}

fn from_json<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|e| Error::internal(format!("corrupt identity record: {e}")))
}

fn email_key(tenant: &TenantId, email: &str) -> String {
    format!("{tenant}/{}", email.trim().to_lowercase())
}

fn check_email(email: &str) -> Result<String> {
    let email = email.trim().to_lowercase();
    let valid = email.len() <= 254
        && email.split_once('@').is_some_and(|(local, domain)| !local.is_empty() && domain.contains('.') && !domain.starts_with('.'))
        && !email.contains(char::is_whitespace);
    if valid { Ok(email) } else { Err(Error::invalid_field("email", format!("'{}' is not an email address", truncate(&email, 60)))) }
}

fn check_password(password: &str) -> Result<()> {
    if password.chars().count() < MIN_PASSWORD {
        return Err(Error::invalid_field("password", format!("must be at least {MIN_PASSWORD} characters")));
    }
    if password.len() > 1024 {
        return Err(Error::invalid_field("password", "must be at most 1024 bytes"));
    }
    Ok(())
}

/// An argon2id hash in PHC string form.
pub fn hash_password(password: &str) -> Result<String> {
    let mut salt = [0u8; 16];
    rand::rng().fill(&mut salt);
    let salt = SaltString::encode_b64(&salt).map_err(|e| Error::internal(e.to_string()))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|e| Error::internal(format!("password hashing failed: {e}")))
}

pub fn verify_password(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|parsed| Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok())
}

/// A hash to verify against when there is no user, so a wrong email costs
/// the same time as a wrong password.
fn decoy_hash() -> &'static str {
    static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DECOY.get_or_init(|| hash_password("decoy password that matches nothing").unwrap_or_default())
}

/// TOTP (RFC 6238): HMAC-SHA1, 30-second steps, six digits.
pub mod totp {
    use super::*;

    pub const STEP_SECONDS: i64 = 30;

    pub fn new_secret() -> String {
        let mut bytes = [0u8; 20];
        rand::rng().fill(&mut bytes);
        data_encoding::BASE32_NOPAD.encode(&bytes)
    }

    /// The code for a time step.
    pub fn code(secret: &str, step: i64) -> Result<String> {
        let key = data_encoding::BASE32_NOPAD
            .decode(secret.as_bytes())
            .map_err(|_| Error::internal("stored TOTP secret is not base32"))?;
        let mut mac = Hmac::<sha1::Sha1>::new_from_slice(&key).map_err(|e| Error::internal(e.to_string()))?;
        mac.update(&(step as u64).to_be_bytes());
        let digest = mac.finalize().into_bytes();
        let offset = (digest[19] & 0x0f) as usize;
        let binary = u32::from_be_bytes([digest[offset] & 0x7f, digest[offset + 1], digest[offset + 2], digest[offset + 3]]);
        Ok(format!("{:06}", binary % 1_000_000))
    }

    pub fn step_at(unix_ms: i64) -> i64 {
        unix_ms.div_euclid(1000) / STEP_SECONDS
    }

    /// The step a code matches within one step of `now` either way.
    pub fn matching_step(secret: &str, code: &str, now_ms: i64) -> Result<Option<i64>> {
        let code = code.trim();
        if code.len() != 6 || !code.bytes().all(|b| b.is_ascii_digit()) {
            return Ok(None);
        }
        let now = step_at(now_ms);
        for step in [now - 1, now, now + 1] {
            if super::constant_time_eq(self::code(secret, step)?.as_bytes(), code.as_bytes()) {
                return Ok(Some(step));
            }
        }
        Ok(None)
    }

    /// The URI authenticator apps read from a QR code.
    pub fn uri(secret: &str, issuer: &str, account: &str) -> String {
        let escape = |text: &str| {
            text.bytes()
                .map(|b| if b.is_ascii_alphanumeric() || b"-._~@".contains(&b) { (b as char).to_string() } else { format!("%{b:02X}") })
                .collect::<String>()
        };
        format!("otpauth://totp/{}:{}?secret={secret}&issuer={}&period=30&digits=6", escape(issuer), escape(account), escape(issuer))
    }
}

pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The second factor given at sign-in.
#[derive(Debug, Clone, Default)]
pub struct SecondFactor {
    pub totp: Option<String>,
    pub recovery_code: Option<String>,
}

/// The outcome of a sign-in: the session token (shown once) and the user.
#[derive(Debug, Clone)]
pub struct LoginOutcome {
    pub token: String,
    pub session: Session,
    pub user: User,
}

/// Users, sessions, teams, roles and keys.
impl SystemStore {
    fn put_user(&self, txn: &WriteTransaction, user: &User) -> Result<()> {
        txn.open_table(USERS)?.insert(user.id.to_string().as_str(), to_json(user)?.as_slice())?;
        Ok(())
    }

    fn load_user(&self, txn: &WriteTransaction, tenant: &TenantId, id: RecordId) -> Result<User> {
        let users = txn.open_table(USERS)?;
        let user: User = match users.get(id.to_string().as_str())? {
            Some(bytes) => from_json(bytes.value())?,
            None => return Err(Error::not_found(format!("no user with id {id}"))),
        };
        if &user.tenant != tenant {
            return Err(Error::not_found(format!("no user with id {id}")));
        }
        Ok(user)
    }

    /// Creates a user. Without a password an invitation is made and its
    /// token returned (shown once).
    pub fn create_user(&self, tenant: &TenantId, new: NewUser) -> Result<(User, Option<String>)> {
        let email = check_email(&new.email)?;
        if new.name.trim().is_empty() || new.name.len() > 200 {
            return Err(Error::invalid_field("name", "must be 1-200 characters"));
        }
        self.role(tenant, &new.role)?;
        if let Some(team) = new.team {
            self.team(tenant, team)?;
        }
        let password_hash = match &new.password {
            Some(password) => {
                check_password(password)?;
                Some(hash_password(password)?)
            }
            None => None,
        };
        let invite_token = password_hash.is_none().then(|| format!("crmi_{}", random_secret(40)));
        let user = User {
            id: RecordId::generate(),
            tenant: tenant.clone(),
            email: email.clone(),
            name: new.name.trim().to_string(),
            role: new.role.clone(),
            team: new.team,
            status: if password_hash.is_some() { UserStatus::Active } else { UserStatus::Invited },
            created_at: now_ms(),
            password_hash,
            totp: None,
            recovery_codes: Vec::new(),
            invite: invite_token.as_ref().map(|token| (sha256_hex(token), now_ms() + INVITE_TTL_MS)),
        };
        let txn = self.write()?;
        {
            let mut emails = txn.open_table(USER_EMAILS)?;
            let key = email_key(tenant, &email);
            if emails.get(key.as_str())?.is_some() {
                return Err(Error::conflict(format!("a user with email {email} already exists")));
            }
            emails.insert(key.as_str(), user.id.to_string().as_str())?;
        }
        self.put_user(&txn, &user)?;
        txn.commit()?;
        Ok((user, invite_token))
    }

    pub fn users(&self, tenant: &TenantId) -> Result<Vec<User>> {
        let txn = self.db.begin_read()?;
        let emails = txn.open_table(USER_EMAILS)?;
        let users = txn.open_table(USERS)?;
        let prefix = format!("{tenant}/");
        let mut out = Vec::new();
        for entry in emails.range(prefix.as_str()..)? {
            let (key, id) = entry?;
            if !key.value().starts_with(&prefix) {
                break;
            }
            if let Some(bytes) = users.get(id.value())? {
                out.push(from_json(bytes.value())?);
            }
        }
        Ok(out)
    }

    pub fn user(&self, tenant: &TenantId, id: RecordId) -> Result<User> {
        let txn = self.db.begin_read()?;
        let users = txn.open_table(USERS)?;
        let user: Option<User> = users.get(id.to_string().as_str())?.map(|bytes| from_json(bytes.value())).transpose()?;
        user.filter(|user| &user.tenant == tenant).ok_or_else(|| Error::not_found(format!("no user with id {id}")))
    }

    pub fn user_by_email(&self, tenant: &TenantId, email: &str) -> Result<Option<User>> {
        let txn = self.db.begin_read()?;
        let emails = txn.open_table(USER_EMAILS)?;
        let Some(id) = emails.get(email_key(tenant, email).as_str())?.map(|id| id.value().to_string()) else {
            return Ok(None);
        };
        let users = txn.open_table(USERS)?;
        users.get(id.as_str())?.map(|bytes| from_json(bytes.value())).transpose()
    }

    /// Changes a user in one transaction. Changing the role, team or status
    /// ends the user's sessions so the change takes effect at once.
    pub fn update_user(&self, tenant: &TenantId, id: RecordId, change: impl FnOnce(&mut User) -> Result<()>) -> Result<User> {
        let txn = self.write()?;
        let mut user = self.load_user(&txn, tenant, id)?;
        let before = user.clone();
        change(&mut user)?;
        if user.role != before.role {
            self.role(tenant, &user.role)?;
        }
        if let Some(team) = user.team.filter(|team| Some(*team) != before.team) {
            self.team(tenant, team)?;
        }
        self.put_user(&txn, &user)?;
        if user.role != before.role || user.team != before.team || user.status != before.status {
            revoke_sessions_of(&txn, tenant, id)?;
        }
        txn.commit()?;
        Ok(user)
    }

    pub fn disable_user(&self, tenant: &TenantId, id: RecordId) -> Result<User> {
        self.update_user(tenant, id, |user| {
            user.status = UserStatus::Disabled;
            user.invite = None;
            Ok(())
        })
    }

    pub fn enable_user(&self, tenant: &TenantId, id: RecordId) -> Result<User> {
        self.update_user(tenant, id, |user| {
            user.status = if user.password_hash.is_some() { UserStatus::Active } else { UserStatus::Invited };
            Ok(())
        })
    }

    /// Turns two-factor sign-in off for a user who lost their device; their
    /// sessions end.
    pub fn reset_two_factor(&self, tenant: &TenantId, id: RecordId) -> Result<User> {
        let txn = self.write()?;
        let mut user = self.load_user(&txn, tenant, id)?;
        user.totp = None;
        user.recovery_codes.clear();
        self.put_user(&txn, &user)?;
        revoke_sessions_of(&txn, tenant, id)?;
        txn.commit()?;
        Ok(user)
    }

    pub fn set_password(&self, tenant: &TenantId, id: RecordId, password: &str) -> Result<User> {
        check_password(password)?;
        let hash = hash_password(password)?;
        let txn = self.write()?;
        let mut user = self.load_user(&txn, tenant, id)?;
        user.password_hash = Some(hash);
        if user.status == UserStatus::Invited {
            user.status = UserStatus::Active;
        }
        user.invite = None;
        self.put_user(&txn, &user)?;
        revoke_sessions_of(&txn, tenant, id)?;
        txn.commit()?;
        Ok(user)
    }

    /// Sets the password of an invited user from their invitation token.
    pub fn accept_invite(&self, tenant: &TenantId, token: &str, password: &str) -> Result<User> {
        check_password(password)?;
        let hash = sha256_hex(token);
        let invalid = || Error::unauthenticated("invalid or expired invitation");
        let user = self
            .users(tenant)?
            .into_iter()
            .find(|user| user.invite.as_ref().is_some_and(|(stored, _)| constant_time_eq(stored.as_bytes(), hash.as_bytes())))
            .ok_or_else(invalid)?;
        if user.status != UserStatus::Invited || user.invite.as_ref().is_some_and(|(_, expires)| *expires <= now_ms()) {
            return Err(invalid());
        }
        self.set_password(tenant, user.id, password)
    }

    /// Checks email and password (and the second factor when enabled) and
    /// opens a session. Every failure is `UNAUTHENTICATED` with the same
    /// message, except a missing second factor, which says so.
    pub fn login(&self, tenant: &TenantId, email: &str, password: &str, second: &SecondFactor) -> Result<LoginOutcome> {
        let denied = || Error::unauthenticated("wrong email or password");
        let user = self.user_by_email(tenant, email)?;
        let hash = user.as_ref().and_then(|user| user.password_hash.clone());
        let genuine = verify_password(password, hash.as_deref().unwrap_or_else(|| decoy_hash()));
        let user = match user {
            Some(user) if genuine && hash.is_some() && user.status == UserStatus::Active => user,
            _ => return Err(denied()),
        };
        if user.two_factor_enabled() {
            self.check_second_factor(tenant, user.id, second)?;
        }
        let token = format!("crms_{}", random_secret(40));
        let now = now_ms();
        let session = Session { user: user.id, tenant: tenant.clone(), created_at: now, expires_at: now + SESSION_TTL_MS, revoked_at: None };
        let txn = self.write()?;
        txn.open_table(SESSIONS)?.insert(sha256_hex(&token).as_str(), to_json(&session)?.as_slice())?;
        txn.commit()?;
        Ok(LoginOutcome { token, session, user })
    }

    fn check_second_factor(&self, tenant: &TenantId, id: RecordId, second: &SecondFactor) -> Result<()> {
        let txn = self.write()?;
        let mut user = self.load_user(&txn, tenant, id)?;
        let accepted = if let Some(code) = &second.totp {
            let totp = user.totp.as_mut().ok_or_else(|| Error::internal("two-factor state missing"))?;
            match totp::matching_step(&totp.secret, code, now_ms())? {
                Some(step) if step > totp.last_step => {
                    totp.last_step = step;
                    true
                }
                _ => false,
            }
        } else if let Some(code) = &second.recovery_code {
            let hash = sha256_hex(&code.trim().to_lowercase());
            let before = user.recovery_codes.len();
            user.recovery_codes.retain(|stored| !constant_time_eq(stored.as_bytes(), hash.as_bytes()));
            user.recovery_codes.len() < before
        } else {
            return Err(Error::unauthenticated("two-factor code required: send totp or recoveryCode"));
        };
        if !accepted {
            return Err(Error::unauthenticated("wrong or reused two-factor code"));
        }
        self.put_user(&txn, &user)?;
        txn.commit()?;
        Ok(())
    }

    /// Starts TOTP enrolment: a new secret, not active until confirmed.
    pub fn begin_totp(&self, tenant: &TenantId, id: RecordId) -> Result<(String, String)> {
        let secret = totp::new_secret();
        let user = self.update_user(tenant, id, |user| {
            if user.two_factor_enabled() {
                return Err(Error::conflict("two-factor sign-in is already on; an admin can reset it"));
            }
            user.totp = Some(Totp { secret: secret.clone(), enabled: false, last_step: 0 });
            Ok(())
        })?;
        Ok((secret.clone(), totp::uri(&secret, "crm", &user.email)))
    }

    /// Confirms TOTP enrolment with a code from the app; returns the
    /// recovery codes (shown once).
    pub fn confirm_totp(&self, tenant: &TenantId, id: RecordId, code: &str) -> Result<Vec<String>> {
        let codes: Vec<String> = (0..RECOVERY_CODES).map(|_| random_secret(12)).collect();
        let hashes: Vec<String> = codes.iter().map(|code| sha256_hex(code)).collect();
        self.update_user(tenant, id, |user| {
            let totp = user.totp.as_mut().filter(|totp| !totp.enabled).ok_or_else(|| Error::invalid("start enrolment first"))?;
            let step = totp::matching_step(&totp.secret, code, now_ms())?
                .ok_or_else(|| Error::invalid_field("code", "does not match the authenticator"))?;
            totp.enabled = true;
            totp.last_step = step;
            user.recovery_codes = hashes;
            Ok(())
        })?;
        Ok(codes)
    }

    /// The session and user behind a session token, if it is live.
    pub fn session(&self, token: &str) -> Result<(String, Session, User)> {
        let denied = || Error::unauthenticated("invalid or expired session");
        let hash = sha256_hex(token);
        let txn = self.db.begin_read()?;
        let sessions = txn.open_table(SESSIONS)?;
        let session: Session = from_json(sessions.get(hash.as_str())?.ok_or_else(denied)?.value())?;
        if session.revoked_at.is_some() || session.expires_at <= now_ms() {
            return Err(denied());
        }
        let users = txn.open_table(USERS)?;
        let user: User = from_json(users.get(session.user.to_string().as_str())?.ok_or_else(denied)?.value())?;
        if user.status != UserStatus::Active {
            return Err(denied());
        }
        Ok((hash, session, user))
    }

    /// Ends one session (logout).
    pub fn revoke_session(&self, hash: &str) -> Result<()> {
        let txn = self.write()?;
        {
            let mut sessions = txn.open_table(SESSIONS)?;
            let session: Option<Session> = sessions.get(hash)?.map(|bytes| from_json(bytes.value())).transpose()?;
            if let Some(mut session) = session {
                session.revoked_at.get_or_insert(now_ms());
                sessions.insert(hash, to_json(&session)?.as_slice())?;
            }
        }
        txn.commit()?;
        Ok(())
    }

    /// Ends every session of a user; returns how many were live.
    pub fn revoke_user_sessions(&self, tenant: &TenantId, id: RecordId) -> Result<usize> {
        let txn = self.write()?;
        self.load_user(&txn, tenant, id)?;
        let count = revoke_sessions_of(&txn, tenant, id)?;
        txn.commit()?;
        Ok(count)
    }

    /// Resolves a bearer token: an API key (`crm_…`) or a session
    /// (`crms_…`).
    pub fn identify(&self, token: &str) -> Result<Identity> {
        if token.starts_with("crms_") {
            let (hash, session, user) = self.session(token)?;
            return Ok(Identity {
                tenant: user.tenant.clone(),
                actor: user.actor(),
                role: user.role.clone(),
                principal: user.principal(),
                credential: Credential::Session { hash, user: user.id },
                expires_at: Some(session.expires_at),
            });
        }
        let key = self.authenticate(token)?;
        let principal = match key.user {
            Some(id) => {
                let user = self.user(&key.tenant, id).map_err(|_| Error::unauthenticated("invalid or expired API key"))?;
                if user.status == UserStatus::Disabled {
                    return Err(Error::unauthenticated("invalid or expired API key"));
                }
                user.principal()
            }
            None => Principal::default(),
        };
        self.touch_api_key(&key.prefix);
        Ok(Identity {
            tenant: key.tenant.clone(),
            actor: Actor::api_key(&key.prefix),
            role: key.role.clone(),
            principal,
            credential: Credential::ApiKey { prefix: key.prefix },
            expires_at: key.expires_at,
        })
    }

    /// A role of a tenant: built in or custom.
    pub fn role(&self, tenant: &TenantId, name: &str) -> Result<Role> {
        if let Some(role) = Role::find_builtin(name) {
            return Ok(role);
        }
        let txn = self.db.begin_read()?;
        let roles = txn.open_table(ROLES)?;
        let role = roles.get(format!("{tenant}/{name}").as_str())?.map(|bytes| from_json(bytes.value())).transpose()?;
        role.ok_or_else(|| Error::invalid_field("role", format!("no role named '{}'", truncate(name, 40))))
    }

    /// The JSON rows of a table keyed `tenant/…`, in key order.
    fn tenant_rows<T: serde::de::DeserializeOwned>(&self, table: TableDefinition<&str, &[u8]>, tenant: &TenantId) -> Result<Vec<T>> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(table)?;
        let prefix = format!("{tenant}/");
        let mut out = Vec::new();
        for entry in table.range(prefix.as_str()..)? {
            let (key, bytes) = entry?;
            if !key.value().starts_with(&prefix) {
                break;
            }
            out.push(from_json(bytes.value())?);
        }
        Ok(out)
    }

    /// Built-in roles, then the tenant's own.
    pub fn roles(&self, tenant: &TenantId) -> Result<Vec<Role>> {
        let mut out = Role::builtins();
        out.extend(self.tenant_rows::<Role>(ROLES, tenant)?);
        Ok(out)
    }

    /// Creates or replaces a custom role (checked by the caller against the
    /// tenant's metadata). Users and keys holding it see the change at once.
    pub fn put_role(&self, tenant: &TenantId, role: &Role) -> Result<()> {
        let mut role = role.clone();
        role.builtin = false;
        let txn = self.write()?;
        txn.open_table(ROLES)?.insert(format!("{tenant}/{}", role.name).as_str(), to_json(&role)?.as_slice())?;
        txn.commit()?;
        Ok(())
    }

    /// Deletes a custom role nobody holds.
    pub fn delete_role(&self, tenant: &TenantId, name: &str) -> Result<()> {
        if Role::find_builtin(name).is_some() {
            return Err(Error::conflict(format!("'{name}' is a built-in role")));
        }
        let holders = self.users(tenant)?.iter().filter(|user| user.role == name).count()
            + self.api_keys(tenant)?.iter().filter(|key| key.role == name && key.revoked_at.is_none()).count();
        if holders > 0 {
            return Err(Error::conflict(format!("role '{name}' is held by {holders} users or keys")));
        }
        let txn = self.write()?;
        let removed = txn.open_table(ROLES)?.remove(format!("{tenant}/{name}").as_str())?.is_some();
        txn.commit()?;
        if removed { Ok(()) } else { Err(Error::not_found(format!("no custom role named '{name}'"))) }
    }

    pub fn create_team(&self, tenant: &TenantId, name: &str) -> Result<Team> {
        let name = name.trim();
        if name.is_empty() || name.len() > 100 {
            return Err(Error::invalid_field("name", "must be 1-100 characters"));
        }
        if self.teams(tenant)?.iter().any(|team| team.name.eq_ignore_ascii_case(name)) {
            return Err(Error::conflict(format!("a team named '{name}' already exists")));
        }
        let team = Team { id: RecordId::generate(), tenant: tenant.clone(), name: name.to_string() };
        let txn = self.write()?;
        txn.open_table(TEAMS)?.insert(format!("{tenant}/{}", team.id).as_str(), to_json(&team)?.as_slice())?;
        txn.commit()?;
        Ok(team)
    }

    pub fn teams(&self, tenant: &TenantId) -> Result<Vec<Team>> {
        self.tenant_rows(TEAMS, tenant)
    }

    pub fn team(&self, tenant: &TenantId, id: RecordId) -> Result<Team> {
        self.teams(tenant)?
            .into_iter()
            .find(|team| team.id == id)
            .ok_or_else(|| Error::invalid_field("team", format!("no team with id {id}")))
    }

    /// Records when a key was last used, at most once a minute per key so
    /// reads do not turn into writes.
    pub fn touch_api_key(&self, prefix: &str) {
        const EVERY_MS: i64 = 60_000;
        let now = now_ms();
        {
            let mut touched = LAST_TOUCH.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            let last = touched.get_or_insert_with(HashMap::new).entry(prefix.to_string()).or_insert(i64::MIN);
            if now.saturating_sub(*last) < EVERY_MS {
                return;
            }
            *last = now;
        }
        let result = (|| -> Result<()> {
            let txn = self.write_last_use()?;
            {
                let mut keys = txn.open_table(crate::system::API_KEYS)?;
                let info: Option<ApiKeyInfo> = keys.get(prefix)?.map(|bytes| from_json(bytes.value())).transpose()?;
                if let Some(mut info) = info {
                    info.last_used_at = Some(now);
                    keys.insert(prefix, to_json(&info)?.as_slice())?;
                }
            }
            txn.commit()?;
            Ok(())
        })();
        if let Err(error) = result {
            tracing::warn!(%error, "could not record when an API key was used");
        }
    }

    /// A tenant's keys, newest first; hashes included (they are not secret).
    pub fn api_keys(&self, tenant: &TenantId) -> Result<Vec<ApiKeyInfo>> {
        let txn = self.db.begin_read()?;
        let keys = txn.open_table(crate::system::API_KEYS)?;
        let mut out: Vec<ApiKeyInfo> = Vec::new();
        for entry in keys.iter()? {
            let info: ApiKeyInfo = from_json(entry?.1.value())?;
            if &info.tenant == tenant {
                out.push(info);
            }
        }
        out.sort_by(|a, b| b.created_at.cmp(&a.created_at));
        Ok(out)
    }

    /// Revokes a key of a tenant by its prefix.
    pub fn revoke_api_key(&self, tenant: &TenantId, prefix: &str) -> Result<ApiKeyInfo> {
        let txn = self.write()?;
        let info = {
            let mut keys = txn.open_table(crate::system::API_KEYS)?;
            let info: Option<ApiKeyInfo> = keys.get(prefix)?.map(|bytes| from_json(bytes.value())).transpose()?;
            let mut info = info.filter(|info| &info.tenant == tenant).ok_or_else(|| Error::not_found(format!("no API key '{prefix}'")))?;
            info.revoked_at.get_or_insert(now_ms());
            keys.insert(prefix, to_json(&info)?.as_slice())?;
            info
        };
        txn.commit()?;
        Ok(info)
    }
}

static LAST_TOUCH: Mutex<Option<HashMap<String, i64>>> = Mutex::new(None);

fn revoke_sessions_of(txn: &WriteTransaction, tenant: &TenantId, user: RecordId) -> Result<usize> {
    let mut sessions = txn.open_table(SESSIONS)?;
    let now = now_ms();
    let mut live = Vec::new();
    for entry in sessions.iter()? {
        let (key, bytes) = entry?;
        let session: Session = from_json(bytes.value())?;
        if session.user == user && &session.tenant == tenant && session.revoked_at.is_none() && session.expires_at > now {
            live.push((key.value().to_string(), session));
        }
    }
    for (key, mut session) in live.iter().cloned() {
        session.revoked_at = Some(now);
        sessions.insert(key.as_str(), to_json(&session)?.as_slice())?;
    }
    Ok(live.len())
}

/// Whether an error is the kind a failed sign-in produces (counted by
/// throttling).
pub fn is_credential_failure(error: &Error) -> bool {
    error.kind == ErrorKind::Unauthenticated
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totp_matches_the_rfc_6238_vectors() {
        // RFC 6238 appendix B, SHA-1 secret "12345678901234567890".
        let secret = data_encoding::BASE32_NOPAD.encode(b"12345678901234567890");
        for (unix, expected) in [(59i64, "287082"), (1111111109, "081804"), (1234567890, "005924"), (2000000000, "279037")] {
            assert_eq!(totp::code(&secret, totp::step_at(unix * 1000)).unwrap(), expected, "at {unix}");
        }
        assert_eq!(totp::matching_step(&secret, "287082", 59_000).unwrap(), Some(1));
        assert_eq!(totp::matching_step(&secret, "287083", 59_000).unwrap(), None);
        assert_eq!(totp::matching_step(&secret, "abc", 59_000).unwrap(), None);
    }

    #[test]
    fn passwords_hash_with_argon2id() {
        let hash = hash_password("correct horse battery").unwrap();
        assert!(hash.starts_with("$argon2id$"), "{hash}");
        assert!(verify_password("correct horse battery", &hash));
        assert!(!verify_password("correct horse batterY", &hash));
        assert!(!verify_password("anything", "not a hash"));
    }
}

/// Tenant lifecycle beyond creation: suspension and deletion.
impl SystemStore {
    /// Suspends or resumes a tenant: a suspended tenant's keys and sessions
    /// are refused and nobody can sign in until it is resumed.
    pub fn set_suspended(&self, tenant: &TenantId, suspended: bool) -> Result<crate::system::TenantInfo> {
        let txn = self.write()?;
        let info = {
            let mut tenants = txn.open_table(crate::system::TENANTS)?;
            let info: Option<crate::system::TenantInfo> = tenants.get(tenant.as_str())?.map(|bytes| from_json(bytes.value())).transpose()?;
            let mut info = info.ok_or_else(|| Error::not_found(format!("no tenant '{tenant}'")))?;
            info.suspended_at = if suspended { Some(info.suspended_at.unwrap_or_else(now_ms)) } else { None };
            tenants.insert(tenant.as_str(), to_json(&info)?.as_slice())?;
            info
        };
        txn.commit()?;
        Ok(info)
    }

    /// Removes everything the system database holds about a tenant: the
    /// tenant, its name, keys, users, sessions, roles, teams and plugin
    /// enablements. The caller removes the tenant's file.
    pub fn remove_tenant(&self, tenant: &TenantId) -> Result<crate::system::TenantInfo> {
        let prefix = format!("{tenant}/");
        let txn = self.write()?;
        let info = {
            let mut tenants = txn.open_table(crate::system::TENANTS)?;
            let info: Option<crate::system::TenantInfo> = tenants.remove(tenant.as_str())?.map(|bytes| from_json(bytes.value())).transpose()?;
            let info = info.ok_or_else(|| Error::not_found(format!("no tenant '{tenant}'")))?;
            txn.open_table(crate::system::TENANT_NAMES)?.remove(info.name.as_str())?;
            info
        };
        fn drop_where<V: redb::Value + 'static>(
            txn: &WriteTransaction,
            table: TableDefinition<&'static str, V>,
            keep: impl Fn(&str, &V::SelfType<'_>) -> bool,
        ) -> Result<()> {
            let mut table = txn.open_table(table)?;
            let mut doomed = Vec::new();
            for entry in table.iter()? {
                let (key, value) = entry?;
                if !keep(key.value(), &value.value()) {
                    doomed.push(key.value().to_string());
                }
            }
            for key in doomed {
                table.remove(key.as_str())?;
            }
            Ok(())
        }
        let owned_by = |bytes: &[u8]| serde_json::from_slice::<serde_json::Value>(bytes).ok().and_then(|v| v["tenant"].as_str().map(str::to_string));
        let mine = Some(tenant.as_str().to_string());
        drop_where(&txn, USER_EMAILS, |key, _| !key.starts_with(&prefix))?;
        drop_where(&txn, USERS, |_, bytes| owned_by(bytes) != mine)?;
        drop_where(&txn, SESSIONS, |_, bytes| owned_by(bytes) != mine)?;
        drop_where(&txn, ROLES, |key, _| !key.starts_with(&prefix))?;
        drop_where(&txn, TEAMS, |key, _| !key.starts_with(&prefix))?;
        drop_where(&txn, crate::system::API_KEYS, |_, bytes| owned_by(bytes) != mine)?;
        drop_where(&txn, crate::system::ENABLEMENTS, |key, _| !key.starts_with(&prefix))?;
        txn.commit()?;
        Ok(info)
    }
}
