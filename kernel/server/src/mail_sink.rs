//! `crm mail-sink`: a small SMTP server for development and tests.
//!
//! It accepts mail on a local port and writes every message to a directory
//! as `<n>.eml` (the envelope first as `X-Envelope-From`/`X-Envelope-To`
//! lines, then the message as received), so a developer can point
//! `crm serve --smtp-url` at it and read what campaigns and surveys would
//! send. Recipients matching `--reject` get a permanent 550 reply and those
//! matching `--defer` a transient 451, to exercise bounces and retries.
//! It speaks plain SMTP only (no STARTTLS, no AUTH) and is not a relay.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Context, Result};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// Largest message accepted, in bytes.
const MAX_MESSAGE_BYTES: usize = 10 * 1024 * 1024;
/// Longest command line accepted.
const MAX_LINE_BYTES: usize = 4096;

#[derive(Debug, Clone)]
pub struct SinkOptions {
    pub dir: PathBuf,
    /// Recipients containing this text are refused permanently (550).
    pub reject: Option<String>,
    /// Recipients containing this text are refused for now (451).
    pub defer: Option<String>,
}

/// Serves until the process ends; prints the address it listens on.
pub async fn run(listen: &str, options: SinkOptions) -> Result<()> {
    std::fs::create_dir_all(&options.dir).with_context(|| format!("creating {}", options.dir.display()))?;
    let listener = TcpListener::bind(listen).await.with_context(|| format!("cannot listen on {listen}"))?;
    println!("mail sink listening on smtp://{} (messages in {})", listener.local_addr()?, options.dir.display());
    let next = Arc::new(AtomicU64::new(first_free(&options.dir)));
    let options = Arc::new(options);
    loop {
        let (stream, _) = listener.accept().await?;
        let (options, next) = (options.clone(), next.clone());
        tokio::spawn(async move {
            if let Err(error) = session(stream, &options, &next).await {
                tracing::debug!(%error, "mail sink session ended");
            }
        });
    }
}

/// The number after the highest `<n>.eml` already in `dir`.
fn first_free(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|entry| entry.ok()?.file_name().to_str()?.strip_suffix(".eml")?.parse::<u64>().ok())
                .max()
                .map_or(1, |n| n + 1)
        })
        .unwrap_or(1)
}

async fn session(stream: TcpStream, options: &SinkOptions, next: &AtomicU64) -> Result<()> {
    stream.set_nodelay(true)?;
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read);
    write.write_all(b"220 crm-mail-sink ESMTP ready\r\n").await?;
    let mut from: Option<String> = None;
    let mut to: Vec<String> = Vec::new();
    let mut line = String::new();
    loop {
        line.clear();
        if read_line(&mut lines, &mut line, MAX_LINE_BYTES).await? == 0 {
            return Ok(());
        }
        let command = line.trim_end();
        let verb = command.split_whitespace().next().unwrap_or("").to_ascii_uppercase();
        let reply: String = match verb.as_str() {
            "EHLO" => "250-crm-mail-sink\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n250 SIZE 10485760".into(),
            "HELO" => "250 crm-mail-sink".into(),
            "MAIL" => match address(command, "FROM:") {
                Some(address) => {
                    from = Some(address);
                    to.clear();
                    "250 2.1.0 ok".into()
                }
                None => "501 5.5.4 syntax: MAIL FROM:<address>".into(),
            },
            "RCPT" => match (address(command, "TO:"), &from) {
                (_, None) => "503 5.5.1 MAIL first".into(),
                (None, _) => "501 5.5.4 syntax: RCPT TO:<address>".into(),
                (Some(address), _) if options.reject.as_deref().is_some_and(|pattern| address.contains(pattern)) => {
                    format!("550 5.1.1 <{address}>: mailbox unavailable")
                }
                (Some(address), _) if options.defer.as_deref().is_some_and(|pattern| address.contains(pattern)) => {
                    format!("451 4.2.0 <{address}>: try again later")
                }
                (Some(address), _) => {
                    to.push(address);
                    "250 2.1.5 ok".into()
                }
            },
            "DATA" if from.is_none() || to.is_empty() => "503 5.5.1 no valid recipients".into(),
            "DATA" => {
                write.write_all(b"354 end data with <CR><LF>.<CR><LF>\r\n").await?;
                let reply = match read_data(&mut lines).await? {
                    Some(data) => {
                        let n = next.fetch_add(1, Ordering::Relaxed);
                        store(&options.dir, n, from.as_deref().unwrap_or(""), &to, &data)?;
                        format!("250 2.0.0 queued as {n}")
                    }
                    None => "552 5.3.4 message too big".into(),
                };
                from = None;
                to.clear();
                reply
            }
            "RSET" => {
                from = None;
                to.clear();
                "250 2.0.0 ok".into()
            }
            "NOOP" => "250 2.0.0 ok".into(),
            "QUIT" => {
                write.write_all(b"221 2.0.0 bye\r\n").await?;
                return Ok(());
            }
            _ => "502 5.5.2 command not implemented".into(),
        };
        // One write per reply: a reply split over two segments waits on the
        // client's delayed acknowledgement.
        write.write_all(format!("{reply}\r\n").as_bytes()).await?;
    }
}

