//! A git smart-HTTP server in a process of its own, for tests that stop it
//! (SIGSTOP) as a hung git server would be, and let it go on (SIGCONT).
//!
//! The process is this test binary started again, running only
//! [`git_over_http_is_served_by_its_own_process`] with `SLUICE_TEST_GIT_HTTP_ROOT`
//! set: a loopback HTTP/1.1 server that hands every request to
//! `git http-backend` (CGI) for the repositories under that folder, one
//! thread per connection. It writes its port to the file named by
//! `SLUICE_TEST_GIT_HTTP_PORT_FILE` and serves until it is killed. Without
//! the variable, the same test checks the server: a clone and a push
//! through it with the `git` command line, and no answer while stopped.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::fixture::{Repo, git};

const ROOT_ENV: &str = "SLUICE_TEST_GIT_HTTP_ROOT";
const PORT_FILE_ENV: &str = "SLUICE_TEST_GIT_HTTP_PORT_FILE";

/// The server process.
pub struct GitHttp {
    child: Child,
    port: u16,
}

impl GitHttp {
    /// Serves the repositories under `root`; `port_file` must be outside
    /// it or at least not a repository.
    pub fn start(root: &Path) -> GitHttp {
        let port_file = root.join(".githttp-port");
        let _ = std::fs::remove_file(&port_file);
        let child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "reconcile::githttp::git_over_http_is_served_by_its_own_process",
                "--test-threads=1",
                "--nocapture",
            ])
            .env(ROOT_ENV, root)
            .env(PORT_FILE_ENV, &port_file)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let start = Instant::now();
        let port = loop {
            if let Some(p) = std::fs::read_to_string(&port_file)
                .ok()
                .and_then(|t| t.trim().parse().ok())
            {
                break p;
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "the git HTTP server did not start"
            );
            std::thread::sleep(Duration::from_millis(10));
        };
        GitHttp { child, port }
    }

    /// The URL of the repository `name` (a folder under the root).
    pub fn url(&self, name: &str) -> String {
        format!("http://127.0.0.1:{}/{name}", self.port)
    }

    /// Stops the process (SIGSTOP): connections are accepted by the
    /// kernel and never answered.
    pub fn stop(&self) {
        self.signal("STOP");
    }

    /// Lets it go on (SIGCONT).
    pub fn resume(&self) {
        self.signal("CONT");
    }

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{sig} failed");
    }
}

impl Drop for GitHttp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn git_over_http_is_served_by_its_own_process() {
    if let (Some(root), Some(port_file)) =
        (std::env::var_os(ROOT_ENV), std::env::var_os(PORT_FILE_ENV))
    {
        serve(&PathBuf::from(root), &PathBuf::from(port_file));
    }
    // The check: clone, push and ls-remote through the server.
    let tmp = tempfile::tempdir().unwrap();
    let repo = Repo::new(tmp.path());
    let server = GitHttp::start(tmp.path());
    let url = server.url("origin.git");
    git(tmp.path(), &["clone", "-q", &url, "copy"]);
    let copy = tmp.path().join("copy");
    std::fs::write(copy.join("README.md"), "# over http\n").unwrap();
    git(&copy, &["add", "-A"]);
    git(&copy, &["commit", "-q", "-m", "Over HTTP"]);
    git(&copy, &["push", "-q", "origin", "HEAD:main"]);
    assert_eq!(repo.log()[0].1, "Over HTTP");
    let head = git(&copy, &["rev-parse", "HEAD"]);
    let listed = git(tmp.path(), &["ls-remote", &url, "main"]);
    assert!(listed.starts_with(&head), "{listed}");

    // Stopped, it answers nothing; let go on, it answers again.
    server.stop();
    let mut stream = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let request = "GET /origin.git/info/refs?service=git-upload-pack HTTP/1.1\r\nHost: x\r\n\r\n";
    stream.write_all(request.as_bytes()).unwrap();
    let mut buf = [0u8; 16];
    assert!(stream.read(&mut buf).is_err(), "a stopped server answered");
    server.resume();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut status = [0u8; 12];
    stream.read_exact(&mut status).unwrap();
    assert_eq!(
        &status,
        b"HTTP/1.1 200",
        "{:?}",
        String::from_utf8_lossy(&status)
    );
}

/// Serves until killed.
fn serve(root: &Path, port_file: &Path) -> ! {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let tmp = port_file.with_extension("tmp");
    std::fs::write(&tmp, port.to_string()).unwrap();
    std::fs::rename(&tmp, port_file).unwrap();
    for stream in listener.incoming().flatten() {
        let root = root.to_path_buf();
        std::thread::spawn(move || {
            let _ = answer(stream, &root);
        });
    }
    std::process::exit(0)
}

/// One request, answered by `git http-backend`; the connection is closed
/// after it.
fn answer(stream: TcpStream, root: &Path) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let (Some(method), Some(target)) = (parts.next(), parts.next()) else {
        return Ok(());
    };
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        reader.read_line(&mut h)?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    let header = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let mut body = Vec::new();
    if header("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        loop {
            let mut size = String::new();
            reader.read_line(&mut size)?;
            let n = usize::from_str_radix(size.trim().split(';').next().unwrap_or("0"), 16)
                .unwrap_or(0);
            let mut chunk = vec![0u8; n + 2];
            reader.read_exact(&mut chunk)?;
            if n == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..n]);
        }
    } else if let Some(n) = header("content-length").and_then(|v| v.parse::<usize>().ok()) {
        body.resize(n, 0);
        reader.read_exact(&mut body)?;
    }
    let mut cgi = Command::new("git");
    cgi.arg("http-backend")
        .env("GIT_PROJECT_ROOT", root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("REMOTE_USER", "test")
        .env("REMOTE_ADDR", "127.0.0.1")
        .env("REQUEST_METHOD", method)
        .env("PATH_INFO", path)
        .env("QUERY_STRING", query)
        .env("CONTENT_LENGTH", body.len().to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    if let Some(t) = header("content-type") {
        cgi.env("CONTENT_TYPE", t);
    }
    if let Some(p) = header("git-protocol") {
        cgi.env("GIT_PROTOCOL", p);
    }
    if let Some(e) = header("content-encoding") {
        cgi.env("HTTP_CONTENT_ENCODING", e);
    }
    let mut child = cgi.spawn()?;
    let mut stdin = child.stdin.take().unwrap();
    let feeder = std::thread::spawn(move || {
        let _ = stdin.write_all(&body);
    });
    let mut out = Vec::new();
    child.stdout.take().unwrap().read_to_end(&mut out)?;
    let _ = feeder.join();
    child.wait()?;
    // CGI headers, a blank line, the body.
    let split = out
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| (i, 4))
        .or_else(|| out.windows(2).position(|w| w == b"\n\n").map(|i| (i, 2)));
    let (head, payload) = match split {
        Some((i, n)) => (
            String::from_utf8_lossy(&out[..i]).into_owned(),
            &out[i + n..],
        ),
        None => (String::new(), &out[..]),
    };
    let mut status = "200 OK".to_string();
    let mut response = String::new();
    for h in head.lines() {
        match h.split_once(':') {
            Some((k, v)) if k.eq_ignore_ascii_case("status") => status = v.trim().to_string(),
            Some(_) => {
                response.push_str(h.trim_end());
                response.push_str("\r\n");
            }
            None => {}
        }
    }
    let mut stream = stream;
    write!(
        stream,
        "HTTP/1.1 {status}\r\n{response}Content-Length: {}\r\nConnection: close\r\n\r\n",
        payload.len()
    )?;
    stream.write_all(payload)?;
    stream.flush()
}
