//! Incoming reports through the operations layer: a domain-admin reads only its domains'
//! reports, and a domain's trend adds up its reports per day and per reporter.

use portcullis_gateway::config::Config;
use portcullis_ops::{Actor, Ops, Role, Via};
use portcullis_queue::spool::now;
use portcullis_store::{ReportQuery, ReportSummary, Store, StoredReport};

fn report(id: &str, org: &str, domain: &str, begin: i64, pass: i64, fail: i64) -> StoredReport {
    StoredReport {
        summary: ReportSummary {
            id: id.into(),
            kind: "dmarc".into(),
            org: org.into(),
            report_id: id.into(),
            domain: domain.into(),
            begin,
            end: begin + 86_399,
            received_at: begin + 90_000,
            messages: pass + fail,
            pass,
            fail,
        },
        report: "{}".into(),
    }
}

#[tokio::test]
async fn reports_are_narrowed_and_charted() {
    let store = Store::open("sqlite::memory:").await.expect("store");
    let today = now().div_euclid(86_400) * 86_400;
    for r in [
        report("R1", "Big Mail", "example.com", today - 86_400, 10, 2),
        report("R2", "Small Mail", "example.com", today - 86_400, 1, 1),
        report("R3", "Big Mail", "example.com", today, 5, 0),
        report("R4", "Big Mail", "example.org", today, 7, 7),
        report("R5", "Old Mail", "example.com", today - 40 * 86_400, 3, 3),
    ] {
        store.report_insert(&r).await.expect("insert");
    }
    let ops = Ops::new(store, Config::default());

    let trend = ops
        .report_trend("example.com", "dmarc", 2)
        .await
        .expect("trend");
    let days: Vec<(i64, i64, i64)> = trend.days.iter().map(|d| (d.day, d.pass, d.fail)).collect();
    assert_eq!(days, [(today - 86_400, 11, 3), (today, 5, 0)]);
    let orgs: Vec<(&str, i64, i64)> = trend
        .orgs
        .iter()
        .map(|o| (o.org.as_str(), o.pass, o.fail))
        .collect();
    assert_eq!(orgs, [("Big Mail", 15, 2), ("Small Mail", 1, 1)]);

    let dora = ops.acting_as(Actor {
        name: "dora".into(),
        role: Role::DomainAdmin,
        domains: vec!["example.org".into()],
        address: String::new(),
        read_only: false,
        via: Via::Console,
        remote: None,
    });
    let ids = |rows: Vec<ReportSummary>| rows.into_iter().map(|r| r.id).collect::<Vec<_>>();
    assert_eq!(
        ids(dora.report_list(&ReportQuery::default()).await.unwrap()),
        ["R4"]
    );
    let asked = ReportQuery {
        domain: Some("example.com".into()),
        ..Default::default()
    };
    assert!(dora.report_list(&asked).await.unwrap().is_empty());
    assert_eq!(dora.report_get("R1").await.unwrap_err().status(), 404);
    assert_eq!(dora.report_get("R4").await.unwrap().summary.org, "Big Mail");
    let trend = dora.report_trend("example.com", "dmarc", 7).await.unwrap();
    assert!(trend.orgs.is_empty());

    let user = ops.acting_as(Actor {
        name: "bob".into(),
        role: Role::User,
        domains: Vec::new(),
        address: "bob@example.com".into(),
        read_only: false,
        via: Via::Console,
        remote: None,
    });
    assert_eq!(
        user.report_list(&ReportQuery::default())
            .await
            .unwrap_err()
            .status(),
        403
    );
}
