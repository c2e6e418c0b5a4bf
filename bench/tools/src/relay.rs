//! `wicket-bench relay`: the cheapest proxy there can be, as a reference
//! point. Each user connection gets one backend connection, and bytes are
//! copied both ways as they come, with nothing parsed, checked or
//! rewritten. Threads are laid out as wicket's edge: one current-thread
//! runtime per thread, each with its own `SO_REUSEPORT` socket.

use std::net::SocketAddr;

use anyhow::Context;
use tokio::net::{TcpListener, TcpSocket, TcpStream};

/// Serves `listen` on `threads` threads, relaying every connection to `to`,
/// until the process is stopped.
pub fn run(listen: SocketAddr, to: SocketAddr, threads: usize) -> anyhow::Result<()> {
    let mut handles = Vec::new();
    for i in 0..threads.max(1) {
        handles.push(
            std::thread::Builder::new()
                .name(format!("relay-{i}"))
                .spawn(move || serve(listen, to))
                .context("starting a relay thread")?,
        );
    }
    for h in handles {
        h.join()
            .map_err(|_| anyhow::anyhow!("a relay thread panicked"))??;
    }
    Ok(())
}

fn bind(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    }
    .context("creating a socket")?;
    socket.set_reuseaddr(true)?;
    socket.set_reuseport(true)?;
    socket
        .bind(addr)
        .with_context(|| format!("binding {addr}"))?;
    socket.listen(1024).context("listening")
}

fn serve(listen: SocketAddr, to: SocketAddr) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting a runtime")?;
    rt.block_on(async move {
        let listener = bind(listen)?;
        loop {
            let (user, _) = listener.accept().await?;
            tokio::spawn(async move {
                let _ = relay(user, to).await;
            });
        }
    })
}

async fn relay(mut user: TcpStream, to: SocketAddr) -> std::io::Result<()> {
    user.set_nodelay(true)?;
    let mut backend = TcpStream::connect(to).await?;
    backend.set_nodelay(true)?;
    tokio::io::copy_bidirectional(&mut user, &mut backend).await?;
    Ok(())
}
