//! Runs the built `covet-server` binary as a user would and talks to it over a real socket.

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

/// A free loopback port: bind to port 0, note the port, release it.
fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(addr: SocketAddr) -> Server {
    let child = Command::new(env!("CARGO_BIN_EXE_covet-server"))
        .env("COVET_LISTEN", addr.to_string())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn covet-server");
    let server = Server(child);
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(addr).is_err() {
        assert!(
            Instant::now() < deadline,
            "covet-server did not listen on {addr}"
        );
        thread::sleep(Duration::from_millis(50));
    }
    server
}

/// Sends one HTTP/1.1 request and returns the raw response text.
fn get(addr: SocketAddr, path: &str, extra_headers: &str) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{extra_headers}\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
}

fn header<'a>(response: &'a str, name: &str) -> Option<&'a str> {
    let head = response.split("\r\n\r\n").next().unwrap();
    head.lines().skip(1).find_map(|line| {
        let (n, v) = line.split_once(':')?;
        n.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

#[test]
fn serves_hello_with_request_ids_and_security_headers() {
    let addr = free_addr();
    let _server = start(addr);

    let response = get(addr, "/api/hello", "x-request-id: e2e-1\r\n");
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert_eq!(header(&response, "x-request-id"), Some("e2e-1"));
    assert_eq!(header(&response, "x-content-type-options"), Some("nosniff"));
    assert_eq!(
        header(&response, "content-security-policy"),
        Some("default-src 'none'; frame-ancestors 'none'")
    );
    let body = response.split("\r\n\r\n").nth(1).unwrap();
    let json: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(json["message"], "hello from covet");
    assert_eq!(json["request_id"], "e2e-1");

    // A hostile id is replaced, not echoed.
    let response = get(addr, "/api/hello", "x-request-id: <script>\r\n");
    let id = header(&response, "x-request-id").unwrap();
    assert_eq!(id.len(), 36, "{response}");
    assert!(!response.contains("<script>"), "{response}");

    let response = get(addr, "/no/such/route", "");
    assert!(response.starts_with("HTTP/1.1 404"), "{response}");
    assert_eq!(header(&response, "x-frame-options"), Some("DENY"));
}

#[test]
fn a_bad_listen_address_exits_2_naming_the_setting() {
    let output = Command::new(env!("CARGO_BIN_EXE_covet-server"))
        .args(["--listen", "not-an-address"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--listen"), "{stderr}");
}
