//! Identity over the real server: invitations, password sign-in, sessions
//! and sign-out, TOTP two-factor with recovery codes, role-scoped API keys
//! with expiry, revocation and last use, sign-in throttling, and the audit
//! trail of admin actions.

use std::time::{SystemTime, UNIX_EPOCH};

use crm_core::identity::totp;
use serde_json::{Value, json};

use crate::support::{Reply, Server, crm, data_dir, single_code, stdout};

const PASSWORD: &str = "a long enough password";

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_millis() as i64
}

fn error_code(reply: &Reply) -> String {
    reply.json()["errors"][0]["extensions"]["code"].as_str().unwrap_or_else(|| panic!("no error code in {}", reply.text)).to_string()
}

/// Invites a user as the admin and accepts the invitation; returns the id.
pub async fn add_user(server: &Server, email: &str, role: &str, team: Option<&str>) -> String {
    let data = server
        .ok(
            "mutation($input: InviteUserInput!) { inviteUser(input: $input) { token user { id status } } }",
            json!({ "input": { "email": email, "name": email, "role": role, "teamId": team } }),
        )
        .await;
    assert_eq!(data["inviteUser"]["user"]["status"], "INVITED");
    let token = data["inviteUser"]["token"].as_str().expect("invitation token").to_string();
    let accepted = server.post_json("/auth/accept-invite", json!({ "tenant": "default", "token": token, "password": PASSWORD })).await;
    assert_eq!(accepted.status, 200, "accept-invite: {}", accepted.text);
    data["inviteUser"]["user"]["id"].as_str().expect("user id").to_string()
}

async fn login(server: &Server, email: &str, password: &str, extra: Value) -> Reply {
    let mut body = json!({ "tenant": "default", "email": email, "password": password });
    if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
        body.extend(extra.clone());
    }
    server.post_json("/auth/login", body).await
}

async fn session(server: &Server, email: &str, extra: Value) -> String {
    let reply = login(server, email, PASSWORD, extra).await;
    assert_eq!(reply.status, 200, "login of {email}: {}", reply.text);
    let token = reply.json()["token"].as_str().expect("session token").to_string();
    assert!(token.starts_with("crms_"), "{token}");
    token
}

