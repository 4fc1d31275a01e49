//! A fault-injecting TCP proxy in front of each node, for network
//! partitions on loopback without root.
//!
//! Every node advertises its proxy's address, so all traffic to it — from
//! clients and from other nodes — passes through the proxy. Each node also
//! makes its own connections from a loopback address of its own
//! (`127.0.0.<10 + id>`, `--outbound-address`), so a proxy can tell which
//! node a connection comes from. Cutting node A off from node B blocks A's
//! address at B's proxy and B's at A's, and drops the connections already
//! open between them; clients (from `127.0.0.1`) are never blocked.

use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use anyhow::Result;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

#[derive(Default)]
struct State {
    target: String,
    blocked: HashSet<IpAddr>,
    /// Open connections by source address, to cut on a partition.
    open: Vec<(IpAddr, CancellationToken)>,
}

/// One node's proxy; stops when dropped.
pub struct Proxy {
    /// The address clients and other nodes use for the node.
    pub addr: String,
    state: Arc<Mutex<State>>,
    stop: CancellationToken,
}

fn lock(state: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    state
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The loopback address node `id` connects from.
pub fn node_ip(id: usize) -> IpAddr {
    IpAddr::from([127, 0, 0, 10 + id as u8])
}

impl Proxy {
    /// Binds an ephemeral loopback port; forwards nowhere until
    /// [`Proxy::set_target`].
    ///
    /// # Errors
    /// The port cannot be bound.
    pub async fn start() -> Result<Proxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?.to_string();
        let state = Arc::new(Mutex::new(State::default()));
        let stop = CancellationToken::new();
        let (s, st) = (Arc::clone(&state), stop.clone());
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    _ = st.cancelled() => return,
                    a = listener.accept() => a,
                };
                let Ok((inbound, peer)) = accepted else {
                    continue;
                };
                let (target, cut) = {
                    let mut state = lock(&s);
                    if state.blocked.contains(&peer.ip()) {
                        continue;
                    }
                    let cut = st.child_token();
                    state.open.retain(|(_, t)| !t.is_cancelled());
                    state.open.push((peer.ip(), cut.clone()));
                    (state.target.clone(), cut)
                };
                tokio::spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(&target).await else {
                        return;
                    };
                    let _ = outbound.set_nodelay(true);
                    let _ = inbound.set_nodelay(true);
                    let mut inbound = inbound;
                    tokio::select! {
                        _ = cut.cancelled() => {}
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                    }
                    cut.cancel();
                });
            }
        });
        Ok(Proxy { addr, state, stop })
    }

    /// Where the node really listens (after every start).
    pub fn set_target(&self, target: &str) {
        lock(&self.state).target = target.to_string();
    }

    /// Refuses (and cuts) connections from `ip`.
    pub fn block(&self, ip: IpAddr) {
        let mut state = lock(&self.state);
        state.blocked.insert(ip);
        for (from, cut) in &state.open {
            if *from == ip {
                cut.cancel();
            }
        }
    }

    /// Lets everyone through again.
    pub fn heal(&self) {
        lock(&self.state).blocked.clear();
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Cuts the nodes in `side` (ids) off from every other node, both ways.
pub fn partition(proxies: &[Proxy], side: &[usize]) {
    for (i, proxy) in proxies.iter().enumerate() {
        let id = i + 1;
        for (j, _) in proxies.iter().enumerate() {
            let other = j + 1;
            if side.contains(&id) != side.contains(&other) {
                proxy.block(node_ip(other));
            }
        }
    }
}

/// Heals every partition.
pub fn heal(proxies: &[Proxy]) {
    for proxy in proxies {
        proxy.heal();
    }
}
