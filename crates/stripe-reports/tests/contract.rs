//! The emulator's contract: every object it returns validates against Stripe's
//! OpenAPI description, and Stripe's own fixtures parse with the library's types.

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use stripe_emulator::{EmulatorConfig, ReportTypeConfig};
use stripe_reports::stripe::error::ErrorBody;
use stripe_reports::stripe::{Event, File, List, ReportRun, ReportType, StripeRunStatus};
use support::*;

struct Capture {
    method: &'static str,
    path: &'static str,
    status: u16,
    body: Value,
}

async fn call(
    http: &reqwest::Client,
    base: &str,
    method: &'static str,
    template: &'static str,
    url: &str,
    form: Option<&[(&str, &str)]>,
    key: &str,
) -> Capture {
    let mut request = match method {
        "post" => http
            .post(format!("{base}{url}"))
            .form(form.unwrap_or_default()),
        _ => http.get(format!("{base}{url}")),
    };
    request = request.bearer_auth(key);
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap();
    Capture {
        method,
        path: template,
        status,
        body,
    }
}

#[tokio::test]
async fn every_emulator_answer_validates_against_stripes_openapi() {
    let mut failing = ReportTypeConfig::new("payouts.itemized.3");
    failing.fail = true;
    let ok_type = ReportTypeConfig::new("balance.summary.1");
    let emulator = emulator(EmulatorConfig {
        report_types: vec![ok_type, failing],
        run_delay: Duration::from_millis(10),
        ..EmulatorConfig::default()
    })
    .await;
    let base = emulator.base_url();
    let http = reqwest::Client::new();
    let types: Value = http
        .get(format!(
            "{base}/v1/reporting/report_types/balance.summary.1"
        ))
        .bearer_auth(API_KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let end = types["data_available_end"].as_i64().unwrap();
    let (start_s, end_s) = ((end - 86_400).to_string(), end.to_string());
    let good_form = [
        ("report_type", "balance.summary.1"),
        ("parameters[interval_start]", start_s.as_str()),
        ("parameters[interval_end]", end_s.as_str()),
        ("parameters[columns][0]", "id"),
        ("parameters[columns][1]", "amount"),
        ("parameters[timezone]", "America/New_York"),
        ("parameters[currency]", "usd"),
    ];
    let failing_form = [
        ("report_type", "payouts.itemized.3"),
        ("parameters[interval_end]", end_s.as_str()),
    ];
    let late_end = (end + 86_400).to_string();
    let late_form = [
        ("report_type", "balance.summary.1"),
        ("parameters[interval_end]", late_end.as_str()),
    ];

    let mut captures = vec![
        call(
            &http,
            &base,
            "get",
            "/v1/reporting/report_types",
            "/v1/reporting/report_types",
            None,
            API_KEY,
        )
        .await,
        call(
            &http,
            &base,
            "get",
            "/v1/reporting/report_types/{report_type}",
            "/v1/reporting/report_types/balance.summary.1",
            None,
            API_KEY,
        )
        .await,
        call(
            &http,
            &base,
            "post",
            "/v1/reporting/report_runs",
            "/v1/reporting/report_runs",
            Some(&good_form),
            API_KEY,
        )
        .await,
        call(
            &http,
            &base,
            "post",
            "/v1/reporting/report_runs",
            "/v1/reporting/report_runs",
            Some(&failing_form),
            API_KEY,
        )
        .await,
    ];
    let pending = captures[2].body.clone();
    assert_eq!(pending["status"], "pending");
    let run_id = pending["id"].as_str().unwrap().to_owned();
    let failed_id = captures[3].body["id"].as_str().unwrap().to_owned();
    // Poll until the emulator has finished both runs (bounded), rather than
    // sleeping a fixed time and hoping.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    for (id, finished) in [(&run_id, "succeeded"), (&failed_id, "failed")] {
        loop {
            let run: Value = http
                .get(format!("{base}/v1/reporting/report_runs/{id}"))
                .bearer_auth(API_KEY)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            if run["status"] == finished {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "run {id} is still {} after 10 s, not {finished}",
                run["status"]
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    let run_url = format!("/v1/reporting/report_runs/{run_id}");
    let failed_url = format!("/v1/reporting/report_runs/{failed_id}");
    captures.push(
        call(
            &http,
            &base,
            "get",
            "/v1/reporting/report_runs/{report_run}",
            &run_url,
            None,
            API_KEY,
        )
        .await,
    );
    captures.push(
        call(
            &http,
            &base,
            "get",
            "/v1/reporting/report_runs/{report_run}",
            &failed_url,
            None,
            API_KEY,
        )
        .await,
    );
    let succeeded = captures
        .last()
        .map(|_| captures[captures.len() - 2].body.clone())
        .unwrap();
    assert_eq!(succeeded["status"], "succeeded");
    assert_eq!(captures.last().unwrap().body["status"], "failed");
    let file_id = succeeded["result"]["id"].as_str().unwrap().to_owned();
    let file_url = format!("/v1/files/{file_id}");
    captures.push(
        call(
            &http,
            &base,
            "get",
            "/v1/reporting/report_runs",
            "/v1/reporting/report_runs?limit=1",
            None,
            API_KEY,
        )
        .await,
    );
    captures.push(
        call(
            &http,
            &base,
            "get",
            "/v1/reporting/report_runs",
            "/v1/reporting/report_runs?created[gte]=0",
            None,
            API_KEY,
        )
        .await,
    );
    captures.push(
        call(
            &http,
            &base,
            "get",
            "/v1/files/{file}",
            &file_url,
            None,
            API_KEY,
        )
        .await,
    );
    captures.push(
        call(
            &http,
            &base,
            "get",
            "/v1/events",
            "/v1/events?type=reporting.report_run.succeeded",
            None,
            API_KEY,
        )
        .await,
    );
    captures.push(
        call(
            &http,
            &base,
            "get",
            "/v1/events",
            "/v1/events",
            None,
            API_KEY,
        )
        .await,
    );
    let event_id = captures.last().unwrap().body["data"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let event_url = format!("/v1/events/{event_id}");
    captures.push(
        call(
            &http,
            &base,
            "get",
            "/v1/events/{id}",
            &event_url,
            None,
            API_KEY,
        )
        .await,
    );
    // Errors: wrong key, unknown objects, availability, idempotency, unknown parameter.
    captures.push(
        call(
            &http,
            &base,
            "get",
            "/v1/reporting/report_types",
            "/v1/reporting/report_types",
            None,
            "sk_test_wrong",
        )
        .await,
    );
    captures.push(
        call(
            &http,
            &base,
            "get",
            "/v1/reporting/report_runs/{report_run}",
            "/v1/reporting/report_runs/frr_missing",
            None,
            API_KEY,
        )
        .await,
    );
    captures.push(
        call(
            &http,
            &base,
            "get",
            "/v1/reporting/report_types/{report_type}",
            "/v1/reporting/report_types/nope.1",
            None,
            API_KEY,
        )
        .await,
    );
    captures.push(
        call(
            &http,
            &base,
            "post",
            "/v1/reporting/report_runs",
            "/v1/reporting/report_runs",
            Some(&late_form),
            API_KEY,
        )
        .await,
    );
    captures.push(
        call(
            &http,
            &base,
            "post",
            "/v1/reporting/report_runs",
            "/v1/reporting/report_runs",
            Some(&[
                ("report_type", "balance.summary.1"),
                ("parameters[color]", "red"),
            ]),
            API_KEY,
        )
        .await,
    );
    captures.push(
        call(
            &http,
            &base,
            "get",
            "/v1/reporting/report_runs",
            "/v1/reporting/report_runs?limit=1000",
            None,
            API_KEY,
        )
        .await,
    );

    let statuses: Vec<u16> = captures.iter().map(|c| c.status).collect();
    assert_eq!(
        &statuses[statuses.len() - 6..],
        &[401, 404, 404, 400, 400, 400]
    );

    let dump: Vec<Value> = captures
        .iter()
        .map(|c| json!({"method": c.method, "path": c.path, "status": c.status, "body": c.body}))
        .collect();
    let dir = std::env::temp_dir().join(unique("contract"));
    std::fs::create_dir_all(&dir).unwrap();
    let captures_path = dir.join("captures.json");
    std::fs::write(&captures_path, serde_json::to_vec(&dump).unwrap()).unwrap();
    let report = run_python(
        "contract_validate.py",
        &[
            fixture("stripe-reporting-openapi.json").to_str().unwrap(),
            captures_path.to_str().unwrap(),
        ],
    );
    assert_eq!(
        report.lines().filter(|l| l.starts_with("ok")).count(),
        captures.len(),
        "{report}"
    );

    // The library's own types read every success body.
    for capture in &captures {
        let body = capture.body.clone();
        match (capture.status, capture.path) {
            (200, "/v1/reporting/report_types") => {
                serde_json::from_value::<List<ReportType>>(body).unwrap();
            }
            (200, "/v1/reporting/report_types/{report_type}") => {
                serde_json::from_value::<ReportType>(body).unwrap();
            }
            (200, "/v1/reporting/report_runs") if capture.method == "get" => {
                serde_json::from_value::<List<ReportRun>>(body).unwrap();
            }
            (200, "/v1/reporting/report_runs")
            | (200, "/v1/reporting/report_runs/{report_run}") => {
                serde_json::from_value::<ReportRun>(body).unwrap();
            }
            (200, "/v1/files/{file}") => {
                serde_json::from_value::<File>(body).unwrap();
            }
            (200, "/v1/events") => {
                serde_json::from_value::<List<Event>>(body).unwrap();
            }
            (200, "/v1/events/{id}") => {
                serde_json::from_value::<Event>(body).unwrap();
            }
            (_, _) => {
                serde_json::from_value::<ErrorBody>(body).unwrap();
            }
        }
    }
}

#[test]
fn stripes_fixtures_parse_with_the_librarys_types() {
    let text = std::fs::read_to_string(fixture("stripe-reporting-fixtures.json")).unwrap();
    let fixtures: Value = serde_json::from_str(&text).unwrap();
    let resources = &fixtures["resources"];
    let run: ReportRun = serde_json::from_value(resources["reporting.report_run"].clone()).unwrap();
    assert_eq!(run.id, "frr_1Pgc79B7WZ01zgkWMmsefTsj");
    assert_eq!(run.status, StripeRunStatus::Succeeded);
    assert_eq!(
        run.parameters.interval_start,
        Some(1_525_132_800 - 2_592_000)
    );
    let result = run.result.unwrap();
    assert_eq!(result.size, 3_530_753);
    assert_eq!(result.url, None);
    let kind: ReportType =
        serde_json::from_value(resources["reporting.report_type"].clone()).unwrap();
    assert_eq!(kind.id, "balance.summary.1");
    assert_eq!(kind.default_columns.unwrap().len(), 4);
    let file: File = serde_json::from_value(resources["file"].clone()).unwrap();
    assert_eq!(file.size, 9863);
    assert_eq!(file.file_type.as_deref(), Some("png"));
    let event: Event = serde_json::from_value(resources["event"].clone()).unwrap();
    assert_eq!(event.event_type, "plan.created");
    assert_eq!(event.data.object["object"], "plan");
}
