//! moto's `moto_server` (PyPI, installed by scripts/moto.sh) as the real third-party SQS and
//! EventBridge of the event tests: one process per test binary, started on first use.
//!
//! Found through `REDRIVE_MOTO_SERVER` (scripts/test.sh exports it) or `scripts/moto.sh path`;
//! if it cannot be found or started, the caller's test fails with the fix in the message —
//! never skips.

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

struct Moto {
    endpoint: String,
    // Kept so the process handle lives as long as the test binary; the watchdog kills moto.
    _child: Child,
}

fn moto_server_path() -> PathBuf {
    if let Ok(p) = std::env::var("REDRIVE_MOTO_SERVER")
        && !p.trim().is_empty()
    {
        let p = PathBuf::from(p.trim());
        assert!(
            p.is_file(),
            "REDRIVE_MOTO_SERVER={} is not a file: run scripts/moto.sh install",
            p.display()
        );
        return p;
    }
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../scripts/moto.sh");
    let out = Command::new("bash")
        .arg(&script)
        .arg("path")
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
    assert!(
        out.status.success(),
        "moto is not installed (these tests need it and never skip): run scripts/moto.sh install, \
         or set REDRIVE_MOTO_SERVER. {} said: {}",
        script.display(),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

/// A loopback port nothing listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// The endpoint of this process's moto_server (started on first call).
pub fn endpoint() -> &'static str {
    static MOTO: OnceLock<Moto> = OnceLock::new();
    &MOTO
        .get_or_init(|| {
            let bin = moto_server_path();
            let port = free_port();
            let log = std::env::temp_dir().join(format!("redrive-moto-{port}.log"));
            let log_file = std::fs::File::create(&log).expect("moto log file");
            // A test binary exits without running destructors of statics: a watchdog shell
            // kills moto once this process is gone.
            let child = Command::new("bash")
                .arg("-c")
                .arg(
                    r#""$0" -H 127.0.0.1 -p "$1" & m=$!
                       while kill -0 "$2" 2>/dev/null && kill -0 "$m" 2>/dev/null; do sleep 0.5; done
                       kill "$m" 2>/dev/null; wait "$m"; rm -f "$3""#,
                )
                .arg(&bin)
                .arg(port.to_string())
                .arg(std::process::id().to_string())
                .arg(&log)
                .stdin(Stdio::null())
                .stdout(log_file.try_clone().expect("log fd"))
                .stderr(log_file)
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
            let deadline = Instant::now() + Duration::from_secs(30);
            while TcpStream::connect(("127.0.0.1", port)).is_err() {
                assert!(
                    Instant::now() < deadline,
                    "moto_server ({}) did not listen on 127.0.0.1:{port} within 30 s; log {}:\n{}",
                    bin.display(),
                    log.display(),
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
                std::thread::sleep(Duration::from_millis(50));
            }
            Moto {
                endpoint: format!("http://127.0.0.1:{port}"),
                _child: child,
            }
        })
        .endpoint
}
