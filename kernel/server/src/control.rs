//! The local control socket of a running server: `<data-dir>/control.sock`.
//!
//! Only the owner of the server process may connect (mode 0600). The
//! protocol is one JSON object per line each way:
//!
//! ```text
//! → {"cmd":"backup","out":"/abs/path"}
//! ← {"ok":true,"backup":{"dir":…,"manifest":{…}}}
//! ← {"ok":false,"error":{"code":"VALIDATION","message":"…"}}
//! ```
//!
//! The socket is created under a temporary name, restricted, and renamed
//! into place, so it is never reachable with wider permissions and a stale
//! one left by a killed server is replaced. A second server cannot reach
//! this point on the same data directory: it fails earlier on the locked
//! `system.redb`.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crm_core::{Error, Kernel};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};

/// The socket's file name inside the data directory.
pub const SOCKET_FILE: &str = "control.sock";

/// Longest request line accepted, in bytes.
const MAX_LINE: u64 = 64 * 1024;

/// The socket path of a data directory.
pub fn socket_path(data_dir: &Path) -> PathBuf {
    data_dir.join(SOCKET_FILE)
}

/// A listening control socket; the socket file is removed when it drops.
pub struct ControlSocket {
    path: PathBuf,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for ControlSocket {
    fn drop(&mut self) {
        self.task.abort();
        let _ = std::fs::remove_file(&self.path);
    }
}

impl ControlSocket {
    /// Listens on `<data-dir>/control.sock` and answers commands with `kernel`.
    pub fn start(data_dir: &Path, kernel: Arc<Kernel>) -> std::io::Result<ControlSocket> {
        let path = socket_path(data_dir);
        let temporary = data_dir.join(format!(".{SOCKET_FILE}.{}", std::process::id()));
        let _ = std::fs::remove_file(&temporary);
        let listener = UnixListener::bind(&temporary)?;
        let placed = std::fs::set_permissions(&temporary, std::fs::Permissions::from_mode(0o600))
            .and_then(|()| std::fs::rename(&temporary, &path));
        if let Err(error) = placed {
            let _ = std::fs::remove_file(&temporary);
            return Err(error);
        }
        let commands = Arc::new(Commands {
            kernel,
            backup: tokio::sync::Mutex::new(()),
        });
        let task = tokio::spawn(async move {
            loop {
                match listener.accept().await {
                    Ok((stream, _)) => {
                        tokio::spawn(commands.clone().serve(stream));
                    }
                    Err(error) => {
                        tracing::warn!(%error, "control socket accept failed");
                    }
                }
            }
        });
        Ok(ControlSocket { path, task })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

struct Commands {
    kernel: Arc<Kernel>,
    /// One backup at a time; a second one is refused, not queued.
    backup: tokio::sync::Mutex<()>,
}

fn failure(code: &str, message: impl Into<String>) -> Value {
    json!({ "ok": false, "error": { "code": code, "message": message.into() } })
}

fn from_error(error: &Error) -> Value {
    failure(error.code(), error.message.clone())
}

impl Commands {
    /// Answers one connection, a line per request, until it closes.
    async fn serve(self: Arc<Self>, stream: UnixStream) {
        let (reader, mut writer) = stream.into_split();
        let mut reader = BufReader::new(reader);
        loop {
            let mut line = Vec::new();
            let read = (&mut reader)
                .take(MAX_LINE + 1)
                .read_until(b'\n', &mut line)
                .await;
            let answer = match read {
                Ok(0) => return,
                Err(error) => {
                    tracing::warn!(%error, "control socket read failed");
                    return;
                }
                Ok(_) if line.len() as u64 > MAX_LINE => {
                    let answer = failure(
                        "VALIDATION",
                        format!("a request line may hold at most {MAX_LINE} bytes"),
                    );
                    let _ = write_line(&mut writer, &answer).await;
                    return;
                }
                Ok(_) => self.answer(&line).await,
            };
            if write_line(&mut writer, &answer).await.is_err() {
                return;
            }
        }
    }

    async fn answer(&self, line: &[u8]) -> Value {
        let request: Value = match serde_json::from_slice(line) {
            Ok(request @ Value::Object(_)) => request,
            Ok(_) => return failure("VALIDATION", "a request is a JSON object"),
            Err(error) => {
                return failure(
                    "VALIDATION",
                    format!("a request is a JSON object on one line: {error}"),
                );
            }
        };
        match request.get("cmd").and_then(Value::as_str) {
            Some("backup") => self.backup(&request).await,
            Some(other) => failure(
                "VALIDATION",
                format!(
                    "cmd: unknown command '{}' (known: backup)",
                    truncate(other, 40)
                ),
            ),
            None => failure("VALIDATION", "cmd: is required"),
        }
    }

    async fn backup(&self, request: &Value) -> Value {
        let Some(out) = request.get("out").and_then(Value::as_str) else {
            return failure(
                "VALIDATION",
                "out: is required (an absolute directory path)",
            );
        };
        let out = PathBuf::from(out);
        if !out.is_absolute() {
            return failure(
                "VALIDATION",
                "out: must be an absolute path (the server's working directory is not the client's)",
            );
        }
        let Ok(_running) = self.backup.try_lock() else {
            return failure("CONFLICT", "a backup is already running on this server");
        };
        let kernel = self.kernel.clone();
        let started = std::time::Instant::now();
        let result = tokio::task::spawn_blocking(move || kernel.backup(&out)).await;
        match result {
            Ok(Ok(report)) => {
                tracing::info!(
                    dir = %report.dir.display(),
                    files = report.manifest.files.len(),
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "backup written"
                );
                json!({ "ok": true, "backup": report })
            }
            Ok(Err(error)) => {
                tracing::warn!(%error, code = error.code(), "backup failed");
                from_error(&error)
            }
            Err(error) => {
                tracing::error!(%error, "backup task failed");
                failure("INTERNAL", "the backup task failed; see the server log")
            }
        }
    }
}

async fn write_line(
    writer: &mut tokio::net::unix::OwnedWriteHalf,
    answer: &Value,
) -> std::io::Result<()> {
    let mut bytes = serde_json::to_vec(answer).unwrap_or_else(|_| b"{\"ok\":false}".to_vec());
    bytes.push(b'\n');
    writer.write_all(&bytes).await?;
    writer.flush().await
}

fn truncate(text: &str, max: usize) -> &str {
    match text.char_indices().nth(max) {
        Some((index, _)) => &text[..index],
        None => text,
    }
}

/// Sends one request to the server of a data directory and reads its answer.
/// `Ok(None)` when no server listens there (no socket, or a stale one).
pub async fn request(data_dir: &Path, request: &Value) -> std::io::Result<Option<Value>> {
    let path = socket_path(data_dir);
    let stream = match UnixStream::connect(&path).await {
        Ok(stream) => stream,
        Err(error)
            if matches!(
                error.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
            ) =>
        {
            return Ok(None);
        }
        Err(error) => return Err(error),
    };
    let (reader, mut writer) = stream.into_split();
    let mut line = serde_json::to_vec(request).map_err(std::io::Error::other)?;
    line.push(b'\n');
    writer.write_all(&line).await?;
    writer.shutdown().await?;
    let mut answer = String::new();
    BufReader::new(reader).read_line(&mut answer).await?;
    if answer.is_empty() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "the server closed the control socket without an answer",
        ));
    }
    serde_json::from_str(&answer)
        .map(Some)
        .map_err(std::io::Error::other)
}

