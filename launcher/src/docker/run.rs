//! The agent, attached through the Docker attach API (bollard; never the
//! `docker` CLI, so `bottle` talks to one engine only). On a terminal: ours
//! in raw mode, our stdin copied to the agent's tty and its output to our
//! stdout, and its tty kept at our size (right after start and on every
//! `SIGWINCH`). Otherwise: its stdout and stderr copied to ours. Returns the
//! agent's exit code.
//!
//! In raw mode Ctrl-C is a byte the agent gets (its tty turns it into its own
//! SIGINT); `bottle` itself is stopped by a signal from elsewhere, or by the
//! detach keys [`DETACH_KEYS`], after which the bottle is torn down.
//!
//! Must never: start any container but the agent `apply` created, or leave
//! our terminal in raw mode on a path out (agent exit, error, the future
//! dropped by a signal, a panic unwinding: [`RawMode`] restores it on drop).

use std::future::pending;
use std::time::Duration;

use bollard::Docker;
use bollard::container::{AttachContainerResults, LogOutput};
use bollard::query_parameters::{
    AttachContainerOptions, ResizeContainerTTYOptions, WaitContainerOptions,
};
use futures_util::{Stream, StreamExt};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::engine::{ApplyError, docker_err};
use crate::progress::Progress;

/// The engine's detach sequence for our attach (Docker always has one; its
/// default, Ctrl-P Ctrl-Q, would hold back every Ctrl-P typed to the agent):
/// Ctrl-] then `.`, as telnet's and ssh's escapes. It ends the session and
/// the bottle with it (exit 130).
pub const DETACH_KEYS: &str = "ctrl-],.";

/// The size of one read from our stdin or one write to the agent: input is
/// copied in chunks of at most this, with back-pressure, never buffered
/// without bound.
const CHUNK: usize = 8 * 1024;

/// How long the agent's last output may take to drain after it exited.
const DRAIN: Duration = Duration::from_secs(5);

/// After the output stream ends, how long the agent may take to be seen
/// exited before the end counts as a detach.
const EXIT_AFTER_EOF: Duration = Duration::from_secs(3);

/// Starts the agent attached to this terminal (or to our stdout/stderr) and
/// returns its exit code.
pub async fn run_agent(
    d: &Docker,
    name: &str,
    tty: bool,
    progress: &Progress,
) -> Result<i64, ApplyError> {
    if tty {
        return terminal_session(d, name, progress).await;
    }
    let mut att = d
        .attach_container(
            name,
            Some(AttachContainerOptions {
                stdout: true,
                stderr: true,
                stream: true,
                logs: true,
                ..Default::default()
            }),
        )
        .await
        .map_err(docker_err(format!("attach to {name}")))?;
    d.start_container(name, None)
        .await
        .map_err(docker_err(format!("start {name}")))?;
    let pump = tokio::spawn(async move {
        let mut out = tokio::io::stdout();
        let mut err = tokio::io::stderr();
        while let Some(Ok(msg)) = att.output.next().await {
            match msg {
                LogOutput::StdErr { message } => {
                    let _ = err.write_all(&message).await;
                    let _ = err.flush().await;
                }
                other => {
                    let _ = out.write_all(&other.into_bytes()).await;
                    let _ = out.flush().await;
                }
            }
        }
    });
    let code = exit_code(d, name).await;
    // Let the last output drain (bounded).
    let _ = tokio::time::timeout(DRAIN, pump).await;
    code
}

/// Our terminal in raw mode for as long as this lives.
struct RawMode;

impl RawMode {
    /// Raw mode on; a panic's message is then printed on a restored
    /// terminal (the hook restores it first; the drop finds nothing to do).
    fn enable() -> Result<Self, ApplyError> {
        crossterm::terminal::enable_raw_mode().map_err(|source| ApplyError::Io {
            what: "put the terminal in raw mode for the agent".into(),
            source,
        })?;
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let _ = crossterm::terminal::disable_raw_mode();
            previous(info);
        }));
        Ok(RawMode)
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = crossterm::terminal::disable_raw_mode();
    }
}

