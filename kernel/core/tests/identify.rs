//! Resolving bearer tokens: a token that was resolved before is answered
//! from memory, and every change to what it stands for (revocation, a role's
//! grants, a disabled user, a suspended tenant) or its expiry applies to the
//! very next request. Each test first uses the token a few times, so that
//! the change meets a token the kernel already knows.

use crm_core::access::Role;
use crm_core::identity::{NewUser, SecondFactor};
use crm_core::{ErrorKind, Kernel, StoreOptions, TenantId};

fn kernel() -> (tempfile::TempDir, Kernel, TenantId) {
    let dir = tempfile::tempdir().expect("temp dir");
    let kernel = Kernel::open(dir.path(), StoreOptions::default()).expect("open");
    let (tenant, _) = kernel.create_tenant("acme").expect("tenant");
    (dir, kernel, tenant.id)
}

/// Resolves `token` several times: the first use reads the system
/// database, the next ones are answered from what the kernel keeps.
fn use_a_few_times(kernel: &Kernel, token: &str) {
    for _ in 0..3 {
        kernel.identify(token).expect("the token is accepted");
    }
}

fn refused(kernel: &Kernel, token: &str) -> ErrorKind {
    match kernel.identify(token) {
        Ok(_) => panic!("the token is still accepted"),
        Err(error) => error.kind,
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_millis() as i64
}

#[test]
fn a_revoked_key_is_refused_at_once() {
    let (_dir, kernel, tenant) = kernel();
    let (info, key) = kernel.system().create_api_key(&tenant, "sync", "sales").expect("key");
    use_a_few_times(&kernel, &key);
    kernel.system().revoke_api_key(&tenant, &info.prefix).expect("revoke");
    assert_eq!(refused(&kernel, &key), ErrorKind::Unauthenticated);
}

#[test]
fn a_changed_role_applies_to_the_next_request() {
    let (_dir, kernel, tenant) = kernel();
    let mut role = Role::find_builtin("read-only").expect("built-in role");
    role.name = "auditor".into();
    role.builtin = false;
    kernel.system().put_role(&tenant, &role).expect("role");
    let (_, key) = kernel.system().create_api_key(&tenant, "audit", "auditor").expect("key");
    use_a_few_times(&kernel, &key);
    assert!(!kernel.identify(&key).expect("accepted").1.role.admin);
    role.admin = true;
    kernel.system().put_role(&tenant, &role).expect("role changed");
    assert!(kernel.identify(&key).expect("accepted").1.role.admin, "the role's new grants apply");
}

fn eve() -> NewUser {
    NewUser {
        email: "eve@example.com".into(),
        name: "Eve".into(),
        role: "sales".into(),
        team: None,
        password: Some("a long enough password".into()),
    }
}

#[test]
fn a_disabled_users_key_is_refused_at_once() {
    let (_dir, kernel, tenant) = kernel();
    let (user, _) = kernel.system().create_user(&tenant, eve()).expect("user");
    let (_, key) = kernel.system().create_api_key_with(&tenant, "eve's key", "sales", None, Some(user.id)).expect("key");
    use_a_few_times(&kernel, &key);
    kernel.system().disable_user(&tenant, user.id).expect("disable");
    assert_eq!(refused(&kernel, &key), ErrorKind::Unauthenticated);
}

#[test]
fn a_suspended_tenants_keys_are_refused_until_it_resumes() {
    let (_dir, kernel, tenant) = kernel();
    let (_, key) = kernel.system().create_api_key(&tenant, "sync", "sales").expect("key");
    use_a_few_times(&kernel, &key);
    kernel.suspend_tenant(&tenant, true).expect("suspend");
    assert_eq!(refused(&kernel, &key), ErrorKind::Forbidden);
    kernel.suspend_tenant(&tenant, false).expect("resume");
    kernel.identify(&key).expect("accepted again");
}

#[test]
fn a_key_stops_working_at_its_expiry_without_any_write() {
    let (_dir, kernel, tenant) = kernel();
    let expires_at = now_ms() + 1500;
    let (_, key) = kernel.system().create_api_key_with(&tenant, "short", "sales", Some(expires_at), None).expect("key");
    use_a_few_times(&kernel, &key);
    // Waiting for the clock is the point here, not synchronisation.
    let left = expires_at - now_ms();
    if left >= 0 {
        std::thread::sleep(std::time::Duration::from_millis(left as u64 + 20));
    }
    assert_eq!(refused(&kernel, &key), ErrorKind::Unauthenticated);
}

#[test]
fn a_wrong_secret_with_a_known_prefix_is_refused() {
    let (_dir, kernel, tenant) = kernel();
    let (_, key) = kernel.system().create_api_key(&tenant, "sync", "sales").expect("key");
    use_a_few_times(&kernel, &key);
    let mut forged = key.clone();
    let last = forged.pop().expect("a key is not empty");
    forged.push(if last == 'a' { 'b' } else { 'a' });
    assert_eq!(refused(&kernel, &forged), ErrorKind::Unauthenticated);
}

#[test]
fn a_session_is_refused_at_once_after_sign_out_and_its_users_other_sessions_when_disabled() {
    let (_dir, kernel, tenant) = kernel();
    let (user, _) = kernel.system().create_user(&tenant, eve()).expect("user");
    let sign_in = || kernel.system().login(&tenant, "eve@example.com", "a long enough password", &SecondFactor::default()).expect("sign in");
    let (first, second) = (sign_in(), sign_in());
    use_a_few_times(&kernel, &first.token);
    use_a_few_times(&kernel, &second.token);
    let crm_core::identity::Credential::Session { hash, .. } = kernel.identify(&first.token).expect("accepted").0.credential else {
        panic!("a session token stands for a session");
    };
    kernel.system().revoke_session(&hash).expect("sign out");
    assert_eq!(refused(&kernel, &first.token), ErrorKind::Unauthenticated);
    kernel.identify(&second.token).expect("the other session goes on");
    kernel.system().disable_user(&tenant, user.id).expect("disable");
    assert_eq!(refused(&kernel, &second.token), ErrorKind::Unauthenticated);
}
