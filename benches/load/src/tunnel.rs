//! The floor: a CONNECT proxy that only relays bytes. The client's TLS goes through it
//! to the origin untouched (no leaf, no second handshake, no HTTP, no policy), so what it
//! costs is what any process in the path costs on this machine: the extra loopback hops,
//! the wake-ups of a second CPU, and the copies in and out of the kernel. Measured in the
//! same run as the proxies, it is the floor a MITM proxy cannot go below.
//!
//! Owns the relay only. It must never relay anywhere but loopback: it is a bench tool,
//! and an open relay on a machine is a hole.

use anyhow::{Context, Result};
use std::net::{IpAddr, SocketAddr};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Bytes of a relay buffer, each way. 1 MiB, as much as egress-proxy lets an origin send
/// ahead on a stream: with 64 KiB the relay read and wrote in turns and cost more per
/// byte than egress-proxy, decryption included (S4: 643 MB/s, 1 224 MB per CPU-second;
/// 1 MiB: 871-927 MB/s, 2 400-2 500), which is no floor.
const RELAY_BUF: usize = 1024 * 1024;
/// The longest CONNECT head it reads.
const MAX_HEAD: usize = 8 * 1024;

/// Listens on `listen`, prints `READY <port>`, relays every CONNECT to a loopback
/// address until killed.
pub async fn run(listen: SocketAddr) -> Result<()> {
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding {listen}"))?;
    println!("READY {}", listener.local_addr()?.port());
    loop {
        let (client, _) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                eprintln!("tunnel: accept: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        tokio::spawn(async move {
            if let Err(e) = relay(client).await {
                eprintln!("tunnel: {e:#}");
            }
        });
    }
}

async fn relay(mut client: TcpStream) -> Result<()> {
    client.set_nodelay(true)?;
    let target = match read_connect(&mut client).await {
        Ok(t) => t,
        Err(e) => {
            let _ = client
                .write_all(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n")
                .await;
            return Err(e);
        }
    };
    let mut origin = TcpStream::connect(target)
        .await
        .with_context(|| format!("connecting to {target}"))?;
    origin.set_nodelay(true)?;
    client
        .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
        .await?;
    // Either side closing or failing ends the relay; both are normal at a run's end.
    let _ =
        tokio::io::copy_bidirectional_with_sizes(&mut client, &mut origin, RELAY_BUF, RELAY_BUF)
            .await;
    Ok(())
}

/// Reads `CONNECT <ip>:<port> HTTP/1.1` and its headers; returns the target if it is a
/// loopback address.
async fn read_connect(client: &mut TcpStream) -> Result<SocketAddr> {
    let mut head = Vec::with_capacity(256);
    let mut b = [0u8; 1];
    // Byte by byte up to the blank line: nothing of the client's TLS is read here.
    while !head.ends_with(b"\r\n\r\n") {
        anyhow::ensure!(head.len() < MAX_HEAD, "CONNECT head over {MAX_HEAD} bytes");
        anyhow::ensure!(
            client.read(&mut b).await? == 1,
            "the client closed before the end of its CONNECT head"
        );
        head.push(b[0]);
    }
    parse_connect(&head)
}

/// The target of a CONNECT head, refused unless it is `CONNECT <loopback ip>:<port>`.
fn parse_connect(head: &[u8]) -> Result<SocketAddr> {
    let line = head.split(|&c| c == b'\n').next().unwrap_or_default();
    let line = std::str::from_utf8(line)
        .context("the request line is not UTF-8")?
        .trim_end_matches('\r');
    let mut parts = line.split(' ');
    let (Some("CONNECT"), Some(target), Some(_version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        anyhow::bail!("not a CONNECT request line: {line:?}");
    };
    let addr: SocketAddr = target
        .parse()
        .with_context(|| format!("CONNECT target {target:?} is not ip:port"))?;
    anyhow::ensure!(
        match addr.ip() {
            IpAddr::V4(ip) => ip.is_loopback(),
            IpAddr::V6(ip) => ip.is_loopback(),
        },
        "CONNECT target {addr} is not a loopback address"
    );
    Ok(addr)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_connect_to_a_loopback_ip_and_port_is_relayed() {
        let ok = parse_connect(b"CONNECT 127.0.0.9:443 HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        assert_eq!(ok, "127.0.0.9:443".parse().unwrap());
        for (head, why) in [
            (
                &b"CONNECT 10.0.0.1:443 HTTP/1.1\r\n\r\n"[..],
                "not a loopback",
            ),
            (
                b"CONNECT example.com:443 HTTP/1.1\r\n\r\n",
                "is not ip:port",
            ),
            (b"GET / HTTP/1.1\r\n\r\n", "not a CONNECT"),
            (b"CONNECT 127.0.0.1:443  HTTP/1.1\r\n\r\n", "not a CONNECT"),
            (b"CONNECT 127.0.0.1 HTTP/1.1\r\n\r\n", "is not ip:port"),
            (b"\xff\r\n\r\n", "not UTF-8"),
        ] {
            let e = format!("{:#}", parse_connect(head).unwrap_err());
            assert!(e.contains(why), "{head:?}: {e}");
        }
    }

    /// A real relay over loopback: what goes in one side comes out the other.
    #[tokio::test]
    async fn bytes_cross_the_tunnel_both_ways() {
        let echo = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let echo_addr = echo.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = echo.accept().await.unwrap();
            let mut buf = vec![0u8; 5];
            s.read_exact(&mut buf).await.unwrap();
            s.write_all(&buf.repeat(2)).await.unwrap();
        });
        let tunnel = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let tunnel_addr = tunnel.local_addr().unwrap();
        tokio::spawn(async move {
            let (c, _) = tunnel.accept().await.unwrap();
            relay(c).await.unwrap();
        });
        let mut c = TcpStream::connect(tunnel_addr).await.unwrap();
        c.write_all(format!("CONNECT {echo_addr} HTTP/1.1\r\n\r\nhello").as_bytes())
            .await
            .unwrap();
        let mut got = Vec::new();
        c.read_to_end(&mut got).await.unwrap();
        assert_eq!(
            String::from_utf8(got).unwrap(),
            "HTTP/1.1 200 Connection established\r\n\r\nhellohello"
        );
    }
}