/// Reads one line of at most `max` bytes (never more into memory); a longer
/// line ends the session.
async fn read_line<R: tokio::io::AsyncBufRead + Unpin>(reader: &mut R, line: &mut String, max: usize) -> Result<usize> {
    use tokio::io::AsyncReadExt;
    let read = reader.take(max as u64 + 1).read_line(line).await?;
    anyhow::ensure!(line.len() <= max, "line too long");
    Ok(read)
}

/// The message up to the lone `.` line, dot-unstuffed; `None` when it was
/// larger than the limit (the rest is read and dropped).
async fn read_data<R: tokio::io::AsyncBufRead + Unpin>(reader: &mut R) -> Result<Option<Vec<u8>>> {
    let mut data = Vec::new();
    let mut too_big = false;
    let mut line = Vec::new();
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line).await? == 0 {
            anyhow::bail!("connection closed inside DATA");
        }
        if line == b".\r\n" || line == b".\n" {
            return Ok(if too_big { None } else { Some(data) });
        }
        let content = if line.starts_with(b"..") { &line[1..] } else { &line[..] };
        if data.len() + content.len() > MAX_MESSAGE_BYTES {
            too_big = true;
        }
        if !too_big {
            data.extend_from_slice(content);
        }
    }
}

/// `<address>` after `prefix` (`FROM:` or `TO:`), parameters ignored.
fn address(command: &str, prefix: &str) -> Option<String> {
    let upper = command.to_ascii_uppercase();
    let start = upper.find(prefix)? + prefix.len();
    let rest = command[start..].trim_start();
    let rest = rest.strip_prefix('<')?;
    let end = rest.find('>')?;
    Some(rest[..end].to_string())
}

fn store(dir: &Path, n: u64, from: &str, to: &[String], data: &[u8]) -> Result<()> {
    let mut file = format!("X-Envelope-From: {from}\r\nX-Envelope-To: {}\r\n", to.join(", ")).into_bytes();
    file.extend_from_slice(data);
    let partial = dir.join(format!("{n}.eml.partial"));
    std::fs::write(&partial, &file)?;
    std::fs::rename(&partial, dir.join(format!("{n}.eml")))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_read_from_envelope_commands() {
        assert_eq!(address("MAIL FROM:<a@b.c> SIZE=10", "FROM:").as_deref(), Some("a@b.c"));
        assert_eq!(address("rcpt to: <x@y.z>", "TO:").as_deref(), Some("x@y.z"));
        assert_eq!(address("MAIL FROM:<>", "FROM:").as_deref(), Some(""));
        assert_eq!(address("RCPT TO:x@y.z", "TO:"), None);
    }

    #[tokio::test]
    async fn data_is_unstuffed_and_ends_at_the_dot_line() {
        let input: &[u8] = b"Subject: hi\r\n\r\n..leading dot\r\nplain\r\n.\r\nNOOP\r\n";
        let mut reader = BufReader::new(input);
        let data = read_data(&mut reader).await.unwrap().unwrap();
        assert_eq!(data, b"Subject: hi\r\n\r\n.leading dot\r\nplain\r\n");
        let mut rest = String::new();
        reader.read_line(&mut rest).await.unwrap();
        assert_eq!(rest, "NOOP\r\n");
    }
}
