//! A session served from memory ends when the kernel's clock passes its
//! end, on a development clock moved forward as much as on the wall clock
//! (its own process: the clock's offset is global).

use crm_core::identity::{NewUser, SESSION_TTL_MS, SecondFactor};
use crm_core::{ErrorKind, Kernel, StoreOptions};

#[test]
fn a_known_session_ends_when_the_development_clock_passes_its_end() {
    let dir = tempfile::tempdir().expect("temp dir");
    let kernel = Kernel::open(dir.path(), StoreOptions::default()).expect("open");
    let (tenant, _) = kernel.create_tenant("acme").expect("tenant");
    let new = NewUser {
        email: "eve@example.com".into(),
        name: "Eve".into(),
        role: "sales".into(),
        team: None,
        password: Some("a long enough password".into()),
    };
    kernel.system().create_user(&tenant.id, new).expect("user");
    let session =
        kernel.system().login(&tenant.id, "eve@example.com", "a long enough password", &SecondFactor::default()).expect("sign in");
    for _ in 0..3 {
        kernel.identify(&session.token).expect("the session is accepted");
    }
    crm_core::clock::make_adjustable();
    crm_core::clock::advance(SESSION_TTL_MS + 60_000).expect("clock moved");
    match kernel.identify(&session.token) {
        Ok(_) => panic!("a session past its end is still accepted"),
        Err(error) => assert_eq!(error.kind, ErrorKind::Unauthenticated),
    }
}