/// Whether a server answers on the data directory's control socket.
pub async fn server_running(data_dir: &Path) -> bool {
    UnixStream::connect(socket_path(data_dir)).await.is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crm_core::StoreOptions;

    fn kernel(dir: &Path) -> Arc<Kernel> {
        let kernel = Arc::new(Kernel::open(dir, StoreOptions::default()).expect("open kernel"));
        kernel.create_tenant("control").expect("create tenant");
        kernel
    }

    #[tokio::test]
    async fn the_socket_is_private_replaces_a_stale_one_and_is_removed_when_dropped() {
        let dir = tempfile::tempdir().expect("temp dir");
        let kernel = kernel(dir.path());
        // A stale socket file, as a killed server leaves it.
        drop(
            std::os::unix::net::UnixListener::bind(socket_path(dir.path()))
                .expect("bind a stale socket"),
        );
        assert!(socket_path(dir.path()).exists());
        assert!(
            !server_running(dir.path()).await,
            "a stale socket answers nobody"
        );

        let socket = ControlSocket::start(dir.path(), kernel).expect("start");
        let mode = std::fs::metadata(socket.path())
            .expect("socket metadata")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(server_running(dir.path()).await);
        drop(socket);
        assert!(
            !socket_path(dir.path()).exists(),
            "the socket was not removed"
        );
        assert_eq!(
            request(dir.path(), &json!({ "cmd": "backup" }))
                .await
                .expect("no server"),
            None
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn commands_are_answered_with_a_report_or_a_code() {
        let dir = tempfile::tempdir().expect("temp dir");
        let _socket = ControlSocket::start(dir.path(), kernel(dir.path())).expect("start");
        let ask = |request: Value| {
            let dir = dir.path().to_path_buf();
            async move { request_ok(&dir, request).await }
        };
        let code = |answer: &Value| {
            answer["error"]["code"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        };

        let out = tempfile::tempdir().expect("temp dir");
        let target = out.path().join("b1");
        let answer = ask(json!({ "cmd": "backup", "out": target })).await;
        assert_eq!(answer["ok"], true, "{answer}");
        assert_eq!(
            answer["backup"]["manifest"]["files"]
                .as_array()
                .map(Vec::len),
            Some(2),
            "{answer}"
        );
        assert!(target.join("backup.json").exists());

        let answer = ask(json!({ "cmd": "backup", "out": target })).await;
        assert_eq!(code(&answer), "VALIDATION", "{answer}");
        assert!(
            answer["error"]["message"]
                .as_str()
                .unwrap_or_default()
                .contains("not empty"),
            "{answer}"
        );
        assert_eq!(
            code(&ask(json!({ "cmd": "backup", "out": "relative/dir" })).await),
            "VALIDATION"
        );
        assert_eq!(code(&ask(json!({ "cmd": "backup" })).await), "VALIDATION");
        assert_eq!(code(&ask(json!({ "cmd": "shutdown" })).await), "VALIDATION");
        assert_eq!(code(&ask(json!(["backup"])).await), "VALIDATION");
    }

    async fn request_ok(dir: &Path, body: Value) -> Value {
        request(dir, &body)
            .await
            .expect("request")
            .expect("a server answers")
    }
}
