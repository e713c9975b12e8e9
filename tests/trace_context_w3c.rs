//! W3C Trace Context conformance of a service built from covet's `TraceLayer` (server side) and
//! `PropagateLayer` over a hyper-util client (client side), driven the way the W3C test suite
//! drives a service under test: a raw HTTP/1.1 request carrying the case's headers (several
//! lines per name, any casing, white space around values), after which the service calls back
//! a local "harness" server, which records the `traceparent` and `tracestate` it received.
//!
//! Each case names the section of W3C Trace Context (Level 1 unless it says Level 2) whose rule
//! it checks. Telemetry is process-global, so the cases run in one test.

use std::{
    collections::HashMap,
    future::IntoFuture,
    net::SocketAddr,
    sync::{Arc, Mutex},
};

use axum::{
    Router,
    extract::{Path, Query, State},
    http::HeaderMap,
    routing::get,
};
use bytes::Bytes;
use covet::{
    layers::trace::{PropagateLayer, TraceLayer},
    telemetry::{Sampler, Telemetry},
};
use http_body_util::Empty;
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tower::{ServiceBuilder, ServiceExt};

const TRACE_ID: &str = "12345678901234567890123456789012";

/// What the harness received on each callback: every value of each header, names lower-cased.
type Received = Arc<Mutex<HashMap<String, Vec<HashMap<String, Vec<String>>>>>>;

async fn serve(app: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(axum::serve(listener, app).into_future());
    addr
}

/// The harness: records the headers of every callback under the case's id.
async fn harness(received: Received) -> SocketAddr {
    async fn record(
        State(received): State<Received>,
        Path(case): Path<String>,
        headers: HeaderMap,
    ) -> &'static str {
        let mut seen: HashMap<String, Vec<String>> = HashMap::new();
        for (name, value) in &headers {
            seen.entry(name.as_str().to_owned())
                .or_default()
                .push(value.to_str().unwrap_or_default().to_owned());
        }
        received.lock().unwrap().entry(case).or_default().push(seen);
        "recorded"
    }
    serve(
        Router::new()
            .route("/callback/{case}", get(record))
            .with_state(received),
    )
    .await
}

#[derive(Clone)]
struct Sut {
    client: tower::util::BoxCloneSyncService<
        http::Request<Empty<Bytes>>,
        http::Response<hyper::body::Incoming>,
        hyper_util::client::legacy::Error,
    >,
    harness: SocketAddr,
}

#[derive(serde::Deserialize)]
struct Call {
    case: String,
    #[serde(default = "one")]
    count: usize,
}

fn one() -> usize {
    1
}

/// The service under test: each request makes `count` calls back to the harness through
/// `PropagateLayer`, one after the other, while the server span is current.
async fn service_under_test(harness: SocketAddr) -> SocketAddr {
    async fn handle(State(sut): State<Sut>, Query(call): Query<Call>) -> &'static str {
        for _ in 0..call.count {
            let uri = format!("http://{}/callback/{}", sut.harness, call.case);
            let request = http::Request::get(uri).body(Empty::new()).unwrap();
            let response = sut.client.clone().oneshot(request).await.expect("callback");
            assert_eq!(response.status(), 200);
        }
        "done"
    }
    let client = ServiceBuilder::new().layer(PropagateLayer::new()).service(
        Client::builder(TokioExecutor::new()).build::<_, Empty<Bytes>>(HttpConnector::new()),
    );
    let sut = Sut {
        client: tower::util::BoxCloneSyncService::new(client),
        harness,
    };
    serve(
        Router::new()
            .route("/test", get(handle))
            .layer(TraceLayer::new())
            .with_state(sut),
    )
    .await
}