/// The interactive session: attach (stdin too), raw mode, start, size, then
/// copy both ways until the agent exits or the session is detached.
async fn terminal_session(d: &Docker, name: &str, progress: &Progress) -> Result<i64, ApplyError> {
    let AttachContainerResults { output, input } = d
        .attach_container(
            name,
            Some(AttachContainerOptions {
                stdin: true,
                stdout: true,
                stderr: true,
                stream: true,
                logs: false,
                detach_keys: Some(DETACH_KEYS.into()),
            }),
        )
        .await
        .map_err(docker_err(format!("attach to {name}")))?;
    // Listening before start: a resize between start and the first size
    // sent is not lost.
    let winch = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::window_change()).ok();
    let raw = RawMode::enable()?;
    d.start_container(name, None)
        .await
        .map_err(docker_err(format!("start {name}")))?;
    initial_size(d, name).await;
    let exit = exit_code(d, name);
    let copy_out = copy_output(output, tokio::io::stdout());
    let beside = async {
        tokio::join!(
            copy_input(tokio::io::stdin(), input),
            follow_resizes(d, name, winch)
        );
    };
    tokio::pin!(exit, copy_out, beside);
    let ended = tokio::select! {
        code = &mut exit => {
            let _ = tokio::time::timeout(DRAIN, &mut copy_out).await;
            Some(code)
        }
        () = &mut copy_out => tokio::time::timeout(EXIT_AFTER_EOF, &mut exit).await.ok(),
        () = &mut beside => None,
    };
    drop(raw);
    match ended {
        Some(code) => code,
        None => {
            progress.warn("detached from the agent (Ctrl-] .): it stops with the bottle");
            Ok(130)
        }
    }
}

/// Copies the agent's output to ours until the stream ends; a write to our
/// stdout waits, so the engine's stream is read no faster than we print.
async fn copy_output<S>(mut output: S, mut out: impl AsyncWrite + Unpin)
where
    S: Stream<Item = Result<LogOutput, bollard::errors::Error>> + Unpin,
{
    while let Some(Ok(msg)) = output.next().await {
        if out.write_all(&msg.into_bytes()).await.is_err() || out.flush().await.is_err() {
            break;
        }
    }
}

/// Copies our stdin to the agent, one chunk at a time; at our end of input
/// the agent's stdin is closed. Never returns (the session ends otherwise).
async fn copy_input(mut stdin: impl AsyncRead + Unpin, mut to: impl AsyncWrite + Unpin) {
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = match stdin.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if to.write_all(&buf[..n]).await.is_err() || to.flush().await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
    pending::<()>().await
}

/// Sends our size on every `SIGWINCH`. Never returns.
async fn follow_resizes(d: &Docker, name: &str, winch: Option<tokio::signal::unix::Signal>) {
    if let Some(mut w) = winch {
        while w.recv().await.is_some() {
            let _ = resize(d, name).await;
        }
    }
    pending::<()>().await
}

/// Our size, sent right after start; the engine may refuse the first tries
/// while the tty is being set up, so a few are made (about 0.3 s in all).
async fn initial_size(d: &Docker, name: &str) {
    for attempt in 1..=5u64 {
        if resize(d, name).await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20 * attempt)).await;
    }
}

/// Sets the agent's tty to our terminal's size.
async fn resize(d: &Docker, name: &str) -> Result<(), ApplyError> {
    let (w, h) = crossterm::terminal::size().map_err(|source| ApplyError::Io {
        what: "read the terminal size".into(),
        source,
    })?;
    d.resize_container_tty(
        name,
        ResizeContainerTTYOptions {
            h: h.into(),
            w: w.into(),
        },
    )
    .await
    .map_err(docker_err(format!("resize the tty of {name}")))
}

async fn exit_code(d: &Docker, name: &str) -> Result<i64, ApplyError> {
    let mut w = d.wait_container(
        name,
        Some(WaitContainerOptions {
            condition: "not-running".into(),
        }),
    );
    match w.next().await {
        Some(Ok(r)) => Ok(r.status_code),
        Some(Err(bollard::errors::Error::DockerContainerWaitError { code, .. })) => Ok(code),
        Some(Err(e)) => Err(docker_err(format!("wait for {name}"))(e)),
        None => Err(ApplyError::Runtime(format!("lost track of {name}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Input is copied in chunks of at most `CHUNK` and all of it arrives;
    /// at the end of our input the agent's side is shut down.
    #[tokio::test]
    async fn input_is_copied_whole_in_bounded_chunks_then_closed() {
        let data: Vec<u8> = (0..3 * CHUNK + 17).map(|i| (i % 251) as u8).collect();
        let (mut agent_side, ours) = tokio::io::duplex(CHUNK);
        let copy = tokio::spawn(copy_input(std::io::Cursor::new(data.clone()), ours));
        let mut got = Vec::new();
        agent_side.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, data);
        copy.abort();
    }

    /// Output is copied in order, and copying stops at the stream's end.
    #[tokio::test]
    async fn output_is_copied_in_order_until_the_stream_ends() {
        let msgs = futures_util::stream::iter(vec![
            Ok(LogOutput::Console {
                message: "one\r\n".into(),
            }),
            Ok(LogOutput::Console {
                message: "two\r\n".into(),
            }),
        ]);
        let mut out = Vec::new();
        copy_output(msgs, &mut out).await;
        assert_eq!(out, b"one\r\ntwo\r\n");
    }
}
