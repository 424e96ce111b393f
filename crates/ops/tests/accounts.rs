//! Console and API accounts on a real (in-memory SQLite) store: bootstrap, logins and
//! their throttling, sessions, TOTP, API tokens, and the audit log they leave (without a
//! secret in it).

use portcullis_gateway::config::Config;
use portcullis_ops::accounts::{Login, TokenSpec};
use portcullis_ops::{Actor, Ops, OpsError, Role, Via, credentials};
use portcullis_store::{AuditQuery, Store, TokenRow};
use std::net::IpAddr;
use std::path::PathBuf;

async fn ops_with(config: Config) -> Ops {
    let store = Store::open("sqlite::memory:").await.expect("store");
    Ops::new(store, config)
}

async fn ops() -> Ops {
    ops_with(Config {
        data_dir: temp_dir("data"),
        ..Config::default()
    })
    .await
}

fn temp_dir(what: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "portcullis-accounts-{what}-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

fn remote(n: u8) -> Option<IpAddr> {
    Some(IpAddr::from([192, 0, 2, n]))
}

fn session(login: Login) -> portcullis_ops::accounts::NewSession {
    match login {
        Login::Session(s) => s,
        Login::NeedTotp(_) => panic!("a session was expected, not a TOTP request"),
    }
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs() as i64
}

const PASSWORD: &str = "a long enough passphrase";

#[tokio::test]
async fn bootstrap_login_session_logout() {
    let ops = ops().await;
    let password = ops.bootstrap_admin().await.unwrap().expect("first start");
    assert_eq!(password.len(), 20);
    assert!(ops.bootstrap_admin().await.unwrap().is_none());

    let s = session(
        ops.login("Admin", &password, None, remote(1))
            .await
            .unwrap(),
    );
    assert!(s.expires > now() + 1700 && s.expires <= now() + 1800);
    assert_ne!(s.secret, s.csrf);
    let found = ops
        .session(&s.secret)
        .await
        .unwrap()
        .expect("valid session");
    assert_eq!(found.actor.name, "admin");
    assert_eq!(found.actor.role, Role::Admin);
    assert_eq!(found.actor.via, Via::Console);
    assert_eq!(found.actor.remote, remote(1));
    assert_eq!(found.csrf, s.csrf);
    assert!(ops.session("not a secret").await.unwrap().is_none());

    let listed = ops.account_list().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert!(listed[0].last_login.is_some());

    let me = ops.acting_as(found.actor);
    me.logout(&s.secret).await.unwrap();
    assert!(ops.session(&s.secret).await.unwrap().is_none());

    let s2 = session(ops.login("admin", &password, None, None).await.unwrap());
    assert_eq!(me.logout_everywhere().await.unwrap(), 1);
    assert!(ops.session(&s2.secret).await.unwrap().is_none());
}

#[tokio::test]
async fn wrong_name_and_wrong_password_look_alike_and_lock() {
    let ops = ops().await;
    ops.account_add("alice", Role::Admin, &[], PASSWORD)
        .await
        .unwrap();
    let unknown = ops
        .login("nobody", PASSWORD, None, remote(1))
        .await
        .unwrap_err();
    let wrong = ops
        .login("alice", "not the password at all", None, remote(1))
        .await
        .unwrap_err();
    assert_eq!(unknown.to_string(), wrong.to_string());
    assert_eq!((unknown.status(), wrong.status()), (401, 401));
    assert_eq!(wrong.to_string(), "wrong name or password");

    for _ in 0..4 {
        ops.login("alice", "not the password at all", None, remote(2))
            .await
            .unwrap_err();
    }
    // Five failures in a row: locked, the right password too; answered as a wrong
    // password is, so a lock does not tell that the name exists.
    let e = ops
        .login("alice", PASSWORD, None, remote(3))
        .await
        .unwrap_err();
    assert_eq!(
        (e.status(), e.to_string()),
        (unknown.status(), unknown.to_string())
    );
    let account = &ops.account_list().await.unwrap()[0];
    assert!(account.locked_until.unwrap() > now() + 800);
}

#[tokio::test]
async fn one_address_failing_often_is_throttled() {
    let ops = ops().await;
    ops.account_add("alice", Role::Admin, &[], PASSWORD)
        .await
        .unwrap();
    for i in 0..20 {
        let e = ops
            .login(&format!("guess{i}"), "password guess", None, remote(9))
            .await
            .unwrap_err();
        assert_eq!(e.status(), 401, "{e}");
    }
    let e = ops
        .login("alice", PASSWORD, None, remote(9))
        .await
        .unwrap_err();
    assert!(matches!(e, OpsError::Throttled { .. }), "{e}");
    // Another address is not held back.
    session(
        ops.login("alice", PASSWORD, None, remote(10))
            .await
            .unwrap(),
    );
}

#[tokio::test]
async fn passwords_are_long_and_not_breached() {
    let breach = temp_dir("hibp");
    // SHA-1 of "password1234" is E6B6AFBD6D76BB5D2041542D7D2E3FAC5BB05593.
    std::fs::write(
        breach.join("E6B6A"),
        "FBD6D76BB5D2041542D7D2E3FAC5BB05593:4242\n",
    )
    .unwrap();
    let mut config = Config {
        data_dir: temp_dir("data"),
        ..Config::default()
    };
    config.accounts.breached_passwords_dir = Some(breach.clone());
    let ops = ops_with(config).await;
    let e = ops
        .account_add("alice", Role::Admin, &[], "password1234")
        .await
        .unwrap_err();
    assert!(matches!(e, OpsError::Invalid { .. }), "{e}");
    assert!(e.to_string().contains("breach list"), "{e}");
    let e = ops
        .account_add("alice", Role::Admin, &[], "short")
        .await
        .unwrap_err();
    assert!(e.to_string().contains("at least 12"), "{e}");
    ops.account_add("alice", Role::Admin, &[], PASSWORD)
        .await
        .unwrap();
    let e = ops
        .account_set_password("alice", None, "password1234")
        .await
        .unwrap_err();
    assert!(e.to_string().contains("breach list"), "{e}");
    ops.account_set_password("alice", None, "another long passphrase")
        .await
        .unwrap();
    session(
        ops.login("alice", "another long passphrase", None, None)
            .await
            .unwrap(),
    );
    let _ = std::fs::remove_dir_all(breach);
}

#[tokio::test]
async fn own_password_needs_the_old_one() {
    let ops = ops().await;
    ops.account_add("alice", Role::Helpdesk, &[], PASSWORD)
        .await
        .unwrap();
    let s = session(ops.login("alice", PASSWORD, None, None).await.unwrap());
    let alice = ops.acting_as(ops.session(&s.secret).await.unwrap().unwrap().actor);
    let e = alice
        .account_set_password("alice", Some("wrong old password"), "brand new passphrase")
        .await
        .unwrap_err();
    assert_eq!(e.status(), 401, "{e}");
    let e = alice
        .account_set_password("alice", None, "brand new passphrase")
        .await
        .unwrap_err();
    assert_eq!(e.status(), 403, "{e}");
    alice
        .account_set_password("alice", Some(PASSWORD), "brand new passphrase")
        .await
        .unwrap();
    session(
        ops.login("alice", "brand new passphrase", None, None)
            .await
            .unwrap(),
    );
}

#[tokio::test]
async fn totp_enrolment_codes_once_and_recovery_codes() {
    let ops = ops().await;
    ops.account_add("alice", Role::Admin, &[], PASSWORD)
        .await
        .unwrap();
    let s = session(ops.login("alice", PASSWORD, None, None).await.unwrap());
    let alice = ops.acting_as(ops.session(&s.secret).await.unwrap().unwrap().actor);
    // The command line is no account of its own.
    assert_eq!(ops.totp_enrol().await.unwrap_err().status(), 403);

    let enrolment = alice.totp_enrol().await.unwrap();
    assert!(enrolment.otpauth_url.starts_with("otpauth://totp/"));
    assert!(enrolment.qr_svg.contains("<svg"));
    let totp = credentials::totp(&enrolment.secret_base32, "alice").unwrap();
    // Not active before it is confirmed.
    session(ops.login("alice", PASSWORD, None, None).await.unwrap());
    assert_eq!(
        alice.totp_confirm("000000x").await.unwrap_err().status(),
        401
    );
    let code = totp.generate(now() as u64).to_string();
    let recovery = alice.totp_confirm(&code).await.unwrap();
    assert_eq!(recovery.len(), 10);
    assert!(ops.account_list().await.unwrap()[0].totp_enabled);

    assert!(matches!(
        ops.login("alice", PASSWORD, None, None).await.unwrap(),
        Login::NeedTotp(_)
    ));
    // The code that confirmed the enrolment is used up for its time step.
    assert!(matches!(
        ops.login("alice", PASSWORD, Some(&code), None)
            .await
            .unwrap(),
        Login::NeedTotp(_)
    ));
    let next = totp.generate(now() as u64 + 30).to_string();
    session(
        ops.login("alice", PASSWORD, Some(&next), None)
            .await
            .unwrap(),
    );
    assert!(matches!(
        ops.login("alice", PASSWORD, Some(&next), None)
            .await
            .unwrap(),
        Login::NeedTotp(_)
    ));
    session(
        ops.login("alice", PASSWORD, Some(&recovery[0].to_uppercase()), None)
            .await
            .unwrap(),
    );
    assert!(matches!(
        ops.login("alice", PASSWORD, Some(&recovery[0]), None)
            .await
            .unwrap(),
        Login::NeedTotp(_)
    ));
    // A wrong password is wrong whatever the code.
    assert_eq!(
        ops.login("alice", "not the password", Some(&recovery[1]), None)
            .await
            .unwrap_err()
            .status(),
        401
    );

    // Two steps: the password gives a handle kept in the store, so another node (another
    // Ops on the same store) takes the second step; each handle is used once.
    let Login::NeedTotp(handle) = ops.login("alice", PASSWORD, None, None).await.unwrap() else {
        panic!("a TOTP request was expected");
    };
    let other_node = portcullis_ops::Ops::new(ops.store().clone(), ops.config().clone());
    let Login::NeedTotp(again) = other_node
        .login_totp(&handle, "000000", None)
        .await
        .unwrap()
    else {
        panic!("a wrong code asks again");
    };
    assert_ne!(again, handle);
    assert_eq!(
        other_node
            .login_totp(&handle, &recovery[2], None)
            .await
            .unwrap_err()
            .status(),
        401,
        "a handle is used once"
    );
    session(
        other_node
            .login_totp(&again, &recovery[2], None)
            .await
            .unwrap(),
    );
    assert_eq!(
        other_node
            .login_totp("made-up", &recovery[3], None)
            .await
            .unwrap_err()
            .status(),
        401
    );
}

fn spec(name: &str, role: Role, domains: &[&str]) -> TokenSpec {
    TokenSpec {
        name: name.into(),
        role,
        domains: domains.iter().map(|d| d.to_string()).collect(),
        read_only: false,
        expires: None,
    }
}

#[tokio::test]
async fn tokens_never_exceed_their_account() {
    let ops = ops().await;
    ops.account_add("dora", Role::DomainAdmin, &["example.com".into()], PASSWORD)
        .await
        .unwrap();
    let s = session(ops.login("dora", PASSWORD, None, None).await.unwrap());
    let dora = ops.acting_as(ops.session(&s.secret).await.unwrap().unwrap().actor);

    for bad in [
        spec("all", Role::Admin, &[]),
        spec("other", Role::DomainAdmin, &["example.org"]),
        spec("reader", Role::Auditor, &[]),
    ] {
        let e = dora.token_create(&bad).await.unwrap_err();
        assert_eq!(e.status(), 403, "{e}");
    }
    let (info, secret) = dora
        .token_create(&TokenSpec {
            read_only: true,
            ..spec("backup", Role::DomainAdmin, &["Example.COM"])
        })
        .await
        .unwrap();
    assert_eq!(info.domains, ["example.com"]);
    let actor = ops
        .token_actor(&secret, remote(7))
        .await
        .unwrap()
        .expect("valid token");
    assert_eq!(actor.name, "token:backup");
    assert_eq!(actor.via, Via::Api);
    assert!(actor.read_only);
    assert_eq!(actor.remote, remote(7));
    let listed = dora.token_list().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert!(listed[0].last_used.is_some());
    // Read-only: no change, whatever the role allows.
    let e = ops
        .acting_as(actor)
        .add_network("10.0.0.0/8", "")
        .await
        .unwrap_err();
    assert_eq!(e.status(), 403);

    assert!(ops.token_actor("unknown", None).await.unwrap().is_none());
    dora.token_revoke(info.id).await.unwrap();
    assert!(ops.token_actor(&secret, None).await.unwrap().is_none());

    // The command line makes tokens for an account; an expired one does not act.
    let (_, cli_secret) = ops
        .token_create_for("dora", &spec("ci", Role::DomainAdmin, &["example.com"]))
        .await
        .unwrap();
    assert!(ops.token_actor(&cli_secret, None).await.unwrap().is_some());
    assert_eq!(
        ops.token_create(&spec("x", Role::Admin, &[]))
            .await
            .unwrap_err()
            .status(),
        403
    );
    ops.store()
        .token_insert(&TokenRow {
            id: 0,
            name: "old".into(),
            account: "dora".into(),
            role: "domain-admin".into(),
            domains: vec!["example.com".into()],
            read_only: false,
            secret_hash: credentials::secret_hash("expired secret"),
            created: 1,
            expires: Some(2),
            last_used: None,
            last_remote: None,
            revoked: false,
        })
        .await
        .unwrap();
    assert!(
        ops.token_actor("expired secret", None)
            .await
            .unwrap()
            .is_none()
    );
    let e = ops
        .token_create_for(
            "dora",
            &TokenSpec {
                expires: Some(5),
                ..spec("past", Role::DomainAdmin, &["example.com"])
            },
        )
        .await
        .unwrap_err();
    assert_eq!(e.status(), 400, "{e}");
}

#[tokio::test]
async fn audit_rows_name_the_actor_and_hold_no_secret() {
    let ops = ops().await;
    let admin_password = ops.bootstrap_admin().await.unwrap().unwrap();
    ops.account_add("alice", Role::Admin, &[], PASSWORD)
        .await
        .unwrap();
    let s = session(ops.login("alice", PASSWORD, None, remote(4)).await.unwrap());
    let alice = ops.acting_as(ops.session(&s.secret).await.unwrap().unwrap().actor);
    let (_, token) = alice
        .token_create(&spec("deploy", Role::Admin, &[]))
        .await
        .unwrap();
    let enrolment = alice.totp_enrol().await.unwrap();
    let totp = credentials::totp(&enrolment.secret_base32, "alice").unwrap();
    let codes = alice
        .totp_confirm(&totp.generate(now() as u64).to_string())
        .await
        .unwrap();
    alice
        .account_set_password("alice", Some(PASSWORD), "second long passphrase")
        .await
        .unwrap();
    ops.login("alice", "wrong password here", None, remote(4))
        .await
        .unwrap_err();
    // A password typed into the name field.
    ops.login("typed-in-the-name-field", "x", None, remote(4))
        .await
        .unwrap_err();
    let api = ops.acting_as(ops.token_actor(&token, remote(5)).await.unwrap().unwrap());
    api.add_network("10.1.0.0/16", "office").await.unwrap();

    let rows = ops.audit_list(&AuditQuery::default()).await.unwrap();
    let text = serde_json::to_string(&rows).unwrap();
    for secret in [
        admin_password.as_str(),
        PASSWORD,
        "second long passphrase",
        &s.secret,
        &s.csrf,
        &token,
        &enrolment.secret_base32,
        &codes[0],
        "typed-in-the-name-field",
    ] {
        assert!(
            !text.contains(secret),
            "the audit log holds a secret: {text}"
        );
    }
    let actions: Vec<&str> = rows.iter().map(|r| r.action.as_str()).collect();
    for action in [
        "account.bootstrap",
        "account.add",
        "account.login",
        "account.login_failed",
        "token.create",
        "account.totp_enable",
        "account.password",
        "network.add",
    ] {
        assert!(
            actions.contains(&action),
            "{action} missing from {actions:?}"
        );
    }
    let network = rows.iter().find(|r| r.action == "network.add").unwrap();
    assert_eq!(network.actor, "token:deploy");
    assert_eq!(network.via, "api");
    assert_eq!(network.remote.as_deref(), Some("192.0.2.5"));
    let added = rows.iter().find(|r| r.action == "account.add").unwrap();
    assert!(added.actor.starts_with("cli:"), "{}", added.actor);
    assert_eq!(added.via, "cli");

    let q = AuditQuery {
        action: Some("account.login".into()),
        ..AuditQuery::default()
    };
    assert!(ops.audit_list(&q).await.unwrap().len() >= 2);
    let q = AuditQuery {
        actor: Some("token:deploy".into()),
        ..AuditQuery::default()
    };
    assert_eq!(ops.audit_list(&q).await.unwrap().len(), 1);
}

#[tokio::test]
async fn accounts_are_managed_within_a_role() {
    let ops = ops().await;
    ops.account_add("dora", Role::DomainAdmin, &["example.com".into()], PASSWORD)
        .await
        .unwrap();
    let dora = ops.acting_as(Actor {
        name: "dora".into(),
        role: Role::DomainAdmin,
        domains: vec!["example.com".into()],
        address: String::new(),
        read_only: false,
        via: Via::Console,
        remote: None,
    });
    dora.account_add("bob@example.com", Role::User, &[], PASSWORD)
        .await
        .unwrap();
    for e in [
        dora.account_add("eve@example.org", Role::User, &[], PASSWORD)
            .await
            .unwrap_err(),
        dora.account_add("root2", Role::Admin, &[], PASSWORD)
            .await
            .unwrap_err(),
        dora.account_add("dan", Role::DomainAdmin, &["example.org".into()], PASSWORD)
            .await
            .unwrap_err(),
    ] {
        assert_eq!(e.status(), 403, "{e}");
    }
    let seen: Vec<String> = dora
        .account_list()
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.name)
        .collect();
    assert_eq!(seen, ["bob@example.com", "dora"]);
    let e = ops
        .account_add("carol", Role::User, &[], PASSWORD)
        .await
        .unwrap_err();
    assert_eq!(e.status(), 400, "{e}");
    dora.account_remove("bob@example.com").await.unwrap();
    assert_eq!(
        ops.account_remove("nobody").await.unwrap_err().status(),
        404
    );
    ops.account_add("root", Role::Admin, &[], PASSWORD)
        .await
        .unwrap();
    let e = ops.account_remove("root").await.unwrap_err();
    assert_eq!(e.status(), 409, "the last administrator stays: {e}");
}
