//! Spawning the built `covet-server` binary and talking HTTP/1.1 to it over real sockets.

#![allow(dead_code, unreachable_pub)] // each test binary uses a different part

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    process::{Child, ChildStderr, Command, ExitStatus, Stdio},
    sync::{Arc, Mutex, mpsc},
    thread,
    time::{Duration, Instant},
};

/// A free loopback port: bind to port 0, note the port, release it.
pub fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// A running `covet-server` process; killed when dropped.
pub struct Server {
    pub child: Child,
    pub api: SocketAddr,
    pub admin: SocketAddr,
    /// Every line the server wrote to stderr (its logs), collected by a thread.
    pub logs: Arc<Mutex<Vec<String>>>,
    /// For [`Server::start_with_paused_logs`]: lets the collecting thread start reading.
    resume_logs: Mutex<Option<mpsc::Sender<()>>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// Starts the server with `args` and `envs` on free ports; waits until both ports answer.
    pub fn start(args: &[&str], envs: &[(&str, &str)]) -> Server {
        Self::start_with_nofile(args, envs, None)
    }

    /// [`start`](Self::start) with the process's open-file limit lowered to `nofile` (through
    /// `sh -c 'ulimit -n …; exec …'`).
    pub fn start_with_nofile(args: &[&str], envs: &[(&str, &str)], nofile: Option<u64>) -> Server {
        Self::spawn(args, envs, nofile, false)
    }

    /// [`start`](Self::start) with nobody reading stderr until [`resume_logs`](Self::resume_logs):
    /// the pipe fills, as when a log shipper stalls.
    pub fn start_with_paused_logs(args: &[&str], envs: &[(&str, &str)]) -> Server {
        Self::spawn(args, envs, None, true)
    }

    /// Starts reading stderr (after [`start_with_paused_logs`](Self::start_with_paused_logs)).
    pub fn resume_logs(&self) {
        if let Some(resume) = self.resume_logs.lock().unwrap().take() {
            let _ = resume.send(());
        }
    }

    fn spawn(args: &[&str], envs: &[(&str, &str)], nofile: Option<u64>, paused: bool) -> Server {
        let (api, admin) = (free_addr(), free_addr());
        let binary = env!("CARGO_BIN_EXE_covet-server");
        let mut command = match nofile {
            None => Command::new(binary),
            Some(limit) => {
                let mut sh = Command::new("sh");
                sh.args([
                    "-c",
                    &format!("ulimit -n {limit} && exec \"$0\" \"$@\""),
                    binary,
                ]);
                sh
            }
        };
        command
            .args([
                "--listen",
                &api.to_string(),
                "--admin-listen",
                &admin.to_string(),
            ])
            // JSON lines, which the tests parse, unless the test picks the format.
            .args(if args.contains(&"--log-format") {
                &[][..]
            } else {
                &["--log-format", "json"][..]
            })
            .args(args)
            .env_remove("DATABASE_URL")
            .env_remove("REDIS_URL")
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (key, value) in envs {
            command.env(key, value);
        }
        let mut child = command.spawn().expect("spawn covet-server");
        let (resume, wait) = mpsc::channel();
        let logs = collect(child.stderr.take().unwrap(), paused.then_some(wait));
        let server = Server {
            child,
            api,
            admin,
            logs,
            resume_logs: Mutex::new(paused.then_some(resume)),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(api).is_err() || TcpStream::connect(admin).is_err() {
            if let Ok(Some(status)) = exited_early(&server) {
                panic!("covet-server exited early ({status}): {:?}", server.logs());
            }
            assert!(Instant::now() < deadline, "covet-server did not listen");
            thread::sleep(Duration::from_millis(25));
        }
        server
    }

    pub fn logs(&self) -> Vec<String> {
        self.logs.lock().unwrap().clone()
    }

    /// Sends a signal with the `kill` command.
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits up to `limit` for the process to exit.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }
}

fn exited_early(server: &Server) -> std::io::Result<Option<ExitStatus>> {
    // `try_wait` needs `&mut`; peek through /proc instead so `server` stays shared.
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", server.child.id()))?;
    let state = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .trim_start()
        .chars()
        .next();
    Ok(match state {
        Some('Z') | None => Some(ExitStatus::default()),
        _ => None,
    })
}

fn collect(stderr: ChildStderr, wait: Option<mpsc::Receiver<()>>) -> Arc<Mutex<Vec<String>>> {
    let logs = Arc::new(Mutex::new(Vec::new()));
    let sink = logs.clone();
    thread::spawn(move || {
        if let Some(wait) = wait {
            let _ = wait.recv();
        }
        for line in BufReader::new(stderr).lines() {
            match line {
                Ok(line) => sink.lock().unwrap().push(line),
                Err(_) => break,
            }
        }
    });
    logs
}