async fn unauthenticated(server: &Server, token: &str) -> bool {
    let reply = server.post_gql(Some(token), "{ me { role } }", json!({})).await;
    reply.status == 401 && reply.text.contains("UNAUTHENTICATED")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_sign_in_with_password_sessions_and_two_factor() {
    let dir = data_dir();
    let server = Server::start_in(dir.path(), &["--no-bundled-plugins"]).await;
    let team = server.ok("mutation { createTeam(name: \"East\") { id name } }", json!({})).await["createTeam"]["id"]
        .as_str()
        .expect("team id")
        .to_string();

    // An invitation: a weak password is refused, the token works once.
    let invited = server
        .ok(
            "mutation($t: ID) { inviteUser(input: {email: \"Ada@Example.com\", name: \"Ada\", role: \"sales\", teamId: $t}) { token user { id email } } }",
            json!({ "t": team }),
        )
        .await;
    assert_eq!(invited["inviteUser"]["user"]["email"], "ada@example.com");
    let token = invited["inviteUser"]["token"].as_str().expect("token").to_string();
    let user_id = invited["inviteUser"]["user"]["id"].as_str().expect("id").to_string();
    let weak = server.post_json("/auth/accept-invite", json!({"tenant": "default", "token": token, "password": "short"})).await;
    assert_eq!((weak.status, error_code(&weak).as_str()), (400, "VALIDATION"), "{}", weak.text);
    let invited_login = login(&server, "ada@example.com", "short", json!({})).await;
    assert_eq!(invited_login.status, 401, "an invited user cannot sign in yet");
    let accepted = server.post_json("/auth/accept-invite", json!({"tenant": "default", "token": token, "password": PASSWORD})).await;
    assert_eq!(accepted.status, 200, "{}", accepted.text);
    let again = server.post_json("/auth/accept-invite", json!({"tenant": "default", "token": token, "password": PASSWORD})).await;
    assert_eq!(again.status, 401, "an invitation is used once: {}", again.text);

    // Wrong password and unknown email read the same.
    let wrong = login(&server, "ada@example.com", "not the password", json!({})).await;
    let unknown = login(&server, "nobody@example.com", PASSWORD, json!({})).await;
    assert_eq!((wrong.status, error_code(&wrong)), (401, "UNAUTHENTICATED".to_string()));
    assert_eq!(wrong.json()["errors"][0]["message"], unknown.json()["errors"][0]["message"]);
    let malformed = server.post_json("/auth/login", json!({"tenant": "default", "email": 5})).await;
    assert_eq!((malformed.status, error_code(&malformed).as_str()), (400, "VALIDATION"));

    // A session acts as the user.
    let first = session(&server, "ADA@example.com", json!({})).await;
    let me = server.ok_as(&first, "{ me { role apiKey user { id email teamId twoFactor } } }", json!({})).await;
    assert_eq!(me["me"]["role"], "sales");
    assert_eq!(me["me"]["user"]["id"], user_id.as_str());
    assert_eq!(me["me"]["user"]["teamId"], team.as_str());
    assert!(me["me"]["apiKey"].is_null());
    // What a user creates is theirs and their team's.
    let created = server.ok_as(&first, "mutation { createContact(input: {firstName: \"Mine\"}) { id ownerId teamId } }", json!({})).await;
    assert_eq!(created["createContact"]["ownerId"], user_id.as_str());
    assert_eq!(created["createContact"]["teamId"], team.as_str());
    let history = server
        .ok("query($id: ID!) { recordHistory(object: CONTACT, id: $id) { actor } }", json!({ "id": created["createContact"]["id"] }))
        .await;
    assert_eq!(history["recordHistory"][0]["actor"], format!("user:{user_id}"));

    // Two-factor enrolment: confirmed with a code, then required.
    let enrolment = server.ok_as(&first, "mutation { enrollTwoFactor { secret uri } }", json!({})).await;
    let secret = enrolment["enrollTwoFactor"]["secret"].as_str().expect("secret").to_string();
    assert!(enrolment["enrollTwoFactor"]["uri"].as_str().expect("uri").starts_with("otpauth://totp/"));
    let bad_confirm = server
        .code_as(&first, "mutation($c: String!) { confirmTwoFactor(code: $c) }", json!({ "c": "000000" }))
        .await;
    assert_eq!(bad_confirm, "VALIDATION");
    let step = totp::step_at(now_ms());
    let code = totp::code(&secret, step).expect("code");
    let recovery = server.ok_as(&first, "mutation($c: String!) { confirmTwoFactor(code: $c) }", json!({ "c": code })).await;
    let recovery: Vec<String> =
        recovery["confirmTwoFactor"].as_array().expect("codes").iter().map(|c| c.as_str().expect("code").to_string()).collect();
    assert_eq!(recovery.len(), 10);

    let missing = login(&server, "ada@example.com", PASSWORD, json!({})).await;
    assert_eq!(missing.status, 401);
    assert!(missing.text.contains("two-factor code required"), "{}", missing.text);
    let replayed = login(&server, "ada@example.com", PASSWORD, json!({ "totp": code })).await;
    assert_eq!(replayed.status, 401, "a code is accepted once: {}", replayed.text);
    let next = totp::code(&secret, step + 1).expect("code");
    let with_code = session(&server, "ada@example.com", json!({ "totp": next })).await;
    let with_recovery = session(&server, "ada@example.com", json!({ "recoveryCode": recovery[0] })).await;
    let reused = login(&server, "ada@example.com", PASSWORD, json!({ "recoveryCode": recovery[0] })).await;
    assert_eq!(reused.status, 401, "a recovery code is used once: {}", reused.text);

    // Sign-out ends that session only.
    assert_eq!(server.ok_as(&with_code, "mutation { logout }", json!({})).await["logout"], true);
    assert!(unauthenticated(&server, &with_code).await, "a logged-out session is refused");
    assert!(!unauthenticated(&server, &with_recovery).await);

    // A sales user cannot administer, not even their own account.
    for mutation in [
        format!("mutation {{ updateUser(id: \"{user_id}\", input: {{role: \"admin\"}}) {{ id }} }}"),
        "mutation { defineRole(input: {name: \"mine\", admin: true}) { name } }".to_string(),
        "mutation { createApiKey(input: {name: \"k\", role: \"admin\"}) { key } }".to_string(),
        format!("mutation {{ resetUserTwoFactor(id: \"{user_id}\") {{ id }} }}"),
    ] {
        assert_eq!(server.code_as(&with_recovery, &mutation, json!({})).await, "FORBIDDEN", "{mutation}");
    }
    assert_eq!(server.code_as(&with_recovery, "{ users { id } }", json!({})).await, "FORBIDDEN");

    // Admin: reset two-factor (sessions end), then disable.
    server.ok("mutation($id: ID!) { resetUserTwoFactor(id: $id) { twoFactor } }", json!({ "id": user_id })).await;
    assert!(unauthenticated(&server, &with_recovery).await, "resetting two-factor ends sessions");
    let plain = session(&server, "ada@example.com", json!({})).await;
    let disabled = server.ok("mutation($id: ID!) { disableUser(id: $id) { status } }", json!({ "id": user_id })).await;
    assert_eq!(disabled["disableUser"]["status"], "DISABLED");
    assert!(unauthenticated(&server, &plain).await, "a disabled user's session is refused");
    assert_eq!(login(&server, "ada@example.com", PASSWORD, json!({})).await.status, 401);

    // Every admin action is in the audit log, and the chain verifies.
    let log = server
        .ok("query($id: ID!) { auditLog(filter: {object: \"user\", recordId: $id}) { entries { operation actor changes { field after } } } }", json!({ "id": user_id }))
        .await;
    let entries = log["auditLog"]["entries"].as_array().expect("entries");
    let fields: Vec<String> = entries
        .iter()
        .flat_map(|entry| entry["changes"].as_array().into_iter().flatten().map(|change| change["field"].as_str().unwrap_or("").to_string()))
        .collect();
    assert_eq!(entries[0]["operation"], "CREATED");
    assert!(entries[0]["actor"].as_str().expect("actor").starts_with("api-key:"));
    assert!(fields.iter().any(|field| field == "status"), "disable is audited: {fields:?}");
    assert!(fields.iter().any(|field| field == "twoFactor"), "two-factor changes are audited: {fields:?}");
    let team_log = server.ok("{ auditLog(filter: {object: \"team\"}) { entries { operation } } }", json!({})).await;
    assert_eq!(team_log["auditLog"]["entries"].as_array().map(Vec::len), Some(1));
    server.kill9().await;
    let verify = crm(dir.path(), &["audit", "verify", "--tenant", "default"]).await;
    assert!(verify.status.success(), "the chain with admin entries verifies: {}", stdout(&verify));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_keys_are_scoped_to_a_role_expire_and_revoke() {
    let server = Server::start(&["--no-bundled-plugins"]).await;
    let reader = server.ok("mutation { createApiKey(input: {name: \"dashboards\", role: \"read-only\"}) { key apiKey { prefix role lastUsedAt } } }", json!({})).await;
    let key = reader["createApiKey"]["key"].as_str().expect("key").to_string();
    let prefix = reader["createApiKey"]["apiKey"]["prefix"].as_str().expect("prefix").to_string();
    assert!(reader["createApiKey"]["apiKey"]["lastUsedAt"].is_null());
    server.ok("mutation { createContact(input: {firstName: \"Seen\"}) { id } }", json!({})).await;

    // The key reads and cannot write.
    assert_eq!(server.ok_as(&key, "{ contacts { totalCount } }", json!({})).await["contacts"]["totalCount"], 1);
    assert_eq!(server.code_as(&key, "mutation { createContact(input: {firstName: \"No\"}) { id } }", json!({})).await, "FORBIDDEN");
    let keys = server.ok("{ apiKeys { prefix lastUsedAt revokedAt } }", json!({})).await;
    let listed = keys["apiKeys"].as_array().expect("keys").iter().find(|k| k["prefix"] == prefix.as_str()).cloned().expect("listed");
    assert!(listed["lastUsedAt"].is_string(), "last use is recorded: {listed}");

    // Revoked: refused at once.
    server.ok("mutation($p: String!) { revokeApiKey(prefix: $p) { revokedAt } }", json!({ "p": prefix })).await;
    assert!(unauthenticated(&server, &key).await);

    // Expiry: in the past is refused; a near expiry stops working.
    let past = server.code("mutation { createApiKey(input: {name: \"old\", role: \"sales\", expiresAt: \"2001-01-01T00:00:00Z\"}) { key } }", json!({})).await;
    assert_eq!(past, "VALIDATION");
    let soon = crm_core::normalize::format_datetime(now_ms() + 1500);
    let short = server
        .ok("mutation($at: DateTime) { createApiKey(input: {name: \"short\", role: \"sales\", expiresAt: $at}) { key } }", json!({ "at": soon }))
        .await;
    let short = short["createApiKey"]["key"].as_str().expect("key").to_string();
    assert!(!unauthenticated(&server, &short).await);
    tokio::time::sleep(std::time::Duration::from_millis(2000)).await;
    assert!(unauthenticated(&server, &short).await, "an expired key is refused");

    // Unknown roles and users are refused when the key is made.
    assert_eq!(server.code("mutation { createApiKey(input: {name: \"x\", role: \"emperor\"}) { key } }", json!({})).await, "VALIDATION");

    // A key acting for a user owns what it creates.
    let user = add_user(&server, "bo@example.com", "sales", None).await;
    let bound = server
        .ok("mutation($u: ID) { createApiKey(input: {name: \"bo's\", role: \"sales\", userId: $u}) { key } }", json!({ "u": user }))
        .await;
    let bound = bound["createApiKey"]["key"].as_str().expect("key").to_string();
    let created = server.ok_as(&bound, "mutation { createContact(input: {firstName: \"Bo's\"}) { ownerId } }", json!({})).await;
    assert_eq!(created["createContact"]["ownerId"], user.as_str());
    let me = server.ok_as(&bound, "{ me { apiKey user { email } } }", json!({})).await;
    assert_eq!(me["me"]["user"]["email"], "bo@example.com");

    let log = server.ok("{ auditLog(filter: {object: \"api_key\"}) { entries { operation } } }", json!({})).await;
    let ops: Vec<&str> = log["auditLog"]["entries"].as_array().expect("entries").iter().filter_map(|e| e["operation"].as_str()).collect();
    assert_eq!(ops.iter().filter(|op| **op == "CREATED").count(), 3, "{ops:?}");
    assert_eq!(ops.iter().filter(|op| **op == "DELETED").count(), 1, "{ops:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_sign_ins_are_throttled_per_account_and_per_address() {
    let server = Server::start(&["--no-bundled-plugins"]).await;
    add_user(&server, "cy@example.com", "sales", None).await;
    for attempt in 0..5 {
        let reply = login(&server, "cy@example.com", "wrong password!", json!({})).await;
        assert_eq!(reply.status, 401, "attempt {attempt}: {}", reply.text);
    }
    // Locked: even the right password waits, with a retry hint.
    let locked = login(&server, "cy@example.com", PASSWORD, json!({})).await;
    assert_eq!(locked.status, 429, "{}", locked.text);
    assert_eq!(error_code(&locked), "RATE_LIMITED");
    let wait: u64 = locked.retry_after.as_deref().expect("retry-after").parse().expect("seconds");
    assert!(wait > 0 && wait <= 15 * 60, "{wait}");

    // Per address: failures across many accounts lock the address.
    for n in 0..15 {
        let reply = login(&server, &format!("guess{n}@example.com"), "wrong password!", json!({})).await;
        assert_eq!(reply.status, 401, "guess {n}: {}", reply.text);
    }
    let address_locked = login(&server, "someone-else@example.com", "whatever password", json!({})).await;
    assert_eq!(address_locked.status, 429, "{}", address_locked.text);
    assert_eq!(single_code(&address_locked.json()), "RATE_LIMITED");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consent_changes_record_their_time_and_source() {
    let server = Server::start(&["--no-bundled-plugins"]).await;
    let created = server
        .ok("mutation { createContact(input: {firstName: \"Opt\", emailOptIn: true}) { id emailOptIn emailOptInAt emailOptInSource smsOptInAt } }", json!({}))
        .await;
    let contact = &created["createContact"];
    assert_eq!(contact["emailOptIn"], true);
    assert!(contact["emailOptInAt"].is_string(), "{contact}");
    assert!(contact["emailOptInSource"].as_str().expect("source").starts_with("api-key:"), "{contact}");
    assert!(contact["smsOptInAt"].is_null(), "no SMS consent was given: {contact}");
    let id = contact["id"].as_str().expect("id").to_string();

    let unchanged = server
        .ok("mutation($id: ID!) { updateContact(id: $id, input: {lastName: \"Out\"}) { emailOptInAt } }", json!({ "id": id }))
        .await;
    assert_eq!(unchanged["updateContact"]["emailOptInAt"], contact["emailOptInAt"], "other changes leave consent alone");
    let withdrawn = server
        .ok(
            "mutation($id: ID!) { updateContact(id: $id, input: {emailOptIn: false, emailOptInSource: \"unsubscribe link\", emailOptInAt: \"2026-01-02T03:04:05Z\"}) { emailOptIn emailOptInAt emailOptInSource } }",
            json!({ "id": id }),
        )
        .await;
    assert_eq!(withdrawn["updateContact"]["emailOptIn"], false);
    assert_eq!(withdrawn["updateContact"]["emailOptInSource"], "unsubscribe link");
    assert_eq!(withdrawn["updateContact"]["emailOptInAt"], "2026-01-02T03:04:05.000Z");
}
