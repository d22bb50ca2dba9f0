//! Tenant administration: operators (admins of the `default` tenant) create,
//! list, suspend, resume and delete tenants over GraphQL; the same and user
//! and key management from the command line; every change audited.

use serde_json::json;

use crate::support::{Server, crm, data_dir, stderr, stdout};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operators_manage_tenants_and_every_change_is_audited() {
    let dir = data_dir();
    let server = Server::start_in(dir.path(), &["--no-bundled-plugins"]).await;
    let created = server.ok("mutation { createTenant(name: \"gamma\") { adminKey tenant { id name suspendedAt } } }", json!({})).await;
    let gamma_key = created["createTenant"]["adminKey"].as_str().expect("key").to_string();
    let gamma = created["createTenant"]["tenant"]["id"].as_str().expect("id").to_string();
    assert!(dir.path().join("tenants").join(format!("{gamma}.redb")).exists(), "the tenant has its own file");
    assert_eq!(server.ok_as(&gamma_key, "{ me { role } }", json!({})).await["me"]["role"], "admin");
    server.ok_as(&gamma_key, "mutation { createContact(input: {firstName: \"G\"}) { id } }", json!({})).await;

    // A tenant's own admin is not an operator.
    assert_eq!(server.code_as(&gamma_key, "{ tenants { id } }", json!({})).await, "FORBIDDEN");
    assert_eq!(server.code_as(&gamma_key, "mutation { createTenant(name: \"delta\") { adminKey } }", json!({})).await, "FORBIDDEN");
    let suspend_self = server.code_as(&gamma_key, "mutation($id: ID!) { suspendTenant(id: $id) { id } }", json!({ "id": gamma })).await;
    assert_eq!(suspend_self, "FORBIDDEN");

    // Suspension refuses the tenant's credentials until it is resumed.
    let suspended = server.ok("mutation($id: ID!) { suspendTenant(id: $id) { suspendedAt } }", json!({ "id": gamma })).await;
    assert!(suspended["suspendTenant"]["suspendedAt"].is_string());
    let refused = server.post_gql(Some(&gamma_key), "{ me { role } }", json!({})).await;
    assert_eq!(refused.status, 403, "{}", refused.text);
    assert!(refused.text.contains("FORBIDDEN") && refused.text.contains("suspended"), "{}", refused.text);
    let listed = server.ok("{ tenants { name suspendedAt } }", json!({})).await;
    let gamma_row = listed["tenants"].as_array().expect("tenants").iter().find(|t| t["name"] == "gamma").cloned().expect("gamma listed");
    assert!(gamma_row["suspendedAt"].is_string());
    server.ok("mutation($id: ID!) { resumeTenant(id: $id) { suspendedAt } }", json!({ "id": gamma })).await;
    assert_eq!(server.ok_as(&gamma_key, "{ contacts { totalCount } }", json!({})).await["contacts"]["totalCount"], 1);

    // Deletion needs the name repeated, then removes credentials and file.
    let wrong = server.code("mutation($id: ID!) { deleteTenant(id: $id, confirm: \"gama\") { id } }", json!({ "id": gamma })).await;
    assert_eq!(wrong, "VALIDATION");
    assert_eq!(server.ok_as(&gamma_key, "{ contacts { totalCount } }", json!({})).await["contacts"]["totalCount"], 1, "nothing changed");
    server.ok("mutation($id: ID!) { deleteTenant(id: $id, confirm: \"gamma\") { name } }", json!({ "id": gamma })).await;
    let gone = server.post_gql(Some(&gamma_key), "{ me { role } }", json!({})).await;
    assert_eq!(gone.status, 401, "{}", gone.text);
    assert!(!dir.path().join("tenants").join(format!("{gamma}.redb")).exists(), "the tenant's file is removed");

    let log = server.ok("{ auditLog(filter: {object: \"tenant\"}) { entries { operation object } } }", json!({})).await;
    assert!(log["auditLog"]["entries"].as_array().expect("entries").iter().all(|entry| entry["object"] == "tenant"), "{log}");
    let ops: Vec<&str> = log["auditLog"]["entries"].as_array().expect("entries").iter().filter_map(|e| e["operation"].as_str()).collect();
    assert_eq!(ops, vec!["CREATED", "UPDATED", "UPDATED", "DELETED"]);

    // The command line, while no server runs.
    server.kill9().await;
    let created = crm(dir.path(), &["tenant", "create", "beta"]).await;
    assert!(created.status.success(), "{}", stderr(&created));
    let user = crm(dir.path(), &["user", "add", "--tenant", "beta", "eve@example.com", "--name", "Eve", "--role", "support"]).await;
    assert!(user.status.success(), "{}", stderr(&user));
    assert!(stdout(&user).contains("invitation token (shown once): crmi_"), "{}", stdout(&user));
    let bad_role = crm(dir.path(), &["user", "add", "--tenant", "beta", "x@example.com", "--name", "X", "--role", "emperor"]).await;
    assert!(!bad_role.status.success());
    assert!(stderr(&bad_role).contains("VALIDATION"), "{}", stderr(&bad_role));
    let key = crm(dir.path(), &["key", "create", "--tenant", "beta", "--name", "ci", "--role", "read-only", "--user", "eve@example.com"]).await;
    assert!(key.status.success(), "{}", stderr(&key));
    let keys = crm(dir.path(), &["key", "list", "--tenant", "beta"]).await;
    assert!(stdout(&keys).contains("read-only") && stdout(&keys).contains("never"), "{}", stdout(&keys));
    let users = crm(dir.path(), &["user", "list", "--tenant", "beta"]).await;
    assert!(stdout(&users).contains("eve@example.com") && stdout(&users).contains("invited"), "{}", stdout(&users));
    let roles = crm(dir.path(), &["role", "list", "--tenant", "beta"]).await;
    for role in ["admin", "manager", "sales", "support", "read-only"] {
        assert!(stdout(&roles).contains(role), "{}", stdout(&roles));
    }
    let role_file = dir.path().join("auditor.json");
    std::fs::write(&role_file, r#"{"name": "auditor", "description": "Reads contacts", "objects": {"contact": {"read": "all"}}, "fields": {"contact.email": "hidden"}}"#)
        .expect("write role");
    let defined = crm(dir.path(), &["role", "define", "--tenant", "beta", role_file.to_str().expect("path")]).await;
    assert!(defined.status.success(), "{}", stderr(&defined));
    let roles = crm(dir.path(), &["role", "list", "--tenant", "beta"]).await;
    assert!(stdout(&roles).lines().any(|line| line.starts_with("auditor") && line.contains("custom")), "{}", stdout(&roles));
    std::fs::write(&role_file, r#"{"name": "auditor", "fields": {"contact.nope": "hidden"}}"#).expect("write role");
    let unknown_field = crm(dir.path(), &["role", "define", "--tenant", "beta", role_file.to_str().expect("path")]).await;
    assert!(!unknown_field.status.success() && stderr(&unknown_field).contains("VALIDATION"), "{}", stderr(&unknown_field));
    let removed = crm(dir.path(), &["role", "delete", "--tenant", "beta", "auditor"]).await;
    assert!(removed.status.success(), "{}", stderr(&removed));
    let disabled = crm(dir.path(), &["user", "disable", "--tenant", "beta", "eve@example.com"]).await;
    assert!(disabled.status.success(), "{}", stderr(&disabled));
    let suspend = crm(dir.path(), &["tenant", "suspend", "beta"]).await;
    assert!(suspend.status.success(), "{}", stderr(&suspend));
    let tenants = crm(dir.path(), &["tenant", "list"]).await;
    assert!(tenants.status.success());
    let beta_line = stdout(&tenants).lines().find(|line| line.contains(" beta ")).map(str::to_string).expect("beta listed");
    assert!(beta_line.ends_with("suspended"), "{beta_line}");
    let verify = crm(dir.path(), &["audit", "verify", "--tenant", "beta"]).await;
    assert!(verify.status.success(), "the CLI's admin entries keep the chain intact: {}", stderr(&verify));
    let not_confirmed = crm(dir.path(), &["tenant", "delete", "beta", "--confirm", "bet"]).await;
    assert!(!not_confirmed.status.success());
    let deleted = crm(dir.path(), &["tenant", "delete", "beta", "--confirm", "beta"]).await;
    assert!(deleted.status.success(), "{}", stderr(&deleted));
    let after = crm(dir.path(), &["tenant", "list"]).await;
    assert!(!stdout(&after).contains(" beta "), "{}", stdout(&after));
    let default_verify = crm(dir.path(), &["audit", "verify", "--tenant", "default"]).await;
    assert!(default_verify.status.success(), "{}", stderr(&default_verify));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operators_tenant_cannot_be_suspended_or_deleted() {
    let server = Server::start(&["--no-bundled-plugins"]).await;
    let id = server.only_tenant_id();
    assert_eq!(server.code("mutation($id: ID!) { suspendTenant(id: $id) { id } }", json!({ "id": id })).await, "VALIDATION");
    assert_eq!(server.code("mutation($id: ID!) { deleteTenant(id: $id, confirm: \"default\") { id } }", json!({ "id": id })).await, "VALIDATION");
    assert_eq!(server.code("mutation { createTenant(name: \"Bad Name\") { adminKey } }", json!({})).await, "VALIDATION");
    assert_eq!(server.ok("{ me { role } }", json!({})).await["me"]["role"], "admin");
}