/// A parsed HTTP/1.1 response.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }
}

/// Sends one request on a fresh connection (`Connection: close`) and reads the whole reply.
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> std::io::Result<Reply> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(90)))?;
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    if !body.is_empty() || method == "POST" {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    stream.write_all(body.as_bytes())?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    parse(&raw).ok_or_else(|| {
        std::io::Error::other(format!("bad reply: {:?}", String::from_utf8_lossy(&raw)))
    })
}

pub fn get(addr: SocketAddr, path: &str) -> Reply {
    request(addr, "GET", path, &[], "").unwrap_or_else(|e| panic!("GET {path}: {e}"))
}

/// Parses one HTTP/1.1 response (Content-Length or read-to-close bodies).
pub fn parse(raw: &[u8]) -> Option<Reply> {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text.split_once("\r\n\r\n")?;
    let mut lines = head.lines();
    let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
        .collect();
    Some(Reply {
        status,
        headers,
        body: body.to_owned(),
    })
}

/// Resident memory of a process in KiB (`VmRSS` in `/proc/<pid>/status`).
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("a VmRSS line")
}

/// Open file descriptors of a process (entries of `/proc/<pid>/fd`).
pub fn fd_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("/proc fd")
        .count()
}

/// The samples of metric `name` in a Prometheus text exposition: `(labels, value)`, labels as
/// written between the braces (empty when there are none).
pub fn samples(text: &str, name: &str) -> Vec<(String, f64)> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let rest = l.strip_prefix(name)?;
            let (labels, value) = match rest.strip_prefix('{') {
                Some(rest) => {
                    let (labels, value) = rest.rsplit_once('}')?;
                    (labels.to_owned(), value)
                }
                None if rest.starts_with(' ') => (String::new(), rest),
                None => return None,
            };
            Some((labels, value.trim().parse().ok()?))
        })
        .collect()
}

/// The value of the one sample of `name` whose labels contain every one of `labels`.
pub fn sample(text: &str, name: &str, labels: &[&str]) -> Option<f64> {
    samples(text, name)
        .into_iter()
        .find(|(l, _)| labels.iter().all(|want| l.contains(want)))
        .map(|(_, v)| v)
}

/// An HTTP/1.1 keep-alive connection that sends requests and reads `Content-Length` or chunked
/// replies one after another.
pub struct Conn {
    reader: BufReader<TcpStream>,
}

impl Conn {
    pub fn open(addr: SocketAddr) -> std::io::Result<Conn> {
        let stream = TcpStream::connect(addr)?;
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        stream.set_nodelay(true)?;
        Ok(Conn {
            reader: BufReader::new(stream),
        })
    }

    /// Writes raw request bytes (one or several pipelined requests).
    pub fn send(&mut self, raw: &[u8]) -> std::io::Result<()> {
        self.reader.get_mut().write_all(raw)
    }

    /// Reads one reply; an error when the server closed the connection first.
    pub fn read_reply(&mut self) -> std::io::Result<Reply> {
        let bad = |what: &str| std::io::Error::other(what.to_owned());
        let mut line = String::new();
        if self.reader.read_line(&mut line)? == 0 {
            return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof));
        }
        let status = line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| bad("not a status line"))?;
        let mut headers = Vec::new();
        loop {
            line.clear();
            self.reader.read_line(&mut line)?;
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            let (n, v) = l.split_once(':').ok_or_else(|| bad("bad header"))?;
            headers.push((n.trim().to_owned(), v.trim().to_owned()));
        }
        let mut reply = Reply {
            status,
            headers,
            body: String::new(),
        };
        let mut body = Vec::new();
        if reply
            .header("transfer-encoding")
            .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
        {
            loop {
                line.clear();
                self.reader.read_line(&mut line)?;
                let size = usize::from_str_radix(line.trim(), 16).map_err(|_| bad("chunk"))?;
                let mut chunk = vec![0u8; size + 2];
                self.reader.read_exact(&mut chunk)?;
                if size == 0 {
                    break;
                }
                body.extend_from_slice(&chunk[..size]);
            }
        } else {
            let length: usize = reply
                .header("content-length")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            body.resize(length, 0);
            self.reader.read_exact(&mut body)?;
        }
        reply.body = String::from_utf8_lossy(&body).into_owned();
        Ok(reply)
    }

    /// Sends one request and reads its reply.
    pub fn round_trip(&mut self, raw: &[u8]) -> std::io::Result<Reply> {
        self.send(raw)?;
        self.read_reply()
    }
}