/// Sends a raw HTTP/1.1 request with exactly these header lines to the service under test.
async fn send_raw(sut: SocketAddr, case: &str, count: usize, headers: &[(&str, &str)]) {
    let mut request = format!("GET /test?case={case}&count={count} HTTP/1.1\r\nHost: {sut}\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("Connection: close\r\n\r\n");
    let mut stream = tokio::net::TcpStream::connect(sut).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.unwrap();
    let response = String::from_utf8_lossy(&response);
    assert!(
        response.starts_with("HTTP/1.1 200"),
        "case {case}: the service answered {response}"
    );
}

/// One callback's trace context: the single `traceparent` and the combined `tracestate`.
struct Forwarded {
    traceparent: String,
    tracestate: Option<String>,
}

impl Forwarded {
    fn trace_id(&self) -> &str {
        &self.traceparent[3..35]
    }
    fn parent_id(&self) -> &str {
        &self.traceparent[36..52]
    }
    fn flags(&self) -> &str {
        &self.traceparent[53..55]
    }
    /// The value of `key` in the forwarded tracestate.
    fn state(&self, key: &str) -> Option<&str> {
        self.tracestate.as_deref().and_then(|s| {
            s.split(',')
                .filter_map(|m| m.trim().split_once('='))
                .find(|(k, _)| *k == key)
                .map(|(_, v)| v)
        })
    }
}

struct Suite {
    sut: SocketAddr,
    received: Received,
    next: usize,
}

impl Suite {
    /// Sends `headers`, returns what each of `count` callbacks carried.
    async fn callbacks(&mut self, headers: &[(&str, &str)], count: usize) -> Vec<Forwarded> {
        self.next += 1;
        let case = format!("case{}", self.next);
        send_raw(self.sut, &case, count, headers).await;
        let received = self.received.lock().unwrap();
        let calls = received.get(&case).expect("the service called back");
        assert_eq!(calls.len(), count);
        calls
            .iter()
            .map(|headers| {
                let traceparent = headers.get("traceparent").expect("a traceparent");
                assert_eq!(
                    traceparent.len(),
                    1,
                    "exactly one traceparent: {traceparent:?}"
                );
                let traceparent = traceparent[0].clone();
                assert!(
                    covet::layers::trace::is_valid_traceparent(traceparent.as_bytes()),
                    "forwarded traceparent {traceparent} is valid"
                );
                assert_eq!(&traceparent[..2], "00", "written as version 00");
                Forwarded {
                    traceparent,
                    tracestate: headers.get("tracestate").map(|v| v.join(",")),
                }
            })
            .collect()
    }

    async fn one(&mut self, headers: &[(&str, &str)]) -> Forwarded {
        self.callbacks(headers, 1).await.pop().unwrap()
    }

    /// The trace is continued: same trace id, a new parent id.
    async fn continued(&mut self, headers: &[(&str, &str)]) -> Forwarded {
        let forwarded = self.one(headers).await;
        assert_eq!(
            forwarded.trace_id(),
            TRACE_ID,
            "{headers:?} continues the trace"
        );
        assert_ne!(forwarded.parent_id(), "1234567890123456", "{headers:?}");
        forwarded
    }

    /// The trace is restarted: another trace id, and the incoming tracestate is not kept.
    async fn restarted(&mut self, headers: &[(&str, &str)]) {
        let forwarded = self.one(headers).await;
        assert!(
            !forwarded
                .trace_id()
                .starts_with("1234567890123456789012345678901"),
            "{headers:?} must start a new trace, got {}",
            forwarded.traceparent
        );
        assert_ne!(forwarded.trace_id(), "00000000000000000000000000000000");
        assert_eq!(forwarded.tracestate, None, "{headers:?}");
    }
}

const TP: &str = "00-12345678901234567890123456789012-1234567890123456-00";
const TP_SAMPLED: &str = "00-12345678901234567890123456789012-1234567890123456-01";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn w3c_trace_context_through_trace_and_propagate_layers() {
    let _telemetry = Telemetry::builder()
        .export(false)
        .sampler(Sampler::ParentBased(Box::new(Sampler::AlwaysOn)))
        .writer(std::io::sink)
        .init()
        .expect("telemetry installs");
    let received = Received::default();
    let harness = harness(received.clone()).await;
    let sut = service_under_test(harness).await;
    let mut suite = Suite {
        sut,
        received,
        next: 0,
    };

    // "traceparent Header": without one, a new valid trace is started.
    suite.one(&[]).await;
    // "parent-id": a continued trace gets a new parent id; "sampled flag" kept.
    let forwarded = suite.continued(&[("traceparent", TP_SAMPLED)]).await;
    assert_eq!(forwarded.flags(), "01");
    // "Header Name": any casing is the same header; misspelt names are not it.
    for name in ["TraceParent", "TrAcEpArEnT", "TRACEPARENT"] {
        suite.continued(&[(name, TP_SAMPLED)]).await;
    }
    for name in ["trace-parent", "trace.parent"] {
        suite.restarted(&[(name, TP_SAMPLED)]).await;
    }
    // A traceparent sent twice is not one traceparent.
    suite
        .restarted(&[
            (
                "traceparent",
                "00-12345678901234567890123456789011-1234567890123456-01",
            ),
            ("traceparent", TP_SAMPLED),
        ])
        .await;
    // "version" and "Versioning of traceparent": 00 has exactly four fields; a later version
    // is read by its known fields when they end at a dash; ff is invalid.
    for bad in [
        "00-12345678901234567890123456789012-1234567890123456-01.",
        "00-12345678901234567890123456789012-1234567890123456-01-what-the-future-will-be-like",
        "cc-12345678901234567890123456789012-1234567890123456-01.what-the-future-will-be-like",
        "ff-12345678901234567890123456789012-1234567890123456-01",
        ".0-12345678901234567890123456789012-1234567890123456-01",
        "0.-12345678901234567890123456789012-1234567890123456-01",
        "000-12345678901234567890123456789012-1234567890123456-01",
        "0-12345678901234567890123456789012-1234567890123456-01",
    ] {
        suite.restarted(&[("traceparent", bad)]).await;
    }
    for future in [
        "cc-12345678901234567890123456789012-1234567890123456-01",
        "cc-12345678901234567890123456789012-1234567890123456-01-what-the-future-will-be-like",
    ] {
        suite.continued(&[("traceparent", future)]).await;
    }
    // "trace-id" and "parent-id": 32 and 16 lower-case hex digits, not all zero.
    for bad in [
        "00-00000000000000000000000000000000-1234567890123456-01",
        "00-.2345678901234567890123456789012-1234567890123456-01",
        "00-1234567890123456789012345678901.-1234567890123456-01",
        "00-123456789012345678901234567890123-1234567890123456-01",
        "00-1234567890123456789012345678901-1234567890123456-01",
        "00-ABCDEF78901234567890123456789012-1234567890123456-01",
        "00-12345678901234567890123456789012-0000000000000000-01",
        "00-12345678901234567890123456789012-.234567890123456-01",
        "00-12345678901234567890123456789012-123456789012345.-01",
        "00-12345678901234567890123456789012-12345678901234567-01",
        "00-12345678901234567890123456789012-123456789012345-01",
    ] {
        suite.restarted(&[("traceparent", bad)]).await;
    }
    // "trace-flags": two hex digits.
    for bad in [
        "00-12345678901234567890123456789012-1234567890123456-.0",
        "00-12345678901234567890123456789012-1234567890123456-0.",
        "00-12345678901234567890123456789012-1234567890123456-001",
        "00-12345678901234567890123456789012-1234567890123456-1",
    ] {
        suite.restarted(&[("traceparent", bad)]).await;
    }
    // White space around the value is optional white space.
    for padded in [
        " 00-12345678901234567890123456789012-1234567890123456-01",
        "\t00-12345678901234567890123456789012-1234567890123456-01",
        "00-12345678901234567890123456789012-1234567890123456-01 ",
        "00-12345678901234567890123456789012-1234567890123456-01\t",
        "\t 00-12345678901234567890123456789012-1234567890123456-01 \t",
    ] {
        suite.continued(&[("traceparent", padded)]).await;
    }
    // "Other Flags": undefined flags are not passed on. Level 2 "random trace-flag": kept when
    // the trace is continued, sampled or not.
    let forwarded = suite
        .continued(&[(
            "traceparent",
            "00-12345678901234567890123456789012-1234567890123456-09",
        )])
        .await;
    assert_eq!(forwarded.flags(), "01");
    let forwarded = suite
        .continued(&[(
            "traceparent",
            "00-12345678901234567890123456789012-1234567890123456-03",
        )])
        .await;
    assert_eq!(forwarded.flags(), "03");
    let forwarded = suite
        .continued(&[(
            "traceparent",
            "00-12345678901234567890123456789012-1234567890123456-02",
        )])
        .await;
    assert_eq!(forwarded.flags(), "02");

    // "Tracestate Header": not parsed without a valid traceparent.
    suite.restarted(&[("tracestate", "foo=1")]).await;
    suite
        .restarted(&[
            (
                "traceparent",
                "00-00000000000000000000000000000000-1234567890123456-01",
            ),
            ("tracestate", "foo=1"),
        ])
        .await;
    // Passed on with the continued trace; any casing of the name; misspelt names ignored.
    for name in ["tracestate", "TraceState", "TrAcEsTaTe", "TRACESTATE"] {
        let forwarded = suite
            .continued(&[("traceparent", TP), (name, "foo=1,bar=2")])
            .await;
        assert_eq!(forwarded.state("foo"), Some("1"));
        assert_eq!(forwarded.state("bar"), Some("2"));
    }
    for name in ["trace-state", "trace.state"] {
        let forwarded = suite
            .continued(&[("traceparent", TP), (name, "foo=1")])
            .await;
        assert_eq!(forwarded.tracestate, None);
    }
    // "tracestate Header Field Values": several lines are one list, in order; empty headers
    // and empty members are allowed and skipped.
    let forwarded = suite
        .continued(&[
            ("traceparent", TP),
            ("tracestate", "foo=1,bar=2"),
            ("tracestate", "rojo=1,congo=2"),
            ("tracestate", "baz=3"),
        ])
        .await;
    assert_eq!(
        forwarded.tracestate.as_deref(),
        Some("foo=1,bar=2,rojo=1,congo=2,baz=3")
    );
    let forwarded = suite
        .continued(&[("traceparent", TP), ("tracestate", "")])
        .await;
    assert_eq!(
        forwarded.tracestate, None,
        "an empty tracestate is not sent"
    );
    for lines in [["foo=1", ""], ["", "foo=1"]] {
        let forwarded = suite
            .continued(&[
                ("traceparent", TP),
                ("tracestate", lines[0]),
                ("tracestate", lines[1]),
            ])
            .await;
        assert_eq!(forwarded.tracestate.as_deref(), Some("foo=1"));
    }
    // White space around members.
    for ows in [
        "foo=1 \t , \t bar=2, \t baz=3",
        "foo=1\t \t,\t \tbar=2,\t \tbaz=3",
    ] {
        let forwarded = suite
            .continued(&[("traceparent", TP), ("tracestate", ows)])
            .await;
        assert_eq!(forwarded.tracestate.as_deref(), Some("foo=1,bar=2,baz=3"));
    }
    for ows in [" foo=1", "\tfoo=1", "foo=1 ", "foo=1\t", "\t foo=1 \t"] {
        let forwarded = suite
            .continued(&[("traceparent", TP), ("tracestate", ows)])
            .await;
        assert_eq!(forwarded.state("foo"), Some("1"), "{ows:?}");
    }
    // At most 32 members; 33 drop the list.
    let members: Vec<String> = (1..=33).map(|i| format!("bar{i:02}={i:02}")).collect();
    let lines: Vec<String> = members[..32].chunks(10).map(|c| c.join(",")).collect();
    let mut headers = vec![("traceparent", TP)];
    headers.extend(lines.iter().map(|l| ("tracestate", l.as_str())));
    let forwarded = suite.continued(&headers).await;
    assert_eq!(
        forwarded.tracestate.as_deref().unwrap().split(',').count(),
        32
    );
    let last = format!("{},{}", lines[3], members[32]);
    headers.pop();
    headers.push(("tracestate", &last));
    let forwarded = suite.continued(&headers).await;
    assert_eq!(forwarded.tracestate, None, "33 members drop the list");
    // "Key": up to 256 characters, or tenant (241) @ system (14); every allowed character.
    let key_256 = format!("{}=1", "z".repeat(256));
    let key_257 = format!("{}=1", "z".repeat(257));
    let tenant = format!("{}@{}=1", "t".repeat(241), "v".repeat(14));
    let tenant_long = format!("{}@v=1", "t".repeat(242));
    let system_long = format!("t@{}=1", "v".repeat(15));
    for (line, kept) in [
        (&key_256, true),
        (&key_257, false),
        (&tenant, true),
        (&tenant_long, false),
        (&system_long, false),
    ] {
        let forwarded = suite
            .continued(&[
                ("traceparent", TP),
                ("tracestate", "foo=1"),
                ("tracestate", line.as_str()),
            ])
            .await;
        assert_eq!(forwarded.state("foo").is_some(), kept, "{line}");
        if kept {
            assert!(
                forwarded
                    .tracestate
                    .as_deref()
                    .unwrap()
                    .ends_with(line.as_str())
            );
        }
    }
    let key = "abcdefghijklmnopqrstuvwxyz0123456789_-*/";
    let value: String = (0x20u8..=0x7e)
        .filter(|&b| b != b',' && b != b'=')
        .map(char::from)
        .collect();
    for key in [key.to_owned(), format!("{key}@a-z0-9_-*/")] {
        let line = format!("{key}={value}");
        let forwarded = suite
            .continued(&[("traceparent", TP), ("tracestate", &line)])
            .await;
        assert_eq!(forwarded.tracestate.as_deref(), Some(line.as_str()));
    }
    // Keys and values outside the grammar, and duplicated keys ("Combined Header Value"), drop
    // the whole list rather than forward it malformed.
    for bad in [
        vec!["foo =1"],
        vec!["FOO=1"],
        vec!["foo.bar=1"],
        vec!["foo@=1,bar=2"],
        vec!["@foo=1,bar=2"],
        vec!["foo@@bar=1,bar=2"],
        vec!["foo@bar@baz=1,bar=2"],
        vec!["foo=bar=baz"],
        vec!["foo=,bar=3"],
        vec!["foo=1,foo=1"],
        vec!["foo=1,foo=2"],
        vec!["foo=1", "foo=1"],
        vec!["foo=1", "foo=2"],
    ] {
        let mut headers = vec![("traceparent", TP)];
        headers.extend(bad.iter().map(|l| ("tracestate", *l)));
        let forwarded = suite.continued(&headers).await;
        assert_eq!(forwarded.tracestate, None, "{bad:?} was forwarded");
    }

    // Several calls from one request: one trace, and each call is its own CLIENT span, so
    // its own parent id.
    let calls = suite.callbacks(&[("traceparent", TP_SAMPLED)], 3).await;
    assert!(calls.iter().all(|c| c.trace_id() == TRACE_ID));
    let parents: std::collections::HashSet<&str> = calls.iter().map(Forwarded::parent_id).collect();
    assert_eq!(parents.len(), 3, "one parent id per call");
    let calls = suite.callbacks(&[], 3).await;
    assert!(calls.windows(2).all(|w| w[0].trace_id() == w[1].trace_id()));
    let parents: std::collections::HashSet<&str> = calls.iter().map(Forwarded::parent_id).collect();
    assert_eq!(parents.len(), 3, "one parent id per call");
    let calls = suite
        .callbacks(
            &[(
                "traceparent",
                "00-00000000000000000000000000000000-1234567890123456-01",
            )],
            3,
        )
        .await;
    assert!(
        calls
            .iter()
            .all(|c| c.trace_id() != "00000000000000000000000000000000")
    );
}
